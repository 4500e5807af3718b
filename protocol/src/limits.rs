//! Protocol limits. Both sides enforce them; the relay may be configured lower.

/// Largest encoded frame, in bytes, either direction. Checked before allocating.
pub const MAX_FRAME_LEN: usize = 1 << 20;
/// Largest ciphertext payload in a group message.
pub const MAX_PAYLOAD_LEN: usize = 512 * 1024;
/// Longest a link approval may be valid for: its `expires_ms` at most this
/// far ahead of the relay's clock.
pub const MAX_LINK_APPROVAL_MS: u64 = 15 * 60 * 1000;
/// How many epochs back a message or proposal may be and still be stored:
/// one sealed just before a commit and arriving just after it is kept
/// (members keep two past epochs' secrets), anything older is refused as
/// stale, since members may have deleted its keys.
pub const MAX_PAST_EPOCHS: u64 = 1;
/// Largest payload of an ephemeral signal (typing): small enough for a QUIC datagram.
pub const MAX_EPHEMERAL_LEN: usize = 1024;
/// Longest group id in bytes (MLS group ids are opaque bytes).
pub const MAX_GROUP_ID_LEN: usize = 255;
/// Longest user id in bytes (UTF-8).
pub const MAX_USER_ID_LEN: usize = 128;
/// Longest registration token (JWT) in bytes.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;
/// Most key packages in one upload.
pub const MAX_KEY_PACKAGES_PER_UPLOAD: usize = 256;
/// Largest single key package.
pub const MAX_KEY_PACKAGE_LEN: usize = 16 * 1024;
/// Most devices added or removed by one commit.
pub const MAX_ROSTER_CHANGE: usize = 1000;
/// Most entries in one history page.
pub const MAX_HISTORY_PAGE: u16 = 500;
/// Most resume hints in one `Authenticate`.
pub const MAX_RESUME_HINTS: usize = 10_000;
/// Largest payload of one rendezvous frame (device linking).
pub const MAX_RENDEZVOUS_PAYLOAD: usize = 4096;
/// Most rendezvous frames one side of a pair may send.
pub const MAX_RENDEZVOUS_MESSAGES: usize = 16;
