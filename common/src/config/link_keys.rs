//! The keys of the links the API signs, by id, so they can rotate: links carry the id of the
//! key that signed them; `auth.link_secret` (id `auth.link_key_id`) signs new ones, and the
//! retired keys in `auth.link_previous_keys` still verify the links they signed until those
//! expire (`http.link_ttl_seconds`), after which the operator removes them.

use super::{looks_like_placeholder, AuthConfig, ConfigError};

/// Shortest link key accepted (an HMAC-SHA256 key should carry 256 bits).
pub const MIN_LINK_SECRET_LEN: usize = 32;

/// The current link key and the retired ones that still verify.
#[derive(Clone)]
pub struct LinkKeys {
    /// (id, key); the first is the current one.
    keys: Vec<(String, String)>,
}

impl std::fmt::Debug for LinkKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|(id, _)| id.as_str()).collect();
        write!(f, "LinkKeys {{ ids: {ids:?} }}")
    }
}

impl LinkKeys {
    /// Parses and checks the configured keys (an empty `link_secret` yields no keys at all:
    /// whether one is required is the orchestrator's start-up question).
    pub fn from_config(auth: &AuthConfig) -> Result<LinkKeys, ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        let mut keys = Vec::new();
        let current = auth.link_secret.expose();
        if !current.is_empty() {
            check_key("auth.link_secret (ROAR_AUTH__LINK_SECRET)", current, auth)?;
            keys.push((auth.link_key_id.clone(), current.to_string()));
        }
        if !valid_id(&auth.link_key_id) {
            return bad(format!(
                "auth.link_key_id must be 1 to 16 of A-Z a-z 0-9 _ -, got {:?}",
                auth.link_key_id
            ));
        }
        let previous = auth.link_previous_keys.expose();
        for (n, entry) in previous
            .split(',')
            .filter(|e| !e.trim().is_empty())
            .enumerate()
        {
            let what = format!(
                "auth.link_previous_keys (ROAR_AUTH__LINK_PREVIOUS_KEYS) entry {}",
                n + 1
            );
            let Some((id, key)) = entry.trim().split_once(':') else {
                return bad(format!("{what} must be `<id>:<key>`"));
            };
            if !valid_id(id) {
                return bad(format!("{what}: the id must be 1 to 16 of A-Z a-z 0-9 _ -"));
            }
            if id == auth.link_key_id || keys.iter().any(|(k, _)| k == id) {
                return bad(format!("{what}: key id {id:?} is used twice"));
            }
            check_key(&what, key, auth)?;
            keys.push((id.to_string(), key.to_string()));
        }
        if current.is_empty() && !keys.is_empty() {
            return bad(
                "auth.link_previous_keys is set but auth.link_secret is not: the current key \
                 signs new links, the previous ones only verify"
                    .into(),
            );
        }
        Ok(LinkKeys { keys })
    }

    /// The id and key that sign new links, if a key is configured.
    pub fn current(&self) -> Option<(&str, &str)> {
        self.keys.first().map(|(id, k)| (id.as_str(), k.as_str()))
    }

    /// The key with this id, current or retired.
    pub fn get(&self, id: &str) -> Option<&str> {
        self.keys
            .iter()
            .find(|(k, _)| k == id)
            .map(|(_, key)| key.as_str())
    }
}

fn valid_id(id: &str) -> bool {
    (1..=16).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A link key must be long, not a placeholder, and not the token key (one key per purpose: a
/// leaked link key must not mint tokens, nor the token key forge links).
fn check_key(what: &str, key: &str, auth: &AuthConfig) -> Result<(), ConfigError> {
    let bad = |why: &str| Err(ConfigError::Invalid(format!("{what} {why}")));
    if key.len() < MIN_LINK_SECRET_LEN {
        return bad(&format!(
            "must be at least {MIN_LINK_SECRET_LEN} characters (e.g. `openssl rand -hex 32`)"
        ));
    }
    if looks_like_placeholder(key) {
        return bad("looks like a placeholder: set a random value (e.g. `openssl rand -hex 32`)");
    }
    if key == auth.jwt_secret.expose() {
        return bad("must differ from auth.jwt_secret: one key per purpose");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Secret};

    const K1: &str = "9f2c4e7a1b3d5f6e8a0c2e4b6d8f1a3c";
    const K2: &str = "1a3c5e7f9b2d4f6a8c0e1b3d5f7a9c2e";

    fn auth(current: &str, id: &str, previous: &str) -> AuthConfig {
        let mut a = Config::default().auth;
        a.link_secret = Secret::new(current);
        a.link_key_id = id.into();
        a.link_previous_keys = Secret::new(previous);
        a
    }

    #[test]
    fn the_current_key_signs_and_retired_ones_still_verify() {
        let keys = LinkKeys::from_config(&auth(K2, "2", &format!("1:{K1}"))).unwrap();
        assert_eq!(keys.current(), Some(("2", K2)));
        assert_eq!(keys.get("1"), Some(K1));
        assert_eq!(keys.get("3"), None);
        assert!(!format!("{keys:?}").contains(K1), "keys in Debug output");
    }

    #[test]
    fn bad_rotation_settings_are_refused() {
        for (cur, id, prev, why) in [
            (K2, "2", format!("2:{K1}"), "used twice"),
            (K2, "2", format!("1:{K1},1:{K1}"), "used twice"),
            (K2, "2", "1:short".to_string(), "at least 32"),
            (K2, "2", "1-no-colon".to_string(), "<id>:<key>"),
            (K2, "a b", String::new(), "link_key_id"),
            (K2, "2", format!("bad id!:{K1}"), "the id must be"),
            (
                K2,
                "2",
                "1:REPLACE-ME-with-a-long-random-link-key".into(),
                "placeholder",
            ),
            ("", "2", format!("1:{K1}"), "auth.link_secret is not"),
        ] {
            let e = LinkKeys::from_config(&auth(cur, id, &prev))
                .unwrap_err()
                .to_string();
            assert!(e.contains(why), "{prev}: {e}");
            assert!(!e.contains(K1), "a key in an error: {e}");
        }
    }
}
