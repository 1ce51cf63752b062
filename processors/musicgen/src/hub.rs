//! Downloading the released models in the Hugging Face layout (cargo feature `hub`), so that
//! `roar models fetch musicgen <variation>` fills `<models_dir>/musicgen/<variation>/`.
//!
//! Files come from `<root>/<repo>/resolve/main/<file>` over HTTP(S) ([`DEFAULT_ROOT`] unless
//! told otherwise; a mirror with the hub's URL scheme works), or from `<root>/<repo>/<file>`
//! when the root is a local directory. Large files are checked against the sha256 the hub
//! announces (`X-Linked-Etag` on its redirect to storage) when it does. Everything is written
//! under `.part` names and checked (the config parses, the tokenizer loads, every tensor the
//! config needs is in the weights with its shape) before it is renamed into place,
//! `config.json` last: a directory with `config.json` is complete.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::config::MusicgenConfig;
use crate::tokenizer::PromptTokenizer;
use crate::weights::{check_tensors, shards};
use crate::{MusicgenError, Result};

pub const DEFAULT_ROOT: &str = "https://huggingface.co";
/// Overrides [`DEFAULT_ROOT`] (a mirror, or a local directory).
pub const ROOT_ENV: &str = "ROAR_MUSICGEN_URL_ROOT";

/// The released mono variations and their repositories.
pub const VARIATIONS: [(&str, &str); 4] = [
    ("small", "facebook/musicgen-small"),
    ("medium", "facebook/musicgen-medium"),
    ("large", "facebook/musicgen-large"),
    ("melody", "facebook/musicgen-melody"),
];

/// The repository of `variation`, or an error listing the known ones.
pub fn repo(variation: &str) -> Result<&'static str> {
    VARIATIONS
        .iter()
        .find(|(v, _)| *v == variation)
        .map(|(_, r)| *r)
        .ok_or_else(|| {
            let known: Vec<&str> = VARIATIONS.iter().map(|(v, _)| *v).collect();
            MusicgenError::params(format!(
                "unknown musicgen variation {variation:?}: downloadable ones are {}",
                known.join(", ")
            ))
        })
}

/// `explicit`, else `$ROAR_MUSICGEN_URL_ROOT`, else [`DEFAULT_ROOT`].
pub fn resolve_root(explicit: Option<&str>) -> String {
    explicit
        .map(str::to_string)
        .or_else(|| std::env::var(ROOT_ENV).ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| DEFAULT_ROOT.to_string())
}

/// Fetches `variation` into `musicgen_dir/<variation>/` (`musicgen_dir` is
/// `<models_dir>/musicgen`), telling `report` each step. Returns the directory.
pub fn fetch_with(
    musicgen_dir: &Path,
    variation: &str,
    root: &str,
    force: bool,
    report: &mut dyn FnMut(&str),
) -> Result<PathBuf> {
    fetch_repo_with(
        musicgen_dir,
        variation,
        repo(variation)?,
        root,
        force,
        report,
    )
}

/// [`fetch_with`] from any repository of the same layout (fine-tunes, mirrors' names).
pub fn fetch_repo_with(
    musicgen_dir: &Path,
    variation: &str,
    repo: &str,
    root: &str,
    force: bool,
    report: &mut dyn FnMut(&str),
) -> Result<PathBuf> {
    if variation.is_empty() || variation.contains(['/', '\\']) || variation.starts_with('.') {
        return Err(MusicgenError::params(format!(
            "invalid variation name {variation:?}"
        )));
    }
    let bad_repo = repo
        .split('/')
        .any(|p| p.is_empty() || p == ".." || p == ".");
    if bad_repo || repo.contains('\\') {
        return Err(MusicgenError::params(format!(
            "invalid repository {repo:?}"
        )));
    }
    let dest = musicgen_dir.join(variation);
    let marker = dest.join("config.json");
    if marker.is_file() && !force {
        report(&format!(
            "{} is already there (--force to replace it)",
            marker.display()
        ));
        return Ok(dest);
    }
    std::fs::create_dir_all(&dest)?;
    let source = Source::new(root, repo);
    let mut staged: Vec<(PathBuf, PathBuf)> = Vec::new();
    let result = (|| {
        let mut get = |name: &str, required: bool| -> Result<Option<PathBuf>> {
            let path = dest.join(name);
            let part = part_path(&path);
            report(&format!("downloading {}", source.describe(name)));
            match source.download(name, &part)? {
                true => {
                    staged.push((part.clone(), path));
                    Ok(Some(part))
                }
                false if required => Err(MusicgenError::Download {
                    url: source.describe(name),
                    message: "not found".into(),
                }),
                false => Ok(None),
            }
        };
        let config = get("config.json", true)?.unwrap_or_default();
        let tokenizer = get("tokenizer.json", true)?.unwrap_or_default();
        get("generation_config.json", false)?;
        get("preprocessor_config.json", false)?;
        let weights = match get("model.safetensors.index.json", false)? {
            Some(index) => {
                let mut parts = Vec::new();
                for shard in shards(&index)? {
                    parts.push(get(&shard, true)?.unwrap_or_default());
                }
                parts
            }
            None => vec![get("model.safetensors", true)?.unwrap_or_default()],
        };
        report("checking the files");
        let cfg = MusicgenConfig::load(&config)?;
        PromptTokenizer::load(&tokenizer)?;
        check_tensors(&cfg, &weights)?;
        Ok(())
    })();
    if let Err(e) = result {
        for (part, _) in &staged {
            let _ = std::fs::remove_file(part);
        }
        return Err(e);
    }
    // config.json last: its presence means the directory is complete.
    staged.sort_by_key(|(_, p)| p.ends_with("config.json"));
    for (part, path) in staged {
        std::fs::rename(&part, &path)?;
    }
    report(&format!("wrote {}", dest.display()));
    Ok(dest)
}

