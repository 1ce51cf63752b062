//! The checks of the object store after a run.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::clients::Model;

/// What the object store holds beside the read model.
pub(super) struct Objects {
    /// Objects that belong to no accepted file or completed job.
    pub(super) orphans: Vec<String>,
    /// Jobs whose folder is not exactly one set of outputs: the manifest's list, which is also
    /// the read model's.
    pub(super) duplicated: Vec<String>,
}

/// Walks the object store: every upload and metadata object belongs to an accepted file, every
/// job folder to a completed job whose manifest lists exactly the folder's objects, and those
/// are the outputs the read model shows.
/// `jobs` maps each accepted job to its file and model.
pub(super) fn check_objects(
    store: &Path,
    files: &HashSet<&str>,
    jobs: &HashMap<&str, (&str, Model)>,
    rows: &HashMap<String, (String, String, Value)>,
) -> Objects {
    let mut orphans = Vec::new();
    let mut folders: HashMap<String, Vec<String>> = HashMap::new();
    for path in walk(store) {
        let key = path
            .strip_prefix(store)
            .unwrap()
            .to_string_lossy()
            .to_string();
        let parts: Vec<&str> = key.split('/').collect();
        match parts.as_slice() {
            ["uploads", f, "original"] | ["outputs", f, "metadata.json"] if files.contains(f) => {}
            ["handled", f, j, ..] if jobs.get(j).is_some_and(|(file, _)| file == f) => {}
            ["outputs", f, model, variation, j, name]
                if jobs
                    .get(j)
                    .is_some_and(|(file, m)| file == f && m.folder() == (*model, *variation)) =>
            {
                folders
                    .entry(j.to_string())
                    .or_default()
                    .push(name.to_string());
            }
            _ => orphans.push(key),
        }
    }
    let names = |v: &Value| -> Option<Vec<String>> {
        let mut p = v
            .as_array()?
            .iter()
            .map(|o| Some(o["path"].as_str()?.rsplit('/').next()?.to_string()))
            .collect::<Option<Vec<String>>>()?;
        p.sort();
        Some(p)
    };
    let mut duplicated = Vec::new();
    for (job, (file, model)) in jobs {
        let mut found = folders.remove(*job).unwrap_or_default();
        found.sort();
        let (model, variation) = model.folder();
        let dir = store.join(format!("outputs/{file}/{model}/{variation}/{job}"));
        let manifest: Value = std::fs::read(dir.join("manifest.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null);
        let listed = names(&manifest["outputs"]);
        let shown = rows.get(*job).and_then(|r| names(&r.2));
        let mut expected = listed.clone().unwrap_or_default();
        expected.push("manifest.json".into());
        expected.sort();
        if listed.is_none() || listed != shown || found != expected {
            duplicated.push(format!(
                "{job}: folder {found:?}, manifest {listed:?}, read model {shown:?}"
            ));
        }
    }
    Objects {
        orphans,
        duplicated,
    }
}

pub(super) fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let path = e.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
