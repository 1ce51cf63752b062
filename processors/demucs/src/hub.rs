//! Downloading the official Demucs v4 releases and converting them in Rust (cargo feature
//! `hub`), so that users get `<models_dir>/demucs/<variation>/` without Python.
//!
//! Each checkpoint is fetched from `<root>/<file>` (the reference's `demucs/remote/files.txt`
//! layout; [`DEFAULT_ROOT`] unless the caller says otherwise; a local directory works too),
//! checked against the sha256 prefix in its name (`<sig>-<sha256 prefix>.th`, the reference's
//! rule), converted by [`Checkpoint`] and written as `model.safetensors` or, for a bag,
//! `<sig>.safetensors` per member plus `bag.json`. Files are written under `.part` names and
//! renamed when complete, and the `.th` is removed once converted.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::checkpoint::{check_digest, part_path, Checkpoint};
use crate::{DemucsError, Result};

/// Where the reference downloads its checkpoints from (`demucs.pretrained.ROOT_URL`).
pub const DEFAULT_ROOT: &str = "https://dl.fbaipublicfiles.com/demucs/";

/// Environment variable that overrides [`DEFAULT_ROOT`] (a mirror, or a local server).
pub const ROOT_ENV: &str = "ROAR_DEMUCS_URL_ROOT";

/// What to download for one variation.
#[derive(Debug, Clone, PartialEq)]
pub struct Release {
    pub variation: String,
    /// Paths under the root, each ending in `<sig>-<sha256 prefix>.th`.
    pub files: Vec<String>,
    /// Bag weights (`weights[m][s]`); `None` for a single model.
    pub weights: Option<Vec<Vec<f32>>>,
}

/// The released HTDemucs variations (the reference's `remote/files.txt` and `*.yaml`).
pub const VARIATIONS: [&str; 3] = ["htdemucs", "htdemucs_ft", "htdemucs_6s"];

/// The official release of `variation`, or a clear error naming the known ones.
pub fn release(variation: &str) -> Result<Release> {
    let files: &[&str] = match variation {
        "htdemucs" => &["955717e8-8726e21a.th"],
        "htdemucs_6s" => &["5c90dfd2-34c22ccb.th"],
        // Bag of four fine-tuned models; model i serves source i (htdemucs_ft.yaml).
        "htdemucs_ft" => &[
            "f7e0c4bc-ba3fe64a.th",
            "d12395a8-e57c48e6.th",
            "92cfc3b6-ef3bcb9c.th",
            "04573f0d-f3cf25b2.th",
        ],
        other => {
            return Err(DemucsError::InvalidInput(format!(
                "unknown demucs variation {other:?}: downloadable ones are {}",
                VARIATIONS.join(", ")
            )))
        }
    };
    let n = files.len();
    let weights = (n > 1).then(|| {
        (0..n)
            .map(|i| (0..4).map(|s| if s == i { 1.0 } else { 0.0 }).collect())
            .collect()
    });
    Ok(Release {
        variation: variation.to_string(),
        files: files
            .iter()
            .map(|f| format!("hybrid_transformer/{f}"))
            .collect(),
        weights,
    })
}

/// The root to download from: `explicit`, else `$ROAR_DEMUCS_URL_ROOT`, else [`DEFAULT_ROOT`].
pub fn resolve_root(explicit: Option<&str>) -> String {
    explicit
        .map(str::to_string)
        .or_else(|| std::env::var(ROOT_ENV).ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| DEFAULT_ROOT.to_string())
}

/// Fetches the official `variation` into `demucs_dir/<variation>/` (`demucs_dir` is
/// `<models_dir>/demucs`). Returns the variation's directory.
pub fn fetch(demucs_dir: &Path, variation: &str, root: &str, force: bool) -> Result<PathBuf> {
    fetch_with(demucs_dir, variation, root, force, &mut |_| {})
}

/// [`fetch`], telling `report` each step (a download takes minutes; the user should see which).
pub fn fetch_with(
    demucs_dir: &Path,
    variation: &str,
    root: &str,
    force: bool,
    report: &mut dyn FnMut(&str),
) -> Result<PathBuf> {
    fetch_release_with(demucs_dir, &release(variation)?, root, force, report)
}

/// Fetches and converts any [`Release`]. `root` is an HTTP(S) URL or a local directory holding
/// the same layout. With `force` false, a variation whose
/// `model.safetensors` or `bag.json` already exists is left alone.
pub fn fetch_release(
    demucs_dir: &Path,
    release: &Release,
    root: &str,
    force: bool,
) -> Result<PathBuf> {
    fetch_release_with(demucs_dir, release, root, force, &mut |_| {})
}

