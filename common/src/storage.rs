//! Object storage for uploads and outputs, on `object_store`: a local directory in development,
//! S3-compatible stores (MinIO) in production, memory in unit tests. Keys are validated before
//! they reach a backend, so a user-supplied name can never escape its prefix.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::buffered::BufWriter;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{ObjectMeta, ObjectStore, PutPayload};

use crate::config::StorageConfig;

mod reader;
pub use reader::{ObjectReader, ReadFailure};

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("object {0} not found")]
    NotFound(String),
    #[error("invalid object key {0:?}")]
    InvalidKey(String),
    #[error("storage misconfigured: {0}")]
    Config(String),
    #[error("storage backend: {0}")]
    Backend(#[from] object_store::Error),
}

impl StorageError {
    /// Backend errors are usually transient (network, throttling); the others are not.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StorageError::Backend(_))
    }
}

/// The roar object store.
#[derive(Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    s3: Option<Arc<AmazonS3>>,
    describe: String,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe)
    }
}

impl Storage {
    pub fn from_config(cfg: &StorageConfig) -> Result<Self, StorageError> {
        let url = cfg.url.as_str();
        if let Some(dir) = url.strip_prefix("file://") {
            std::fs::create_dir_all(dir)
                .map_err(|e| StorageError::Config(format!("{dir}: {e}")))?;
            let fs = LocalFileSystem::new_with_prefix(dir)?;
            return Ok(Self {
                store: Arc::new(fs),
                s3: None,
                describe: url.to_string(),
            });
        }
        if url.starts_with("memory://") {
            return Ok(Self::memory());
        }
        if let Some(rest) = url.strip_prefix("s3://") {
            let bucket = rest.split('/').next().unwrap_or_default();
            if bucket.is_empty() {
                return Err(StorageError::Config(format!("no bucket in {url}")));
            }
            let mut b = AmazonS3Builder::new()
                .with_bucket_name(bucket)
                .with_region(&cfg.s3_region)
                .with_access_key_id(cfg.s3_access_key_id.expose())
                .with_secret_access_key(cfg.s3_secret_access_key.expose());
            if !cfg.s3_endpoint.is_empty() {
                b = b
                    .with_endpoint(&cfg.s3_endpoint)
                    .with_virtual_hosted_style_request(false)
                    .with_allow_http(cfg.s3_endpoint.starts_with("http://"));
            }
            let s3 = Arc::new(b.build()?);
            return Ok(Self {
                store: s3.clone(),
                s3: Some(s3),
                describe: url.to_string(),
            });
        }
        Err(StorageError::Config(format!(
            "unsupported storage url {url}"
        )))
    }

    /// A throw-away in-memory store.
    pub fn memory() -> Self {
        Self {
            store: Arc::new(InMemory::new()),
            s3: None,
            describe: "memory://".into(),
        }
    }

    fn path(key: &str) -> Result<Path, StorageError> {
        let ok = !key.is_empty()
            && !key.starts_with('/')
            && key
                .split('/')
                .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
            && !key.contains('\\')
            && !key.chars().any(char::is_control);
        if !ok {
            return Err(StorageError::InvalidKey(key.to_string()));
        }
        Path::parse(key).map_err(|_| StorageError::InvalidKey(key.to_string()))
    }

    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<(), StorageError> {
        self.store
            .put(&Self::path(key)?, PutPayload::from_bytes(bytes))
            .await?;
        Ok(())
    }

    /// A buffered writer for large objects (multipart on S3); call `shutdown` to complete it.
    pub fn writer(&self, key: &str) -> Result<BufWriter, StorageError> {
        Ok(BufWriter::new(self.store.clone(), Self::path(key)?))
    }

