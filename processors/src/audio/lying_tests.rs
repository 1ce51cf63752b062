//! Files whose headers lie, and the limits: what is decoded is what counts.

use std::io::{Read, Seek, SeekFrom};

use super::*;
use crate::encode::{encode, Format as Enc};

fn sine(rate: u32, secs: f32) -> Vec<f32> {
    let n = (rate as f32 * secs) as usize;
    (0..n)
        .map(|i| 0.5 * (2.0 * std::f32::consts::PI * 440.0 * i as f32 / rate as f32).sin())
        .collect()
}

fn measure_bytes(bytes: Vec<u8>, hint: &str, limits: &Limits) -> Result<Measured, AudioError> {
    measure(Source::bytes(bytes), Some(hint), limits)
}

/// A FLAC of `secs` of mono audio whose STREAMINFO claims `claimed_frames` in total.
fn flac_claiming(rate: u32, secs: f32, claimed_frames: u64) -> Vec<u8> {
    let mut f = encode(&[sine(rate, secs)], rate, Enc::Flac).unwrap();
    assert_eq!(&f[..4], b"fLaC");
    // STREAMINFO follows the 4-byte block header: 10 bytes of block/frame sizes, then
    // 20 bits rate, 3 channels, 5 bits per sample and 36 bits of total samples.
    let at = 8 + 10;
    let mut word = u64::from_be_bytes(f[at..at + 8].try_into().unwrap());
    word = (word & !((1u64 << 36) - 1)) | (claimed_frames & ((1u64 << 36) - 1));
    f[at..at + 8].copy_from_slice(&word.to_be_bytes());
    f
}

#[test]
fn a_flac_claiming_hours_is_as_long_as_what_it_holds() {
    let f = flac_claiming(8000, 1.0, 8000 * 36_000);
    let m = measure_bytes(f.clone(), "flac", &Limits::seconds(60.0)).unwrap();
    assert_eq!(m.frames, 8000);
    // A worker keeps what it decodes, nothing sized by the claim.
    let d = decode(f, Some("flac"), 60.0).unwrap();
    assert_eq!(d.samples.len(), 8000);
    assert!(d.samples.capacity() < 8000 * 4, "{}", d.samples.capacity());
}

#[test]
fn a_flac_claiming_a_second_but_holding_two_minutes_hits_the_limit() {
    let f = flac_claiming(8000, 120.0, 8000);
    assert_eq!(
        measure_bytes(f, "flac", &Limits::seconds(60.0)).unwrap_err(),
        AudioError::TooLong(60.0)
    );
}

#[test]
fn a_wav_whose_sizes_claim_4_gib_is_as_long_as_what_it_holds() {
    let mut w = wav_pcm16(&sine(8000, 2.0), 8000, 1);
    w[4..8].copy_from_slice(&u32::MAX.to_le_bytes()); // RIFF size
    w[40..44].copy_from_slice(&u32::MAX.to_le_bytes()); // data size
    let m = measure_bytes(w, "wav", &Limits::seconds(60.0)).unwrap();
    assert_eq!(m.frames, 16_000);
    assert!((m.duration_seconds() - 2.0).abs() < 1e-9);
}

#[test]
fn a_wav_claiming_an_absurd_rate_is_refused() {
    // At 4 GHz a gigabyte of samples would "last" a fraction of a second: no duration limit
    // would ever stop it, so such a rate is refused outright.
    let mut w = wav_pcm16(&sine(8000, 1.0), 8000, 1);
    w[24..28].copy_from_slice(&u32::MAX.to_le_bytes());
    w[28..32].copy_from_slice(&u32::MAX.to_le_bytes()); // byte rate
    let e = measure_bytes(w, "wav", &Limits::seconds(60.0)).unwrap_err();
    assert!(
        matches!(
            e,
            AudioError::UnsupportedCodec(_) | AudioError::UnknownFormat(_)
        ),
        "{e:?}"
    );
}

#[test]
fn the_decoded_size_limit_counts_samples_actually_decoded() {
    // 1 s of stereo at 8 kHz is 64,000 bytes of f32 samples.
    let stereo: Vec<f32> = sine(8000, 1.0).iter().flat_map(|s| [*s, *s]).collect();
    let w = wav_pcm16(&stereo, 8000, 2);
    let limits = |max_decoded_bytes| Limits {
        max_decoded_bytes,
        ..Limits::seconds(60.0)
    };
    assert!(measure_bytes(w.clone(), "wav", &limits(64_000)).is_ok());
    let e = measure_bytes(w.clone(), "wav", &limits(63_999)).unwrap_err();
    assert_eq!(e.code(), "too_large");
    let e = decode_from(Source::bytes(w), Some("wav"), &limits(32_000)).unwrap_err();
    assert_eq!(e.code(), "too_large");
}

#[test]
fn the_input_size_limit_is_checked_before_decoding() {
    let w = wav_pcm16(&sine(8000, 1.0), 8000, 1);
    let limits = Limits {
        max_input_bytes: w.len() as u64 - 1,
        ..Limits::seconds(60.0)
    };
    let e = measure_bytes(w, "wav", &limits).unwrap_err();
    assert_eq!(e.code(), "too_large");
    assert!(!e.is_retryable());
}

/// Reads like a file until it panics (a decoder bug on some input looks the same).
struct PanicsAfter(Cursor<Vec<u8>>, u64);

impl Read for PanicsAfter {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        assert!(self.0.position() < self.1, "decoder bug");
        self.0.read(buf)
    }
}

impl Seek for PanicsAfter {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        self.0.seek(pos)
    }
}

impl MediaSource for PanicsAfter {
    fn is_seekable(&self) -> bool {
        true
    }
    fn byte_len(&self) -> Option<u64> {
        Some(self.0.get_ref().len() as u64)
    }
}

#[test]
fn a_panic_while_decoding_is_a_corrupt_file() {
    let w = wav_pcm16(&sine(8000, 1.0), 8000, 1);
    let src = Source {
        size: w.len() as u64,
        inner: Box::new(PanicsAfter(Cursor::new(w), 100)),
        failure: None,
    };
    let e = measure(src, Some("wav"), &Limits::seconds(60.0)).unwrap_err();
    assert_eq!(e.code(), "corrupt_audio");
    assert!(e.to_string().contains("decoder bug"), "{e}");
}

/// Fails the way a store does mid-read.
struct StoreFails(ReadFailure);

impl Read for StoreFails {
    fn read(&mut self, _buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.set("connection reset".into());
        Err(std::io::Error::other("connection reset"))
    }
}

impl Seek for StoreFails {
    fn seek(&mut self, _pos: SeekFrom) -> std::io::Result<u64> {
        Ok(0)
    }
}

impl MediaSource for StoreFails {
    fn is_seekable(&self) -> bool {
        false
    }
    fn byte_len(&self) -> Option<u64> {
        None
    }
}

#[test]
fn a_store_failure_is_retryable_not_a_corrupt_file() {
    let failure = ReadFailure::default();
    let src = Source {
        size: 1000,
        inner: Box::new(StoreFails(failure.clone())),
        failure: Some(failure),
    };
    let e = measure(src, Some("wav"), &Limits::seconds(60.0)).unwrap_err();
    assert_eq!(e.code(), "storage_unavailable");
    assert!(e.is_retryable());
}
