//! The SSRF guard: which addresses a webhook may reach.
//!
//! A webhook URL is chosen by a user, and the dispatcher sits inside the cluster, so without a
//! guard a user could make it call the cloud metadata service, the database or the broker.
//! The guard decides before any connection: a literal address is classified as given; a name
//! is resolved once, every address it yields is classified, and the HTTP client connects only
//! to those vetted addresses (its resolver is [`Guard`] itself, so no second lookup can answer
//! differently). Redirects are never followed (a 3xx is a failed attempt), and environment
//! proxies are ignored, so the vetted address is the one the request reaches.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use roar_common::config::{Cidr, ConfigError, WebhooksConfig};

/// Why an address is not reachable by webhooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forbidden {
    Unspecified,
    Loopback,
    /// RFC 1918 and the other site-private IPv4 ranges.
    Private,
    /// 100.64.0.0/10, carrier-grade NAT: inside some provider's network.
    SharedAddressSpace,
    /// fc00::/7 and the deprecated fec0::/10.
    UniqueLocal,
    LinkLocal,
    /// 169.254.169.254 and fd00:ec2::254: the clouds' instance metadata services.
    Metadata,
    Multicast,
    Broadcast,
    Documentation,
    /// Benchmarking, protocol assignments, future use, discard-only and the like.
    Reserved,
}

impl Forbidden {
    pub fn as_str(self) -> &'static str {
        match self {
            Forbidden::Unspecified => "unspecified",
            Forbidden::Loopback => "loopback",
            Forbidden::Private => "private",
            Forbidden::SharedAddressSpace => "shared address space (CGNAT)",
            Forbidden::UniqueLocal => "unique local",
            Forbidden::LinkLocal => "link-local",
            Forbidden::Metadata => "cloud metadata",
            Forbidden::Multicast => "multicast",
            Forbidden::Broadcast => "broadcast",
            Forbidden::Documentation => "documentation",
            Forbidden::Reserved => "reserved",
        }
    }
}