    pub async fn get(&self, key: &str) -> Result<Bytes, StorageError> {
        match self.store.get(&Self::path(key)?).await {
            Ok(r) => Ok(r.bytes().await?),
            Err(object_store::Error::NotFound { .. }) => {
                Err(StorageError::NotFound(key.to_string()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The object as a stream of chunks (large objects without holding them in memory).
    pub async fn get_stream(
        &self,
        key: &str,
    ) -> Result<futures::stream::BoxStream<'static, Result<Bytes, StorageError>>, StorageError>
    {
        use futures::StreamExt;
        match self.store.get(&Self::path(key)?).await {
            Ok(r) => Ok(r
                .into_stream()
                .map(|c| c.map_err(StorageError::from))
                .boxed()),
            Err(object_store::Error::NotFound { .. }) => {
                Err(StorageError::NotFound(key.to_string()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Bytes `range` (end exclusive; the whole object when `None`) of the object as a stream of
    /// chunks, read only if the object still has `e_tag` (when given): a download streams
    /// what it measured, never a replacement of another size. A changed object is `NotFound`.
    pub async fn get_range_stream(
        &self,
        key: &str,
        range: Option<std::ops::Range<u64>>,
        e_tag: Option<String>,
    ) -> Result<futures::stream::BoxStream<'static, Result<Bytes, StorageError>>, StorageError>
    {
        use futures::StreamExt;
        let opts = object_store::GetOptions {
            range: range.map(object_store::GetRange::Bounded),
            if_match: e_tag,
            ..Default::default()
        };
        match self.store.get_opts(&Self::path(key)?, opts).await {
            Ok(r) => Ok(r
                .into_stream()
                .map(|c| c.map_err(StorageError::from))
                .boxed()),
            Err(
                object_store::Error::NotFound { .. } | object_store::Error::Precondition { .. },
            ) => Err(StorageError::NotFound(key.to_string())),
            Err(e) => Err(e.into()),
        }
    }

    /// A blocking, seekable reader of the object for decoders (bounded memory whatever its size).
    pub async fn reader(&self, key: &str) -> Result<ObjectReader, StorageError> {
        ObjectReader::open(self.store.clone(), Self::path(key)?).await
    }

    pub async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StorageError> {
        match self.store.head(&Self::path(key)?).await {
            Ok(m) => Ok(Some(m)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Moves an object (used to publish a finished upload under its content-derived key).
    pub async fn rename(&self, from: &str, to: &str) -> Result<(), StorageError> {
        self.store
            .rename(&Self::path(from)?, &Self::path(to)?)
            .await?;
        Ok(())
    }

    pub async fn delete(&self, key: &str) -> Result<(), StorageError> {
        match self.store.delete(&Self::path(key)?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Keys under `prefix` (a folder, e.g. `uploads/tmp/`) last written before `before`, at
    /// most `max` of them: what the orchestrator's sweeper removes. A missing folder is empty.
    pub async fn list_older(
        &self,
        prefix: &str,
        before: chrono::DateTime<chrono::Utc>,
        max: usize,
    ) -> Result<Vec<String>, StorageError> {
        use futures::StreamExt;
        let folder = Self::path(prefix.trim_end_matches('/'))?;
        let mut listed = self.store.list(Some(&folder));
        let mut keys = Vec::new();
        while let Some(meta) = listed.next().await {
            let meta = match meta {
                Ok(m) => m,
                Err(object_store::Error::NotFound { .. }) => break,
                Err(e) => return Err(e.into()),
            };
            if meta.last_modified < before {
                keys.push(meta.location.to_string());
                if keys.len() >= max {
                    break;
                }
            }
        }
        Ok(keys)
    }

    /// Whether this store can hand out presigned URLs (S3). The local store uses links signed
    /// by the orchestrator instead.
    pub fn can_presign(&self) -> bool {
        self.s3.is_some()
    }

    /// A presigned URL for `method` (PUT or GET) on `key`, valid for `ttl`; `None` off S3.
    pub async fn presign(
        &self,
        method: &str,
        key: &str,
        ttl: Duration,
    ) -> Result<Option<url::Url>, StorageError> {
        let Some(s3) = &self.s3 else { return Ok(None) };
        let method = match method {
            "PUT" => http::Method::PUT,
            _ => http::Method::GET,
        };
        Ok(Some(s3.signed_url(method, &Self::path(key)?, ttl).await?))
    }
}

/// `uploads/{file_id}/original`: where an upload's bytes live.
pub fn upload_key(file_id: &str) -> String {
    format!("uploads/{file_id}/original")
}

/// The request parameter that names the object a job's prompt is in (a musicgen prompt is
/// personal: it never travels on a topic readable).
pub const PROMPT_OBJECT: &str = "prompt_object";
/// The request parameter beside it that holds the prompt sealed with the file's data key (for
/// the projector; workers hold no key and ignore it).
pub const PROMPT_SEALED: &str = "prompt_sealed";

/// `uploads/{file_id}/prompts/{job_id}`: the text prompt of one job of the file, written by the
/// API before the job is requested and erased with the song (under its `uploads/` folder).
pub fn prompt_key(file_id: &str, job_id: &str) -> String {
    format!("uploads/{file_id}/prompts/{job_id}")
}

/// `staging/{file_id}/upload`: where a presigned PUT lands. `POST /upload/{id}/complete` copies
/// it (hashing what it copies) to `upload_key` and deletes it, so no link ever writes the key
/// the workers read, and a PUT after completion changes nothing that was checked.
pub fn staging_key(file_id: &str) -> String {
    format!("staging/{file_id}/upload")
}

/// `outputs/{file_id}/{model}/{variation}/{job_id}/`: one job's output folder (with a trailing
/// slash). The job id keeps outputs of other params or model versions side by side.
pub fn job_output_dir(file_id: &str, model: &str, variation: &str, job_id: &str) -> String {
    format!("outputs/{file_id}/{model}/{variation}/{job_id}/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keys_cannot_escape() {
        let s = Storage::memory();
        for bad in ["", "/etc/passwd", "a/../b", "a//b", "./a", "a\\b", "a/\nb"] {
            assert!(
                matches!(
                    s.put(bad, Bytes::new()).await,
                    Err(StorageError::InvalidKey(_))
                ),
                "{bad:?}"
            );
        }
        s.put("outputs/f1/metadata.json", Bytes::from_static(b"{}"))
            .await
            .unwrap();
        assert_eq!(
            s.get("outputs/f1/metadata.json").await.unwrap(),
            Bytes::from_static(b"{}")
        );
        assert!(matches!(
            s.get("outputs/nope").await,
            Err(StorageError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn list_older_finds_only_older_objects_under_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = StorageConfig {
            url: format!("file://{}", dir.path().display()),
            ..Default::default()
        };
        let s = Storage::from_config(&cfg).unwrap();
        assert!(s
            .list_older("uploads/tmp/", chrono::Utc::now(), 10)
            .await
            .unwrap()
            .is_empty());
        s.put("uploads/tmp/a", Bytes::from_static(b"a"))
            .await
            .unwrap();
        s.put("uploads/f1/original", Bytes::from_static(b"b"))
            .await
            .unwrap();
        let later = chrono::Utc::now() + chrono::Duration::seconds(5);
        let earlier = chrono::Utc::now() - chrono::Duration::seconds(3600);
        assert_eq!(
            s.list_older("uploads/tmp/", later, 10).await.unwrap(),
            vec!["uploads/tmp/a".to_string()]
        );
        assert!(s
            .list_older("uploads/tmp/", earlier, 10)
            .await
            .unwrap()
            .is_empty());
    }

    #[tokio::test]
    async fn local_store_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = StorageConfig {
            url: format!("file://{}", dir.path().display()),
            ..Default::default()
        };
        let s = Storage::from_config(&cfg).unwrap();
        s.put("uploads/f1/original", Bytes::from_static(b"abc"))
            .await
            .unwrap();
        assert!(dir.path().join("uploads/f1/original").exists());
        assert_eq!(
            s.head("uploads/f1/original").await.unwrap().unwrap().size,
            3
        );
        assert!(s.head("uploads/f2/original").await.unwrap().is_none());
    }
}
