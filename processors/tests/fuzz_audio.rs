//! Fuzzing the audio front end the probe and every worker decode uploads with: garbage, and
//! short valid WAV (16-bit, 24-bit, float), FLAC, MP3 and Ogg Vorbis files truncated, bit-flipped
//! and given headers that lie about sizes, rates and channel counts. Whatever the bytes, the
//! answer is a decode within the limits or an error that names the file's problem (never a
//! panic, never a storage error, never samples outside what [`Decoded`] promises).

use proptest::prelude::*;
use roar_testkit::fuzz::{fuzz, garbage, mutated};

use roar_processors::audio::{
    decode_from, measure, AudioError, Limits, Source, MAX_CHANNELS, MAX_SAMPLE_RATE,
};
use roar_processors::encode::{encode, Format as Enc};

const RATE: u32 = 8_000;

/// A tenth of a second of a chord, per channel.
fn chord(channels: usize) -> Vec<Vec<f32>> {
    (0..channels)
        .map(|c| {
            (0..RATE as usize / 10)
                .map(|i| {
                    let t = i as f32 / RATE as f32;
                    let f = 220.0 * (c + 1) as f32;
                    0.4 * (std::f32::consts::TAU * f * t).sin()
                })
                .collect()
        })
        .collect()
}

/// Small valid files of every format the front end reads, with the hint a client would give.
fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let fixture = |name: &str| {
        let path = format!(
            "{}/../tests/fixtures/audio/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    };
    let enc = |channels, format| encode(&chord(channels), RATE, format).expect("encodable");
    vec![
        ("wav", enc(1, Enc::Wav16)),
        ("wav", enc(2, Enc::Wav24)),
        ("wav", enc(2, Enc::Float32)),
        ("flac", enc(2, Enc::Flac)),
        ("mp3", enc(1, Enc::Mp3 { kbps: 64 })),
        ("mp3", fixture("sine.mp3")),
        ("ogg", fixture("sine.ogg")),
    ]
}

/// Small limits, so a lying header that would make the decoder run long or hold much hits them.
fn limits() -> Limits {
    Limits {
        max_seconds: 30.0,
        max_input_bytes: 1 << 20,
        max_decoded_bytes: 8 << 20,
    }
}

/// What the front end promises about any answer for `bytes`.
fn check(bytes: &[u8], hint: Option<&str>) -> Result<(), String> {
    let limits = limits();
    let decoded = decode_from(Source::bytes(bytes.to_vec()), hint, &limits);
    let measured = measure(Source::bytes(bytes.to_vec()), hint, &limits);
    let d = match (decoded, measured) {
        (Err(AudioError::Storage(e)), _) | (_, Err(AudioError::Storage(e))) => {
            return Err(format!("bytes in memory failed as storage: {e}"))
        }
        (Ok(d), Ok(m)) => {
            if m.frames as usize != d.frames() || m.format.channels != d.channels {
                return Err(format!(
                    "measure says {} frames x {}, decode {} x {}",
                    m.frames,
                    m.format.channels,
                    d.frames(),
                    d.channels
                ));
            }
            d
        }
        (Err(_), Err(_)) => return Ok(()),
        (d, m) => return Err(format!("decode and measure disagree: {d:?} / {m:?}")),
    };
    if !(1..=MAX_CHANNELS).contains(&d.channels) || !(1..=MAX_SAMPLE_RATE).contains(&d.sample_rate)
    {
        return Err(format!("{} Hz x {}", d.sample_rate, d.channels));
    }
    if d.samples.is_empty() || d.samples.len() % d.channels != 0 {
        return Err(format!(
            "{} samples of {} channels",
            d.samples.len(),
            d.channels
        ));
    }
    if d.duration_seconds() > limits.max_seconds
        || d.samples.len() as u64 * 4 > limits.max_decoded_bytes
    {
        return Err(format!(
            "{} s, {} samples: over the limits",
            d.duration_seconds(),
            d.samples.len()
        ));
    }
    match d.samples.iter().position(|s| !(-1.0..=1.0).contains(s)) {
        Some(i) => Err(format!("sample {i} is {}", d.samples[i])),
        None => Ok(()),
    }
}

#[test]
fn every_seed_decodes() {
    for (hint, bytes) in seeds() {
        check(&bytes, Some(hint)).unwrap();
        decode_from(Source::bytes(bytes), Some(hint), &limits()).unwrap();
    }
}

#[test]
fn the_front_end_refuses_broken_and_lying_files_without_panicking() {
    let seeds = seeds();
    let hints: Vec<&'static str> = seeds.iter().map(|(h, _)| *h).collect();
    let files = seeds.into_iter().map(|(_, b)| b).collect();
    let inputs = prop_oneof![
        // The client's hint, none, or a wrong one: detection must not trust it.
        6 => (mutated(files), 0..3usize).prop_map(move |((i, b), h)| {
            let hint = [Some(hints[i]), None, Some("wav")][h];
            (hint, b)
        }),
        1 => garbage(512).prop_map(|b| (Some("wav"), b)),
        1 => garbage(512).prop_map(|b| (None, b)),
    ];
    fuzz("audio front end", 10_000, inputs, |(hint, bytes)| {
        check(&bytes, hint)
    });
}

/// Found by the fuzz target: float PCM is read as stored, so a damaged float WAV decoded to a
/// sample of 7,884,319 (and could hold infinities and NaNs, which make peak and RMS NaN).
#[test]
fn float_samples_out_of_range_are_clipped_and_nan_is_silence() {
    let mut wav = encode(&chord(1), RATE, Enc::Float32).expect("encodable");
    let n = wav.len();
    for (i, v) in [7_884_319.0f32, f32::INFINITY, f32::NAN, -1e30]
        .iter()
        .enumerate()
    {
        let at = n - 16 + 4 * i;
        wav[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }
    let d = decode_from(Source::bytes(wav.clone()), Some("wav"), &limits()).unwrap();
    assert_eq!(&d.samples[d.samples.len() - 4..], &[1.0, 1.0, 0.0, -1.0]);
    let m = measure(Source::bytes(wav), Some("wav"), &limits()).unwrap();
    assert_eq!(m.peak_dbfs, 0.0);
    assert!(m.rms_dbfs.is_finite(), "{}", m.rms_dbfs);
}
