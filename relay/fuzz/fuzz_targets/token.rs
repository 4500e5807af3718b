//! A registration token (PROTOCOL.md 6.4) as the relay verifies it, with
//! both an HS256 secret and an Ed25519 key configured, an issuer and an
//! audience required.
//!
//! Checks: verification never panics, whatever the bytes (broken base64,
//! JSON of any shape, huge numbers, any `alg`); nothing verifies without a
//! valid signature, which random input cannot make.
#![no_main]

use std::sync::OnceLock;

use hush_relay::config::AuthConfig;
use hush_relay::token::TokenVerifier;
use libfuzzer_sys::fuzz_target;

fn verifier() -> &'static TokenVerifier {
    static V: OnceLock<TokenVerifier> = OnceLock::new();
    V.get_or_init(|| {
        let config = AuthConfig {
            jwt_hs256_secret: Some("fuzz-secret-of-at-least-32-bytes!!".into()),
            jwt_ed25519_public_key: Some(
                // The public key of the seed 01 01 .. 01.
                "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c".into(),
            ),
            jwt_issuer: Some("https://app.example".into()),
            jwt_audience: Some("hush".into()),
            ..AuthConfig::default()
        };
        TokenVerifier::from_config(&config).expect("a valid configuration")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let result = verifier().verify(token, 1_767_225_600);
    assert!(result.is_err(), "a token verified without a signature: {token}");
});
