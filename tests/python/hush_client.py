"""A small hush wire-protocol client (protocol version 1), written from PROTOCOL.md.

Self-contained: its own encoder and decoder of the frames it needs, Ed25519
signing of the auth transcript, device id derivation, and WebSocket over TLS
with the relay's certificate pinned by its SHA-256.

Dependencies (Debian packages): python3-websockets, python3-cryptography.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import ssl
import struct
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

PROTOCOL_VERSION = 1
MAX_FRAME_LEN = 1 << 20
U64_MAX = (1 << 64) - 1

AUTH_LABEL = b"hush-auth-v1\x00"
LINK_LABEL = b"hush-link-v2\x00"
DEVICE_ID_LABEL = b"hush-device-id-v1"


class DecodeError(ValueError):
    """The bytes are not a valid encoding of the expected frame."""


# ---------------------------------------------------------------------------
# Encoding (PROTOCOL.md section 3)
# ---------------------------------------------------------------------------


class Writer:
    def __init__(self) -> None:
        self.out = bytearray()

    def varint(self, n: int, bits: int = 64) -> "Writer":
        if n < 0 or n >= 1 << bits:
            raise ValueError(f"{n} does not fit in u{bits}")
        if n < 251:
            self.out.append(n)
        elif n < 1 << 16:
            self.out += b"\xfb" + struct.pack("<H", n)
        elif n < 1 << 32:
            self.out += b"\xfc" + struct.pack("<I", n)
        else:
            self.out += b"\xfd" + struct.pack("<Q", n)
        return self

    def u16(self, n: int) -> "Writer":
        return self.varint(n, 16)

    def u32(self, n: int) -> "Writer":
        return self.varint(n, 32)

    def u64(self, n: int) -> "Writer":
        return self.varint(n, 64)

    def boolean(self, b: bool) -> "Writer":
        self.out.append(1 if b else 0)
        return self

    def bytes_(self, data: bytes) -> "Writer":
        self.varint(len(data))
        self.out += data
        return self

    def string(self, s: str) -> "Writer":
        return self.bytes_(s.encode("utf-8"))

    def fixed(self, data: bytes, n: int) -> "Writer":
        if len(data) != n:
            raise ValueError(f"expected {n} bytes, got {len(data)}")
        self.out += data
        return self

    def option(self, value: Any, put: Callable[[Any], Any]) -> "Writer":
        if value is None:
            self.out.append(0)
        else:
            self.out.append(1)
            put(value)
        return self

    def vec(self, items: list, put: Callable[[Any], Any]) -> "Writer":
        self.varint(len(items))
        for item in items:
            put(item)
        return self

    def variant(self, index: int) -> "Writer":
        return self.varint(index, 32)

    def finish(self) -> bytes:
        return bytes(self.out)


class Reader:
    def __init__(self, buf: bytes) -> None:
        if len(buf) > MAX_FRAME_LEN:
            raise DecodeError("frame longer than the frame limit")
        self.buf = bytes(buf)
        self.pos = 0

    def take(self, n: int) -> bytes:
        if n > len(self.buf) - self.pos:
            raise DecodeError("unexpected end of frame")
        data = self.buf[self.pos : self.pos + n]
        self.pos += n
        return data

    def varint(self, bits: int = 64) -> int:
        marker = self.take(1)[0]
        if marker < 251:
            return marker
        widths = {0xFB: (16, "<H"), 0xFC: (32, "<I"), 0xFD: (64, "<Q")}
        if marker not in widths:
            raise DecodeError(f"invalid varint marker {marker:#x}")
        width, fmt = widths[marker]
        if width > bits:
            raise DecodeError(f"varint marker {marker:#x} too wide for u{bits}")
        (value,) = struct.unpack(fmt, self.take(width // 8))
        return value

    def u16(self) -> int:
        return self.varint(16)

    def u32(self) -> int:
        return self.varint(32)

    def u64(self) -> int:
        return self.varint(64)

    def boolean(self) -> bool:
        b = self.take(1)[0]
        if b > 1:
            raise DecodeError(f"invalid bool byte {b:#x}")
        return b == 1

    def bytes_(self) -> bytes:
        n = self.u64()
        if n > len(self.buf) - self.pos:
            raise DecodeError("declared length longer than the remaining bytes")
        return self.take(n)

    def string(self) -> str:
        try:
            return self.bytes_().decode("utf-8")
        except UnicodeDecodeError as e:
            raise DecodeError("invalid UTF-8") from e

    def fixed(self, n: int) -> bytes:
        return self.take(n)

    def option(self, get: Callable[[], Any]) -> Any:
        tag = self.take(1)[0]
        if tag == 0:
            return None
        if tag == 1:
            return get()
        raise DecodeError(f"invalid option tag {tag:#x}")

    def vec(self, get: Callable[[], Any]) -> list:
        n = self.u64()
        # Every element takes at least one byte; refuse impossible counts early.
        if n > len(self.buf) - self.pos:
            raise DecodeError("declared count longer than the remaining bytes")
        return [get() for _ in range(n)]

    def variant(self, count: int, what: str) -> int:
        index = self.u32()
        if index >= count:
            raise DecodeError(f"unknown {what} variant {index}")
        return index

    def end(self) -> None:
        if self.pos != len(self.buf):
            raise DecodeError(f"{len(self.buf) - self.pos} trailing bytes")


# ---------------------------------------------------------------------------
# Enums and structs
# ---------------------------------------------------------------------------

# MessageKind
APPLICATION, COMMIT, PROPOSAL = 0, 1, 2
MESSAGE_KINDS = ("Application", "Commit", "Proposal")
# Direction
FORWARD, BACKWARD = 0, 1

ERROR_CODES = {
    1: "Malformed",
    2: "FrameTooLarge",
    3: "UnsupportedVersion",
    4: "Unauthenticated",
    5: "AuthFailed",
    6: "RegistrationRequired",
    7: "InvalidToken",
    8: "UnexpectedFrame",
    9: "InvalidRequest",
    10: "NotFound",
    11: "AlreadyExists",
    12: "NotMember",
    13: "Forbidden",
    14: "StaleEpoch",
    15: "RateLimited",
    16: "Truncated",
    17: "NoKeyPackage",
    18: "Unavailable",
    19: "Internal",
    20: "IdempotencyConflict",
    21: "InvalidMls",
    22: "MlsMismatch",
    23: "Revoked",
    24: "QuotaExceeded",
}
ERROR_CODE = {name: code for code, name in ERROR_CODES.items()}

CLOSE_REASONS = (
    "GoingAway",
    "SlowConsumer",
    "IdleTimeout",
    "HandshakeTimeout",
    "ProtocolError",
    "ServerBusy",
    "AuthFailed",
)


@dataclass
class Policy:
    posters_only: Optional[list] = None  # None = Posters::Everyone
    admins: list = field(default_factory=list)
    admins_change_roster: bool = False


@dataclass
class RosterChange:
    add: list = field(default_factory=list)
    remove: list = field(default_factory=list)
    welcome: Optional[bytes] = None


@dataclass
class Resume:
    group: bytes
    after_seq: int


# Registration: None | ("Token", jwt) | ("Linked", by, signature) | ("LinkedUntil", by, expires_ms, signature)
@dataclass
class Challenge:
    version: int
    nonce: bytes
    relay_id: str
    max_frame_len: int
    heartbeat_ms: int


@dataclass
class GroupStatus:
    group: bytes
    head_seq: int
    resume_after: int
    epoch: int


@dataclass
class Ready:
    device: bytes
    registered: bool
    groups: list
    inbox_acked: int


@dataclass
class WireError:
    code: int
    message: str
    detail: Any  # None, or (name, value...)

    @property
    def name(self) -> str:
        return ERROR_CODES.get(self.code, f"unknown code {self.code}")


@dataclass
class LogEntry:
    group: bytes
    seq: int
    sender: bytes
    client_msg_id: int
    kind: int
    epoch: int
    timestamp_ms: int
    payload: bytes


@dataclass
class InboxEntry:
    seq: int
    sender: bytes
    kind: Any  # ("Welcome", group, commit_seq) or ("Direct",)
    timestamp_ms: int
    payload: bytes


@dataclass
class GroupInfo:
    group: bytes
    epoch: int
    roster: list
    policy: Policy
    head_seq: int
    first_seq: int


@dataclass
class PresenceUpdate:
    device: bytes
    user: str
    online: bool
    last_seen_ms: int


@dataclass
class Reply:
    kind: str  # Done, GroupCreated, Sent, Group, History, ...
    value: Any = None


@dataclass
class Sent:
    seq: int
    epoch: int
    duplicate: bool


@dataclass
class History:
    entries: list
    next_from: Optional[int]


@dataclass
class Response:
    id: int
    ok: bool
    reply: Optional[Reply] = None
    error: Optional[WireError] = None


@dataclass
class Deliver:
    entry: LogEntry


@dataclass
class Inbox:
    entry: InboxEntry


@dataclass
class Ephemeral:
    group: bytes
    sender: bytes
    payload: bytes


@dataclass
class Presence:
    update: PresenceUpdate


@dataclass
class Notice:
    kind: str  # Truncated, Removed, Added
    group: bytes
    seq: int  # first_available for Truncated


@dataclass
class Pong:
    nonce: int


@dataclass
class Error:
    error: WireError


@dataclass
class Closing:
    reason: int
    reconnect_after_ms: int
    message: str

    @property
    def reason_name(self) -> str:
        return CLOSE_REASONS[self.reason]


# ---------------------------------------------------------------------------
# Client frames (section 4)
# ---------------------------------------------------------------------------


def _put_policy(w: Writer, p: Policy) -> None:
    if p.posters_only is None:
        w.variant(0)
    else:
        w.variant(1).vec(p.posters_only, lambda d: w.fixed(d, 16))
    w.vec(p.admins, lambda d: w.fixed(d, 16))
    w.boolean(p.admins_change_roster)


def encode_hello(min_version: int, max_version: int, client: str) -> bytes:
    return Writer().variant(0).u16(min_version).u16(max_version).string(client).finish()


def encode_authenticate(
    user: str,
    device_key: bytes,
    signature: bytes,
    registration: Any = None,
    resume: Optional[list] = None,
) -> bytes:
    w = Writer().variant(1).string(user).fixed(device_key, 32).fixed(signature, 64)
    if registration is None:
        w.variant(0)
    elif registration[0] == "Token":
        w.variant(1).string(registration[1])
    elif registration[0] == "Linked":
        w.variant(2).fixed(registration[1], 16).fixed(registration[2], 64)
    elif registration[0] == "LinkedUntil":
        w.variant(3).fixed(registration[1], 16).u64(registration[2]).fixed(registration[3], 64)
    else:
        raise ValueError(f"unknown registration {registration!r}")

    def put_resume(r: Resume) -> None:
        w.bytes_(r.group).u64(r.after_seq)

    w.vec(resume or [], put_resume)
    return w.finish()


def op_create_group(group: bytes, policy: Optional[Policy] = None) -> Callable[[Writer], None]:
    def put(w: Writer) -> None:
        w.variant(0).bytes_(group)
        _put_policy(w, policy or Policy())

    return put


# ---------------------------------------------------------------------------
# MLS payloads (PROTOCOL.md 8.6): the minimal RFC 9420 framing the relay reads.
# ---------------------------------------------------------------------------

# MLS ContentType of each MessageKind (APPLICATION, COMMIT, PROPOSAL).
MLS_CONTENT_TYPE = {APPLICATION: 1, COMMIT: 3, PROPOSAL: 2}


def mls_vector(data: bytes) -> bytes:
    """opaque<V>: the RFC 9420 variable-length length header, then the bytes."""
    n = len(data)
    if n < 1 << 6:
        head = bytes([n])
    elif n < 1 << 14:
        head = (0x4000 | n).to_bytes(2, "big")
    elif n < 1 << 30:
        head = (0x8000_0000 | n).to_bytes(4, "big")
    else:
        raise ValueError("MLS vectors are shorter than 2^30 bytes")
    return head + data


def mls_private_message(
    group: bytes,
    epoch: int,
    kind: int,
    ciphertext: bytes,
    authenticated_data: bytes = b"",
    encrypted_sender_data: bytes = b"",
) -> bytes:
    """An MLS PrivateMessage whose clear header matches a Send of `kind` to
    `group` at `epoch`; the relay accepts it, no member can decrypt it."""
    return (
        (1).to_bytes(2, "big")  # version mls10
        + (2).to_bytes(2, "big")  # wire_format mls_private_message
        + mls_vector(group)
        + epoch.to_bytes(8, "big")
        + bytes([MLS_CONTENT_TYPE[kind]])
        + mls_vector(authenticated_data)
        + mls_vector(encrypted_sender_data)
        + mls_vector(ciphertext)
    )


def roster_binding(add=(), remove=()) -> bytes:
    """A commit's authenticated_data: "HR" 0x01, then the added and the
    removed device ids, each list as a u16 BE count and 16-byte ids."""
    out = b"HR\x01"
    for ids in (add, remove):
        out += len(ids).to_bytes(2, "big") + b"".join(ids)
    return out


def mls_welcome(encrypted_group_info: bytes, cipher_suite: int = 1) -> bytes:
    """An MLS Welcome with one (empty) EncryptedGroupSecrets entry."""
    secret = mls_vector(b"") + mls_vector(b"") + mls_vector(b"")
    return (
        (1).to_bytes(2, "big")
        + (3).to_bytes(2, "big")  # wire_format mls_welcome
        + cipher_suite.to_bytes(2, "big")
        + mls_vector(secret)
        + mls_vector(encrypted_group_info)
    )


def op_send(
    group: bytes,
    client_msg_id: int,
    kind: int,
    epoch: int,
    payload: bytes,
    roster: Optional[RosterChange] = None,
) -> Callable[[Writer], None]:
    def put(w: Writer) -> None:
        w.variant(1).bytes_(group).u64(client_msg_id).variant(kind).u64(epoch).bytes_(payload)

        def put_roster(r: RosterChange) -> None:
            w.vec(r.add, lambda d: w.fixed(d, 16))
            w.vec(r.remove, lambda d: w.fixed(d, 16))
            w.option(r.welcome, w.bytes_)

        w.option(roster, put_roster)

    return put


def op_get_group(group: bytes) -> Callable[[Writer], None]:
    def put(w: Writer) -> None:
        w.variant(2).bytes_(group)

    return put


def op_history(group: bytes, from_seq: int, direction: int, limit: int) -> Callable[[Writer], None]:
    def put(w: Writer) -> None:
        w.variant(4).bytes_(group).u64(from_seq).variant(direction).u16(limit)

    return put


def op_void_commit(group: bytes, seq: int) -> Callable[[Writer], None]:
    def put(w: Writer) -> None:
        w.variant(13).bytes_(group).u64(seq)

    return put


def op_list_groups() -> Callable[[Writer], None]:
    def put(w: Writer) -> None:
        w.variant(10)

    return put


def encode_request(request_id: int, op: Callable[[Writer], None]) -> bytes:
    w = Writer().variant(2).u32(request_id)
    op(w)
    return w.finish()


def encode_ack(group: bytes, seq: int) -> bytes:
    return Writer().variant(3).bytes_(group).u64(seq).finish()


def encode_ack_inbox(seq: int) -> bytes:
    return Writer().variant(4).u64(seq).finish()


def encode_ping(nonce: int) -> bytes:
    return Writer().variant(6).u64(nonce).finish()


def with_stream_prefix(frame: bytes) -> bytes:
    """The WebTransport stream framing of section 2.2."""
    return struct.pack(">I", len(frame)) + frame


def decode_client_frame(buf: bytes) -> tuple:
    """Decodes the client frames this client writes (for checking the examples)."""
    r = Reader(buf)
    index = r.variant(7, "ClientFrame")
    if index == 0:
        out: tuple = ("Hello", r.u16(), r.u16(), r.string())
    elif index == 1:
        user, key, sig = r.string(), r.fixed(32), r.fixed(64)
        reg_index = r.variant(4, "Registration")
        if reg_index == 0:
            reg: Any = None
        elif reg_index == 1:
            reg = ("Token", r.string())
        elif reg_index == 2:
            reg = ("Linked", r.fixed(16), r.fixed(64))
        else:
            reg = ("LinkedUntil", r.fixed(16), r.u64(), r.fixed(64))
        resume = r.vec(lambda: Resume(r.bytes_(), r.u64()))
        out = ("Authenticate", user, key, sig, reg, resume)
    elif index == 2:
        request_id = r.u32()
        op = r.variant(11, "Request")
        if op == 0:
            out = ("Request", request_id, "CreateGroup", r.bytes_(), _get_policy(r))
        elif op == 1:
            group, cmid = r.bytes_(), r.u64()
            kind = r.variant(3, "MessageKind")
            epoch, payload = r.u64(), r.bytes_()
            roster = r.option(
                lambda: RosterChange(
                    r.vec(lambda: r.fixed(16)),
                    r.vec(lambda: r.fixed(16)),
                    r.option(r.bytes_),
                )
            )
            out = ("Request", request_id, "Send", group, cmid, kind, epoch, payload, roster)
        elif op == 2:
            out = ("Request", request_id, "GetGroup", r.bytes_())
        elif op == 4:
            group, from_seq = r.bytes_(), r.u64()
            direction = r.variant(2, "Direction")
            out = ("Request", request_id, "History", group, from_seq, direction, r.u16())
        elif op == 10:
            out = ("Request", request_id, "ListGroups")
        else:
            raise DecodeError(f"request variant {op} not supported by this decoder")
    elif index == 3:
        out = ("Ack", r.bytes_(), r.u64())
    elif index == 4:
        out = ("AckInbox", r.u64())
    elif index == 5:
        out = ("Ephemeral", r.bytes_(), r.bytes_())
    else:
        out = ("Ping", r.u64())
    r.end()
    return out


# ---------------------------------------------------------------------------
# Relay frames (section 5)
# ---------------------------------------------------------------------------


def _get_policy(r: Reader) -> Policy:
    if r.variant(2, "Posters") == 0:
        posters = None
    else:
        posters = r.vec(lambda: r.fixed(16))
    admins = r.vec(lambda: r.fixed(16))
    return Policy(posters, admins, r.boolean())


def _get_log_entry(r: Reader) -> LogEntry:
    group, seq, sender, cmid = r.bytes_(), r.u64(), r.fixed(16), r.u64()
    kind = r.variant(3, "MessageKind")
    return LogEntry(group, seq, sender, cmid, kind, r.u64(), r.u64(), r.bytes_())


def _get_group_status(r: Reader) -> GroupStatus:
    return GroupStatus(r.bytes_(), r.u64(), r.u64(), r.u64())


def _get_presence(r: Reader) -> PresenceUpdate:
    return PresenceUpdate(r.fixed(16), r.string(), r.boolean(), r.u64())


def _get_wire_error(r: Reader) -> WireError:
    code, message = r.u16(), r.string()
    d = r.variant(6, "ErrorDetail")
    if d == 0:
        detail: Any = None
    elif d == 1:
        detail = ("CurrentEpoch", r.u64())
    elif d == 2:
        detail = ("RetryAfterMs", r.u32())
    elif d == 3:
        detail = ("Versions", r.u16(), r.u16())
    elif d == 4:
        detail = ("FirstAvailable", r.u64())
    else:
        detail = ("OriginalSeq", r.u64())
    return WireError(code, message, detail)


def _get_reply(r: Reader) -> Reply:
    i = r.variant(10, "Reply")
    if i == 0:
        return Reply("Done")
    if i == 1:
        return Reply("GroupCreated", r.u64())
    if i == 2:
        return Reply("Sent", Sent(r.u64(), r.u64(), r.boolean()))
    if i == 3:
        info = GroupInfo(r.bytes_(), r.u64(), r.vec(lambda: r.fixed(16)), _get_policy(r), r.u64(), r.u64())
        return Reply("Group", info)
    if i == 4:
        return Reply("History", History(r.vec(lambda: _get_log_entry(r)), r.option(r.u64)))
    if i == 5:
        return Reply("KeyPackageCount", (r.u32(), r.boolean()))
    if i == 6:
        return Reply("KeyPackages", r.vec(lambda: (r.fixed(16), r.bytes_(), r.boolean())))
    if i == 7:
        return Reply("Devices", r.vec(lambda: (r.fixed(16), r.fixed(32), r.u64())))
    if i == 8:
        return Reply("Presence", r.vec(lambda: _get_presence(r)))
    return Reply("Groups", r.vec(lambda: _get_group_status(r)))


def decode_relay_frame(buf: bytes) -> Any:
    r = Reader(buf)
    i = r.variant(11, "RelayFrame")
    if i == 0:
        out: Any = Challenge(r.u16(), r.fixed(32), r.string(), r.u32(), r.u32())
    elif i == 1:
        out = Ready(r.fixed(16), r.boolean(), r.vec(lambda: _get_group_status(r)), r.u64())
    elif i == 2:
        request_id = r.u32()
        tag = r.variant(2, "Result")
        if tag == 0:
            out = Response(request_id, True, reply=_get_reply(r))
        else:
            out = Response(request_id, False, error=_get_wire_error(r))
    elif i == 3:
        out = Deliver(_get_log_entry(r))
    elif i == 4:
        seq, sender = r.u64(), r.fixed(16)
        if r.variant(2, "InboxKind") == 0:
            kind: Any = ("Welcome", r.bytes_(), r.u64())
        else:
            kind = ("Direct",)
        out = Inbox(InboxEntry(seq, sender, kind, r.u64(), r.bytes_()))
    elif i == 5:
        out = Ephemeral(r.bytes_(), r.fixed(16), r.bytes_())
    elif i == 6:
        out = Presence(_get_presence(r))
    elif i == 7:
        n = r.variant(3, "Notice")
        out = Notice(("Truncated", "Removed", "Added")[n], r.bytes_(), r.u64())
    elif i == 8:
        out = Pong(r.u64())
    elif i == 9:
        out = Error(_get_wire_error(r))
    else:
        out = Closing(r.variant(len(CLOSE_REASONS), "CloseReason"), r.u32(), r.string())
    r.end()
    return out


# ---------------------------------------------------------------------------
# Identity (section 6)
# ---------------------------------------------------------------------------


def device_id(public_key: bytes) -> bytes:
    return hashlib.sha256(DEVICE_ID_LABEL + public_key).digest()[:16]


def _u16be_str(s: str) -> bytes:
    data = s.encode("utf-8")
    return struct.pack(">H", len(data)) + data


def auth_transcript(nonce: bytes, relay_id: str, user: str, public_key: bytes) -> bytes:
    return AUTH_LABEL + nonce + _u16be_str(relay_id) + _u16be_str(user) + public_key


def link_transcript(user: str, new_public_key: bytes, expires_ms: int) -> bytes:
    return LINK_LABEL + _u16be_str(user) + new_public_key + expires_ms.to_bytes(8, "big")


class Identity:
    """A device's Ed25519 key."""

    def __init__(self, seed: Optional[bytes] = None) -> None:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        if seed is None:
            self._key = Ed25519PrivateKey.generate()
        else:
            self._key = Ed25519PrivateKey.from_private_bytes(seed)
        self.public_key = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.device_id = device_id(self.public_key)

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)


