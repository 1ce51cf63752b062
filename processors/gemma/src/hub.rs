//! Fetching Gemma 3n checkpoints (`google/gemma-3n-E2B-it`, `E4B`) in the Hugging Face layout
//! into `<models_dir>/gemma/<variation>/`, for `roar models fetch gemma3n e2b`.
//!
//! The source is a hub (`<root>/<repo>/resolve/main/<file>` over HTTP(S), cargo feature `hub`;
//! [`DEFAULT_ROOT`] unless the caller or [`ROOT_ENV`] says otherwise) or a local directory
//! holding `<root>/<repo>/<file>` (a machine without network, after copying a download over;
//! no feature needed). The Gemma repositories are gated: the hub wants the token of an account
//! that accepted the licence, read from [`TOKEN_ENV`] and sent only to the hub.
//!
//! Files: `model.safetensors.index.json` (or a single `model.safetensors`), every shard it
//! names, `tokenizer.json`, and `config.json` last, so a directory with a `config.json` is
//! complete. Each file is written under a `.part` name and renamed once checked: its SHA-256
//! against the hub's ETag when the hub sends one (large files are stored by content hash),
//! its length against `Content-Length`, and a safetensors file's header against its size (a
//! truncated shard fails there, whatever the source).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{GemmaError, Result};

/// The public hub the checkpoints are published on.
pub const DEFAULT_ROOT: &str = "https://huggingface.co";
/// Overrides [`DEFAULT_ROOT`] (a mirror, or a local directory).
pub const ROOT_ENV: &str = "ROAR_GEMMA_URL_ROOT";
/// The hub token for gated repositories (the name the hub's own tools read).
pub const TOKEN_ENV: &str = "HF_TOKEN";
/// Variations `fetch` knows.
pub const VARIATIONS: [&str; 2] = ["e2b", "e4b"];

/// The hub repository of a variation.
pub fn repository(variation: &str) -> Result<&'static str> {
    match variation {
        "e2b" => Ok("google/gemma-3n-E2B-it"),
        "e4b" => Ok("google/gemma-3n-E4B-it"),
        other => Err(GemmaError::InvalidInput(format!(
            "unknown gemma3n variation {other:?}; downloadable ones are {}",
            VARIATIONS.join(", ")
        ))),
    }
}

/// The root to fetch from: `explicit`, else `$ROAR_GEMMA_URL_ROOT`, else [`DEFAULT_ROOT`].
pub fn resolve_root(explicit: Option<&str>) -> String {
    explicit
        .map(str::to_string)
        .or_else(|| std::env::var(ROOT_ENV).ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| DEFAULT_ROOT.to_string())
}

/// Fetches `variation` into `gemma_dir/<variation>/` (`gemma_dir` is `<models_dir>/gemma`),
/// telling `report` each step. With `force` false a complete directory is left alone.
/// Returns the variation's directory.
pub fn fetch(
    gemma_dir: &Path,
    variation: &str,
    root: &str,
    force: bool,
    report: &mut dyn FnMut(&str),
) -> Result<PathBuf> {
    let repo = repository(variation)?;
    let dest = gemma_dir.join(variation);
    let config = dest.join("config.json");
    if config.is_file() && !force {
        report(&format!(
            "{} is already there (--force to replace it)",
            dest.display()
        ));
        return Ok(dest);
    }
    std::fs::create_dir_all(&dest)?;
    let source = Source::new(root, repo);
    let shards = match source.get("model.safetensors.index.json", &dest, report) {
        Ok(index) => shard_names(&index)?,
        // A checkpoint small enough for one file has no index.
        Err(GemmaError::NotFound { .. }) => vec!["model.safetensors".to_string()],
        Err(e) => return Err(e),
    };
    for shard in &shards {
        source.get(shard, &dest, report)?;
    }
    source.get("tokenizer.json", &dest, report)?;
    source.get("config.json", &dest, report)?;
    Ok(dest)
}

/// The shard file names an index's `weight_map` lists, checked to be plain names.
fn shard_names(index: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(index)?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| GemmaError::InvalidModel(format!("{}: {e}", index.display())))?;
    let map = v
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| {
            GemmaError::InvalidModel(format!("{} has no weight_map", index.display()))
        })?;
    let mut names: Vec<String> = map
        .values()
        .filter_map(|f| f.as_str().map(str::to_string))
        .collect();
    names.sort();
    names.dedup();
    if let Some(bad) = names
        .iter()
        .find(|n| n.is_empty() || n.contains(['/', '\\']) || n.starts_with('.'))
    {
        return Err(GemmaError::InvalidModel(format!(
            "{} names shard {bad:?}, not a plain file name",
            index.display()
        )));
    }
    Ok(names)
}

/// Where files come from.
enum Source {
    #[cfg_attr(not(feature = "hub"), allow(dead_code))]
    Http {
        base: String,
        token: Option<String>,
    },
    Dir(PathBuf),
}

/// What a source gives for one file: a reader, its announced length and SHA-256 (if any).
struct Body {
    reader: Box<dyn Read>,
    length: Option<u64>,
    sha256: Option<String>,
}

impl Source {
    fn new(root: &str, repo: &str) -> Self {
        if root.starts_with("http://") || root.starts_with("https://") {
            Source::Http {
                base: format!("{}/{repo}/resolve/main", root.trim_end_matches('/')),
                token: std::env::var(TOKEN_ENV).ok().filter(|t| !t.is_empty()),
            }
        } else {
            Source::Dir(Path::new(root).join(repo))
        }
    }

