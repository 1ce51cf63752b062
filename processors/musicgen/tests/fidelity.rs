//! roar-musicgen against the reference (transformers 5.25, torch 2.11) on committed fixtures
//! from `scripts/gen_fixtures.py`: the tiny random models in `tests/fixtures/tiny*/` and the
//! reference's outputs for them in `reference.safetensors`. Float outputs within 1e-4 (max
//! abs, float32), codes identical.

mod common;

use candle_core::Tensor;
use common::{fixture, ints, load, load_portable, reference, vec_f32, PROMPT};
use roar_musicgen::decoder::{CrossStates, Decoder};
use roar_musicgen::t5::relative_bucket;
use roar_musicgen::{MusicGen, Request, Sampling};

const BOUND: f32 = 1e-4;

/// [`roar_testkit::assert_close`], printing the largest difference for the README's table.
fn close(what: &str, got: &[f32], want: &[f32], bound: f32) {
    let d = roar_testkit::assert_close(what, got, want, bound);
    eprintln!("{what}: max abs diff {d:.2e}");
}

fn greedy() -> Sampling {
    Sampling {
        temperature: 0.0,
        guidance_scale: 3.0,
        ..Sampling::default()
    }
}

#[test]
fn tokenizer_and_t5_encoder_match() {
    let r = reference();
    let m = load("tiny");
    let ids = m.tokenize(PROMPT).unwrap();
    assert_eq!(ids, ints(&r["prompt_ids"]));
    let hidden = m.t5().forward(&ids).unwrap();
    close(
        "t5 hidden",
        &vec_f32(&hidden),
        &vec_f32(&r["t5.hidden"]),
        BOUND,
    );
    let projected = m.text_states(&ids).unwrap();
    close(
        "enc_to_dec_proj",
        &projected,
        &vec_f32(&r["enc.projected"]),
        BOUND,
    );
}

#[test]
fn t5_relative_buckets_match_at_t5_base_settings() {
    let want = ints(&reference()["t5.buckets_32_128"]);
    let got: Vec<u32> = (-300i64..=300)
        .map(|r| relative_bucket(r, 32, 128))
        .collect();
    assert_eq!(got, want);
}

/// The decoder inputs of the fixture as `rows × positions × codebooks` (both rows the same).
fn tokens(ids: &Tensor, rows: usize) -> (Vec<u32>, usize) {
    let ids = ids.to_vec2::<i64>().unwrap(); // [codebooks, positions]
    let n = ids[0].len();
    let col: Vec<u32> = (0..n)
        .flat_map(|t| ids.iter().map(move |row| row[t] as u32))
        .collect();
    (col.repeat(rows), n)
}

