//! Downloading Whisper in the Hugging Face layout from the hub (cargo feature `hub`), for users
//! whose machines reach it: `config.json`, `generation_config.json` (alignment heads),
//! `tokenizer.json` and `model.safetensors` of a repository such as `openai/whisper-small`
//! land in `models_dir/<variation>/`, where [`crate::Whisper::load`] reads them.

use std::path::{Path, PathBuf};

use crate::{Result, WhisperError};

/// The files of the Hugging Face layout; `generation_config.json` is optional on the hub.
const FILES: [(&str, bool); 4] = [
    ("config.json", true),
    ("tokenizer.json", true),
    ("model.safetensors", true),
    ("generation_config.json", false),
];

/// Fetches `repo` (e.g. `openai/whisper-tiny.en`) into `models_dir/variation/`; files already
/// there are kept. Returns the variation's directory.
pub fn fetch_from_hub(repo: &str, models_dir: &Path, variation: &str) -> Result<PathBuf> {
    if variation.is_empty() || variation.contains(['/', '\\']) || variation.starts_with('.') {
        return Err(WhisperError::InvalidInput(format!(
            "invalid variation name {variation:?}"
        )));
    }
    let dest = models_dir.join(variation);
    std::fs::create_dir_all(&dest)?;
    let api = hf_hub::api::sync::Api::new()
        .map_err(|e| WhisperError::InvalidInput(format!("hub client: {e}")))?;
    let repo_api = api.model(repo.to_string());
    for (name, required) in FILES {
        let target = dest.join(name);
        if target.is_file() {
            continue;
        }
        match repo_api.get(name) {
            // The hub client keeps its own cache; copy so the models dir is self-contained.
            Ok(cached) => {
                std::fs::copy(&cached, &target)?;
            }
            Err(e) if required => {
                return Err(WhisperError::InvalidModel {
                    path: target,
                    reason: format!("downloading {name} from {repo}: {e}"),
                })
            }
            Err(_) => {}
        }
    }
    Ok(dest)
}
