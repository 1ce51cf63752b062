//! Every format decoded back with symphonia (the same decoder the probe uses).

use super::*;
use crate::audio::decode;
use roar_testkit::assert_close;

const RATE: u32 = 44_100;

/// Stereo test signal: different tones per channel so a swapped or collapsed channel shows.
fn stereo(secs: f32, amp: f32) -> Vec<Vec<f32>> {
    let n = (RATE as f32 * secs) as usize;
    let tone = |f: f32| -> Vec<f32> {
        (0..n)
            .map(|i| amp * (2.0 * std::f32::consts::PI * f * i as f32 / RATE as f32).sin())
            .collect()
    };
    vec![tone(440.0), tone(660.0)]
}

fn round_trip(audio: &[Vec<f32>], format: Format) -> Vec<Vec<f32>> {
    let bytes = encode(audio, RATE, format).unwrap();
    let d = decode(bytes, Some(format.extension()), 600.0).unwrap();
    assert_eq!(d.sample_rate, RATE);
    assert_eq!(d.channels, audio.len());
    (0..d.channels)
        .map(|c| {
            d.samples
                .iter()
                .skip(c)
                .step_by(d.channels)
                .cloned()
                .collect()
        })
        .collect()
}

#[test]
fn lossless_formats_round_trip_within_their_precision() {
    let audio = stereo(0.5, 0.8);
    for (format, tolerance) in [
        (Format::Wav16, 0.5 / 32768.0),
        (Format::Wav24, 0.5 / 8_388_608.0),
        (Format::Float32, 0.0),
        (Format::Flac, 0.5 / 32768.0),
    ] {
        let back = round_trip(&audio, format);
        for c in 0..2 {
            let what = format!("{format:?} channel {c}");
            assert_close(&what, &back[c], &audio[c], tolerance);
        }
    }
}

#[test]
fn mono_is_written_as_one_channel() {
    let audio = vec![stereo(0.2, 0.5).remove(0)];
    let back = round_trip(&audio, Format::Flac);
    assert_close("mono", &back[0], &audio[0], 0.5 / 32768.0);
    // Shorter than one FLAC block.
    let short = vec![audio[0][..1000].to_vec()];
    let back = round_trip(&short, Format::Flac);
    assert_eq!(back[0].len(), 1000);
    assert_close("short mono", &back[0], &short[0], 0.5 / 32768.0);
}

/// MP3 is lossy and delayed by the codec; the tones must survive and the bitrate must show in
/// the size.
#[test]
fn mp3_keeps_the_tones_and_honours_the_bitrate() {
    let audio = stereo(2.0, 0.5);
    let small = encode(&audio, RATE, Format::Mp3 { kbps: 96 }).unwrap();
    let large = encode(&audio, RATE, Format::Mp3 { kbps: 320 }).unwrap();
    // CBR: bytes ≈ kbps * 1000 / 8 * seconds.
    for (bytes, kbps) in [(&small, 96.0), (&large, 320.0)] {
        let expected = kbps * 1000.0 / 8.0 * 2.0;
        let ratio = bytes.len() as f64 / expected;
        assert!(
            (0.9..1.2).contains(&ratio),
            "{kbps} kbit/s: {} bytes",
            bytes.len()
        );
    }
    let back = round_trip(&audio, Format::Mp3 { kbps: 192 });
    for c in 0..2 {
        let n = audio[c].len();
        assert!(
            back[c].len() >= n && back[c].len() < n + 4 * 1152,
            "length {}",
            back[c].len()
        );
        // Best alignment within the codec delay, then the residual must be small.
        let b = &audio[c][20_000..24_000];
        let best = (0..3000)
            .map(|lag| {
                let a = &back[c][20_000 + lag..][..b.len()];
                let err: f32 = a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum();
                let sig: f32 = b.iter().map(|y| y * y).sum();
                err / sig
            })
            .fold(f32::INFINITY, f32::min);
        assert!(best < 0.01, "channel {c}: relative error {best}");
    }
}

#[test]
fn rescale_fits_loud_stems_and_leaves_quiet_ones() {
    let mut loud = vec![vec![0.5, -2.0, 1.0], vec![0.25, 0.0, -0.5]];
    Clip::Rescale.apply(&mut loud);
    let scale = 1.01 * 2.0;
    assert_eq!(loud[0], vec![0.5 / scale, -2.0 / scale, 1.0 / scale]);
    assert_eq!(loud[1][2], -0.5 / scale);
    let mut quiet = vec![vec![0.5, -0.9]];
    Clip::Rescale.apply(&mut quiet);
    assert_eq!(quiet, vec![vec![0.5, -0.9]]);

    let mut hard = vec![vec![1.5, -3.0, 0.2]];
    Clip::Clamp.apply(&mut hard);
    assert_eq!(hard, vec![vec![0.99, -0.99, 0.2]]);
    assert_eq!(Clip::parse("clamp"), Some(Clip::Clamp));
    assert_eq!(Clip::parse("tanh"), None);
}

#[test]
fn format_names_follow_the_catalogue() {
    assert_eq!(Format::parse("wav16", 320), Ok(Format::Wav16));
    assert_eq!(Format::parse("wav24", 320), Ok(Format::Wav24));
    assert_eq!(Format::parse("float32", 320), Ok(Format::Float32));
    assert_eq!(Format::parse("flac", 320), Ok(Format::Flac));
    assert_eq!(Format::parse("mp3", 128), Ok(Format::Mp3 { kbps: 128 }));
    assert_eq!(Format::parse("mp3", 8), Err(EncodeError::Bitrate(8)));
    assert!(matches!(
        Format::parse("ogg", 320),
        Err(EncodeError::UnknownFormat(_))
    ));
    assert_eq!(Format::Float32.extension(), "wav");
    assert_eq!(Format::Mp3 { kbps: 64 }.content_type(), "audio/mpeg");
}

#[test]
fn bad_layouts_are_refused() {
    assert!(encode(&[], RATE, Format::Wav16).is_err());
    assert!(encode(&[vec![0.0; 3], vec![0.0; 2]], RATE, Format::Flac).is_err());
    let three = vec![vec![0.0; 4]; 3];
    assert!(matches!(
        encode(&three, RATE, Format::Wav16),
        Err(EncodeError::Unsupported(_))
    ));
    // MP3 has no 12.345 kHz mode.
    let err = encode(&[vec![0.0; 2000]], 12_345, Format::Mp3 { kbps: 128 });
    assert!(matches!(err, Err(EncodeError::Unsupported(_))), "{err:?}");
}
