//! Authentication and encryption of the broker connection (`kafka.security.*`): TLS with a
//! private CA and client certificates, SASL with PLAIN, SCRAM or OAUTHBEARER (OIDC client
//! credentials), handed to librdkafka as its own settings. Checked at start-up so that a
//! half-configured connection fails with the setting's name, not a broker-side handshake error.

use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize};

use super::Secret;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaSecurity {
    /// `plaintext`, `ssl`, `sasl_plaintext` or `sasl_ssl` (librdkafka `security.protocol`).
    pub protocol: String,
    /// With a `sasl_*` protocol: `PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512` or `OAUTHBEARER`.
    pub sasl_mechanism: String,
    /// PLAIN and SCRAM credentials.
    pub sasl_username: String,
    pub sasl_password: Secret,
    /// OAUTHBEARER: the identity provider's token endpoint (https) and client credentials.
    pub oauth_token_endpoint_url: String,
    pub oauth_client_id: String,
    pub oauth_client_secret: Secret,
    /// OAUTHBEARER: space-separated scopes requested (optional).
    pub oauth_scope: String,
    /// PEM file of the CA that signed the brokers' certificates; empty uses the system's.
    pub ssl_ca_location: String,
    /// PEM client certificate and key for mutual TLS (both or neither).
    pub ssl_certificate_location: String,
    pub ssl_key_location: String,
    pub ssl_key_password: Secret,
}

impl Default for KafkaSecurity {
    fn default() -> Self {
        Self {
            protocol: "plaintext".into(),
            sasl_mechanism: String::new(),
            sasl_username: String::new(),
            sasl_password: Secret::default(),
            oauth_token_endpoint_url: String::new(),
            oauth_client_id: String::new(),
            oauth_client_secret: Secret::default(),
            oauth_scope: String::new(),
            ssl_ca_location: String::new(),
            ssl_certificate_location: String::new(),
            ssl_key_location: String::new(),
            ssl_key_password: Secret::default(),
        }
    }
}

impl KafkaSecurity {
    fn sasl(&self) -> bool {
        self.protocol.starts_with("sasl_")
    }

    fn tls(&self) -> bool {
        self.protocol.ends_with("ssl")
    }

    /// What serde cannot check; the message names the `kafka.security.*` key.
    pub fn validate(&self) -> Result<(), String> {
        let p = self.protocol.as_str();
        if !["plaintext", "ssl", "sasl_plaintext", "sasl_ssl"].contains(&p) {
            let allowed = "plaintext, ssl, sasl_plaintext or sasl_ssl";
            return Err(format!(
                "kafka.security.protocol must be {allowed}, got {p:?}"
            ));
        }
        let m = self.sasl_mechanism.as_str();
        match (self.sasl(), m) {
            (false, "") => {}
            (false, _) => {
                let need = "protocol sasl_ssl (or sasl_plaintext)";
                return Err(format!("kafka.security.sasl_mechanism {m:?} needs {need}"));
            }
            (true, "") => {
                return Err(format!(
                    "kafka.security.protocol {p} needs kafka.security.sasl_mechanism"
                ))
            }
            (true, "PLAIN" | "SCRAM-SHA-256" | "SCRAM-SHA-512") => {
                if self.sasl_username.is_empty() || self.sasl_password.expose().is_empty() {
                    return Err(format!(
                        "kafka.security.sasl_mechanism {m} needs sasl_username and sasl_password"
                    ));
                }
                if m == "PLAIN" && !self.tls() {
                    return Err(
                        "kafka.security.sasl_mechanism PLAIN sends the password in clear: use \
                         protocol sasl_ssl"
                            .into(),
                    );
                }
            }
            (true, "OAUTHBEARER") => {
                let https = url::Url::parse(&self.oauth_token_endpoint_url)
                    .is_ok_and(|u| u.scheme() == "https");
                if !https
                    || self.oauth_client_id.is_empty()
                    || self.oauth_client_secret.expose().is_empty()
                {
                    return Err("kafka.security.sasl_mechanism OAUTHBEARER needs an https \
                         oauth_token_endpoint_url, oauth_client_id and oauth_client_secret"
                        .into());
                }
            }
            (true, other) => {
                return Err(format!(
                    "kafka.security.sasl_mechanism must be PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 \
                     or OAUTHBEARER, got {other:?}"
                ))
            }
        }
        let files = [
            &self.ssl_ca_location,
            &self.ssl_certificate_location,
            &self.ssl_key_location,
        ];
        if !self.tls() && files.iter().any(|f| !f.is_empty()) {
            return Err(format!(
                "kafka.security.ssl_* files are set but protocol {p} does not use TLS"
            ));
        }
        if self.ssl_certificate_location.is_empty() != self.ssl_key_location.is_empty() {
            return Err(
                "kafka.security.ssl_certificate_location and ssl_key_location go together".into(),
            );
        }
        Ok(())
    }

