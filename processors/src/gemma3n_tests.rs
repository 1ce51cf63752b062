//! The runtime side of the lyrics worker: what a job's params become and the set-up errors.
//! Runs (both writers, user lyrics, cancel) are end to end in tests/e2e/e2e_lyrics.rs.

use serde_json::json;

use super::*;

#[test]
fn params_are_read_and_lyrics_without_words_are_refused() {
    let p = params(&json!({})).unwrap();
    assert_eq!(
        p,
        Params {
            lyrics: None,
            whisper: "base".into(),
            language: None
        }
    );
    let p = params(
        &json!({"lyrics": "[Chorus]\nla la\n\nend", "whisper": "tiny.en",
                           "language": "en"}),
    )
    .unwrap();
    assert_eq!(p.lyrics.unwrap().sections.len(), 2);
    assert_eq!(
        (p.whisper.as_str(), p.language.as_deref()),
        ("tiny.en", Some("en"))
    );
    match params(&json!({"lyrics": " \n[Verse]\n - \n"})) {
        Err(ModelError::Failed {
            code,
            retryable,
            message,
        }) => {
            assert_eq!(code, "invalid_params");
            assert!(!retryable);
            assert!(message.contains("no words"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn missing_weights_name_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let e = Lyrics::new(dir.path()).err().unwrap().to_string();
    assert!(
        e.contains("fetch-weights.sh") && e.contains("models fetch gemma3n"),
        "{e}"
    );
    // A Gemma without a Whisper to time its words cannot serve either.
    let g = dir.path().join("gemma/gemma3-270m");
    std::fs::create_dir_all(&g).unwrap();
    std::fs::write(g.join("model.gguf"), b"").unwrap();
    let e = Lyrics::new(dir.path()).err().unwrap().to_string();
    assert!(
        e.contains("Whisper") && e.contains("whisper/fetch-weights.sh"),
        "{e}"
    );
}
