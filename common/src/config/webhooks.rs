//! The outbound webhooks' settings (`roar webhooks`, and the API that registers them), and the
//! network ranges an operator may open to them in development (`webhooks.allow_networks`).

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

use super::{ConfigError, Secret};

/// Shortest `webhooks.secret_key` accepted (it derives an AES-256 key: 256 bits of entropy in
/// hex or base64 take at least this many characters).
pub const MIN_WEBHOOK_KEY_LEN: usize = 32;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// Whether the API takes webhook registrations (`POST /webhooks`, a request's
    /// `callback_url`). On by default; then `roar orchestrator` refuses to start without
    /// `secret_key`. Off: those requests answer 503 and the API needs no sealing key.
    pub enabled: bool,
    /// Where the dispatcher (`roar webhooks`) serves `/metrics`, `/health` and `/ready`; port 0
    /// picks a free one.
    pub ops_addr: SocketAddr,
    /// `fetch.wait.max.ms` of the dispatcher's consumer (`roar-webhooks`).
    pub fetch_wait_ms: u64,
    /// Longest one delivery attempt may take, connection and response included.
    pub timeout_seconds: u64,
    /// Longest the TCP (and TLS) connection may take to open.
    pub connect_timeout_seconds: u64,
    /// Bytes of a receiver's response read at most (the rest is dropped unread).
    pub max_response_bytes: u64,
    /// Attempts per delivery before it is recorded as `failed`.
    pub max_attempts: u32,
    /// Wait before the second attempt; it doubles after each failure up to `backoff_max_ms`.
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    /// Deliveries in flight at once per dispatcher (the rest wait in Postgres).
    pub concurrency: usize,
    /// How often the dispatcher looks for deliveries that are due.
    pub poll_interval_ms: u64,
    /// Registrations (`POST /webhooks`) one user may hold.
    pub max_per_user: u64,
    /// Longest registered URL, in bytes.
    pub max_url_len: usize,
    /// Days a finished delivery's record is kept (then deleted, with the job callbacks that
    /// have nothing left to deliver).
    pub retention_days: u32,
    /// Development only: networks the SSRF guard lets through although they are private,
    /// loopback or link-local, as comma-separated CIDRs (`127.0.0.1/32,::1/128`). Empty in
    /// production.
    pub allow_networks: String,
    /// Development and tests only: names resolved here instead of by DNS, comma-separated
    /// `name=address` pairs (`receiver.test=127.0.0.1`); the guard vets these addresses too.
    pub resolve: String,
    /// Key that seals the webhooks' signing secrets in PostgreSQL (AES-256-GCM): at least 32
    /// characters, not another purpose's key (nor a placeholder, where a role starts). The API (which seals) and the
    /// dispatcher (which opens) hold it; `roar webhooks` refuses to start without it, and so
    /// does `roar orchestrator` while `enabled` is on. `roar dev` makes one.
    pub secret_key: Secret,
    /// Id of `secret_key`, stored beside every secret it seals (1 to 16 of `A-Za-z0-9_-`).
    pub secret_key_id: String,
    /// Retired sealing keys that still open what they sealed, `<id>:<key>` pairs separated by
    /// commas; the dispatcher re-seals those rows under `secret_key` at start and every ten
    /// minutes, after which the pair can go.
    pub previous_secret_keys: Secret,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            ops_addr: "127.0.0.1:9184".parse().expect("static address"),
            fetch_wait_ms: 100,
            timeout_seconds: 10,
            connect_timeout_seconds: 5,
            max_response_bytes: 64 * 1024,
            max_attempts: 8,
            backoff_initial_ms: 5_000,
            backoff_max_ms: 3_600_000,
            concurrency: 16,
            poll_interval_ms: 500,
            max_per_user: 25,
            max_url_len: 2048,
            retention_days: 30,
            allow_networks: String::new(),
            resolve: String::new(),
            secret_key: Secret::default(),
            secret_key_id: "1".into(),
            previous_secret_keys: Secret::default(),
        }
    }
}

