//! Generation behaviour with the tiny model: progress, cancel, seeds, sliding windows, the
//! loaders' layouts, and errors for bad requests and bad files.

mod common;

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use common::{fixture, load, PROMPT};
use roar_musicgen::{MusicGen, MusicgenError, Request, Sampling, Stage};

fn request(seconds: f32, seed: u64) -> Request {
    Request {
        prompt: Some(PROMPT.into()),
        duration_seconds: seconds,
        sampling: Sampling {
            seed,
            ..Sampling::default()
        },
        ..Request::default()
    }
}

#[test]
fn progress_counts_every_step_and_a_cancel_stops_between_steps() {
    let m = load("tiny");
    let mut steps = Vec::new();
    let mut decoding = 0;
    let out = m
        .generate(&request(1.0, 3), &mut |p| {
            match p.stage {
                Stage::Generating => steps.push((p.done, p.total)),
                Stage::Decoding => decoding += 1,
                Stage::EncodingPrompt => panic!("nothing to encode"),
            }
            true
        })
        .unwrap();
    // 50 frames in the delay pattern: 50 + 3 positions after BOS.
    assert_eq!(steps.len(), 53);
    assert!(steps
        .iter()
        .enumerate()
        .all(|(i, &(d, t))| d == i + 1 && t == 53));
    assert!(decoding >= 1);
    assert_eq!(
        out.codes.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![50; 4]
    );
    assert_eq!(out.audio.len(), 50 * 640);
    roar_testkit::assert_finite("audio", &out.audio);

    let mut seen = 0;
    let err = m
        .generate(&request(1.0, 3), &mut |p| {
            seen += 1;
            !(p.stage == Stage::Generating && p.done == 10)
        })
        .unwrap_err();
    assert!(matches!(err, MusicgenError::Canceled));
    assert_eq!(seen, 10, "no step after the cancel");
}

#[test]
fn a_seed_reproduces_a_run_and_another_seed_changes_it() {
    let m = load("tiny");
    let run = |seed| m.generate(&request(0.5, seed), &mut |_| true).unwrap();
    let (a, b, c) = (run(11), run(11), run(12));
    assert_eq!(a.codes, b.codes);
    assert_eq!(a.audio, b.audio);
    assert_ne!(a.codes, c.codes);
}

#[test]
fn long_pieces_slide_a_bounded_window() {
    let m = load("tiny");
    let windowed = Request {
        window_seconds: 1.0,
        stride_seconds: 0.5,
        ..request(2.5, 5)
    };
    let mut total = 0;
    let out = m
        .generate(&windowed, &mut |p| {
            if p.stage == Stage::Generating {
                total = p.total;
            }
            true
        })
        .unwrap();
    assert_eq!(out.codes[0].len(), 125);
    assert_eq!(out.audio.len(), 125 * 640);
    roar_testkit::assert_finite("audio", &out.audio);
    // Windows of 50 frames: 50 new, then 25 new after 25 of context, three times.
    assert_eq!(total, (50 + 3) + 3 * (25 + 3));
    // Up to the first window's delay-pattern edge, the same draws on the same inputs as one
    // long window: the first 48 frames of every codebook agree.
    let whole = m.generate(&request(2.5, 5), &mut |_| true).unwrap();
    for k in 0..4 {
        assert_eq!(out.codes[k][..48], whole.codes[k][..48], "codebook {k}");
    }
    assert_ne!(out.codes, whole.codes);
}

#[test]
fn unconditional_generation_runs_one_row() {
    let m = load("tiny");
    let out = m
        .generate(
            &Request {
                prompt: None,
                ..request(0.3, 1)
            },
            &mut |_| true,
        )
        .unwrap();
    assert_eq!(out.codes[0].len(), 15);
}

#[test]
fn a_continued_song_longer_than_the_context_contributes_its_end() {
    let m = load("tiny");
    let song: Vec<f32> = (0..32000 * 2)
        .map(|i| (i as f32 * 0.05).sin() * 0.3)
        .collect();
    let req = Request {
        continuation: Some(song.clone()),
        window_seconds: 1.0,
        stride_seconds: 0.5,
        ..request(0.4, 2)
    };
    let out = m.generate(&req, &mut |_| true).unwrap();
    assert_eq!(out.prompt_frames, 25);
    assert_eq!(out.codes[0].len(), 25 + 20);
    // The kept frames are the codes of the song's last 25 frames of samples: only the tail
    // is encoded, so the encoder's memory does not grow with the song.
    let tail = m.encodec().encode(&song[song.len() - 25 * 640..]).unwrap();
    let kept: Vec<&[u32]> = out.codes.iter().map(|c| &c[..25]).collect();
    assert_eq!(kept, tail.iter().map(Vec::as_slice).collect::<Vec<_>>());
}

