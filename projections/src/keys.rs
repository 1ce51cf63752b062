//! Crypto-shredding of the personal fields of file events.
//!
//! The event log is append-only and replayed by `roar projector rebuild`, so a deleted song's
//! name cannot be removed from it; it is never written there readable instead. Each file gets a
//! random 256-bit data key in the `file_keys` table, written (durably) by the orchestrator
//! before the first event it seals. [`seal`] moves the personal fields of a `FileRegistered`,
//! `FileUploaded` or `FileGenerationRequested` (the filename; a generation's prompt) into
//! `sealed`, AES-256-GCM with the file id as associated data, leaving a placeholder that keeps
//! only the extension (the probe's decoding hint). The projector [`open`]s them on apply and
//! on rebuild. Deleting the file destroys the key ([`erase`]) and records the deletion's time:
//! the projector skips every event of the file up to then, so neither a row nor a name comes
//! back, while the ciphertext left on the topics can no longer be read by anyone.
//!
//! The key table is not one of the read model's tables: a rebuild reads it where it is and
//! never moves or truncates it. Keys are never logged (`DataKey` prints `***`).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use roar_schemas::{FileBody, FileEvent};
use serde::{Deserialize, Serialize};
use sqlx::{PgExecutor, PgPool};

/// The data key table (in the live model's schema).
pub const TABLE: &str = "file_keys";
/// Bytes of a data key (AES-256).
pub const KEY_LEN: usize = 32;
/// A model request's free-text prompt (musicgen's `prompt`): personal, never on a topic readable.
pub const PROMPT: &str = "prompt";
/// Where the worker reads a request's prompt: `uploads/{file_id}/prompts/{job_id}`, erased with
/// the song ([`roar_common::storage::prompt_key`]).
pub const PROMPT_OBJECT: &str = roar_common::storage::PROMPT_OBJECT;
/// The prompt sealed with the file's key, for the projector (hex).
pub const PROMPT_SEALED: &str = roar_common::storage::PROMPT_SEALED;
/// The first byte of a sealed field: the format (AES-256-GCM, 12-byte nonce, JSON inside).
const FORMAT: u8 = 1;

/// Why a key could not be had or a field not be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Transient: the database is away or busy.
    #[error("file keys: {0}")]
    Db(#[from] sqlx::Error),
    /// The system's random source failed: nothing can be sealed (retryable at best by luck).
    #[error("no randomness for a data key or nonce")]
    Random,
    /// The ciphertext is not ours, or the key is not the one it was sealed with.
    #[error("sealed fields do not open with the file's key")]
    Unreadable,
}

impl KeyError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, KeyError::Db(_))
    }
}

/// One file's data key. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct DataKey([u8; KEY_LEN]);

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(***)")
    }
}

impl DataKey {
    /// A fresh random key.
    pub fn generate() -> Result<Self, KeyError> {
        let mut k = [0u8; KEY_LEN];
        SystemRandom::new()
            .fill(&mut k)
            .map_err(|_| KeyError::Random)?;
        Ok(Self(k))
    }

    fn from_slice(b: &[u8]) -> Option<Self> {
        <[u8; KEY_LEN]>::try_from(b).ok().map(Self)
    }

    fn aead(&self) -> LessSafeKey {
        // The length is fixed by the type, the only way this constructor fails.
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &self.0).expect("a 32-byte AES-256 key"))
    }
}

/// The personal fields of a file event, as sealed.
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
struct Personal {
    filename: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    prompt: String,
}

/// What stands for a sealed filename in the body: `sealed` with the original extension when it
/// is a plain short one (the probe uses it as a decoding hint), else `sealed`.
pub fn placeholder(filename: &str) -> String {
    match filename.rsplit_once('.') {
        Some((stem, ext))
            if !stem.is_empty()
                && (1..=8).contains(&ext.len())
                && ext.chars().all(|c| c.is_ascii_alphanumeric()) =>
        {
            format!("sealed.{}", ext.to_ascii_lowercase())
        }
        _ => "sealed".into(),
    }
}

/// Whether this event carries personal fields (and so is sealed before it is sent).
pub fn has_personal_fields(ev: &FileEvent) -> bool {
    matches!(
        ev.body,
        FileBody::Registered { .. } | FileBody::Uploaded(_) | FileBody::GenerationRequested(_)
    )
}

