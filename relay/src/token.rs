//! Registration tokens: compact JWTs issued by the app's backend.
//!
//! Supported algorithms: `HS256` (shared secret) and `EdDSA` (Ed25519 public key).
//! Required claims: `sub` (the user id) and `exp`; `nbf`, `iss` and `aud` are
//! checked when present or configured, `exp` may be at most
//! `auth.max_token_lifetime_secs` after now (and after `iat` when present),
//! and a `device_id` claim (32 hex digits) binds the token to one device.
//! Clock leeway is 60 seconds. The `alg`
//! header must match a configured key: there is no `none`, and an HS256 token is
//! never checked against an Ed25519 key or the reverse.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ed25519_dalek::{Signature, VerifyingKey};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use crate::config::AuthConfig;

const LEEWAY_SECS: u64 = 60;

/// Why a token was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Not three base64url parts of JSON.
    #[error("token is not a well-formed JWT")]
    Malformed,
    /// `alg` names no configured key.
    #[error("token algorithm {0:?} is not accepted by this relay")]
    Algorithm(String),
    /// The signature does not verify.
    #[error("token signature does not verify")]
    Signature,
    /// `exp` passed, `nbf` not reached, or `exp` missing.
    #[error("token is expired or not yet valid")]
    Expired,
    /// `iss` or `aud` do not match.
    #[error("token issuer or audience does not match")]
    Claims,
    /// `exp` is further away than the relay's maximum token lifetime.
    #[error("token lifetime is longer than this relay accepts ({0} s)")]
    Lifetime(u64),
    /// The token names another device, or names none where one is required.
    #[error("token is not bound to this device")]
    Device,
}

/// What a verified token says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenClaims {
    /// The user the token registers a device for.
    pub sub: String,
    /// The one device it may register, when the token is bound to one.
    pub device: Option<[u8; 16]>,
}