impl std::fmt::Display for Forbidden {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn in4(ip: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn in6(ip: Ipv6Addr, net: u128, prefix: u32) -> bool {
    let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
    u128::from(ip) & mask == net & mask
}

/// The class of `ip` that webhooks may not reach, or `None` for a public unicast address.
pub fn classify(ip: IpAddr) -> Option<Forbidden> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<Forbidden> {
    use Forbidden::*;
    let table: &[([u8; 4], u32, Forbidden)] = &[
        ([169, 254, 169, 254], 32, Metadata),
        ([0, 0, 0, 0], 8, Unspecified),
        ([10, 0, 0, 0], 8, Private),
        ([100, 64, 0, 0], 10, SharedAddressSpace),
        ([127, 0, 0, 0], 8, Loopback),
        ([169, 254, 0, 0], 16, LinkLocal),
        ([172, 16, 0, 0], 12, Private),
        ([192, 0, 0, 0], 24, Reserved),
        ([192, 0, 2, 0], 24, Documentation),
        ([192, 88, 99, 0], 24, Reserved),
        ([192, 168, 0, 0], 16, Private),
        ([198, 18, 0, 0], 15, Reserved),
        ([198, 51, 100, 0], 24, Documentation),
        ([203, 0, 113, 0], 24, Documentation),
        ([224, 0, 0, 0], 4, Multicast),
        ([255, 255, 255, 255], 32, Broadcast),
        ([240, 0, 0, 0], 4, Reserved),
    ];
    table
        .iter()
        .find(|(net, prefix, _)| in4(ip, *net, *prefix))
        .map(|(_, _, class)| *class)
}

fn classify_v6(ip: Ipv6Addr) -> Option<Forbidden> {
    use Forbidden::*;
    let bits = u128::from(ip);
    let low32 = Ipv4Addr::from(bits as u32);
    // Forms that carry an IPv4 address reach that address: judge it.
    if in6(ip, 0xffff << 32, 96) || in6(ip, 0xffff << 48, 96) || in6(ip, 0x0064_ff9b << 96, 96) {
        // ::ffff:a.b.c.d (mapped), ::ffff:0:a.b.c.d (SIIT's translated form) and
        // 64:ff9b::a.b.c.d (NAT64).
        return classify_v4(low32);
    }
    if in6(ip, 0x2002 << 112, 16) {
        // 6to4: the IPv4 address sits in bits 16..48.
        return classify_v4(Ipv4Addr::from((bits >> 80) as u32));
    }
    let table: &[(u128, u32, Forbidden)] = &[
        (0, 128, Unspecified),
        (1, 128, Loopback),
        // ::a.b.c.d, the deprecated IPv4-compatible form, and the rest of ::/96.
        (0, 96, Reserved),
        (0xfd00_0ec2 << 96 | 0x254, 128, Metadata),
        (0x0064_ff9b_0001 << 80, 48, Private),
        (0x0100 << 112, 64, Reserved),
        (0x2001_0db8 << 96, 32, Documentation),
        // IETF protocol assignments: Teredo (tunnels to an obfuscated IPv4 address),
        // benchmarking, ORCHID and the like; none is a web server's address.
        (0x2001_0000 << 96, 23, Reserved),
        (0x3fff << 112, 20, Documentation),
        // SRv6 segment identifiers: routing instructions, not hosts.
        (0x5f00 << 112, 16, Reserved),
        (0xfc00 << 112, 7, UniqueLocal),
        (0xfe80 << 112, 10, LinkLocal),
        (0xfec0 << 112, 10, UniqueLocal),
        (0xff00 << 112, 8, Multicast),
    ];
    let named = table
        .iter()
        .find(|(net, prefix, _)| in6(ip, *net, *prefix))
        .map(|(_, _, class)| *class);
    // Only 2000::/3 is allocated for global unicast: whatever else is not named above is
    // unassigned or reserved, never a public server.
    named.or_else(|| (!in6(ip, 0x2000 << 112, 3)).then_some(Reserved))
}

/// Why a URL or an address was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum GuardError {
    /// The URL itself is unusable (scheme, credentials, length, form). Not retryable.
    #[error("{0}")]
    InvalidUrl(String),
    /// The host is, or resolves to, an address webhooks may not reach. Not retryable.
    #[error("{host} is {} address {addr}: webhooks reach public addresses only", article(.class))]
    Forbidden {
        host: String,
        addr: IpAddr,
        class: Forbidden,
    },
    /// The name did not resolve (retryable: DNS may recover).
    #[error("cannot resolve {host}: {reason}")]
    Resolve { host: String, reason: String },
}

fn article(class: &Forbidden) -> String {
    let s = class.as_str();
    let an = matches!(s.as_bytes().first(), Some(b'a' | b'e' | b'i' | b'o' | b'u'));
    format!("{} {s}", if an { "an" } else { "a" })
}

impl GuardError {
    /// Whether another attempt could succeed.
    pub fn retryable(&self) -> bool {
        matches!(self, GuardError::Resolve { .. })
    }
}

/// Resolves names; the dispatcher uses the system's resolver, tests their own.
#[async_trait::async_trait]
pub trait Lookup: Send + Sync + 'static {
    async fn lookup(&self, host: &str) -> std::io::Result<Vec<IpAddr>>;
}

/// The system resolver (getaddrinfo, off the executor).
pub struct SystemLookup;

#[async_trait::async_trait]
impl Lookup for SystemLookup {
    async fn lookup(&self, host: &str) -> std::io::Result<Vec<IpAddr>> {
        let addrs = tokio::net::lookup_host((host, 0)).await?;
        Ok(addrs.map(|a| a.ip()).collect())
    }
}

/// Fixed answers for some names (`webhooks.resolve`), the rest from `fallback`.
pub struct StaticLookup {
    names: HashMap<String, Vec<IpAddr>>,
    fallback: Option<Arc<dyn Lookup>>,
}

impl StaticLookup {
    pub fn new(pairs: Vec<(String, IpAddr)>, fallback: Option<Arc<dyn Lookup>>) -> Self {
        let mut names: HashMap<String, Vec<IpAddr>> = HashMap::new();
        for (n, a) in pairs {
            names.entry(n).or_default().push(a);
        }
        Self { names, fallback }
    }
}

#[async_trait::async_trait]
impl Lookup for StaticLookup {
    async fn lookup(&self, host: &str) -> std::io::Result<Vec<IpAddr>> {
        if let Some(a) = self.names.get(&host.to_ascii_lowercase()) {
            return Ok(a.clone());
        }
        match &self.fallback {
            Some(f) => f.lookup(host).await,
            None => Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no such name",
            )),
        }
    }
}

/// The guard: the allow-list, the resolver and the URL rules.
#[derive(Clone)]
pub struct Guard {
    allow: Vec<Cidr>,
    lookup: Arc<dyn Lookup>,
    max_url_len: usize,
}