#[test]
fn bad_requests_are_invalid_params() {
    let m = load("tiny");
    let cases = [
        Request {
            melody: Some(vec![0.1; 32000]),
            ..request(1.0, 0)
        },
        Request {
            duration_seconds: -1.0,
            ..request(1.0, 0)
        },
        Request {
            sampling: Sampling {
                top_p: 2.0,
                ..Sampling::default()
            },
            ..request(1.0, 0)
        },
        Request {
            prompt: Some("word ".repeat(2000)),
            ..request(1.0, 0)
        },
    ];
    for req in cases {
        let e = m.generate(&req, &mut |_| true).unwrap_err();
        assert!(matches!(e, MusicgenError::InvalidParams(_)), "{e}");
        assert!(!e.is_retryable());
    }
}

#[test]
fn missing_and_broken_files_are_reported_with_the_path() {
    let dir = tempfile::tempdir().unwrap();
    match MusicGen::load(dir.path(), "small", &Device::Cpu) {
        Err(MusicgenError::WeightsMissing { path, variation }) => {
            assert!(path.ends_with("config.json"));
            assert_eq!(variation, "small");
        }
        other => panic!("{:?}", other.err()),
    }
    for f in ["config.json", "tokenizer.json", "model.safetensors"] {
        std::fs::copy(fixture("tiny").join(f), dir.path().join(f)).unwrap();
    }
    // A config that asks for a third decoder layer the weights do not have.
    let cfg = std::fs::read_to_string(dir.path().join("config.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&cfg).unwrap();
    v["decoder"]["num_hidden_layers"] = 3.into();
    std::fs::write(dir.path().join("config.json"), v.to_string()).unwrap();
    let e = MusicGen::load(dir.path(), "x", &Device::Cpu).err().unwrap();
    assert!(matches!(e, MusicgenError::InvalidModel { .. }), "{e}");
    assert!(e.to_string().contains("layers.2"), "{e}");
    std::fs::write(
        dir.path().join("config.json"),
        "{\"model_type\": \"musicgen\"",
    )
    .unwrap();
    let e = MusicGen::load(dir.path(), "x", &Device::Cpu).err().unwrap();
    assert!(matches!(e, MusicgenError::InvalidModel { .. }), "{e}");
}

/// The tiny model's tensors, renamed as `save_pretrained` writes weight norm today.
fn parametrized(tensors: &HashMap<String, Tensor>) -> HashMap<String, Tensor> {
    tensors
        .iter()
        .map(|(k, v)| {
            let k = k
                .replace(".weight_g", ".parametrizations.weight.original0")
                .replace(".weight_v", ".parametrizations.weight.original1");
            (k, v.clone())
        })
        .collect()
}

#[test]
fn sharded_and_parametrized_layouts_load_the_same_model() {
    let src = fixture("tiny");
    let tensors =
        candle_core::safetensors::load(src.join("model.safetensors"), &Device::Cpu).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    // Two shards split by name, with the hub's index.
    let renamed = parametrized(&tensors);
    let (a, b): (HashMap<_, _>, HashMap<_, _>) = renamed
        .into_iter()
        .partition(|(k, _)| k.starts_with("decoder."));
    let mut map = serde_json::Map::new();
    for (file, part) in [
        ("model-00001-of-00002.safetensors", &a),
        ("model-00002-of-00002.safetensors", &b),
    ] {
        candle_core::safetensors::save(part, dir.path().join(file)).unwrap();
        for k in part.keys() {
            map.insert(k.clone(), file.into());
        }
    }
    let index = serde_json::json!({ "metadata": {}, "weight_map": map });
    std::fs::write(
        dir.path().join("model.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();
    let sharded = MusicGen::load(dir.path(), "tiny", &Device::Cpu).unwrap();
    let single = load("tiny");
    let req = Request {
        sampling: Sampling {
            temperature: 0.0,
            ..Sampling::default()
        },
        ..request(0.3, 0)
    };
    let x = sharded.generate(&req, &mut |_| true).unwrap();
    let y = single.generate(&req, &mut |_| true).unwrap();
    assert_eq!(x.codes, y.codes);
    assert_eq!(x.audio, y.audio);
}
