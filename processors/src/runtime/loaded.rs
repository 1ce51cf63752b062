//! A worker's models by variation: the variations whose weights are present are served, each
//! loaded on its first job and kept for the worker's life (loading takes seconds and gigabytes;
//! a worker serves the same few variations all day).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use super::ModelError;

pub struct Loaded<T> {
    /// The model's name, for the error naming what is served.
    model: &'static str,
    variations: Vec<String>,
    cache: Mutex<HashMap<String, Arc<T>>>,
}

impl<T> Loaded<T> {
    /// Serves those of `known` (in that order) for which `has_weights(dir/<variation>)` holds;
    /// `None` when there is none, so that the caller can name the file it expected.
    pub fn present(
        model: &'static str,
        dir: &Path,
        known: &[&str],
        has_weights: impl Fn(&Path) -> bool,
    ) -> Option<Self> {
        let variations: Vec<String> = known
            .iter()
            .filter(|v| has_weights(&dir.join(v)))
            .map(|v| v.to_string())
            .collect();
        (!variations.is_empty()).then(|| Self {
            model,
            variations,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The variations served, in the order given.
    pub fn variations(&self) -> &[String] {
        &self.variations
    }

    /// Whether `variation` is served here; one that is not fails the job for good
    /// (`unknown_variation`, naming those that are).
    pub fn serves(&self, variation: &str) -> Result<(), ModelError> {
        if self.variations.iter().any(|v| v == variation) {
            return Ok(());
        }
        Err(ModelError::permanent(
            "unknown_variation",
            format!(
                "{} {variation:?} is not served here (weights present for: {})",
                self.model,
                self.variations.join(", ")
            ),
        ))
    }

    /// `variation`'s model, loaded with `load` on first use. A variation not served here fails
    /// the job for good ([`Self::serves`]); a failed load is not kept, so the next job tries
    /// again. Jobs wait for a load in progress rather than load the same weights twice.
    pub fn get(
        &self,
        variation: &str,
        load: impl FnOnce() -> Result<T, ModelError>,
    ) -> Result<Arc<T>, ModelError> {
        self.serves(variation)?;
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = cache.get(variation) {
            return Ok(m.clone());
        }
        let m = Arc::new(load()?);
        cache.insert(variation.to_string(), m.clone());
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn served(dir: &Path) -> Loaded<String> {
        Loaded::present("toy", dir, &["small", "large", "absent"], |d| {
            d.join("weights").is_file()
        })
        .expect("two variations present")
    }

    #[test]
    fn only_the_variations_with_weights_are_served_each_loaded_once() {
        let dir = tempfile::tempdir().unwrap();
        for v in ["large", "small"] {
            std::fs::create_dir_all(dir.path().join(v)).unwrap();
            std::fs::write(dir.path().join(v).join("weights"), b"w").unwrap();
        }
        let loaded = served(dir.path());
        assert_eq!(loaded.variations(), ["small", "large"], "the known order");
        let loads = AtomicUsize::new(0);
        let load = || {
            loads.fetch_add(1, Ordering::SeqCst);
            Ok("model".to_string())
        };
        let a = loaded.get("small", load).unwrap();
        let b = loaded.get("small", load).unwrap();
        assert!(Arc::ptr_eq(&a, &b), "kept, not loaded again");
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        let e = loaded.get("absent", load).unwrap_err();
        assert!(e.to_string().contains("unknown_variation"), "{e}");
        assert!(e.to_string().contains("small, large"), "{e}");
        assert_eq!(loads.load(Ordering::SeqCst), 1, "nothing loaded for it");
    }

    #[test]
    fn a_failed_load_is_not_kept_and_no_weights_serves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        assert!(served_none(dir.path()));
        std::fs::create_dir_all(dir.path().join("small")).unwrap();
        std::fs::write(dir.path().join("small").join("weights"), b"w").unwrap();
        let loaded = served(dir.path());
        let e = loaded
            .get("small", || Err(ModelError::retryable("oom", "no memory")))
            .unwrap_err();
        assert!(e.to_string().contains("oom"), "{e}");
        let m = loaded.get("small", || Ok("model".to_string())).unwrap();
        assert_eq!(*m, "model", "the next job loads again");
    }

    fn served_none(dir: &Path) -> bool {
        Loaded::<String>::present("toy", dir, &["small"], |d| d.join("weights").is_file()).is_none()
    }
}
