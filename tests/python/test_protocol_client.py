"""The Python client of hush_client.py against PROTOCOL.md's examples and a real relay.

Run from the repository root:

    /usr/bin/python3 -m unittest discover -s tests/python -v

The relay binary is $HUSH_RELAY_BIN, by default target/debug/hush-relay.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import hush_client as hc  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
PROTOCOL_MD = REPO / "PROTOCOL.md"
RELAY_ID = "py-test-1"
TIMEOUT = 20.0  # an upper bound for failures, never a wait for progress


def protocol_examples() -> dict:
    """The hex examples of PROTOCOL.md, by name (`<!-- example: NAME -->`)."""
    text = PROTOCOL_MD.read_text(encoding="utf-8")
    out = {}
    for m in re.finditer(r"<!-- example: ([\w-]+) -->(.*?)<!-- /example -->", text, re.S):
        block = re.search(r"```text\n(.*?)\n```", m.group(2), re.S)
        out[m.group(1)] = bytes.fromhex(block.group(1))
    return out


class WorkedExamples(unittest.TestCase):
    """Section 12 and the other hex examples, decoded and re-encoded by this client."""

    @classmethod
    def setUpClass(cls) -> None:
        cls.ex = protocol_examples()
        cls.group = bytes.fromhex("aabbccdd")
        cls.identity = hc.Identity(b"\x01" * 32)

    def test_all_examples_found(self) -> None:
        expected = {
            "ping-prefixed", "hello", "challenge", "device-key", "device-id", "auth-transcript",
            "authenticate", "ready", "ping", "send", "sent", "stale-epoch", "deliver", "ack",
            "truncated", "closing", "link-transcript", "mls-private-message", "mls-welcome",
        }
        self.assertEqual(expected, set(self.ex))

    def test_varint_rules(self) -> None:
        cases = {
            0: "00", 250: "fa", 251: "fbfb00", 1000: "fbe803", 65535: "fbffff",
            65536: "fc00000100", 1 << 32: "fd0000000001000000",
        }
        for value, hexed in cases.items():
            self.assertEqual(hc.Writer().u64(value).finish().hex(), hexed)
            r = hc.Reader(bytes.fromhex(hexed))
            self.assertEqual(r.u64(), value)
            r.end()
        self.assertEqual(hc.Reader(bytes.fromhex("fb0500")).u64(), 5)
        for bad, reader in [("fc00000100", "u16"), ("fd0000000001000000", "u32"), ("ff", "u64"), ("fe", "u64")]:
            with self.assertRaises(hc.DecodeError):
                getattr(hc.Reader(bytes.fromhex(bad)), reader)()
        w = hc.Writer()
        w.option(300, w.u64)
        self.assertEqual(w.finish().hex(), "01fb2c01")
        self.assertEqual(hc.Writer().string("hé").finish().hex(), "0368c3a9")
        w = hc.Writer()
        w.vec([1, 300], w.u64)
        self.assertEqual(w.finish().hex(), "0201fb2c01")
        self.assertEqual(hc.Writer().u16(1000).boolean(True).finish().hex(), "fbe80301")

    def test_hello(self) -> None:
        frame = self.ex["hello"]
        self.assertEqual(hc.encode_hello(1, 1, "hush-js/0.1"), frame)
        self.assertEqual(hc.decode_client_frame(frame), ("Hello", 1, 1, "hush-js/0.1"))

    def test_challenge(self) -> None:
        c = hc.decode_relay_frame(self.ex["challenge"])
        self.assertEqual(c, hc.Challenge(1, bytes(range(32)), "eu-1/a", 1048576, 15000))

    def test_identity_and_transcripts(self) -> None:
        self.assertEqual(self.identity.public_key, self.ex["device-key"])
        self.assertEqual(self.identity.device_id, self.ex["device-id"])
        self.assertEqual(self.identity.device_id.hex(), "15d9884cf77d970f16944f81b9a7114b")
        transcript = hc.auth_transcript(bytes(range(32)), "eu-1/a", "alice", self.identity.public_key)
        self.assertEqual(transcript, self.ex["auth-transcript"])
        new_key = hc.Identity(b"\x02" * 32).public_key
        self.assertEqual(hc.link_transcript("alice", new_key, 1_700_000_000_000), self.ex["link-transcript"])

    def test_authenticate(self) -> None:
        transcript = hc.auth_transcript(bytes(range(32)), "eu-1/a", "alice", self.identity.public_key)
        sig = self.identity.sign(transcript)
        frame = hc.encode_authenticate(
            "alice", self.identity.public_key, sig, None, [hc.Resume(self.group, 300)]
        )
        self.assertEqual(frame, self.ex["authenticate"])
        decoded = hc.decode_client_frame(frame)
        self.assertEqual(decoded[:5], ("Authenticate", "alice", self.identity.public_key, sig, None))
        self.assertEqual(decoded[5], [hc.Resume(self.group, 300)])

    def test_ready(self) -> None:
        ready = hc.decode_relay_frame(self.ex["ready"])
        self.assertEqual(
            ready,
            hc.Ready(self.identity.device_id, True, [hc.GroupStatus(self.group, 320, 300, 3)], 0),
        )

    def test_ping(self) -> None:
        self.assertEqual(hc.encode_ping(1000), self.ex["ping"])
        self.assertEqual(hc.with_stream_prefix(hc.encode_ping(1000)), self.ex["ping-prefixed"])
        self.assertEqual(hc.decode_client_frame(self.ex["ping"]), ("Ping", 1000))

    def test_mls_payloads(self) -> None:
        built = hc.mls_private_message(self.group, 3, hc.APPLICATION, bytes.fromhex("deadbeef"))
        self.assertEqual(built, self.ex["mls-private-message"])
        self.assertEqual(hc.mls_welcome(b"\x77"), self.ex["mls-welcome"])
        self.assertEqual(hc.mls_vector(b"x" * 64)[:2], bytes.fromhex("4040"))
        self.assertEqual(hc.mls_vector(b"x" * 16384)[:4], bytes.fromhex("80004000"))

    def test_send_and_responses(self) -> None:
        frame = hc.encode_request(7, hc.op_send(self.group, 42, hc.APPLICATION, 3, bytes.fromhex("deadbeef")))
        self.assertEqual(frame, self.ex["send"])
        self.assertEqual(
            hc.decode_client_frame(frame),
            ("Request", 7, "Send", self.group, 42, hc.APPLICATION, 3, bytes.fromhex("deadbeef"), None),
        )
        sent = hc.decode_relay_frame(self.ex["sent"])
        self.assertEqual(sent, hc.Response(7, True, reply=hc.Reply("Sent", hc.Sent(321, 3, False))))
        stale = hc.decode_relay_frame(self.ex["stale-epoch"])
        self.assertEqual(
            stale,
            hc.Response(8, False, error=hc.WireError(14, "at epoch 4", ("CurrentEpoch", 4))),
        )
        self.assertEqual(stale.error.name, "StaleEpoch")

    def test_deliver_and_ack(self) -> None:
        d = hc.decode_relay_frame(self.ex["deliver"])
        self.assertEqual(
            d.entry,
            hc.LogEntry(self.group, 321, self.identity.device_id, 42, hc.APPLICATION, 3,
                        1_700_000_000_000, bytes.fromhex("deadbeef")),
        )
        self.assertEqual(hc.encode_ack(self.group, 321), self.ex["ack"])
        self.assertEqual(hc.decode_client_frame(self.ex["ack"]), ("Ack", self.group, 321))

    def test_notice_and_closing(self) -> None:
        self.assertEqual(hc.decode_relay_frame(self.ex["truncated"]), hc.Notice("Truncated", self.group, 120))
        closing = hc.decode_relay_frame(self.ex["closing"])
        self.assertEqual(closing, hc.Closing(0, 2000, "drain"))
        self.assertEqual(closing.reason_name, "GoingAway")

    def test_strict_decoding(self) -> None:
        ping = self.ex["ping"]
        for bad in [ping + b"\x00", ping[:-1], b"\x0b", b"\x08\xff"]:
            with self.assertRaises(hc.DecodeError):
                hc.decode_relay_frame(bad)
        with self.assertRaises(hc.DecodeError):  # bool byte 2 in `duplicate`
            hc.decode_relay_frame(self.ex["sent"][:-1] + b"\x02")

    def test_other_request_encodings(self) -> None:
        frame = hc.encode_request(3, hc.op_create_group(self.group))
        self.assertEqual(frame.hex(), "020300" + "04aabbccdd" + "00" + "00" + "00")
        self.assertEqual(hc.decode_client_frame(frame), ("Request", 3, "CreateGroup", self.group, hc.Policy()))
        frame = hc.encode_request(4, hc.op_history(self.group, hc.U64_MAX, hc.BACKWARD, 500))
        self.assertEqual(frame.hex(), "020404" + "04aabbccdd" + "fd" + "ff" * 8 + "01" + "fbf401")
        self.assertEqual(hc.encode_request(5, hc.op_get_group(self.group)).hex(), "02050204aabbccdd")
        self.assertEqual(hc.encode_request(6, hc.op_list_groups()).hex(), "02060a")


class RelayProcess:
    """The relay binary on a loopback port, with its own data directory."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="hush-py-"))
        self.proc: asyncio.subprocess.Process | None = None
        self._terminated = False
        self.url = ""
        self.cert_sha256 = ""
        self.stdout_lines: list = []
        self._drain: asyncio.Task | None = None

    async def start(self) -> None:
        binary = Path(os.environ.get("HUSH_RELAY_BIN", "target/debug/hush-relay"))
        if not binary.is_absolute() and not binary.exists():
            binary = REPO / binary  # relative to the repository when not found here
        if not binary.exists():
            raise RuntimeError(f"relay binary {binary} not built (cargo build -p hush-relay --bin hush-relay)")
        config = self.dir / "relay.toml"
        config.write_text(
            f'relay_id = "{RELAY_ID}"\n'
            "[auth]\nopen = true\n"
            "[limits]\nrate_per_second = 10000.0\nrate_burst = 10000.0\n"
            "[retention]\ninterval_secs = 3600\n",
            encoding="utf-8",
        )
        self.stderr = open(self.dir / "relay.stderr", "wb")
        self.proc = await asyncio.create_subprocess_exec(
            str(binary), "--listen", "127.0.0.1:0", "--data-dir", str(self.dir / "data"),
            "--config", str(config), "--log", "info",
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=self.stderr,
        )
        # Ready once both lines are printed (the listener is bound before they are).
        while not (self.url and self.cert_sha256):
            line = await asyncio.wait_for(self.proc.stdout.readline(), TIMEOUT)
            if not line:
                raise RuntimeError(f"relay exited before it was ready:\n{self.logs()}")
            text = line.decode("utf-8", "replace").rstrip("\n")
            self.stdout_lines.append(text)
            m = re.match(r"\s*websocket:\s*(wss://\S+)", text)
            if m:
                self.url = m.group(1)
            m = re.match(r"\s*cert sha256:\s*([0-9a-fA-F:]+)", text)
            if m:
                self.cert_sha256 = hc.normalise_fingerprint(m.group(1))
        self._drain = asyncio.ensure_future(self._drain_stdout())

    async def _drain_stdout(self) -> None:
        while True:
            line = await self.proc.stdout.readline()
            if not line:
                return
            self.stdout_lines.append(line.decode("utf-8", "replace").rstrip("\n"))

    def logs(self) -> str:
        self.stderr.flush()
        err = (self.dir / "relay.stderr").read_text(encoding="utf-8", errors="replace")
        return "\n".join(self.stdout_lines) + "\n--- stderr ---\n" + err[-8000:]

    def terminate(self) -> None:
        """Sends SIGTERM once. Only once: asyncio's send_signal polls the
        child first, and a poll that reaps a child which exited meanwhile
        leaves asyncio's own wait to report exit code 255."""
        if not self._terminated:
            self._terminated = True
            self.proc.send_signal(signal.SIGTERM)

    async def stop(self) -> int:
        """SIGTERM, then wait for the process to exit; returns its exit code."""
        if self.proc.returncode is None:
            self.terminate()
        try:
            code = await asyncio.wait_for(self.proc.wait(), TIMEOUT)
        except asyncio.TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            raise
        if self._drain:
            await asyncio.wait_for(self._drain, TIMEOUT)
        return code

    async def cleanup(self) -> None:
        if self.proc and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        if self._drain and not self._drain.done():
            self._drain.cancel()
        self.stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class RelayTest(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self) -> None:
        self.relay = RelayProcess()
        await self.relay.start()
        self.conns: list = []

    async def asyncTearDown(self) -> None:
        for c in self.conns:
            await c.close()
        await self.relay.cleanup()

    def _dump_on_failure(self, e: BaseException) -> None:
        print(f"\nrelay output:\n{self.relay.logs()}", file=sys.stderr)

    async def connect(self) -> hc.Connection:
        c = await hc.Connection.open(self.relay.url, self.relay.cert_sha256, TIMEOUT)
        self.conns.append(c)
        return c

    async def expect_end(self, c: hc.Connection) -> hc.Closing | None:
        """Reads until the relay ends the connection; returns its Closing frame, if any."""
        with self.assertRaises(hc.ConnectionEnded) as ended:
            while True:
                frame = await c.recv()
                self.assertIsInstance(frame, hc.Closing, f"unexpected frame before the end: {frame}")
        return ended.exception.closing

    async def test_pin_mismatch_is_refused(self) -> None:
        import ssl

        with self.assertRaises(ssl.SSLError):
            await hc.Connection.open(self.relay.url, "00" * 32, TIMEOUT)
        with open(self.relay.dir / "data" / "dev-cert.sha256", encoding="utf-8") as f:
            self.assertEqual(hc.normalise_fingerprint(f.read()), self.relay.cert_sha256)

    async def test_unsupported_version(self) -> None:
        c = await self.connect()
        await c.send_raw(hc.encode_hello(2, 2, "hush-py/0.1"))
        frame = await c.recv()
        self.assertIsInstance(frame, hc.Error)
        self.assertEqual(frame.error.name, "UnsupportedVersion")
        self.assertEqual(frame.error.detail, ("Versions", 1, 1))
        closing = await self.expect_end(c)
        self.assertIsNotNone(closing, "no Closing before the end of the connection")
        self.assertEqual(closing.reason_name, "ProtocolError")

    async def test_request_before_authentication(self) -> None:
        c = await self.connect()
        await c.send_raw(hc.encode_hello(1, 1, "hush-py/0.1"))
        challenge = await c.recv()
        self.assertIsInstance(challenge, hc.Challenge)
        self.assertEqual(challenge.version, 1)
        self.assertEqual(challenge.relay_id, RELAY_ID)
        await c.send_raw(hc.encode_request(1, hc.op_list_groups()))
        frame = await c.recv()
        self.assertIsInstance(frame, hc.Error)
        self.assertEqual(frame.error.name, "Unauthenticated")
        closing = await self.expect_end(c)
        self.assertIsNotNone(closing, "no Closing before the end of the connection")

    async def test_group_delivery_history_and_shutdown(self) -> None:
        try:
            await self._group_delivery_history_and_shutdown()
        except BaseException as e:
            self._dump_on_failure(e)
            raise

    async def _group_delivery_history_and_shutdown(self) -> None:
        group = b"py-group-" + os.urandom(4).hex().encode()
        alice, bob = hc.Identity(), hc.Identity()
        a, b = await self.connect(), await self.connect()
        ready_a = await a.handshake("alice-py", alice)
        ready_b = await b.handshake("bob-py", bob)
        self.assertEqual(ready_a.device, alice.device_id)
        self.assertEqual(ready_b.device, bob.device_id)
        self.assertTrue(ready_a.registered and ready_b.registered)
        self.assertEqual(ready_a.groups, [])
        self.assertEqual(a.challenge.relay_id, RELAY_ID)
        self.assertEqual((await a.ping(77)).nonce, 77)

        # A creates the group (epoch 0) and adds B with a commit.
        self.assertEqual(await a.call(hc.op_create_group(group), "GroupCreated"), 0)
        welcome = hc.mls_welcome(b"welcome for bob")
        commit = hc.mls_private_message(
            group, 0, hc.COMMIT, b"commit epoch 0", authenticated_data=hc.roster_binding(add=[bob.device_id])
        )
        roster = hc.RosterChange(add=[bob.device_id], welcome=welcome)
        sent = await a.call(hc.op_send(group, 1, hc.COMMIT, 0, commit, roster), "Sent")
        self.assertEqual(sent, hc.Sent(1, 1, False))

        # B hears of it: a Welcome in its inbox naming the commit, and Notice::Added.
        inbox = await b.wait_for(lambda f: isinstance(f, hc.Inbox))
        self.assertEqual(inbox.entry.kind, ("Welcome", group, 1))
        self.assertEqual(inbox.entry.payload, welcome)
        self.assertEqual(inbox.entry.sender, alice.device_id)
        self.assertEqual(inbox.entry.seq, ready_b.inbox_acked + 1)
        added = await b.wait_for(lambda f: isinstance(f, hc.Notice))
        self.assertEqual(added, hc.Notice("Added", group, 1))
        await b.send_raw(hc.encode_ack_inbox(inbox.entry.seq))

        # A sends five application messages at epoch 1.
        payloads = [hc.mls_private_message(group, 1, hc.APPLICATION, f"ciphertext {i}".encode()) for i in range(5)]
        for i, payload in enumerate(payloads):
            sent = await a.call(hc.op_send(group, 100 + i, hc.APPLICATION, 1, payload), "Sent")
            self.assertEqual(sent, hc.Sent(2 + i, 1, False))
        # A retry of the same message is not stored twice.
        again = await a.call(hc.op_send(group, 100, hc.APPLICATION, 1, payloads[0]), "Sent")
        self.assertEqual(again, hc.Sent(2, 1, True))

        # B receives exactly those entries, in seq order (delivery starts after the commit).
        got = []
        while len(got) < 5:
            frame = await b.wait_for(lambda f: isinstance(f, hc.Deliver) and f.entry.group == group)
            got.append(frame.entry)
        self.assertEqual([e.seq for e in got], [2, 3, 4, 5, 6])
        self.assertEqual([e.payload for e in got], payloads)
        self.assertEqual([e.client_msg_id for e in got], [100, 101, 102, 103, 104])
        for e in got:
            self.assertEqual((e.sender, e.kind, e.epoch), (alice.device_id, hc.APPLICATION, 1))
            self.assertGreater(e.timestamp_ms, 1_600_000_000_000)
        await b.ack(group, got[-1].seq)
        # Nothing else for the group arrived before the Pong that answers a later Ping.
        await b.ping(78)
        extra = [f for f in b.pending if isinstance(f, hc.Deliver) and f.entry.group == group]
        self.assertEqual(extra, [])

        # History: the whole log forward, then a backward page from the newest.
        hist = await a.call(hc.op_history(group, 1, hc.FORWARD, 100), "History")
        self.assertEqual([e.seq for e in hist.entries], [1, 2, 3, 4, 5, 6])
        self.assertEqual(hist.entries[0].kind, hc.COMMIT)
        self.assertEqual(hist.entries[0].payload, commit)
        self.assertEqual(hist.entries[0].epoch, 0)
        self.assertEqual([e.payload for e in hist.entries[1:]], payloads)
        self.assertIsNone(hist.next_from)
        page = await a.call(hc.op_history(group, hc.U64_MAX, hc.BACKWARD, 2), "History")
        self.assertEqual([e.seq for e in page.entries], [6, 5])
        self.assertEqual(page.next_from, 4)
        hist_b = await b.call(hc.op_history(group, 2, hc.FORWARD, 100), "History")
        self.assertEqual([e.seq for e in hist_b.entries], [2, 3, 4, 5, 6])

        # GetGroup: roster, epoch, head.
        info = await b.call(hc.op_get_group(group), "Group")
        self.assertEqual(info.group, group)
        self.assertEqual(info.epoch, 1)
        self.assertEqual(sorted(info.roster), sorted([alice.device_id, bob.device_id]))
        self.assertEqual(info.head_seq, 6)
        self.assertTrue(1 <= info.first_seq <= 7)
        self.assertEqual(info.policy, hc.Policy())

        # A stale commit is refused with the current epoch.
        late = hc.mls_private_message(group, 0, hc.COMMIT, b"late commit", authenticated_data=hc.roster_binding())
        resp = await a.request(hc.op_send(group, 2, hc.COMMIT, 0, late))
        self.assertFalse(resp.ok)
        self.assertEqual(resp.error.name, "StaleEpoch")
        self.assertEqual(resp.error.detail, ("CurrentEpoch", 1))

        # The relay's MLS check: an envelope whose epoch or kind disagrees with
        # the MLS header, or a payload that is not MLS, is refused and stores nothing.
        wrong_epoch = hc.mls_private_message(group, 0, hc.APPLICATION, b"x")
        resp = await a.request(hc.op_send(group, 3, hc.APPLICATION, 1, wrong_epoch))
        self.assertEqual((resp.ok, resp.error.name), (False, "MlsMismatch"))
        as_commit = hc.mls_private_message(group, 1, hc.APPLICATION, b"x")
        resp = await a.request(hc.op_send(group, 4, hc.COMMIT, 1, as_commit))
        self.assertEqual((resp.ok, resp.error.name), (False, "MlsMismatch"))
        # A commit must carry its roster binding, naming the envelope's devices.
        unbound = hc.mls_private_message(group, 1, hc.COMMIT, b"x")
        resp = await a.request(hc.op_send(group, 6, hc.COMMIT, 1, unbound))
        self.assertEqual((resp.ok, resp.error.name), (False, "MlsMismatch"))
        other = hc.mls_private_message(
            group, 1, hc.COMMIT, b"x", authenticated_data=hc.roster_binding(remove=[bob.device_id])
        )
        resp = await a.request(hc.op_send(group, 7, hc.COMMIT, 1, other))
        self.assertEqual((resp.ok, resp.error.name), (False, "MlsMismatch"))
        resp = await a.request(hc.op_send(group, 5, hc.APPLICATION, 1, b"not mls"))
        self.assertEqual((resp.ok, resp.error.name), (False, "InvalidMls"))
        self.assertEqual((await a.call(hc.op_get_group(group), "Group")).head_seq, 6)

        # B's key update is garbage no member can merge (8.5): A voids it, and
        # the relay's epoch goes back.
        bad = hc.mls_private_message(group, 1, hc.COMMIT, b"garbage", authenticated_data=hc.roster_binding())
        sent = await b.call(hc.op_send(group, 8, hc.COMMIT, 1, bad), "Sent")
        self.assertEqual((sent.seq, sent.epoch), (7, 2))
        resp = await a.request(hc.op_void_commit(group, 6))
        self.assertEqual((resp.ok, resp.error.name), (False, "InvalidRequest"), "not a commit")
        self.assertEqual(await a.call(hc.op_void_commit(group, 7), "Done"), None)
        self.assertEqual((await a.call(hc.op_get_group(group), "Group")).epoch, 1)
        voided = await a.call(hc.op_history(group, 7, hc.FORWARD, 1), "History")
        self.assertEqual((voided.entries[0].kind, voided.entries[0].payload), (hc.COMMIT, b""))
        resp = await a.request(hc.op_void_commit(group, 7))
        self.assertEqual((resp.ok, resp.error.name), (False, "InvalidRequest"), "voided already")
        # Both were delivered the commit (before or after it was voided).
        for c in (a, b):
            await c.wait_for(lambda f: isinstance(f, hc.Deliver) and f.entry.group == group and f.entry.seq == 7)
        await b.ack(group, 7)

        # A, the sender, also gets the group's entries (its own included): a client
        # processes them like any other and acks the latest.
        own = [f.entry.seq for f in a.pending if isinstance(f, hc.Deliver) and f.entry.group == group]
        self.assertEqual(own, list(range(1, len(own) + 1)))
        if own:
            await a.ack(group, own[-1])
        a.pending.clear()
        b.pending.clear()

        # SIGTERM: connected devices are told GoingAway, and the relay exits.
        self.relay.terminate()
        for c in (a, b):
            closing = await self.expect_end(c)
            self.assertIsNotNone(closing, "no Closing before the end of the connection")
            self.assertEqual(closing.reason_name, "GoingAway")
        code = await self.relay.stop()
        self.assertEqual(code, 0, self.relay.logs())


if __name__ == "__main__":
    unittest.main()
