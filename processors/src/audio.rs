//! Audio decoding with symphonia (wav, flac, mp3, ogg/vorbis, aac, ...), streamed from object
//! storage in bounded memory: the probe measures a file without keeping its samples
//! ([`measure`]), a worker keeps only the decoded samples its model needs ([`decode_from`]).
//! Limits count what is actually read and decoded, never what a header claims. Blocking and
//! CPU-bound: call it from a blocking thread, never on the async executor.

use std::io::Cursor;

use roar_common::storage::{ObjectReader, ReadFailure};
use symphonia::core::io::MediaSource;

#[cfg(test)]
mod lying_tests;
#[cfg(test)]
mod memory_tests;
mod stream;

pub use stream::{Format, MAX_CHANNELS, MAX_SAMPLE_RATE};

/// Why audio could not be decoded. Only [`AudioError::Storage`] may pass on retry.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AudioError {
    #[error("not a recognised audio format: {0}")]
    UnknownFormat(String),
    #[error("no audio track in the file")]
    NoAudioTrack,
    #[error("unsupported audio: {0}")]
    UnsupportedCodec(String),
    #[error("corrupt audio: {0}")]
    Corrupt(String),
    #[error("audio longer than the {0} s limit")]
    TooLong(f64),
    #[error("audio too large: {0}")]
    TooLarge(String),
    #[error("the file holds no samples")]
    Empty,
    /// The store failed while the file was read: nothing is known about the file.
    #[error("storage: {0}")]
    Storage(String),
}

impl AudioError {
    /// A short, stable code for events and the API.
    pub fn code(&self) -> &'static str {
        match self {
            AudioError::UnknownFormat(_) => "unknown_format",
            AudioError::NoAudioTrack => "no_audio_track",
            AudioError::UnsupportedCodec(_) => "unsupported_codec",
            AudioError::Corrupt(_) => "corrupt_audio",
            AudioError::TooLong(_) => "too_long",
            AudioError::TooLarge(_) => "too_large",
            AudioError::Empty => "empty_audio",
            AudioError::Storage(_) => "storage_unavailable",
        }
    }

    /// Whether trying again may succeed (the file itself was never the problem).
    pub fn is_retryable(&self) -> bool {
        matches!(self, AudioError::Storage(_))
    }
}

/// What a decode may consume. Every bound is checked against what is actually read and
/// decoded, as it is decoded: a file over a limit fails as soon as it crosses it.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Longest audio, seconds (frames decoded / the stream's rate).
    pub max_seconds: f64,
    /// Largest file, bytes.
    pub max_input_bytes: u64,
    /// Most decoded samples kept or measured, in bytes of f32 (frames × channels × 4): what a
    /// worker must hold in memory for its model.
    pub max_decoded_bytes: u64,
}

impl Limits {
    /// Only a duration limit (tests and in-memory use).
    pub fn seconds(max_seconds: f64) -> Self {
        Self {
            max_seconds,
            max_input_bytes: u64::MAX,
            max_decoded_bytes: u64::MAX,
        }
    }

    /// The limits `processor.*` configures.
    pub fn from_config(p: &roar_common::config::ProcessorConfig) -> Self {
        Self {
            max_seconds: p.max_audio_seconds,
            max_input_bytes: p.max_input_bytes,
            max_decoded_bytes: p.max_decoded_bytes,
        }
    }

    fn check(&self, frames: u64, rate: u32, channels: usize) -> Result<(), AudioError> {
        if frames as f64 / f64::from(rate.max(1)) > self.max_seconds {
            return Err(AudioError::TooLong(self.max_seconds));
        }
        let bytes = frames
            .saturating_mul(channels as u64)
            .saturating_mul(std::mem::size_of::<f32>() as u64);
        if bytes > self.max_decoded_bytes {
            return Err(AudioError::TooLarge(format!(
                "more than {} bytes of decoded samples",
                self.max_decoded_bytes
            )));
        }
        Ok(())
    }
}