/// Moves the event's personal fields into `sealed`, encrypted with `key`; events without
/// personal fields are left as they are.
pub fn seal(ev: &mut FileEvent, key: &DataKey) -> Result<(), KeyError> {
    let personal = match &mut ev.body {
        FileBody::Registered { info, .. } | FileBody::Uploaded(info) => {
            let filename = std::mem::take(&mut info.filename);
            info.filename = placeholder(&filename);
            Personal {
                filename,
                prompt: String::new(),
            }
        }
        FileBody::GenerationRequested(g) => {
            let filename = std::mem::take(&mut g.filename);
            g.filename = placeholder(&filename);
            Personal {
                filename,
                prompt: std::mem::take(&mut g.prompt),
            }
        }
        _ => return Ok(()),
    };
    // Serializing two strings cannot fail.
    let buf = serde_json::to_vec(&personal).unwrap_or_default();
    ev.sealed = Some(seal_bytes(key, &ev.file_id, buf)?);
    Ok(())
}

/// `plain` encrypted with `key`, bound to `file_id`: format byte, random nonce, ciphertext.
fn seal_bytes(key: &DataKey, file_id: &str, mut buf: Vec<u8>) -> Result<Vec<u8>, KeyError> {
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| KeyError::Random)?;
    key.aead()
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(file_id.as_bytes()),
            &mut buf,
        )
        .map_err(|_| KeyError::Random)?;
    let mut sealed = Vec::with_capacity(1 + NONCE_LEN + buf.len());
    sealed.push(FORMAT);
    sealed.extend_from_slice(&nonce);
    sealed.extend_from_slice(&buf);
    Ok(sealed)
}

/// The plain bytes of what [`seal_bytes`] made with `key` for `file_id`.
fn open_bytes(key: &DataKey, file_id: &str, sealed: &[u8]) -> Result<Vec<u8>, KeyError> {
    if sealed.len() < 1 + NONCE_LEN || sealed[0] != FORMAT {
        return Err(KeyError::Unreadable);
    }
    let nonce =
        <[u8; NONCE_LEN]>::try_from(&sealed[1..1 + NONCE_LEN]).map_err(|_| KeyError::Unreadable)?;
    let mut buf = sealed[1 + NONCE_LEN..].to_vec();
    let n = key
        .aead()
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(file_id.as_bytes()),
            &mut buf,
        )
        .map_err(|_| KeyError::Unreadable)?
        .len();
    buf.truncate(n);
    Ok(buf)
}

/// Puts the sealed personal fields back into the body and clears `sealed`. An event without
/// `sealed` (written before version 3, or without personal fields) is left as it is.
pub fn open(ev: &mut FileEvent, key: &DataKey) -> Result<(), KeyError> {
    let Some(sealed) = &ev.sealed else {
        return Ok(());
    };
    let plain = open_bytes(key, &ev.file_id, sealed)?;
    let p: Personal = serde_json::from_slice(&plain).map_err(|_| KeyError::Unreadable)?;
    match &mut ev.body {
        FileBody::Registered { info, .. } | FileBody::Uploaded(info) => info.filename = p.filename,
        FileBody::GenerationRequested(g) => {
            g.filename = p.filename;
            g.prompt = p.prompt;
        }
        _ => {}
    }
    ev.sealed = None;
    Ok(())
}

/// A job request's params with its prompt sealed in: `prompt` moved to
/// [`PROMPT_SEALED`] (hex of [`seal_bytes`]) beside `prompt_object`, the object the worker reads
/// it from. Params without a (non-empty) prompt come back unchanged.
pub fn seal_prompt(
    params: &serde_json::Value,
    file_id: &str,
    object: &str,
    key: &DataKey,
) -> Result<serde_json::Value, KeyError> {
    let mut p = params.clone();
    let Some(obj) = p.as_object_mut() else {
        return Ok(p);
    };
    let Some(prompt) = obj.get(PROMPT).and_then(serde_json::Value::as_str) else {
        return Ok(p);
    };
    if prompt.is_empty() {
        return Ok(p);
    }
    let sealed = seal_bytes(key, file_id, prompt.as_bytes().to_vec())?;
    obj.remove(PROMPT);
    obj.insert(PROMPT_OBJECT.into(), object.into());
    obj.insert(PROMPT_SEALED.into(), hex::encode(sealed).into());
    Ok(p)
}

