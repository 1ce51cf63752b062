//! JWT verification and minting. The accepted algorithm is pinned by configuration (HS256 with a
//! shared secret for development), so a token cannot pick its own (`none`, HS/RS confusion);
//! `iss`, `aud`, `exp` and `nbf` are always checked.

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::AuthConfig;

/// The claims roar reads.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Claims {
    pub sub: String,
    pub iss: String,
    pub aud: String,
    pub exp: i64,
    pub nbf: i64,
    pub iat: i64,
    /// `admin` sees and acts on everything; `service` may post job events.
    #[serde(default)]
    pub roles: Vec<String>,
}

impl Claims {
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AuthError {
    #[error("missing bearer token")]
    Missing,
    #[error("invalid token: {0}")]
    Invalid(String),
    #[error("token expired")]
    Expired,
    #[error("no signing key configured (set auth.jwt_secret)")]
    NotConfigured,
}

/// Verifies (and, with a secret, mints) tokens.
#[derive(Clone)]
pub struct Authenticator {
    decoding: Option<DecodingKey>,
    encoding: Option<EncodingKey>,
    validation: Validation,
    cfg: AuthConfig,
}

impl Authenticator {
    pub fn new(cfg: &AuthConfig) -> Self {
        let secret = cfg.jwt_secret.expose().as_bytes();
        let (decoding, encoding) = if secret.is_empty() {
            (None, None)
        } else {
            (
                Some(DecodingKey::from_secret(secret)),
                Some(EncodingKey::from_secret(secret)),
            )
        };
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[&cfg.issuer]);
        validation.set_audience(&[&cfg.audience]);
        validation.validate_nbf = true;
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        Self {
            decoding,
            encoding,
            validation,
            cfg: cfg.clone(),
        }
    }

    /// Verifies a bearer token.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let key = self.decoding.as_ref().ok_or(AuthError::NotConfigured)?;
        decode::<Claims>(token, key, &self.validation)
            .map(|d| d.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
                _ => AuthError::Invalid(e.to_string()),
            })
    }

    /// Mints a token for `sub` with `roles`, valid for `ttl_seconds` (the configured default
    /// when `None`).
    pub fn mint(
        &self,
        sub: &str,
        roles: &[&str],
        ttl_seconds: Option<u64>,
    ) -> Result<String, AuthError> {
        let key = self.encoding.as_ref().ok_or(AuthError::NotConfigured)?;
        let now = chrono::Utc::now().timestamp();
        let ttl = ttl_seconds.unwrap_or(self.cfg.token_ttl_seconds) as i64;
        let claims = Claims {
            sub: sub.to_string(),
            iss: self.cfg.issuer.clone(),
            aud: self.cfg.audience.clone(),
            exp: now + ttl,
            nbf: now,
            iat: now,
            roles: roles.iter().map(|r| r.to_string()).collect(),
        };
        encode(&Header::new(Algorithm::HS256), &claims, key)
            .map_err(|e| AuthError::Invalid(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn auth() -> Authenticator {
        Authenticator::new(&AuthConfig {
            jwt_secret: Secret::new("0123456789abcdef0123"),
            ..Default::default()
        })
    }

    #[test]
    fn mint_then_verify() {
        let a = auth();
        let t = a.mint("alice", &["admin"], None).unwrap();
        let c = a.verify(&t).unwrap();
        assert_eq!(c.sub, "alice");
        assert!(c.has_role("admin"));
    }

    #[test]
    fn rejects_forged_expired_and_alg_none() {
        let a = auth();
        let other = Authenticator::new(&AuthConfig {
            jwt_secret: Secret::new("another-secret-0000000"),
            ..Default::default()
        });
        let forged = other.mint("alice", &[], None).unwrap();
        assert!(matches!(a.verify(&forged), Err(AuthError::Invalid(_))));
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: "a".into(),
            iss: "roar".into(),
            aud: "roar".into(),
            exp: now - 100,
            nbf: now - 200,
            iat: now - 200,
            roles: vec![],
        };
        let t = encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(b"0123456789abcdef0123"),
        )
        .unwrap();
        assert_eq!(a.verify(&t), Err(AuthError::Expired));
        // alg=none: header {"alg":"none"}, no signature.
        use base64::Engine;
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let none = format!(
            "{}.{}.",
            b64(br#"{"alg":"none","typ":"JWT"}"#),
            b64(serde_json::to_string(&claims).unwrap().as_bytes())
        );
        assert!(matches!(a.verify(&none), Err(AuthError::Invalid(_))));
        let wrong_aud = Claims {
            aud: "other".into(),
            exp: now + 100,
            ..claims
        };
        let t = encode(
            &Header::new(Algorithm::HS256),
            &wrong_aud,
            &EncodingKey::from_secret(b"0123456789abcdef0123"),
        )
        .unwrap();
        assert!(matches!(a.verify(&t), Err(AuthError::Invalid(_))));
    }
}