/// An IP network: an address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// `10.0.0.0/8`, `::1/128`, or a bare address (one host).
    pub fn parse(s: &str) -> Option<Cidr> {
        let (a, p) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let addr: IpAddr = a.parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max)?,
            None => max,
        };
        Some(Cidr { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl WebhooksConfig {
    /// `allow_networks`, parsed.
    pub fn allowed_networks(&self) -> Result<Vec<Cidr>, ConfigError> {
        split(&self.allow_networks)
            .map(|s| {
                Cidr::parse(s).ok_or_else(|| {
                    ConfigError::Invalid(format!(
                        "webhooks.allow_networks: {s:?} is not an address or CIDR (e.g. 127.0.0.1/32)"
                    ))
                })
            })
            .collect()
    }

    /// `resolve`, parsed: (lower-case name, address) pairs.
    pub fn static_names(&self) -> Result<Vec<(String, IpAddr)>, ConfigError> {
        split(&self.resolve)
            .map(|pair| {
                pair.split_once('=')
                    .and_then(|(n, a)| Some((n.trim().to_ascii_lowercase(), a.trim().parse().ok()?)))
                    .filter(|(n, _)| !n.is_empty())
                    .ok_or_else(|| {
                        ConfigError::Invalid(format!(
                            "webhooks.resolve: {pair:?} is not name=address (e.g. receiver.test=127.0.0.1)"
                        ))
                    })
            })
            .collect()
    }

    /// The sealing keys as (id, key), the current one first; empty when `secret_key` is.
    pub fn secret_keys(&self) -> Result<Vec<(String, String)>, ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        let valid_id = |id: &str| {
            (1..=16).contains(&id.len())
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        if !valid_id(&self.secret_key_id) {
            return bad(format!(
                "webhooks.secret_key_id must be 1 to 16 of A-Z a-z 0-9 _ -, got {:?}",
                self.secret_key_id
            ));
        }
        let mut keys = Vec::new();
        let current = self.secret_key.expose();
        if !current.is_empty() {
            check_key("webhooks.secret_key (ROAR_WEBHOOKS__SECRET_KEY)", current)?;
            keys.push((self.secret_key_id.clone(), current.to_string()));
        }
        for (n, entry) in split(self.previous_secret_keys.expose()).enumerate() {
            let what = format!(
                "webhooks.previous_secret_keys (ROAR_WEBHOOKS__PREVIOUS_SECRET_KEYS) entry {}",
                n + 1
            );
            let Some((id, key)) = entry.split_once(':') else {
                return bad(format!("{what} must be `<id>:<key>`"));
            };
            if !valid_id(id) {
                return bad(format!("{what}: the id must be 1 to 16 of A-Z a-z 0-9 _ -"));
            }
            if id == self.secret_key_id || keys.iter().any(|(k, _)| k == id) {
                return bad(format!("{what}: key id {id:?} is used twice"));
            }
            check_key(&what, key)?;
            keys.push((id.to_string(), key.to_string()));
        }
        if current.is_empty() && !keys.is_empty() {
            return bad(
                "webhooks.previous_secret_keys is set but webhooks.secret_key is not: the \
                 current key seals, the previous ones only open"
                    .into(),
            );
        }
        Ok(keys)
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(format!("webhooks.{m}")));
        self.allowed_networks()?;
        self.secret_keys()?;
        self.static_names()?;
        if !(1..=300).contains(&self.timeout_seconds) {
            return bad("timeout_seconds must be in 1..=300");
        }
        if !(1..=self.timeout_seconds).contains(&self.connect_timeout_seconds) {
            return bad("connect_timeout_seconds must be in 1..=timeout_seconds");
        }
        if !(1..=100).contains(&self.max_attempts) {
            return bad("max_attempts must be in 1..=100");
        }
        if self.backoff_initial_ms < 1 || self.backoff_max_ms < self.backoff_initial_ms {
            return bad("backoff_initial_ms must be ≥ 1 and ≤ backoff_max_ms");
        }
        if !(1..=1024).contains(&self.concurrency) {
            return bad("concurrency must be in 1..=1024");
        }
        if !(10..=60_000).contains(&self.poll_interval_ms) {
            return bad("poll_interval_ms must be in 10..=60000");
        }
        if !(1..=super::MAX_FETCH_WAIT_MS).contains(&self.fetch_wait_ms) {
            return bad("fetch_wait_ms must be in 1..=10000");
        }
        if !(1..=3650).contains(&self.retention_days) {
            return bad("retention_days must be in 1..=3650");
        }
        if !(16..=8192).contains(&self.max_url_len) {
            return bad("max_url_len must be in 16..=8192");
        }
        Ok(())
    }
}

/// A sealing key must be long (the key itself is never named in the error). Placeholders are
/// refused where a role starts (`check_role_secrets`), so the shipped templates still load.
fn check_key(what: &str, key: &str) -> Result<(), ConfigError> {
    if key.len() < MIN_WEBHOOK_KEY_LEN {
        return Err(ConfigError::Invalid(format!(
            "{what} must be at least {MIN_WEBHOOK_KEY_LEN} characters (e.g. `openssl rand -hex 32`)"
        )));
    }
    Ok(())
}

fn split(list: &str) -> impl Iterator<Item = &str> {
    list.split(',').map(str::trim).filter(|s| !s.is_empty())
}