/// The params a client sent, back from what [`seal_prompt`] made: the prompt opened with the
/// file's `key`, the two internal fields gone. `None` when there is nothing sealed; without a
/// key that opens it the internal fields go and the prompt stays unknown.
pub fn open_prompt(params_json: &str, file_id: &str, key: Option<&DataKey>) -> Option<String> {
    if !params_json.contains(PROMPT_SEALED) {
        return None;
    }
    let mut p: serde_json::Value = serde_json::from_str(params_json).ok()?;
    let obj = p.as_object_mut()?;
    let sealed = obj.remove(PROMPT_SEALED)?;
    obj.remove(PROMPT_OBJECT);
    let prompt = sealed
        .as_str()
        .and_then(|h| hex::decode(h).ok())
        .zip(key)
        .and_then(|(b, k)| open_bytes(k, file_id, &b).ok())
        .and_then(|b| String::from_utf8(b).ok());
    if let Some(prompt) = prompt {
        obj.insert(PROMPT.into(), prompt.into());
    }
    Some(roar_schemas::ids::canonical_json(&p))
}

/// The key to seal a job request's personal params with: the file's key, or a new one when
/// it has none and was never deleted (a file uploaded before keys existed); `None` when the
/// file was deleted and has not begun a new life since (nothing may be requested on it).
/// Unlike [`key_for_sealing`], a deleted file's key is never made again here.
pub async fn key_for_request(pool: &PgPool, file_id: &str) -> Result<Option<DataKey>, KeyError> {
    let fresh = DataKey::generate()?;
    let key: Option<Vec<u8>> = sqlx::query_scalar(
        "INSERT INTO file_keys (file_id, data_key, created_at) VALUES ($1, $2, now())
         ON CONFLICT (file_id) DO UPDATE
           SET data_key = CASE WHEN file_keys.erased_before IS NULL
                               THEN COALESCE(file_keys.data_key, EXCLUDED.data_key)
                               ELSE file_keys.data_key END
         RETURNING data_key",
    )
    .bind(file_id)
    .bind(fresh.0.as_slice())
    .fetch_one(pool)
    .await?;
    match key {
        Some(k) => DataKey::from_slice(&k)
            .map(Some)
            .ok_or(KeyError::Unreadable),
        None => Ok(None),
    }
}

/// The key to seal a file's events with: the file's existing key, or a new one written before
/// it is returned (so the projector finds it for every event sealed with it). A file deleted
/// before (its id comes from owner and content, so an upload of the same song again has the
/// same id) gets a new key; its erased past stays erased.
pub async fn key_for_sealing(pool: &PgPool, file_id: &str) -> Result<DataKey, KeyError> {
    let fresh = DataKey::generate()?;
    let key: Vec<u8> = sqlx::query_scalar(
        "INSERT INTO file_keys (file_id, data_key, created_at) VALUES ($1, $2, now())
         ON CONFLICT (file_id) DO UPDATE
           SET data_key = COALESCE(file_keys.data_key, EXCLUDED.data_key)
         RETURNING data_key",
    )
    .bind(file_id)
    .bind(fresh.0.as_slice())
    .fetch_one(pool)
    .await?;
    DataKey::from_slice(&key).ok_or(KeyError::Unreadable)
}

/// Destroys the file's key and marks every event of the file up to `erased_before` (the
/// deletion event's own time) as erased. Idempotent; a later deletion moves the mark forward.
pub async fn erase(
    pool: &PgPool,
    file_id: &str,
    erased_before: DateTime<Utc>,
) -> Result<(), KeyError> {
    sqlx::query(
        "INSERT INTO file_keys (file_id, data_key, created_at, erased_before)
         VALUES ($1, NULL, now(), $2)
         ON CONFLICT (file_id) DO UPDATE
           SET data_key = NULL,
               erased_before = GREATEST(file_keys.erased_before, EXCLUDED.erased_before)",
    )
    .bind(file_id)
    .bind(erased_before)
    .execute(pool)
    .await?;
    Ok(())
}