/// Where encoded audio comes from.
pub struct Source {
    inner: Box<dyn MediaSource>,
    size: u64,
    failure: Option<ReadFailure>,
}

impl Source {
    /// Bytes already in memory.
    pub fn bytes(bytes: Vec<u8>) -> Self {
        Self {
            size: bytes.len() as u64,
            inner: Box::new(Cursor::new(bytes)),
            failure: None,
        }
    }

    /// An object read from storage as the decoder asks for it (bounded memory).
    pub fn object(reader: ObjectReader) -> Self {
        Self {
            size: reader.size(),
            failure: Some(reader.failure()),
            inner: Box::new(Object(reader)),
        }
    }
}

struct Object(ObjectReader);

impl std::io::Read for Object {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl std::io::Seek for Object {
    fn seek(&mut self, pos: std::io::SeekFrom) -> std::io::Result<u64> {
        self.0.seek(pos)
    }
}

impl MediaSource for Object {
    fn is_seekable(&self) -> bool {
        true
    }
    fn byte_len(&self) -> Option<u64> {
        Some(self.0.size())
    }
}

/// Decoded audio: interleaved f32 samples in [-1, 1].
#[derive(Debug, Clone)]
pub struct Decoded {
    pub codec: String,
    pub sample_rate: u32,
    pub channels: usize,
    pub samples: Vec<f32>,
}

impl Decoded {
    pub fn frames(&self) -> usize {
        self.samples.len() / self.channels.max(1)
    }

    pub fn duration_seconds(&self) -> f64 {
        self.frames() as f64 / f64::from(self.sample_rate.max(1))
    }

    /// The channels averaged into one (models that work on mono input).
    pub fn mono(&self) -> Vec<f32> {
        let c = self.channels.max(1);
        if c == 1 {
            return self.samples.clone();
        }
        self.samples
            .chunks_exact(c)
            .map(|f| f.iter().sum::<f32>() / c as f32)
            .collect()
    }

    /// Peak absolute sample, in dBFS (−inf for digital silence).
    pub fn peak_dbfs(&self) -> f64 {
        let mut m = Measure::default();
        stream::Sink::samples(&mut m, &self.samples);
        m.peak_dbfs()
    }

    /// RMS over all samples of all channels, in dBFS.
    pub fn rms_dbfs(&self) -> f64 {
        let mut m = Measure::default();
        stream::Sink::samples(&mut m, &self.samples);
        m.rms_dbfs()
    }
}

/// What the probe learns from a full pass over a file, without keeping its samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    pub format: Format,
    pub frames: u64,
    pub peak_dbfs: f64,
    pub rms_dbfs: f64,
}

impl Measured {
    pub fn duration_seconds(&self) -> f64 {
        self.frames as f64 / f64::from(self.format.sample_rate.max(1))
    }
}

#[derive(Default)]
struct Measure {
    peak: f32,
    sum_sq: f64,
    count: u64,
}

impl Measure {
    fn peak_dbfs(&self) -> f64 {
        db(f64::from(self.peak))
    }

    fn rms_dbfs(&self) -> f64 {
        if self.count == 0 {
            return f64::NEG_INFINITY;
        }
        db((self.sum_sq / self.count as f64).sqrt())
    }
}

impl stream::Sink for Measure {
    fn samples(&mut self, s: &[f32]) {
        for x in s {
            self.peak = self.peak.max(x.abs());
            self.sum_sq += f64::from(*x) * f64::from(*x);
        }
        self.count += s.len() as u64;
    }
}

/// Keeps every sample. No capacity is reserved from the header's length (it may lie); the
/// vector grows as audio is actually decoded, up to the limit.
struct Collect {
    samples: Vec<f32>,
}

impl stream::Sink for Collect {
    fn samples(&mut self, s: &[f32]) {
        self.samples.extend_from_slice(s);
    }
}

fn db(x: f64) -> f64 {
    20.0 * x.log10()
}