    /// Downloads `file` into `dest/file` (checked, then renamed); returns its path.
    fn get(&self, file: &str, dest: &Path, report: &mut dyn FnMut(&str)) -> Result<PathBuf> {
        let (url, body) = self.open(file)?;
        report(&format!("downloading {url}"));
        let path = dest.join(file);
        let tmp = dest.join(format!("{file}.part"));
        let result = write_checked(&url, body, &tmp).and_then(|()| {
            if file.ends_with(".safetensors") {
                check_safetensors(&tmp).map_err(|message| GemmaError::Download {
                    url: url.clone(),
                    message,
                })?;
            }
            Ok(std::fs::rename(&tmp, &path)?)
        });
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result.map(|()| path)
    }

    fn open(&self, file: &str) -> Result<(String, Body)> {
        match self {
            Source::Dir(dir) => {
                let p = dir.join(file);
                let url = p.display().to_string();
                let f = std::fs::File::open(&p).map_err(|e| match e.kind() {
                    std::io::ErrorKind::NotFound => GemmaError::NotFound { url: url.clone() },
                    _ => GemmaError::Download {
                        url: url.clone(),
                        message: e.to_string(),
                    },
                })?;
                let length = f.metadata().ok().map(|m| m.len());
                let body = Body {
                    reader: Box::new(f),
                    length,
                    sha256: None,
                };
                Ok((url, body))
            }
            Source::Http { base, token } => http_get(&format!("{base}/{file}"), token.as_deref()),
        }
    }
}

#[cfg(feature = "hub")]
fn http_get(url: &str, token: Option<&str>) -> Result<(String, Body)> {
    use std::time::Duration;
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(30))
        .timeout_read(Duration::from_secs(120))
        .build();
    let mut request = agent.get(url);
    if let Some(t) = token {
        // ureq drops this header when a redirect leaves the host (the CDN links are signed).
        request = request.set("Authorization", &format!("Bearer {t}"));
    }
    let fail = |message: String| GemmaError::Download {
        url: url.to_string(),
        message,
    };
    let response = request.call().map_err(|e| match e {
        ureq::Error::Status(404, _) => GemmaError::NotFound {
            url: url.to_string(),
        },
        ureq::Error::Status(code @ (401 | 403), _) => fail(format!(
            "HTTP {code}: the Gemma repositories are gated; accept the licence on the hub \
             and set {TOKEN_ENV} to a token of that account"
        )),
        ureq::Error::Status(code, r) => fail(format!("HTTP {code} {}", r.status_text())),
        ureq::Error::Transport(t) => fail(t.to_string()),
    })?;
    let length = response
        .header("Content-Length")
        .and_then(|v| v.parse().ok());
    // Large files are stored by content: their ETag is the SHA-256 (quoted).
    let sha256 = ["X-Linked-Etag", "ETag"]
        .iter()
        .filter_map(|h| response.header(h))
        .map(|v| {
            v.trim_start_matches("W/")
                .trim_matches('"')
                .to_ascii_lowercase()
        })
        .find(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()));
    let body = Body {
        reader: Box::new(response.into_reader()),
        length,
        sha256,
    };
    Ok((url.to_string(), body))
}

#[cfg(not(feature = "hub"))]
fn http_get(url: &str, _token: Option<&str>) -> Result<(String, Body)> {
    Err(GemmaError::Download {
        url: url.to_string(),
        message: "roar-gemma was built without its `hub` feature: fetch from a local directory"
            .into(),
    })
}

/// Streams `body` into `tmp`, checking its length and SHA-256 where the source announced them.
fn write_checked(url: &str, mut body: Body, tmp: &Path) -> Result<()> {
    let fail = |message: String| GemmaError::Download {
        url: url.to_string(),
        message,
    };
    let mut out = std::io::BufWriter::new(std::fs::File::create(tmp)?);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = body
            .reader
            .read(&mut buf)
            .map_err(|e| fail(format!("reading the body: {e}")))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])?;
        total += n as u64;
    }
    out.flush()?;
    if let Some(len) = body.length.filter(|&l| l != total) {
        return Err(fail(format!("got {total} bytes of {len}")));
    }
    let got = hex::encode(hasher.finalize());
    if let Some(want) = body.sha256.filter(|w| *w != got) {
        return Err(fail(format!("SHA-256 {got}, the hub says {want}")));
    }
    Ok(())
}

/// Whether a safetensors file is whole: its header parses and its tensors end where the
/// file does.
fn check_safetensors(path: &Path) -> std::result::Result<(), String> {
    let mut f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let size = f.metadata().map_err(|e| e.to_string())?.len();
    let mut len = [0u8; 8];
    f.read_exact(&mut len)
        .map_err(|_| "shorter than a safetensors header".to_string())?;
    let header_len = u64::from_le_bytes(len);
    if header_len > size.saturating_sub(8) || header_len > 100 << 20 {
        return Err(format!(
            "safetensors header of {header_len} bytes in a {size}-byte file"
        ));
    }
    let mut header = vec![0u8; header_len as usize];
    f.read_exact(&mut header).map_err(|e| e.to_string())?;
    let v: serde_json::Value =
        serde_json::from_slice(&header).map_err(|e| format!("safetensors header: {e}"))?;
    let end = v
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| *k != "__metadata__")
        .filter_map(|(_, t)| t.pointer("/data_offsets/1")?.as_u64())
        .max()
        .unwrap_or(0);
    let want = 8 + header_len + end;
    if want != size {
        return Err(format!(
            "safetensors file of {size} bytes, its header describes {want}"
        ));
    }
    Ok(())
}
