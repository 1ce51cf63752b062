//! Audio decoding with symphonia (wav, flac, mp3, ogg/vorbis, aac, ...). Blocking and CPU-bound:
//! call it from a blocking thread, never on the async executor.

use std::io::Cursor;

use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{DecoderOptions, CODEC_TYPE_NULL};
use symphonia::core::errors::Error as SymErr;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::{MediaSourceStream, MediaSourceStreamOptions};
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

/// Why audio could not be decoded. None of these improve on retry.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AudioError {
    #[error("not a recognised audio format: {0}")]
    UnknownFormat(String),
    #[error("no audio track in the file")]
    NoAudioTrack,
    #[error("unsupported codec: {0}")]
    UnsupportedCodec(String),
    #[error("corrupt audio: {0}")]
    Corrupt(String),
    #[error("audio longer than the {0} s limit")]
    TooLong(f64),
    #[error("the file holds no samples")]
    Empty,
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
            AudioError::Empty => "empty_audio",
        }
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
        let peak = self.samples.iter().fold(0f32, |m, s| m.max(s.abs()));
        db(f64::from(peak))
    }

    /// RMS over all samples of all channels, in dBFS.
    pub fn rms_dbfs(&self) -> f64 {
        if self.samples.is_empty() {
            return f64::NEG_INFINITY;
        }
        let sum: f64 = self
            .samples
            .iter()
            .map(|s| f64::from(*s) * f64::from(*s))
            .sum();
        db((sum / self.samples.len() as f64).sqrt())
    }
}

fn db(x: f64) -> f64 {
    20.0 * x.log10()
}

/// Decodes a whole file held in memory. `hint` is a file extension or MIME type, used only to
/// speed up format detection.
pub fn decode(bytes: Vec<u8>, hint: Option<&str>, max_seconds: f64) -> Result<Decoded, AudioError> {
    let mss = MediaSourceStream::new(
        Box::new(Cursor::new(bytes)),
        MediaSourceStreamOptions::default(),
    );
    let mut h = Hint::new();
    if let Some(x) = hint {
        if x.contains('/') {
            h.mime_type(x);
        } else {
            h.with_extension(x);
        }
    }
    let probed = symphonia::default::get_probe()
        .format(
            &h,
            mss,
            &FormatOptions::default(),
            &MetadataOptions::default(),
        )
        .map_err(|e| AudioError::UnknownFormat(e.to_string()))?;
    let mut format = probed.format;
    let track = format
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL && t.codec_params.sample_rate.is_some())
        .ok_or(AudioError::NoAudioTrack)?;
    let track_id = track.id;
    let codec = symphonia::default::get_codecs()
        .get_codec(track.codec_params.codec)
        .map(|c| c.short_name.to_string())
        .unwrap_or_else(|| format!("{:?}", track.codec_params.codec));
    let mut decoder = symphonia::default::get_codecs()
        .make(&track.codec_params, &DecoderOptions::default())
        .map_err(|e| AudioError::UnsupportedCodec(e.to_string()))?;
    let mut sample_rate = track.codec_params.sample_rate.unwrap_or(0);
    let mut channels = track.codec_params.channels.map(|c| c.count()).unwrap_or(0);

    let mut samples: Vec<f32> = Vec::new();
    let mut buf: Option<SampleBuffer<f32>> = None;
    let mut decode_errors = 0usize;
    loop {
        let packet = match format.next_packet() {
            Ok(p) => p,
            Err(SymErr::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(SymErr::ResetRequired) => break,
            Err(e) => return Err(AudioError::Corrupt(e.to_string())),
        };
        if packet.track_id() != track_id {
            continue;
        }
        match decoder.decode(&packet) {
            Ok(audio) => {
                let spec = *audio.spec();
                sample_rate = spec.rate;
                channels = spec.channels.count();
                let b = buf.get_or_insert_with(|| SampleBuffer::new(audio.capacity() as u64, spec));
                if b.capacity() < audio.capacity() * channels {
                    *b = SampleBuffer::new(audio.capacity() as u64, spec);
                }
                b.copy_interleaved_ref(audio);
                samples.extend_from_slice(b.samples());
                let limit = max_seconds * f64::from(sample_rate.max(1)) * channels.max(1) as f64;
                if samples.len() as f64 > limit {
                    return Err(AudioError::TooLong(max_seconds));
                }
            }
            // A damaged frame inside an otherwise good stream is skipped, as players do;
            // a stream that is mostly damage is corrupt.
            Err(SymErr::DecodeError(e)) => {
                decode_errors += 1;
                if decode_errors > 50 && samples.is_empty() {
                    return Err(AudioError::Corrupt(e.to_string()));
                }
            }
            Err(e) => return Err(AudioError::Corrupt(e.to_string())),
        }
    }
    if samples.is_empty() || channels == 0 || sample_rate == 0 {
        return Err(AudioError::Empty);
    }
    Ok(Decoded {
        codec,
        sample_rate,
        channels,
        samples,
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