/// Verifies registration tokens against the configured keys.
#[derive(Clone, Debug, Default)]
pub struct TokenVerifier {
    hs256: Option<Vec<u8>>,
    ed25519: Option<VerifyingKey>,
    issuer: Option<String>,
    audience: Option<String>,
    max_lifetime_secs: u64,
    require_device: bool,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    exp: Option<u64>,
    nbf: Option<u64>,
    iat: Option<u64>,
    device_id: Option<String>,
    iss: Option<String>,
    #[serde(default)]
    aud: Option<Audience>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl TokenVerifier {
    /// Builds a verifier from configuration.
    pub fn from_config(c: &AuthConfig) -> Result<Self, crate::RelayError> {
        Self::build(c).map_err(|e| crate::RelayError::Config(e.to_string()))
    }

    fn build(c: &AuthConfig) -> anyhow::Result<Self> {
        let ed25519 = match &c.jwt_ed25519_public_key {
            None => None,
            Some(text) => {
                let t = text.trim();
                let bytes = hex::decode(t)
                    .or_else(|_| STANDARD.decode(t))
                    .map_err(|_| anyhow::anyhow!("auth.jwt_ed25519_public_key must be 32 bytes in hex or base64"))?;
                let arr: [u8; 32] = bytes
                    .try_into()
                    .map_err(|_| anyhow::anyhow!("auth.jwt_ed25519_public_key must be 32 bytes"))?;
                Some(VerifyingKey::from_bytes(&arr).map_err(|e| anyhow::anyhow!("auth.jwt_ed25519_public_key: {e}"))?)
            }
        };
        Ok(TokenVerifier {
            hs256: c.hs256_secret()?,
            ed25519,
            issuer: c.jwt_issuer.clone(),
            audience: c.jwt_audience.clone(),
            max_lifetime_secs: c.max_token_lifetime_secs,
            require_device: c.require_device_binding,
        })
    }

    /// Whether any key is configured.
    pub fn has_keys(&self) -> bool {
        self.hs256.is_some() || self.ed25519.is_some()
    }

    /// Verifies `token` at `now_secs` and returns what it says.
    pub fn verify(&self, token: &str, now_secs: u64) -> Result<TokenClaims, TokenError> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(TokenError::Malformed);
        };
        let header: Header = decode_json(h)?;
        let sig = URL_SAFE_NO_PAD.decode(s).map_err(|_| TokenError::Malformed)?;
        let signing_input = &token.as_bytes()[..h.len() + 1 + p.len()];
        match (header.alg.as_str(), &self.hs256, &self.ed25519) {
            ("HS256", Some(secret), _) => {
                let mut mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| TokenError::Signature)?;
                mac.update(signing_input);
                mac.verify_slice(&sig).map_err(|_| TokenError::Signature)?;
            }
            ("EdDSA", _, Some(key)) => {
                let sig = Signature::from_slice(&sig).map_err(|_| TokenError::Signature)?;
                // Strict: no small-order keys or R values (with a weak key,
                // plain verification accepts a signature made by anyone).
                key.verify_strict(signing_input, &sig)
                    .map_err(|_| TokenError::Signature)?;
            }
            (alg, _, _) => return Err(TokenError::Algorithm(alg.chars().take(16).collect())),
        }
        let claims: Claims = decode_json(p)?;
        let exp = claims.exp.ok_or(TokenError::Expired)?;
        if now_secs > exp.saturating_add(LEEWAY_SECS) {
            return Err(TokenError::Expired);
        }
        if let Some(nbf) = claims.nbf
            && now_secs.saturating_add(LEEWAY_SECS) < nbf
        {
            return Err(TokenError::Expired);
        }
        let max = self.max_lifetime_secs;
        let from = claims.iat.map_or(now_secs, |iat| iat.min(now_secs));
        if exp > from.saturating_add(max).saturating_add(LEEWAY_SECS) {
            return Err(TokenError::Lifetime(max));
        }
        if let Some(want) = &self.issuer
            && claims.iss.as_deref() != Some(want.as_str())
        {
            return Err(TokenError::Claims);
        }
        if let Some(want) = &self.audience {
            let ok = match &claims.aud {
                Some(Audience::One(a)) => a == want,
                Some(Audience::Many(v)) => v.iter().any(|a| a == want),
                None => false,
            };
            if !ok {
                return Err(TokenError::Claims);
            }
        }
        let device = match claims.device_id {
            Some(hexed) => {
                let bytes = hex::decode(hexed.trim()).map_err(|_| TokenError::Malformed)?;
                Some(<[u8; 16]>::try_from(bytes).map_err(|_| TokenError::Malformed)?)
            }
            None if self.require_device => return Err(TokenError::Device),
            None => None,
        };
        Ok(TokenClaims {
            sub: claims.sub,
            device,
        })
    }
}

fn decode_json<T: for<'de> Deserialize<'de>>(part: &str) -> Result<T, TokenError> {
    let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|_| TokenError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)
}

/// Issues an HS256 token (for tests, tools and the demo; apps issue their own).
pub fn issue_hs256(secret: &[u8], sub: &str, exp: u64) -> String {
    issue_hs256_claims(secret, &serde_json::json!({ "sub": sub, "exp": exp }))
}

/// Issues an HS256 token bound to one device (`device_id` claim, hex).
pub fn issue_hs256_for_device(secret: &[u8], sub: &str, exp: u64, device: &[u8; 16]) -> String {
    issue_hs256_claims(
        secret,
        &serde_json::json!({ "sub": sub, "exp": exp, "device_id": hex::encode(device) }),
    )
}