impl Guard {
    /// The guard `cfg` describes: the system resolver behind `webhooks.resolve`'s names.
    pub fn from_config(cfg: &WebhooksConfig) -> Result<Guard, ConfigError> {
        let names = cfg.static_names()?;
        let lookup: Arc<dyn Lookup> = if names.is_empty() {
            Arc::new(SystemLookup)
        } else {
            Arc::new(StaticLookup::new(names, Some(Arc::new(SystemLookup))))
        };
        Ok(Guard {
            allow: cfg.allowed_networks()?,
            lookup,
            max_url_len: cfg.max_url_len,
        })
    }

    /// A guard with its own resolver (tests).
    pub fn with_lookup(allow: Vec<Cidr>, lookup: Arc<dyn Lookup>, max_url_len: usize) -> Guard {
        Guard {
            allow,
            lookup,
            max_url_len,
        }
    }

    /// `Ok` when `ip` may be reached: public, or inside `webhooks.allow_networks`.
    pub fn check_addr(&self, host: &str, ip: IpAddr) -> Result<(), GuardError> {
        let Some(class) = classify(ip) else {
            return Ok(());
        };
        // An allow-listed IPv4 network also admits its IPv4-mapped form.
        let mapped = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        let allowed = self
            .allow
            .iter()
            .any(|n| n.contains(ip) || mapped.is_some_and(|m| n.contains(m)));
        if allowed {
            return Ok(());
        }
        Err(GuardError::Forbidden {
            host: host.to_string(),
            addr: ip,
            class,
        })
    }

    /// The checks a URL passes at registration: http(s), a host, no credentials, not too long,
    /// and a literal address (or `localhost`) must be reachable. Names are resolved at
    /// delivery, where [`Guard::resolve_vetted`] vets them.
    pub fn check_url(&self, raw: &str) -> Result<url::Url, GuardError> {
        let bad = |m: String| Err(GuardError::InvalidUrl(m));
        if raw.len() > self.max_url_len {
            return bad(format!(
                "the URL is longer than {} bytes (webhooks.max_url_len)",
                self.max_url_len
            ));
        }
        let url = match url::Url::parse(raw) {
            Ok(u) => u,
            Err(e) => return bad(format!("not a URL: {e}")),
        };
        if !matches!(url.scheme(), "http" | "https") {
            return bad(format!(
                "only http and https URLs are delivered to, not {}:",
                url.scheme()
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return bad(
                "the URL carries credentials: authenticate receivers by the signature instead"
                    .into(),
            );
        }
        match url.host() {
            None => return bad("the URL has no host".into()),
            Some(url::Host::Ipv4(a)) => self.check_addr(&a.to_string(), IpAddr::V4(a))?,
            Some(url::Host::Ipv6(a)) => self.check_addr(&a.to_string(), IpAddr::V6(a))?,
            Some(url::Host::Domain(d)) => {
                // RFC 6761: these names are the machine itself, whatever a resolver says.
                let d = d.trim_end_matches('.').to_ascii_lowercase();
                if d == "localhost" || d.ends_with(".localhost") {
                    self.check_addr(&d, IpAddr::V4(Ipv4Addr::LOCALHOST))?;
                }
            }
        }
        Ok(url)
    }

    /// Resolves `host` once and vets every address: one forbidden address refuses the name
    /// (a name that mixes public and internal answers is not one to trust).
    pub async fn resolve_vetted(&self, host: &str) -> Result<Vec<IpAddr>, GuardError> {
        if let Ok(ip) = host.trim_matches(['[', ']']).parse::<IpAddr>() {
            self.check_addr(host, ip)?;
            return Ok(vec![ip]);
        }
        let addrs = self
            .lookup
            .lookup(host)
            .await
            .map_err(|e| GuardError::Resolve {
                host: host.to_string(),
                reason: e.to_string(),
            })?;
        if addrs.is_empty() {
            return Err(GuardError::Resolve {
                host: host.to_string(),
                reason: "no addresses".into(),
            });
        }
        for ip in &addrs {
            self.check_addr(host, *ip)?;
        }
        Ok(addrs)
    }
}

/// The HTTP client's resolver: every connection's addresses come from [`Guard::resolve`].
impl reqwest::dns::Resolve for Guard {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let guard = self.clone();
        Box::pin(async move {
            let addrs = guard.resolve_vetted(name.as_str()).await?;
            // The port is the URL's: the connector replaces this one.
            let it: reqwest::dns::Addrs =
                Box::new(addrs.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(it)
        })
    }
}