    /// Sets librdkafka's own keys for this connection on `c`.
    pub fn apply(&self, c: &mut ClientConfig) {
        c.set("security.protocol", &self.protocol);
        let mut set = |k: &str, v: &str| {
            if !v.is_empty() {
                c.set(k, v);
            }
        };
        if self.sasl() {
            set("sasl.mechanism", &self.sasl_mechanism);
            if self.sasl_mechanism == "OAUTHBEARER" {
                set("sasl.oauthbearer.method", "oidc");
                set(
                    "sasl.oauthbearer.token.endpoint.url",
                    &self.oauth_token_endpoint_url,
                );
                set("sasl.oauthbearer.client.id", &self.oauth_client_id);
                set(
                    "sasl.oauthbearer.client.secret",
                    self.oauth_client_secret.expose(),
                );
                set("sasl.oauthbearer.scope", &self.oauth_scope);
            } else {
                set("sasl.username", &self.sasl_username);
                set("sasl.password", self.sasl_password.expose());
            }
        }
        if self.tls() {
            set("ssl.ca.location", &self.ssl_ca_location);
            set("ssl.certificate.location", &self.ssl_certificate_location);
            set("ssl.key.location", &self.ssl_key_location);
            set("ssl.key.password", self.ssl_key_password.expose());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scram() -> KafkaSecurity {
        KafkaSecurity {
            protocol: "sasl_ssl".into(),
            sasl_mechanism: "SCRAM-SHA-512".into(),
            sasl_username: "roar".into(),
            sasl_password: Secret::new("s3cret-password"),
            ssl_ca_location: "/etc/roar/kafka-ca.pem".into(),
            ..KafkaSecurity::default()
        }
    }

    #[test]
    fn scram_over_tls_reaches_librdkafka_as_its_own_keys() {
        let s = scram();
        s.validate().unwrap();
        let mut c = ClientConfig::new();
        s.apply(&mut c);
        assert_eq!(c.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(c.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(c.get("sasl.username"), Some("roar"));
        assert_eq!(c.get("sasl.password"), Some("s3cret-password"));
        assert_eq!(c.get("ssl.ca.location"), Some("/etc/roar/kafka-ca.pem"));
        assert_eq!(c.get("ssl.key.location"), None);
        assert!(!format!("{s:?}").contains("s3cret"), "a password in Debug");
    }

    #[test]
    fn oauthbearer_uses_oidc_client_credentials() {
        let s = KafkaSecurity {
            protocol: "sasl_ssl".into(),
            sasl_mechanism: "OAUTHBEARER".into(),
            oauth_token_endpoint_url: "https://idp.example/token".into(),
            oauth_client_id: "roar-worker".into(),
            oauth_client_secret: Secret::new("client-secret-value"),
            ..KafkaSecurity::default()
        };
        s.validate().unwrap();
        let mut c = ClientConfig::new();
        s.apply(&mut c);
        assert_eq!(c.get("sasl.oauthbearer.method"), Some("oidc"));
        assert_eq!(
            c.get("sasl.oauthbearer.token.endpoint.url"),
            Some("https://idp.example/token")
        );
        assert_eq!(c.get("sasl.username"), None);
    }

    #[test]
    fn the_default_is_plaintext_and_sets_nothing_else() {
        let s = KafkaSecurity::default();
        s.validate().unwrap();
        let mut c = ClientConfig::new();
        s.apply(&mut c);
        assert_eq!(c.get("security.protocol"), Some("plaintext"));
        assert_eq!(c.get("sasl.mechanism"), None);
    }

    #[test]
    fn half_configured_connections_are_refused_by_name() {
        let cases: Vec<(KafkaSecurity, &str)> = vec![
            (
                KafkaSecurity {
                    protocol: "tls".into(),
                    ..KafkaSecurity::default()
                },
                "kafka.security.protocol",
            ),
            (
                KafkaSecurity {
                    sasl_mechanism: String::new(),
                    ..scram()
                },
                "needs kafka.security.sasl_mechanism",
            ),
            (
                KafkaSecurity {
                    sasl_password: Secret::default(),
                    ..scram()
                },
                "sasl_password",
            ),
            (
                KafkaSecurity {
                    sasl_mechanism: "PLAIN".into(),
                    protocol: "sasl_plaintext".into(),
                    ssl_ca_location: String::new(),
                    ..scram()
                },
                "in clear",
            ),
            (
                KafkaSecurity {
                    sasl_mechanism: "GSSAPI".into(),
                    ..scram()
                },
                "must be PLAIN",
            ),
            (
                KafkaSecurity {
                    sasl_mechanism: "OAUTHBEARER".into(),
                    oauth_token_endpoint_url: "http://idp.example/token".into(),
                    ..scram()
                },
                "https",
            ),
            (
                KafkaSecurity {
                    ssl_certificate_location: "/c.pem".into(),
                    ..scram()
                },
                "go together",
            ),
            (
                KafkaSecurity {
                    ssl_ca_location: "/ca.pem".into(),
                    ..KafkaSecurity::default()
                },
                "does not use TLS",
            ),
            (
                KafkaSecurity {
                    sasl_mechanism: "PLAIN".into(),
                    ..KafkaSecurity::default()
                },
                "needs protocol sasl_ssl",
            ),
        ];
        for (s, why) in cases {
            let e = s.validate().unwrap_err();
            assert!(e.contains(why), "{s:?}: {e}");
            assert!(!e.contains("s3cret"), "{e}");
        }
    }
}