/// Decodes a whole file held in memory. `hint` is a file extension or MIME type, used only to
/// speed up format detection.
pub fn decode(bytes: Vec<u8>, hint: Option<&str>, max_seconds: f64) -> Result<Decoded, AudioError> {
    decode_from(Source::bytes(bytes), hint, &Limits::seconds(max_seconds))
}

/// Decodes `source` and keeps every sample (what a model runs on).
pub fn decode_from(
    source: Source,
    hint: Option<&str>,
    limits: &Limits,
) -> Result<Decoded, AudioError> {
    let mut sink = Collect {
        samples: Vec::new(),
    };
    let (format, _) = stream::run(source, hint, limits, &mut sink)?;
    Ok(Decoded {
        codec: format.codec,
        sample_rate: format.sample_rate,
        channels: format.channels,
        samples: sink.samples,
    })
}

/// Decodes all of `source` to measure it, keeping no samples: every packet must decode (the
/// probe's definition of a usable file), and the length is what was decoded.
pub fn measure(
    source: Source,
    hint: Option<&str>,
    limits: &Limits,
) -> Result<Measured, AudioError> {
    let mut m = Measure::default();
    let (format, frames) = stream::run(source, hint, limits, &mut m)?;
    Ok(Measured {
        format,
        frames,
        peak_dbfs: m.peak_dbfs(),
        rms_dbfs: m.rms_dbfs(),
    })
}

/// Writes interleaved f32 samples as 16-bit PCM WAV (tests and simple outputs).
pub fn wav_pcm16(samples: &[f32], sample_rate: u32, channels: u16) -> Vec<u8> {
    let data_len = (samples.len() * 2) as u32;
    let mut out = Vec::with_capacity(44 + data_len as usize);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&channels.to_le_bytes());
    out.extend_from_slice(&sample_rate.to_le_bytes());
    out.extend_from_slice(&(sample_rate * u32::from(channels) * 2).to_le_bytes());
    out.extend_from_slice(&(channels * 2).to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        let v = (s.clamp(-1.0, 1.0) * 32767.0).round() as i16;
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(freq: f32, rate: u32, secs: f32, amp: f32) -> Vec<f32> {
        let n = (rate as f32 * secs) as usize;
        (0..n)
            .map(|i| amp * (2.0 * std::f32::consts::PI * freq * i as f32 / rate as f32).sin())
            .collect()
    }

    #[test]
    fn decodes_wav_and_measures_levels() {
        let mono = sine(440.0, 22050, 1.0, 0.5);
        let stereo: Vec<f32> = mono.iter().flat_map(|s| [*s, *s]).collect();
        let d = decode(wav_pcm16(&stereo, 22050, 2), Some("wav"), 60.0).unwrap();
        assert_eq!(d.sample_rate, 22050);
        assert_eq!(d.channels, 2);
        assert_eq!(d.frames(), 22050);
        assert!((d.duration_seconds() - 1.0).abs() < 1e-9);
        assert!((d.peak_dbfs() - (-6.02)).abs() < 0.05, "{}", d.peak_dbfs());
        // A sine's RMS is peak / sqrt(2): 3.01 dB below its peak.
        assert!((d.rms_dbfs() - (-9.03)).abs() < 0.05, "{}", d.rms_dbfs());
    }

    #[test]
    fn garbage_and_truncation_are_clear_errors() {
        assert!(matches!(
            decode(b"definitely not audio".to_vec(), None, 60.0),
            Err(AudioError::UnknownFormat(_))
        ));
        assert!(decode(Vec::new(), Some("mp3"), 60.0).is_err());
        let wav = wav_pcm16(&sine(440.0, 8000, 0.1, 0.5), 8000, 1);
        assert_eq!(
            decode(wav[..44].to_vec(), Some("wav"), 60.0).unwrap_err(),
            AudioError::Empty
        );
    }

    #[test]
    fn refuses_audio_over_the_limit() {
        let wav = wav_pcm16(&sine(440.0, 8000, 2.0, 0.5), 8000, 1);
        assert_eq!(
            decode(wav, Some("wav"), 1.0).unwrap_err(),
            AudioError::TooLong(1.0)
        );
    }
}
