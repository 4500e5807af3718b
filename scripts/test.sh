#!/usr/bin/env bash
# Runs every test of the workspace on a fresh Debian machine: installs what the
# tests need first (only what is missing), then builds and tests.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v cc >/dev/null 2>&1 || need_apt+=(build-essential)
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
# The independent Python client (written from PROTOCOL.md alone) needs these.
/usr/bin/python3 -c 'import websockets, cryptography' >/dev/null 2>&1 || need_apt+=(python3 python3-websockets python3-cryptography)
# The power-loss test (relay/tests/power_loss.rs) puts the relay's store on a
# FUSE file system written with fusepy (relay/tests/powercut_fs.py); it needs
# /dev/fuse and root (libfuse2 then mounts without fusermount), and fails if
# they are missing.
/usr/bin/python3 -c 'import fusepy' >/dev/null 2>&1 || need_apt+=(python3-fusepy)
# The browser tests (tests/browser, benches/tests/browser.rs) drive Debian's
# headless Chromium with playwright-core from Node (20 or newer; this machine
# kind ships it; Debian's own nodejs is older but is installed if none is there).
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
# The `hush` full-screen client is driven as a person would, in tmux
# (client-sdk/tests/tui.rs).
command -v tmux >/dev/null 2>&1 || need_apt+=(tmux)
if ((${#need_apt[@]})); then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
  fi
fi
# playwright-core, pinned by tests/browser/package-lock.json (no browser download:
# it drives /usr/bin/chromium).
[ -d tests/browser/node_modules ] || (cd tests/browser && npm ci --no-audit --no-fund)
command -v cargo >/dev/null 2>&1 || { echo "cargo (Rust 1.91 or newer) is required: https://rustup.rs" >&2; exit 1; }

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast "$@"
  # nextest does not run doctests
  cargo test --workspace --locked --doc
else
  cargo test --workspace --locked --no-fail-fast "$@"
fi

# A client in another language, built only from PROTOCOL.md, against the real relay binary.
# The relay's integration tests above built the binary; build it only if absent.
relay_bin="${CARGO_TARGET_DIR:-target}/debug/hush-relay"
[ -x "$relay_bin" ] || cargo build --locked -p hush-relay --bin hush-relay
HUSH_RELAY_BIN="$relay_bin" /usr/bin/python3 -m unittest discover -s tests/python -v

# The browser client's codec (web/hush/) against PROTOCOL.md's examples, in Node.
# (The browser itself is driven by the Rust test benches/tests/browser.rs above.)
node --test tests/browser/codec.test.mjs

# House rules: formatting, and lints as errors (workspace lints in Cargo.toml).
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

# Every fuzz target builds (each fuzzed crate has a fuzz crate of its own,
# outside the workspace; running them is described in their READMEs). One
# target directory for all four, so their common dependencies build once.
for crate in protocol crypto relay client-sdk; do
  CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}/fuzz-check" \
    cargo check --locked --quiet --manifest-path "$crate/fuzz/Cargo.toml" --bins
done

# Dependencies (deny.toml): licences, bans and sources always; advisories when
# the advisory database can be fetched (it lives on GitHub).
command -v cargo-deny >/dev/null 2>&1 || cargo install --locked --quiet cargo-deny@0.20.2
cargo deny --log-level error check licenses bans sources
if cargo deny --log-level error fetch >/dev/null 2>&1; then
  cargo deny --log-level error check advisories
else
  echo "note: the RustSec advisory database could not be fetched here: advisories not checked" >&2
fi
