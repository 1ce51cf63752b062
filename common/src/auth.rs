//! JWT verification and minting. Accepted algorithms are pinned by configuration: HS256 with a
//! shared secret (development, `roar token`), and the asymmetric algorithms in
//! `auth.jwks_algorithms` with public keys from the identity provider's JWKS at `auth.jwks_url`
//! (production). A token cannot pick its own: `none` is never accepted, an HS256 token is only
//! checked against the secret and an RS/ES token only against RSA/EC keys of the JWKS (symmetric
//! JWKS entries are ignored), so HS/RS confusion has nothing to work with. `iss`, `aud`, `exp`
//! and `nbf` are always checked. The JWKS URL comes from configuration only.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{
    decode, decode_header, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation,
};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::config::{asymmetric_algorithm, AuthConfig};

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
    #[error("no signing key configured (set auth.jwt_secret or auth.jwks_url)")]
    NotConfigured,
    #[error("fetching the JWKS failed: {0}")]
    Jwks(String),
    /// No key of the cached JWKS can check the token (an unknown `kid`, or none of its type):
    /// the identity provider may have rotated, so `verify_fresh` fetches the JWKS again.
    #[error("invalid token: no JWKS key matches the token")]
    UnknownKey,
}

/// One usable public key of the JWKS.
struct JwksKey {
    kid: Option<String>,
    /// The algorithm the JWK names, if it names one.
    alg: Option<String>,
    rsa: bool,
    key: DecodingKey,
}

/// Verifies (and, with a secret, mints) tokens.
#[derive(Clone)]
pub struct Authenticator {
    decoding: Option<DecodingKey>,
    encoding: Option<EncodingKey>,
    validation: Validation,
    cfg: AuthConfig,
    asymmetric: Vec<Algorithm>,
    jwks: Arc<RwLock<Vec<JwksKey>>>,
    /// When a token with an unknown key last made us fetch the JWKS: held across the fetch,
    /// so a burst of such tokens costs the identity provider one request per interval.
    last_forced: Arc<tokio::sync::Mutex<Option<Instant>>>,
}

