//! The sweeper: what abandoned uploads leave behind is removed, so that it neither blocks its
//! owner nor fills the store.
//!
//! - A direct upload still pending `http.upload_grace_seconds` after its link expired is
//!   deleted (`FileDeleted`, reason `upload_expired`) and its staged object removed.
//! - A staged object (`staging/…`) or temporary upload object (`uploads/tmp/…`) older than
//!   that is a leftover (an upload never completed, a process that died between writing and
//!   publishing) and is removed.
//!
//! - Upload registrations (who registered what) older than that are forgotten.
//! - The objects of files deleted within that time are erased again (a worker canceled by the
//!   deletion may have finished a write after it).
//!
//! Every replica runs the sweeper; a transaction-scoped advisory lock lets one sweep at a time.

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::commands;
use crate::AppState;

/// The advisory lock key of the sweep (any constant other roar code does not use).
const LOCK_KEY: i64 = 0x726f_6172_7377_6570; // "roarswep"
/// Most files and objects one sweep handles of each kind; the next sweep takes the rest.
const BATCH: usize = 500;

/// What one sweep removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Swept {
    pub expired_uploads: usize,
    pub objects: usize,
}

/// Sweeps every `http.sweep_interval_seconds` until `cancel` fires (not at all for 0).
pub(crate) fn spawn(s: AppState, cancel: CancellationToken) {
    let every = s.cfg.http.sweep_interval_seconds;
    if every == 0 {
        return;
    }
    let every = std::time::Duration::from_secs(every);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            match sweep(&s).await {
                Ok(Some(n)) if n != Swept::default() => {
                    tracing::info!(
                        expired_uploads = n.expired_uploads,
                        objects = n.objects,
                        "swept"
                    );
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "sweep failed; retried next interval"),
            }
        }
    });
}

/// One sweep; `None` when another replica holds the sweep lock.
pub(crate) async fn sweep(s: &AppState) -> Result<Option<Swept>, crate::ApiError> {
    let mut lock = s.db.begin().await?;
    let held: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(LOCK_KEY)
        .fetch_one(&mut *lock)
        .await?;
    if !held {
        return Ok(None);
    }
    let http = &s.cfg.http;
    let keep = chrono::Duration::seconds(
        i64::try_from(
            http.link_ttl_seconds
                .saturating_add(http.upload_grace_seconds),
        )
        .unwrap_or(i64::MAX / 1_000_000),
    );
    let cutoff = Utc::now()
        .checked_sub_signed(keep)
        .unwrap_or(chrono::DateTime::<Utc>::MIN_UTC);
    let mut swept = Swept::default();
    // A pending file's `updated_at` is its (latest) registration: its link expired
    // `link_ttl_seconds` later.
    let pending = s.read.pending_uploads_before(cutoff, BATCH as i64).await?;
    for file_id in pending {
        commands::files::upload_expired(s, &file_id).await?;
        let staged = roar_common::storage::staging_key(&file_id);
        if let Err(e) = s.storage.delete(&staged).await {
            tracing::warn!(%file_id, error = %e, "staged object not deleted");
        }
        tracing::info!(%file_id, "direct upload expired");
        swept.expired_uploads += 1;
    }
    // A staged object is never newer than its registration's link, and a temporary object
    // lives for one request: anything this old is a leftover.
    for prefix in ["staging/", "uploads/tmp/"] {
        let stale = s
            .storage
            .list_older(prefix, cutoff, BATCH)
            .await
            .map_err(crate::ApiError::internal)?;
        for key in stale {
            s.storage
                .delete(&key)
                .await
                .map_err(crate::ApiError::internal)?;
            swept.objects += 1;
        }
    }
    // A worker that was mid-write when its file was deleted may have written after the
    // deletion erased the file's objects: erase them again while such a write can still land.
    let recently = roar_projections::keys::erased_since(&s.db, cutoff, BATCH as i64).await?;
    for file_id in recently {
        swept.objects += commands::erase::erase_objects(s, &file_id).await?;
    }
    crate::quotas::forget_old(s).await?;
    crate::uploads::forget_registrations(s, cutoff).await?;
    lock.commit().await?;
    Ok(Some(swept))
}