/// Reference logits `[rows, codebooks, positions, vocab]` → ours `[rows, positions, codebooks·vocab]`.
fn reference_logits(t: &Tensor) -> Vec<f32> {
    t.permute((0, 2, 1, 3))
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn cross(m: &MusicGen) -> CrossStates {
    let states = m.text_states(&m.tokenize(PROMPT).unwrap()).unwrap();
    CrossStates {
        len: states.len() / m.config().decoder.hidden_size,
        states,
        rows: vec![true, false],
    }
}

fn check_decoder(m: &MusicGen, what: &str) {
    let r = reference();
    let dec: &Decoder = m.decoder();
    let (toks, n) = tokens(&r["dec.input_ids"], 2);
    let want = reference_logits(&r["dec.logits"]);
    let width = want.len() / (2 * n);
    let c = cross(m);
    // Every position at once (the prefill path).
    let mut s = dec.start(2, n, Some(&c)).unwrap();
    let x = dec.embed(&toks, 2, n).unwrap();
    let all = dec.forward(&mut s, &x, n, true).unwrap();
    close(&format!("{what}: logits, one pass"), &all, &want, BOUND);
    // The same through the cache: 5 positions, then one at a time.
    let mut s = dec.start(2, n, Some(&c)).unwrap();
    let k = m.config().decoder.num_codebooks;
    let block = |from: usize, to: usize| -> Vec<u32> {
        (0..2)
            .flat_map(|row| toks[(row * n + from) * k..(row * n + to) * k].to_vec())
            .collect()
    };
    let first = dec.embed(&block(0, 5), 2, 5).unwrap();
    let mut got = vec![dec.forward(&mut s, &first, 5, false).unwrap()];
    for t in 5..n {
        let x = dec.embed(&block(t, t + 1), 2, 1).unwrap();
        got.push(dec.forward(&mut s, &x, 1, false).unwrap());
    }
    for (i, logits) in got.iter().enumerate() {
        let t = i + 4;
        for row in 0..2 {
            let want_row = &want[(row * n + t) * width..(row * n + t + 1) * width];
            close(
                &format!("{what}: cached logits, row {row}, position {t}"),
                &logits[row * width..(row + 1) * width],
                want_row,
                BOUND,
            );
        }
    }
}

#[test]
fn decoder_logits_for_every_codebook_match() {
    check_decoder(&load("tiny"), "cpu");
}

#[test]
fn portable_decoder_used_on_gpus_matches() {
    check_decoder(&load_portable("tiny"), "portable");
}

#[test]
fn encodec_decodes_encodes_and_embeds_like_the_reference() {
    let r = reference();
    let m = load("tiny");
    let codes: Vec<Vec<u32>> = ints2(&r["encodec.codes"]);
    let audio = m.encodec().decode(&codes).unwrap();
    close(
        "encodec decode",
        &audio,
        &vec_f32(&r["encodec.decoded"]),
        BOUND,
    );
    let wav = vec_f32(&r["encodec.wav"]);
    let emb = m.encodec().embeddings(&wav).unwrap();
    close(
        "encodec embeddings",
        &vec_f32(&emb),
        &vec_f32(&r["encodec.embeddings"]),
        BOUND,
    );
    assert_eq!(
        m.encodec().encode(&wav).unwrap(),
        ints2(&r["encodec.encoded"])
    );
    // Windows of 3 frames give the samples of one pass.
    let chunked = m
        .encodec()
        .decode_chunked(&codes, 3, &mut |_, _| true)
        .unwrap();
    close("chunked decode", &chunked, &audio, 1e-6);
}

fn ints2(t: &Tensor) -> Vec<Vec<u32>> {
    t.to_vec2::<i64>()
        .unwrap()
        .into_iter()
        .map(|r| r.into_iter().map(|v| v as u32).collect())
        .collect()
}

fn generate(m: &MusicGen, req: Request) -> roar_musicgen::Generated {
    m.generate(&req, &mut |_| true).unwrap()
}

fn check_greedy(m: &MusicGen, what: &str) {
    let r = reference();
    let want = ints2(&r["gen.codes"]);
    let frames = want[0].len();
    let out = generate(
        m,
        Request {
            prompt: Some(PROMPT.into()),
            duration_seconds: frames as f32 / 50.0,
            sampling: greedy(),
            ..Request::default()
        },
    );
    assert_eq!(out.codes, want, "{what}: greedy codes (50 steps)");
    close(
        &format!("{what}: audio"),
        &out.audio,
        &vec_f32(&r["gen.audio"]),
        BOUND,
    );
}

#[test]
fn greedy_generation_with_guidance_gives_the_reference_codes_and_audio() {
    check_greedy(&load("tiny"), "cpu");
}

#[test]
fn portable_greedy_generation_gives_the_reference_codes() {
    check_greedy(&load_portable("tiny"), "portable");
}

#[test]
fn continuation_of_audio_gives_the_reference_codes() {
    let r = reference();
    let m = load("tiny");
    let want = ints2(&r["cont.codes"]);
    let wav = vec_f32(&r["cont.wav"]);
    let prompt_frames = wav.len().div_ceil(640);
    let out = generate(
        &m,
        Request {
            prompt: Some(PROMPT.into()),
            duration_seconds: (want[0].len() - prompt_frames) as f32 / 50.0,
            sampling: greedy(),
            continuation: Some(wav),
            ..Request::default()
        },
    );
    assert_eq!(out.prompt_frames, prompt_frames);
    assert_eq!(out.codes, want);
    assert_eq!(out.audio.len(), want[0].len() * 640);
    assert_eq!(out.new_audio().len(), (want[0].len() - prompt_frames) * 640);
}

#[test]
fn melody_chroma_matches_the_feature_extractor() {
    let r = reference();
    let m = load("tiny-melody");
    let x = m.chroma().expect("melody model has a chroma extractor");
    for name in ["short", "long"] {
        let wav = vec_f32(&r[&format!("melody.{name}.wav")]);
        let norm = x.normalized(&wav).unwrap();
        close(
            &format!("{name}: normalised chroma"),
            &norm,
            &vec_f32(&r[&format!("melody.{name}.chroma_norm")]),
            BOUND,
        );
        let one_hot = x.chroma(&wav).unwrap();
        assert_eq!(
            one_hot,
            vec_f32(&r[&format!("melody.{name}.chroma")]),
            "{name}: one-hot chroma"
        );
    }
    let bank: Vec<f32> = roar_musicgen::chroma::filter_bank(32000.0, 2048, 12)
        .into_iter()
        .map(|v| v as f32)
        .collect();
    close(
        "chroma filter bank",
        &bank,
        &vec_f32(&r["melody.filters_2048"]),
        1e-6,
    );
}

#[test]
fn melody_decoder_logits_and_greedy_codes_match() {
    let r = reference();
    for m in [load("tiny-melody"), load_portable("tiny-melody")] {
        let ids = m.tokenize(PROMPT).unwrap();
        let chroma = vec_f32(&r["melody.short.chroma"]);
        let (prefix, len) = common::melody_prefix(&m, &ids, &chroma);
        let dec = m.decoder();
        let (toks, n) = tokens(&r["melody.dec.input_ids"], 2);
        let d = m.config().decoder.hidden_size;
        let x = dec.embed(&toks, 2, n).unwrap();
        let mut input = Vec::new();
        for row in 0..2 {
            input.extend_from_slice(&prefix[row * len * d..(row + 1) * len * d]);
            input.extend_from_slice(&x[row * n * d..(row + 1) * n * d]);
        }
        let mut s = dec.start(2, len + n, None).unwrap();
        let logits = dec.forward(&mut s, &input, len + n, true).unwrap();
        close(
            "melody logits",
            &logits,
            &reference_logits(&r["melody.dec.logits"]),
            BOUND,
        );

        let want = ints2(&r["melody.gen.codes"]);
        let out = generate(
            &m,
            Request {
                prompt: Some(PROMPT.into()),
                duration_seconds: want[0].len() as f32 / 50.0,
                sampling: greedy(),
                melody: Some(vec_f32(&r["melody.short.wav"])),
                ..Request::default()
            },
        );
        assert_eq!(out.codes, want, "melody greedy codes");
    }
}

#[test]
fn fixture_models_hold_every_tensor_the_config_needs() {
    for name in ["tiny", "tiny-melody"] {
        let files = roar_musicgen::weights::ModelFiles::locate(&fixture(name), name).unwrap();
        let cfg = roar_musicgen::MusicgenConfig::load(&files.config).unwrap();
        roar_musicgen::weights::check_tensors(&cfg, &files.weights).unwrap();
    }
}