/// [`fetch_release`] with a `report` of each step.
pub fn fetch_release_with(
    demucs_dir: &Path,
    release: &Release,
    root: &str,
    force: bool,
    report: &mut dyn FnMut(&str),
) -> Result<PathBuf> {
    let v = &release.variation;
    if v.is_empty() || v.contains(['/', '\\']) || v.starts_with('.') {
        return Err(DemucsError::InvalidInput(format!(
            "invalid variation name {v:?}"
        )));
    }
    let dest = demucs_dir.join(v);
    let single = release.files.len() == 1 && release.weights.is_none();
    let marker = dest.join(if single {
        "model.safetensors"
    } else {
        "bag.json"
    });
    if marker.is_file() && !force {
        report(&format!(
            "{} is already there (--force to replace it)",
            marker.display()
        ));
        return Ok(dest);
    }
    std::fs::create_dir_all(&dest)?;
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(30))
        .timeout_read(Duration::from_secs(120))
        .build();
    let mut members = Vec::new();
    for file in &release.files {
        let (name, sig, sha) = split_name(file)?;
        let th = dest.join(name);
        let source = open_source(&agent, root, file)?;
        report(&format!("downloading {}", source.0));
        download(source, &th, sha)?;
        report(&format!("converting {name}"));
        let ckpt = Checkpoint::read(&th)?;
        let out = if single {
            marker.clone()
        } else {
            dest.join(format!("{sig}.safetensors"))
        };
        ckpt.write_safetensors(&out)?;
        report(&format!("wrote {}", out.display()));
        std::fs::remove_file(&th)?;
        members.push(out);
    }
    if !single {
        let names: Vec<String> = members
            .iter()
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        let bag = serde_json::json!({ "models": names, "weights": release.weights });
        let tmp = part_path(&marker);
        std::fs::write(&tmp, serde_json::to_vec_pretty(&bag).unwrap_or_default())?;
        std::fs::rename(&tmp, &marker)?;
    }
    Ok(dest)
}

/// `dir/<sig>-<sha>.th` → (`<sig>-<sha>.th`, sig, sha).
fn split_name(file: &str) -> Result<(&str, &str, &str)> {
    let name = file.rsplit('/').next().unwrap_or(file);
    name.strip_suffix(".th")
        .and_then(|stem| stem.split_once('-'))
        .filter(|(sig, sha)| !sig.is_empty() && !sha.is_empty())
        .map(|(sig, sha)| (name, sig, sha))
        .ok_or_else(|| {
            DemucsError::InvalidInput(format!(
                "checkpoint name {name:?} is not <sig>-<sha256 prefix>.th"
            ))
        })
}

/// Where a checkpoint comes from: an HTTP(S) URL, or a file under a local directory root
/// (for machines without network, after copying the `.th` files over).
fn open_source(agent: &ureq::Agent, root: &str, file: &str) -> Result<(String, Box<dyn Read>)> {
    let file = file.trim_start_matches('/');
    if root.starts_with("http://") || root.starts_with("https://") {
        let url = format!("{}/{file}", root.trim_end_matches('/'));
        let fail = |message: String| DemucsError::Download {
            url: url.clone(),
            message,
        };
        let response = agent.get(&url).call().map_err(|e| match e {
            ureq::Error::Status(code, r) => fail(format!("HTTP {code} {}", r.status_text())),
            ureq::Error::Transport(t) => fail(t.to_string()),
        })?;
        return Ok((url, Box::new(response.into_reader())));
    }
    let local = Path::new(root).join(file);
    let f = std::fs::File::open(&local).map_err(|e| DemucsError::Download {
        url: local.display().to_string(),
        message: e.to_string(),
    })?;
    Ok((local.display().to_string(), Box::new(f)))
}

/// Streams the source into `path`, hashing on the way; the file only gets its name once
/// complete and verified.
fn download(source: (String, Box<dyn Read>), path: &Path, sha_prefix: &str) -> Result<()> {
    let (url, mut reader) = source;
    let tmp = part_path(path);
    let result = (|| {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = reader.read(&mut buf).map_err(|e| DemucsError::Download {
                url: url.clone(),
                message: format!("reading the body: {e}"),
            })?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n])?;
        }
        out.flush()?;
        check_digest(path, &hasher.finalize(), sha_prefix)?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