# ---------------------------------------------------------------------------
# Connection over WebSocket (section 2.1)
# ---------------------------------------------------------------------------


class ProtocolFailure(Exception):
    """The relay refused something or broke the protocol."""

    def __init__(self, message: str, frame: Any = None) -> None:
        super().__init__(message)
        self.frame = frame


class ConnectionEnded(Exception):
    """The WebSocket closed; `closing` is the Closing frame, if one arrived."""

    def __init__(self, closing: Optional[Closing]) -> None:
        super().__init__(f"connection ended (closing={closing})")
        self.closing = closing


def normalise_fingerprint(text: str) -> str:
    return "".join(c for c in text.lower() if c in "0123456789abcdef")


class Connection:
    def __init__(self, ws: Any, timeout: float) -> None:
        self.ws = ws
        self.timeout = timeout
        self.pending: collections.deque = collections.deque()  # frames not yet consumed
        self.challenge: Optional[Challenge] = None
        self.ready: Optional[Ready] = None
        self.closing: Optional[Closing] = None
        self._next_id = 1

    @classmethod
    async def open(cls, url: str, cert_sha256: str, timeout: float = 10.0) -> "Connection":
        import websockets

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        # Trust comes from the pinned certificate hash checked below, not from a CA.
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ws = await asyncio.wait_for(
            websockets.connect(
                url,
                ssl=ctx,
                compression=None,
                ping_interval=None,
                max_size=MAX_FRAME_LEN,
            ),
            timeout,
        )
        # The pin is checked before any frame is sent.
        der = ws.transport.get_extra_info("ssl_object").getpeercert(binary_form=True)
        seen = hashlib.sha256(der).hexdigest()
        if seen != normalise_fingerprint(cert_sha256):
            await ws.close()
            raise ssl.SSLError(f"certificate sha256 {seen} does not match the pinned hash")
        return cls(ws, timeout)

    async def send_raw(self, frame: bytes) -> None:
        await self.ws.send(frame)

    async def _read(self) -> Any:
        import websockets

        try:
            msg = await asyncio.wait_for(self.ws.recv(), self.timeout)
        except websockets.ConnectionClosed:
            raise ConnectionEnded(self.closing) from None
        if isinstance(msg, str):
            raise ProtocolFailure("relay sent a text message")
        frame = decode_relay_frame(msg)
        if isinstance(frame, Closing):
            self.closing = frame
        return frame

    async def recv(self) -> Any:
        """The next relay frame not consumed yet."""
        if self.pending:
            return self.pending.popleft()
        return await self._read()

    async def wait_for(self, predicate: Callable[[Any], bool]) -> Any:
        """The first frame (pending or new) that matches; the others stay pending."""
        for i, frame in enumerate(self.pending):
            if predicate(frame):
                del self.pending[i]
                return frame
        while True:
            frame = await self._read()
            if predicate(frame):
                return frame
            self.pending.append(frame)

    async def handshake(
        self,
        user: str,
        identity: Identity,
        registration: Any = None,
        resume: Optional[list] = None,
        client: str = "hush-py/0.1",
    ) -> Ready:
        await self.send_raw(encode_hello(PROTOCOL_VERSION, PROTOCOL_VERSION, client))
        frame = await self.recv()
        if not isinstance(frame, Challenge):
            raise ProtocolFailure(f"expected Challenge, got {frame}", frame)
        if frame.version != PROTOCOL_VERSION:
            raise ProtocolFailure(f"relay chose version {frame.version}", frame)
        self.challenge = frame
        transcript = auth_transcript(frame.nonce, frame.relay_id, user, identity.public_key)
        await self.send_raw(
            encode_authenticate(user, identity.public_key, identity.sign(transcript), registration, resume)
        )
        frame = await self.recv()
        if not isinstance(frame, Ready):
            raise ProtocolFailure(f"expected Ready, got {frame}", frame)
        self.ready = frame
        return frame

    async def request(self, op: Callable[[Writer], None]) -> Response:
        request_id = self._next_id
        self._next_id += 1
        await self.send_raw(encode_request(request_id, op))
        return await self.wait_for(lambda f: isinstance(f, Response) and f.id == request_id)

    async def call(self, op: Callable[[Writer], None], expect: str) -> Any:
        """A request whose reply must be `expect`; returns the reply's value."""
        resp = await self.request(op)
        if not resp.ok:
            raise ProtocolFailure(f"request refused: {resp.error.name}: {resp.error.message}", resp)
        if resp.reply.kind != expect:
            raise ProtocolFailure(f"expected {expect}, got {resp.reply.kind}", resp)
        return resp.reply.value

    async def ack(self, group: bytes, seq: int) -> None:
        await self.send_raw(encode_ack(group, seq))

    async def ping(self, nonce: int) -> Pong:
        await self.send_raw(encode_ping(nonce))
        return await self.wait_for(lambda f: isinstance(f, Pong) and f.nonce == nonce)

    async def close(self) -> None:
        await self.ws.close()
