//! The `roar` binary's roles, as a library so tests can drive them: starting each service
//! from a [`roar_common::Config`] ([`services`]) with the metrics and probe endpoint of the roles
//! without an API ([`ops`]), and the local stack that `roar dev` and the
//! end-to-end tests run ([`stack`]: a tansu broker and a throw-away Postgres cluster).

pub mod dev;
pub mod dlq;
pub mod ops;
pub mod replay;
pub mod services;
pub mod stack;
pub mod topics;