fn issue_hs256_claims(secret: &[u8], claims: &serde_json::Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
    let input = format!("{header}.{claims}");
    let sig = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mut mac) => {
            mac.update(input.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    };
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0f1e2d3c4b5a69788796a5b4c3d2e1f0";

    fn verifier() -> TokenVerifier {
        TokenVerifier::from_config(&AuthConfig {
            open: Some(false),
            jwt_hs256_secret: Some(String::from_utf8(SECRET.to_vec()).unwrap()),
            ..AuthConfig::default()
        })
        .unwrap()
    }

    fn alice() -> TokenClaims {
        TokenClaims {
            sub: "alice".into(),
            device: None,
        }
    }

    #[test]
    fn hs256_round_trip_and_expiry() {
        let t = issue_hs256(SECRET, "alice", 1000);
        assert_eq!(verifier().verify(&t, 900), Ok(alice()));
        assert_eq!(verifier().verify(&t, 2000), Err(TokenError::Expired));
        let forged = issue_hs256(b"other-other-other-other-other-00", "alice", 1000);
        assert_eq!(verifier().verify(&forged, 900), Err(TokenError::Signature));
    }

    #[test]
    fn tokens_living_longer_than_the_maximum_are_refused() {
        let now = 100_000_000;
        let day = 24 * 3600;
        let ok = issue_hs256(SECRET, "alice", now + day);
        assert_eq!(verifier().verify(&ok, now), Ok(alice()));
        let long = issue_hs256(SECRET, "alice", now + 30 * day);
        assert_eq!(verifier().verify(&long, now), Err(TokenError::Lifetime(day)));
        // Issued long ago with a long life: its lifetime counts from `iat`.
        let old = issue_hs256_claims(
            SECRET,
            &serde_json::json!({ "sub": "alice", "iat": now - 20 * day, "exp": now + 60 }),
        );
        assert_eq!(verifier().verify(&old, now), Err(TokenError::Lifetime(day)));
    }

    #[test]
    fn device_bound_tokens_name_their_device() {
        let device = [7u8; 16];
        let t = issue_hs256_for_device(SECRET, "alice", 1000, &device);
        assert_eq!(
            verifier().verify(&t, 900),
            Ok(TokenClaims {
                sub: "alice".into(),
                device: Some(device)
            })
        );
        let strict = TokenVerifier::from_config(&AuthConfig {
            open: Some(false),
            jwt_hs256_secret: Some(String::from_utf8(SECRET.to_vec()).unwrap()),
            require_device_binding: true,
            ..AuthConfig::default()
        })
        .unwrap();
        assert_eq!(
            strict.verify(&issue_hs256(SECRET, "alice", 1000), 900),
            Err(TokenError::Device)
        );
        assert!(strict.verify(&t, 900).is_ok());
    }

    #[test]
    fn wrong_algorithm_and_garbage_are_refused() {
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(br#"{"sub":"a","exp":9}"#)
        );
        assert!(matches!(verifier().verify(&none, 0), Err(TokenError::Algorithm(_))));
        assert_eq!(verifier().verify("a.b", 0), Err(TokenError::Malformed));
        assert_eq!(verifier().verify("", 0), Err(TokenError::Malformed));
    }

    #[test]
    fn eddsa_tokens_verify() {
        use ed25519_dalek::{Signer, SigningKey};
        let key = SigningKey::from_bytes(&[5; 32]);
        let v = TokenVerifier::from_config(&AuthConfig {
            open: Some(false),
            jwt_ed25519_public_key: Some(hex::encode(key.verifying_key().to_bytes())),
            ..AuthConfig::default()
        })
        .unwrap();
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"EdDSA"}"#),
            URL_SAFE_NO_PAD.encode(br#"{"sub":"bob","exp":100}"#)
        );
        let token = format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(key.sign(input.as_bytes()).to_bytes())
        );
        assert_eq!(
            v.verify(&token, 50),
            Ok(TokenClaims {
                sub: "bob".into(),
                device: None
            })
        );
        // An HS256 token is not accepted by an EdDSA-only relay.
        assert!(matches!(
            v.verify(&issue_hs256(b"x", "bob", 100), 50),
            Err(TokenError::Algorithm(_))
        ));
    }

    /// An EdDSA token under a small-order key (a configuration mistake) with
    /// the signature (R = identity, s = 0) verifies under plain Ed25519
    /// verification whatever it says; strict verification refuses it.
    #[test]
    fn eddsa_tokens_are_verified_strictly() {
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let v = TokenVerifier::from_config(&AuthConfig {
            open: Some(false),
            jwt_ed25519_public_key: Some(hex::encode(identity)),
            ..AuthConfig::default()
        })
        .unwrap();
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"EdDSA","typ":"JWT"}"#);
        let claims = URL_SAFE_NO_PAD.encode(br#"{"sub":"mallory","exp":4102444800,"iat":4102441200}"#);
        let mut forged = [0u8; 64];
        forged[..32].copy_from_slice(&identity);
        let token = format!("{header}.{claims}.{}", URL_SAFE_NO_PAD.encode(forged));
        assert!(matches!(v.verify(&token, 4102441300), Err(TokenError::Signature)));
    }
}
