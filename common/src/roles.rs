//! Which secrets each production role may hold, checked when the role starts.
//!
//! A model worker decodes untrusted audio; if it held the token key, one decoder exploit would
//! mint admin tokens. So a role that never checks tokens or signs links refuses to start with
//! those keys in its environment, and the API refuses keys that are still a template's
//! placeholder. `roar dev` skips these checks: it makes its own random keys per dev dir.

use crate::config::{looks_like_placeholder, Config, ConfigError};

/// A long-running (or one-shot) process of the deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The HTTP API: verifies tokens, signs links.
    Orchestrator,
    /// The projector and its `migrate`/`rebuild` commands: Postgres only.
    Projector,
    /// The probe and the model workers: Kafka and the object store only.
    Processor,
    /// The webhook dispatcher: Kafka, Postgres and the outside world.
    Webhooks,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Orchestrator => "orchestrator",
            Role::Projector => "projector",
            Role::Processor => "processor",
            Role::Webhooks => "webhooks",
        }
    }
}

impl Config {
    /// The start-up check of `role` in a deployment: it holds no key it does not use, and the
    /// keys it does use are not placeholders.
    pub fn check_role_secrets(&self, role: Role) -> Result<(), ConfigError> {
        let auth = &self.auth;
        let held = [
            (
                "auth.jwt_secret",
                "ROAR_AUTH__JWT_SECRET",
                auth.jwt_secret.expose(),
            ),
            (
                "auth.link_secret",
                "ROAR_AUTH__LINK_SECRET",
                auth.link_secret.expose(),
            ),
            (
                "auth.link_previous_keys",
                "ROAR_AUTH__LINK_PREVIOUS_KEYS",
                auth.link_previous_keys.expose(),
            ),
        ];
        // The webhook sealing key: the API seals with it, the dispatcher opens with it, the
        // others never hold it.
        let sealing = [
            (
                "webhooks.secret_key",
                "ROAR_WEBHOOKS__SECRET_KEY",
                self.webhooks.secret_key.expose(),
            ),
            (
                "webhooks.previous_secret_keys",
                "ROAR_WEBHOOKS__PREVIOUS_SECRET_KEYS",
                self.webhooks.previous_secret_keys.expose(),
            ),
        ];
        let placeholder = |list: &[(&str, &str, &str)]| {
            list.iter()
                .find(|(_, _, v)| !v.is_empty() && looks_like_placeholder(v))
                .map(|(key, var, _)| {
                    ConfigError::Invalid(format!(
                        "{key} ({var}) looks like a placeholder or an example value: set a \
                         random one (e.g. `openssl rand -hex 32`); only `roar dev` runs \
                         with development keys"
                    ))
                })
        };
        match role {
            Role::Orchestrator => {
                if let Some(e) = placeholder(&sealing) {
                    return Err(e);
                }
                for (key, var, value) in held {
                    if !value.is_empty() && looks_like_placeholder(value) {
                        return Err(ConfigError::Invalid(format!(
                            "{key} ({var}) looks like a placeholder or an example value: set a \
                             random one (e.g. `openssl rand -hex 32`); only `roar dev` runs \
                             with development keys"
                        )));
                    }
                }
                // Without the key every registration would be refused (503) at run time: a
                // deployment that forgot it is told now, not by its users.
                if self.webhooks.enabled && self.webhooks.secret_key.expose().is_empty() {
                    return Err(ConfigError::Invalid(
                        "webhooks.secret_key (ROAR_WEBHOOKS__SECRET_KEY) is not set: the API seals \
                         webhook signing secrets with it (the dispatcher's key; e.g. `openssl \
                         rand -hex 32`), or set webhooks.enabled=false \
                         (ROAR_WEBHOOKS__ENABLED) to run without webhooks"
                            .into(),
                    ));
                }
                Ok(())
            }
            Role::Projector | Role::Processor | Role::Webhooks => {
                if let Some((key, var, _)) = held.iter().find(|(_, _, v)| !v.is_empty()) {
                    return Err(ConfigError::Invalid(format!(
                        "{key} ({var}) is set, but the {} never checks tokens nor signs links: \
                         remove it from this role's environment (each role holds only the \
                         secrets it uses; see docs/security.md)",
                        role.name()
                    )));
                }
                if role == Role::Webhooks {
                    if self.webhooks.secret_key.expose().is_empty() {
                        return Err(ConfigError::Invalid(
                            "webhooks.secret_key (ROAR_WEBHOOKS__SECRET_KEY) is not set: the \
                             dispatcher opens the sealed signing secrets with it (the API's key; \
                             see docs/security.md)"
                                .into(),
                        ));
                    }
                    if let Some(e) = placeholder(&sealing) {
                        return Err(e);
                    }
                } else if let Some((key, var, _)) = sealing.iter().find(|(_, _, v)| !v.is_empty()) {
                    return Err(ConfigError::Invalid(format!(
                        "{key} ({var}) is set, but the {} never seals nor opens webhook secrets: \
                         remove it from this role's environment (each role holds only the \
                         secrets it uses; see docs/security.md)",
                        role.name()
                    )));
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    const TOKEN_KEY: &str = "6f1d0c9a8b7e2f4351a0c9d8e7f6b5a4";
    const LINK_KEY: &str = "a93c7e1f0b2d4865c7e9f1a3b5d70246";

    const SEALING_KEY: &str = "5d2b8f0e4a6c1e3f7b9d0a2c4e6f8b1d";

    /// A configuration as the role would have it: the API and the dispatcher with the sealing key.
    fn base(role: Role) -> Config {
        let mut c = Config::default();
        if matches!(role, Role::Webhooks | Role::Orchestrator) {
            c.webhooks.secret_key = Secret::new(SEALING_KEY);
        }
        c
    }

    #[test]
    fn only_the_dispatcher_holds_the_sealing_key_and_it_needs_it() {
        let e = Config::default()
            .check_role_secrets(Role::Webhooks)
            .unwrap_err()
            .to_string();
        assert!(e.contains("ROAR_WEBHOOKS__SECRET_KEY"), "{e}");
        assert!(base(Role::Webhooks)
            .check_role_secrets(Role::Webhooks)
            .is_ok());
        for role in [Role::Webhooks, Role::Orchestrator] {
            let mut c = base(role);
            c.webhooks.secret_key = Secret::new("REPLACE-ME-with-a-long-random-sealing-key");
            let e = c.check_role_secrets(role).unwrap_err().to_string();
            assert!(
                e.contains("ROAR_WEBHOOKS__SECRET_KEY") && e.contains("placeholder"),
                "{e}"
            );
        }
        for role in [Role::Processor, Role::Projector] {
            let mut c = Config::default();
            c.webhooks.secret_key = Secret::new(SEALING_KEY);
            let e = c.check_role_secrets(role).unwrap_err().to_string();
            assert!(e.contains("ROAR_WEBHOOKS__SECRET_KEY"), "{e}");
            assert!(!e.contains(SEALING_KEY), "a secret in an error: {e}");
        }
    }

    #[test]
    fn the_api_needs_the_sealing_key_unless_webhooks_are_off() {
        let mut c = Config::default();
        c.auth.jwt_secret = Secret::new(TOKEN_KEY);
        let e = c
            .check_role_secrets(Role::Orchestrator)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("ROAR_WEBHOOKS__SECRET_KEY") && e.contains("webhooks.enabled"),
            "{e}"
        );
        c.webhooks.enabled = false;
        assert!(c.check_role_secrets(Role::Orchestrator).is_ok());
        c.webhooks.enabled = true;
        c.webhooks.secret_key = Secret::new(SEALING_KEY);
        assert!(c.check_role_secrets(Role::Orchestrator).is_ok());
    }

    #[test]
    fn workers_and_the_projector_refuse_the_api_keys() {
        for role in [Role::Processor, Role::Projector, Role::Webhooks] {
            assert!(base(role).check_role_secrets(role).is_ok());
            let mut c = base(role);
            c.auth.jwt_secret = Secret::new(TOKEN_KEY);
            let e = c.check_role_secrets(role).unwrap_err().to_string();
            assert!(e.contains("ROAR_AUTH__JWT_SECRET"), "{e}");
            assert!(!e.contains(TOKEN_KEY), "a secret in an error: {e}");
            let mut c = base(role);
            c.auth.link_secret = Secret::new(LINK_KEY);
            let e = c.check_role_secrets(role).unwrap_err().to_string();
            assert!(e.contains("ROAR_AUTH__LINK_SECRET"), "{e}");
        }
    }

    #[test]
    fn the_api_refuses_template_keys_and_accepts_random_ones() {
        let mut c = base(Role::Orchestrator);
        c.auth.jwt_secret = Secret::new(TOKEN_KEY);
        c.auth.link_secret = Secret::new(LINK_KEY);
        assert!(c.check_role_secrets(Role::Orchestrator).is_ok());
        for shipped in [
            "REPLACE-ME-with-a-long-random-secret",
            "dev-only-jwt-secret-change-me",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        ] {
            let mut t = c.clone();
            t.auth.jwt_secret = Secret::new(shipped);
            let e = t.check_role_secrets(Role::Orchestrator).unwrap_err();
            assert!(e.to_string().contains("placeholder"), "{shipped}: {e}");
        }
    }
}