/// Whether the file was deleted and has not begun a new life since: its key is destroyed
/// ([`erase`]) and none was made again (an upload of the same content makes one). The API
/// asks before it requests any work on a file, so a request accepted after a deletion but
/// before the projector removed the file's rows starts nothing.
pub async fn is_erased<'e>(db: impl PgExecutor<'e>, file_id: &str) -> Result<bool, KeyError> {
    let erased: Option<bool> = sqlx::query_scalar(
        "SELECT data_key IS NULL FROM file_keys WHERE file_id = $1 AND erased_before IS NOT NULL",
    )
    .bind(file_id)
    .fetch_optional(db)
    .await?;
    Ok(erased == Some(true))
}

/// Files deleted since `since`, newest first, at most `max`: the sweeper erases whatever a
/// worker still wrote for them after the deletion.
pub async fn erased_since(
    pool: &PgPool,
    since: DateTime<Utc>,
    max: i64,
) -> Result<Vec<String>, KeyError> {
    Ok(sqlx::query_scalar(
        "SELECT file_id FROM file_keys WHERE data_key IS NULL AND erased_before >= $1
         ORDER BY erased_before DESC LIMIT $2",
    )
    .bind(since)
    .bind(max)
    .fetch_all(pool)
    .await?)
}

/// What the projector knows of one file's key.
#[derive(Debug, Clone, Default)]
pub(crate) struct KeyState {
    pub key: Option<DataKey>,
    pub erased_before: Option<DateTime<Utc>>,
}

impl KeyState {
    /// Whether an event of the file that occurred at `at` was erased: it happened before the
    /// deletion, or the file has no key since (a late event of a deleted file, like a worker's
    /// cancel confirmation).
    pub fn erased(&self, at: DateTime<Utc>) -> bool {
        match self.erased_before {
            Some(t) => at <= t || self.key.is_none(),
            None => false,
        }
    }
}

/// A `file_keys` row: file id, data key (none once destroyed), erasure mark.
type KeyRow = (String, Option<Vec<u8>>, Option<DateTime<Utc>>);

