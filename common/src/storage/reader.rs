//! A blocking, seekable reader of one object, for decoders that pull bytes (symphonia) on a
//! blocking thread. Memory stays at one chunk of the backend's stream whatever the object's
//! size: the local store hands over its file, other stores a streamed GET that a seek reopens
//! at the new offset (sequential reads, the common case, cost one request).

use std::io::{Read, Seek, SeekFrom};
use std::sync::{Arc, Mutex};

use bytes::{Buf, Bytes};
use futures::stream::{BoxStream, StreamExt};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, GetResultPayload, ObjectStore};
use tokio::runtime::Handle;

use super::StorageError;

/// What an [`ObjectReader`] last failed on, readable after the reader has been handed away: a
/// decoder reports a backend failure as an I/O error, which must not be mistaken for a corrupt
/// file (the first may pass on retry, the second never will).
#[derive(Clone, Debug, Default)]
pub struct ReadFailure(Arc<Mutex<Option<String>>>);

impl ReadFailure {
    /// The backend error that stopped a read, if one did.
    pub fn get(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Records a failure (what the reader does when its store fails).
    pub fn set(&self, e: String) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
    }
}

enum Body {
    /// Nothing open: the next read opens the object at `pos`.
    Closed,
    File(std::fs::File),
    /// A GET from some offset and the unread rest of its current chunk.
    Stream(
        Mutex<BoxStream<'static, object_store::Result<Bytes>>>,
        Bytes,
    ),
}

/// Reads one object. Blocking: use it on a blocking thread (`spawn_blocking`), never on the
/// async executor.
pub struct ObjectReader {
    store: Arc<dyn ObjectStore>,
    path: Path,
    size: u64,
    pos: u64,
    body: Body,
    rt: Handle,
    failure: ReadFailure,
}

impl ObjectReader {
    /// Opens `path` (one GET; the size comes with it). Call from within the runtime.
    pub(super) async fn open(
        store: Arc<dyn ObjectStore>,
        path: Path,
    ) -> Result<Self, StorageError> {
        let got = match store.get(&path).await {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(StorageError::NotFound(path.to_string()))
            }
            Err(e) => return Err(e.into()),
        };
        let size = got.meta.size;
        let body = match got.payload {
            GetResultPayload::File(f, _) => Body::File(f),
            GetResultPayload::Stream(s) => Body::Stream(Mutex::new(s), Bytes::new()),
        };
        Ok(Self {
            store,
            path,
            size,
            pos: 0,
            body,
            rt: Handle::current(),
            failure: ReadFailure::default(),
        })
    }

    /// The object's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// A handle on the backend failure that stopped a read, if any.
    pub fn failure(&self) -> ReadFailure {
        self.failure.clone()
    }

    fn fail(&self, e: impl std::fmt::Display) -> std::io::Error {
        let msg = format!("reading {}: {e}", self.path);
        self.failure.set(msg.clone());
        std::io::Error::other(msg)
    }

    /// Opens a stream from `pos` (stores that hand over a file are reopened as a file).
    fn reopen(&mut self) -> std::io::Result<()> {
        let opts = GetOptions {
            range: Some(GetRange::Offset(self.pos)),
            ..GetOptions::default()
        };
        let got = self
            .rt
            .block_on(self.store.get_opts(&self.path, opts))
            .map_err(|e| self.fail(e))?;
        self.body = match got.payload {
            GetResultPayload::File(mut f, _) => {
                f.seek(SeekFrom::Start(self.pos))?;
                Body::File(f)
            }
            GetResultPayload::Stream(s) => Body::Stream(Mutex::new(s), Bytes::new()),
        };
        Ok(())
    }
}

impl Read for ObjectReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() || self.pos >= self.size {
            return Ok(0);
        }
        if matches!(self.body, Body::Closed) {
            self.reopen()?;
        }
        let n = match &mut self.body {
            Body::Closed => 0,
            Body::File(f) => f.read(buf)?,
            Body::Stream(stream, chunk) => {
                if chunk.is_empty() {
                    let stream = stream.get_mut().unwrap_or_else(|p| p.into_inner());
                    match self.rt.block_on(stream.next()) {
                        Some(Ok(b)) => *chunk = b,
                        Some(Err(e)) => {
                            let e = format!("reading {}: {e}", self.path);
                            self.failure.set(e.clone());
                            return Err(std::io::Error::other(e));
                        }
                        None => return Ok(0),
                    }
                }
                let n = chunk.len().min(buf.len());
                buf[..n].copy_from_slice(&chunk[..n]);
                chunk.advance(n);
                n
            }
        };
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for ObjectReader {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let target = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            SeekFrom::End(d) => self.size.checked_add_signed(d),
        }
        .ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "seek before the start")
        })?;
        match &mut self.body {
            Body::File(f) => {
                f.seek(SeekFrom::Start(target))?;
            }
            // Forward within the chunk in hand: no new request.
            Body::Stream(_, chunk)
                if target >= self.pos && target - self.pos <= chunk.len() as u64 =>
            {
                chunk.advance((target - self.pos) as usize);
            }
            _ => self.body = Body::Closed,
        }
        self.pos = target;
        Ok(target)
    }
}

#[cfg(test)]
mod tests {
    use super::super::Storage;
    use super::*;
    use crate::config::StorageConfig;

    /// Reads everything, then seeks back, forward and past the end, on a blocking thread.
    async fn exercise(s: &Storage) {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        s.put("uploads/f1/original", Bytes::from(data.clone()))
            .await
            .unwrap();
        let mut r = s.reader("uploads/f1/original").await.unwrap();
        assert_eq!(r.size(), data.len() as u64);
        tokio::task::spawn_blocking(move || {
            let mut all = Vec::new();
            r.read_to_end(&mut all).unwrap();
            assert!(all == data, "whole object");
            let mut buf = [0u8; 5];
            r.seek(SeekFrom::Start(1000)).unwrap();
            r.read_exact(&mut buf).unwrap();
            assert_eq!(buf[..], data[1000..1005]);
            r.seek(SeekFrom::Current(3)).unwrap();
            r.read_exact(&mut buf).unwrap();
            assert_eq!(buf[..], data[1008..1013]);
            r.seek(SeekFrom::End(-2)).unwrap();
            assert_eq!(r.read(&mut buf).unwrap(), 2);
            assert_eq!(buf[..2], data[data.len() - 2..]);
            r.seek(SeekFrom::Start(10 * data.len() as u64)).unwrap();
            assert_eq!(r.read(&mut buf).unwrap(), 0, "past the end reads nothing");
            assert!(r
                .seek(SeekFrom::Current(-1 - 10 * data.len() as i64))
                .is_err());
            assert!(r.failure().get().is_none());
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn memory_store_reader_reads_and_seeks() {
        exercise(&Storage::memory()).await;
    }

    #[tokio::test]
    async fn local_store_reader_reads_and_seeks() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = StorageConfig {
            url: format!("file://{}", dir.path().display()),
            ..Default::default()
        };
        exercise(&Storage::from_config(&cfg).unwrap()).await;
    }

    #[tokio::test]
    async fn a_missing_object_is_not_found() {
        let s = Storage::memory();
        assert!(matches!(
            s.reader("uploads/none/original").await,
            Err(StorageError::NotFound(_))
        ));
    }
}
