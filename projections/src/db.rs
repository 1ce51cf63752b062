//! Connecting to the read model's database and migrating it.

use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};

/// Opens a pool, retrying for up to `wait` while the server starts.
pub async fn connect(
    url: &str,
    max_connections: u32,
    wait: Duration,
) -> Result<PgPool, sqlx::Error> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await
        {
            Ok(pool) => return Ok(pool),
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::debug!(error = %e, "database not ready; retrying");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Applies the embedded migrations (`projections/migrations/`).
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    sqlx::migrate!("./migrations").run(pool).await
}