/// The key state of `file_ids`, from `table` (the live model's `file_keys`, qualified when
/// read from a rebuild's side schema). Files without a row have none.
pub(crate) async fn load<'e>(
    db: impl PgExecutor<'e>,
    table: &str,
    file_ids: &[String],
) -> Result<HashMap<String, KeyState>, sqlx::Error> {
    if file_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<KeyRow> = sqlx::query_as(&format!(
        "SELECT file_id, data_key, erased_before FROM {table} WHERE file_id = ANY($1)"
    ))
    .bind(file_ids)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, key, erased_before)| {
            let key = key.as_deref().and_then(DataKey::from_slice);
            (id, KeyState { key, erased_before })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use roar_schemas::{EventMeta, FileInfo, Generation};

    use super::*;

    fn uploaded(name: &str) -> FileEvent {
        FileEvent {
            sealed: None,
            meta: EventMeta::new("r", "user:alice"),
            file_id: "f0123".into(),
            body: FileBody::Uploaded(FileInfo {
                owner: "alice".into(),
                filename: name.into(),
                mime: "audio/flac".into(),
                size: 10,
                sha256: "ab".repeat(32),
                storage_key: "uploads/f0123/original".into(),
            }),
        }
    }

    #[test]
    fn a_sealed_name_is_not_in_the_wire_bytes_and_opens_with_its_key_only() {
        let key = DataKey::generate().unwrap();
        let mut ev = uploaded("Grandma's birthday (secret).flac");
        let original = ev.clone();
        seal(&mut ev, &key).unwrap();
        let bytes = roar_schemas::encode(&ev);
        assert!(!bytes.windows(7).any(|w| w == b"Grandma"));
        let FileBody::Uploaded(info) = &ev.body else {
            unreachable!()
        };
        assert_eq!(info.filename, "sealed.flac");

        let mut back: FileEvent = roar_schemas::decode(&bytes).unwrap();
        let other = DataKey::generate().unwrap();
        assert!(matches!(
            open(&mut back.clone(), &other),
            Err(KeyError::Unreadable)
        ));
        // Bound to its file: the same ciphertext moved to another file does not open.
        let mut moved = back.clone();
        moved.file_id = "f9999".into();
        assert!(open(&mut moved, &key).is_err());
        open(&mut back, &key).unwrap();
        assert_eq!(back, original);
    }

    #[test]
    fn a_generation_seals_name_and_prompt() {
        let key = DataKey::generate().unwrap();
        let g = Generation {
            owner: "alice".into(),
            filename: "lullaby for Mia.wav".into(),
            prompt: "lullaby for Mia".into(),
            job_id: "j1".into(),
            model: "musicgen".into(),
            variation: "small".into(),
            duration_seconds: 4.0,
        };
        let mut ev = FileEvent {
            body: FileBody::GenerationRequested(g),
            ..uploaded("x")
        };
        let original = ev.clone();
        seal(&mut ev, &key).unwrap();
        let bytes = roar_schemas::encode(&ev);
        assert!(!bytes.windows(3).any(|w| w == b"Mia"));
        open(&mut ev, &key).unwrap();
        assert_eq!(ev, original);
    }

    #[test]
    fn unsealed_events_open_unchanged_and_others_are_not_sealed() {
        let key = DataKey::generate().unwrap();
        let written = uploaded("song.wav");
        let mut old = written.clone();
        open(&mut old, &key).unwrap();
        assert_eq!(old, written);
        let mut deleted = FileEvent {
            body: FileBody::Deleted { reason: None },
            ..uploaded("x")
        };
        seal(&mut deleted, &key).unwrap();
        assert_eq!(deleted.sealed, None);
        let mut garbage = uploaded("x");
        garbage.sealed = Some(vec![1, 2, 3]);
        assert!(open(&mut garbage, &key).is_err());
    }

    #[test]
    fn a_sealed_prompt_is_not_in_the_params_and_opens_with_the_files_key_only() {
        let key = DataKey::generate().unwrap();
        let params = serde_json::json!({"prompt": "lullaby for Mia", "duration": 4.0});
        let sealed = seal_prompt(&params, "f1", "uploads/f1/prompts/j1", &key).unwrap();
        let json = roar_schemas::ids::canonical_json(&sealed);
        assert!(!json.contains("Mia"), "{json}");
        assert_eq!(sealed[PROMPT_OBJECT], "uploads/f1/prompts/j1");
        let back: serde_json::Value =
            serde_json::from_str(&open_prompt(&json, "f1", Some(&key)).unwrap()).unwrap();
        assert_eq!(back, params);
        // Another file's or no key: the internal fields go, no prompt comes back.
        let other = DataKey::generate().unwrap();
        for (file, key) in [("f2", Some(&key)), ("f1", Some(&other)), ("f1", None)] {
            let opened: serde_json::Value =
                serde_json::from_str(&open_prompt(&json, file, key).unwrap()).unwrap();
            assert_eq!(opened, serde_json::json!({"duration": 4.0}), "{file}");
        }
        // Nothing to seal, nothing to open.
        let plain = serde_json::json!({"prompt": "", "duration": 4.0});
        assert_eq!(seal_prompt(&plain, "f1", "o", &key).unwrap(), plain);
        assert_eq!(open_prompt(r#"{"prompt":"x"}"#, "f1", Some(&key)), None);
    }

    #[test]
    fn placeholders_keep_plain_extensions_only() {
        assert_eq!(placeholder("My Song.MP3"), "sealed.mp3");
        assert_eq!(placeholder("noext"), "sealed");
        assert_eq!(placeholder(".hidden"), "sealed");
        assert_eq!(placeholder("a.tar.gz"), "sealed.gz");
        assert_eq!(placeholder("x.mp3 (Alice's copy)"), "sealed");
        assert_eq!(
            format!("{:?}", DataKey::generate().unwrap()),
            "DataKey(***)"
        );
    }

    #[test]
    fn events_up_to_the_deletion_and_late_ones_are_erased() {
        let t = Utc::now();
        let s = |key: bool, erased: Option<DateTime<Utc>>| KeyState {
            key: key.then(|| DataKey::generate().unwrap()),
            erased_before: erased,
        };
        let later = t + chrono::Duration::seconds(1);
        assert!(!s(true, None).erased(later));
        assert!(!s(false, None).erased(later));
        assert!(s(false, Some(t)).erased(t));
        assert!(s(false, Some(t)).erased(later));
        // Uploaded again after the deletion (a new key): the new life shows, the old does not.
        assert!(s(true, Some(t)).erased(t));
        assert!(!s(true, Some(t)).erased(later));
    }
}