fn part_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".part");
    PathBuf::from(s)
}

enum Source {
    Http { agent: ureq::Agent, base: String },
    Dir(PathBuf),
}

impl Source {
    fn new(root: &str, repo: &str) -> Self {
        if root.starts_with("http://") || root.starts_with("https://") {
            let agent = ureq::AgentBuilder::new()
                .timeout_connect(Duration::from_secs(30))
                .timeout_read(Duration::from_secs(120))
                .redirects(0)
                .build();
            Source::Http {
                agent,
                base: format!("{}/{repo}/resolve/main", root.trim_end_matches('/')),
            }
        } else {
            Source::Dir(Path::new(root).join(repo))
        }
    }

    fn describe(&self, name: &str) -> String {
        match self {
            Source::Http { base, .. } => format!("{base}/{name}"),
            Source::Dir(d) => d.join(name).display().to_string(),
        }
    }

    /// Copies `name` to `to`; false when the source does not have it.
    fn download(&self, name: &str, to: &Path) -> Result<bool> {
        let url = self.describe(name);
        let fail = |message: String| MusicgenError::Download {
            url: url.clone(),
            message,
        };
        let (reader, sha): (Box<dyn Read>, Option<String>) = match self {
            Source::Dir(d) => match std::fs::File::open(d.join(name)) {
                Ok(f) => (Box::new(f), None),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(fail(e.to_string())),
            },
            Source::Http { agent, .. } => {
                let first = match agent.get(&url).call() {
                    Ok(r) => r,
                    Err(ureq::Error::Status(404, _)) => return Ok(false),
                    Err(ureq::Error::Status(code, r)) => {
                        return Err(fail(format!("HTTP {code} {}", r.status_text())))
                    }
                    Err(ureq::Error::Transport(t)) => return Err(fail(t.to_string())),
                };
                let sha = first
                    .header("x-linked-etag")
                    .or_else(|| first.header("etag"))
                    .and_then(sha256_of_etag);
                let response = if (300..400).contains(&first.status()) {
                    let location = first
                        .header("location")
                        .ok_or_else(|| fail("redirect without a location".into()))?;
                    let next = absolute(&url, location);
                    // Storage URLs are pre-signed; follow any further redirects there.
                    let follow = ureq::AgentBuilder::new()
                        .timeout_connect(Duration::from_secs(30))
                        .timeout_read(Duration::from_secs(120))
                        .build();
                    follow.get(&next).call().map_err(|e| fail(e.to_string()))?
                } else {
                    first
                };
                (Box::new(response.into_reader()), sha)
            }
        };
        copy_checked(reader, to, sha.as_deref()).map_err(|e| match e {
            MusicgenError::InvalidModel { message, .. } => fail(message),
            other => other,
        })?;
        Ok(true)
    }
}

/// The sha256 in an ETag (`"<64 hex>"`, possibly weak), if it is one (the hub's git ETags
/// for small files are sha1s and say nothing about the content's sha256).
fn sha256_of_etag(tag: &str) -> Option<String> {
    let t = tag.trim().trim_start_matches("W/").trim_matches('"');
    (t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit())).then(|| t.to_ascii_lowercase())
}

/// `location` resolved against `url` (the hub answers with absolute or root-relative URLs).
fn absolute(url: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        return location.to_string();
    }
    let scheme_end = url.find("://").map_or(0, |i| i + 3);
    let host_end = url[scheme_end..]
        .find('/')
        .map_or(url.len(), |i| scheme_end + i);
    format!("{}/{}", &url[..host_end], location.trim_start_matches('/'))
}

/// Streams into `to`, hashing on the way, and compares with `sha` when there is one.
fn copy_checked(mut reader: Box<dyn Read>, to: &Path, sha: Option<&str>) -> Result<()> {
    let result = (|| {
        let mut out = std::io::BufWriter::new(std::fs::File::create(to)?);
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = reader.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n])?;
        }
        out.flush()?;
        let got = hex(&hasher.finalize());
        if let Some(want) = sha {
            if got != want {
                return Err(MusicgenError::invalid(
                    to,
                    format!("sha256 {got} differs from the announced {want}"),
                ));
            }
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(to);
    }
    result
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variations_and_roots() {
        assert_eq!(repo("small").unwrap(), "facebook/musicgen-small");
        assert!(repo("stereo-small")
            .unwrap_err()
            .to_string()
            .contains("small, medium, large, melody"));
        assert_eq!(resolve_root(Some("/mnt/m")), "/mnt/m");
    }

    #[test]
    fn etags_and_locations() {
        let sha = "a".repeat(64);
        assert_eq!(sha256_of_etag(&format!("\"{sha}\"")), Some(sha.clone()));
        assert_eq!(
            sha256_of_etag(&format!("W/\"{}\"", sha.to_uppercase())),
            Some(sha)
        );
        assert_eq!(
            sha256_of_etag("\"0123456789abcdef0123456789abcdef01234567\""),
            None
        );
        assert_eq!(absolute("http://h:1/a/b", "/c/d"), "http://h:1/c/d");
        assert_eq!(absolute("http://h/a", "https://cdn/x"), "https://cdn/x");
    }
}