fn is_rsa(alg: Algorithm) -> bool {
    !matches!(alg, Algorithm::ES256 | Algorithm::ES384)
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
        let asymmetric = cfg
            .jwks_algorithms
            .iter()
            .filter_map(|a| asymmetric_algorithm(a))
            .collect();
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
            asymmetric,
            jwks: Arc::default(),
            last_forced: Arc::default(),
        }
    }

    fn configured(&self) -> bool {
        self.decoding.is_some() || !self.cfg.jwks_url.is_empty()
    }

    /// Verifies a bearer token.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        if !self.configured() {
            return Err(AuthError::NotConfigured);
        }
        let header = decode_header(token).map_err(|e| AuthError::Invalid(e.to_string()))?;
        let alg = header.alg;
        if alg == Algorithm::HS256 {
            let key = self
                .decoding
                .as_ref()
                .ok_or_else(|| AuthError::Invalid("HS256 tokens are not accepted".into()))?;
            return decode::<Claims>(token, key, &self.validation)
                .map(|d| d.claims)
                .map_err(map_jwt_error);
        }
        if !self.asymmetric.contains(&alg) || self.cfg.jwks_url.is_empty() {
            return Err(AuthError::Invalid(format!(
                "algorithm {alg:?} is not accepted"
            )));
        }
        let mut validation = self.validation.clone();
        validation.algorithms = vec![alg];
        let keys = self.jwks.read().unwrap_or_else(|e| e.into_inner());
        let alg_name = format!("{alg:?}");
        let candidates = keys.iter().filter(|k| {
            k.rsa == is_rsa(alg)
                && k.alg.as_deref().is_none_or(|a| a == alg_name)
                && (header.kid.is_none() || k.kid == header.kid)
        });
        let mut last = AuthError::UnknownKey;
        for k in candidates {
            match decode::<Claims>(token, &k.key, &validation) {
                Ok(d) => return Ok(d.claims),
                Err(e) => last = map_jwt_error(e),
            }
        }
        Err(last)
    }

    /// `verify`, and when no cached key matches the token (the identity provider rotated), one
    /// fetch of the JWKS and a second try. Fetches forced this way are at most one per
    /// `auth.jwks_min_refetch_seconds`, so tokens with made-up `kid`s cannot flood the provider.
    pub async fn verify_fresh(&self, token: &str) -> Result<Claims, AuthError> {
        match self.verify(token) {
            Err(AuthError::UnknownKey) => {}
            other => return other,
        }
        let mut last = self.last_forced.lock().await;
        let min = Duration::from_secs(self.cfg.jwks_min_refetch_seconds);
        if last.is_some_and(|t| t.elapsed() < min) {
            // Another request may have just fetched the key this token needs.
            return self.verify(token);
        }
        *last = Some(Instant::now());
        match self.refresh_jwks().await {
            Ok(n) => tracing::info!(
                keys = n,
                "JWKS fetched again for a token with an unknown key"
            ),
            Err(e) => tracing::warn!(error = %e, "JWKS refetch failed; keeping the previous keys"),
        }
        drop(last);
        self.verify(token)
    }

    /// Fetches the JWKS from `auth.jwks_url` (configuration only, never a token's `jku`) and
    /// keeps its RSA and EC keys. A set without a usable key is an error and replaces nothing:
    /// an identity provider's bad minute must not log every user out.
    pub async fn refresh_jwks(&self) -> Result<usize, AuthError> {
        if self.cfg.jwks_url.is_empty() {
            return Ok(0);
        }
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| AuthError::Jwks(e.to_string()))?;
        let set: JwkSet = client
            .get(&self.cfg.jwks_url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| AuthError::Jwks(e.to_string()))?
            .json()
            .await
            .map_err(|e| AuthError::Jwks(e.to_string()))?;
        let keys: Vec<JwksKey> = set
            .keys
            .iter()
            .filter_map(|jwk| {
                let rsa = match jwk.algorithm {
                    AlgorithmParameters::RSA(_) => true,
                    AlgorithmParameters::EllipticCurve(_) => false,
                    _ => return None,
                };
                Some(JwksKey {
                    kid: jwk.common.key_id.clone(),
                    alg: jwk.common.key_algorithm.map(|a| format!("{a:?}")),
                    rsa,
                    key: DecodingKey::from_jwk(jwk).ok()?,
                })
            })
            .collect();
        let n = keys.len();
        if n == 0 {
            return Err(AuthError::Jwks(
                "the JWKS has no usable RSA or EC key; keeping the previous keys".into(),
            ));
        }
        *self.jwks.write().unwrap_or_else(|e| e.into_inner()) = keys;
        Ok(n)
    }

    /// Loads the JWKS now, then again every `auth.jwks_refresh_seconds` until `cancel` fires.
    pub async fn start_jwks(&self, cancel: CancellationToken) {
        if self.cfg.jwks_url.is_empty() {
            return;
        }
        match self.refresh_jwks().await {
            Ok(n) => tracing::info!(keys = n, "JWKS loaded"),
            Err(e) => {
                tracing::error!(error = %e, "JWKS not loaded; asymmetric tokens fail until it is")
            }
        }
        let me = self.clone();
        let every = Duration::from_secs(self.cfg.jwks_refresh_seconds.max(10));
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(every) => {}
                }
                if let Err(e) = me.refresh_jwks().await {
                    tracing::warn!(error = %e, "JWKS refresh failed; keeping the previous keys");
                }
            }
        });
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

fn map_jwt_error(e: jsonwebtoken::errors::Error) -> AuthError {
    match e.kind() {
        jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
        _ => AuthError::Invalid(e.to_string()),
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
