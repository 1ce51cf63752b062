//! The broker's state in PostgreSQL. `roar dev` runs tansu on its PostgreSQL storage engine,
//! in a schema of its own (`tansu`) in the database roar itself uses: the log survives a
//! restart with the rest of the dev state, and the one tansu build (in-memory and PostgreSQL
//! engines) serves both the tests and `roar dev`. tansu creates no tables on PostgreSQL, so
//! this module does, before the broker starts (`tansu_pg.sql`, idempotent).

use anyhow::{Context, Result};
use sqlx::Connection;

/// The schema holding the broker's tables.
pub const SCHEMA: &str = "tansu";

const TABLES: &str = include_str!("tansu_pg.sql");

/// Creates the broker's schema and tables in the database at `database_url` (keeping what an
/// earlier run made) and returns the storage URL to start tansu with.
pub async fn prepare(database_url: &str) -> Result<String> {
    let mut conn = sqlx::PgConnection::connect(database_url)
        .await
        .context("connecting to PostgreSQL for the broker's tables")?;
    // One simple-protocol batch on one connection, so `set search_path` covers the tables.
    let ddl =
        format!("create schema if not exists {SCHEMA};\nset search_path to {SCHEMA};\n{TABLES}");
    sqlx::raw_sql(&ddl)
        .execute(&mut conn)
        .await
        .context("creating the broker's tables (schema tansu)")?;
    conn.close().await.ok();
    Ok(storage_url(database_url))
}

/// `database_url` with every session of the broker confined to [`SCHEMA`] (tansu's queries
/// name tables without a schema, and roar's own tables live in `public`).
pub fn storage_url(database_url: &str) -> String {
    let sep = if database_url.contains('?') { '&' } else { '?' };
    format!("{database_url}{sep}options=-csearch_path%3D{SCHEMA}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_storage_url_confines_the_broker_to_its_schema() {
        assert_eq!(
            storage_url("postgres://roar@127.0.0.1:5433/roar"),
            "postgres://roar@127.0.0.1:5433/roar?options=-csearch_path%3Dtansu"
        );
        assert_eq!(
            storage_url("postgres://u:p@db/roar?sslmode=disable"),
            "postgres://u:p@db/roar?sslmode=disable&options=-csearch_path%3Dtansu"
        );
    }
}
