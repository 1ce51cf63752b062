//! The packet loop shared by every decode: probe the container, pick the audio track, decode
//! packet by packet and hand each packet's interleaved samples to a [`Sink`]. Memory is one
//! packet plus what the sink keeps. The limits count what is actually decoded (frames, and
//! bytes of samples), never what a header claims: a header can say anything.

use std::panic::{catch_unwind, AssertUnwindSafe};

use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{DecoderOptions, CODEC_TYPE_NULL};
use symphonia::core::errors::Error as SymErr;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::{MediaSourceStream, MediaSourceStreamOptions};
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

use super::{AudioError, Limits, Source};

/// Highest sample rate accepted: above it a header is lying (or the file is not music).
pub const MAX_SAMPLE_RATE: u32 = 768_000;
/// Most channels accepted.
pub const MAX_CHANNELS: usize = 32;
/// Damaged packets tolerated before the first good one (a stream of only damage is corrupt).
const MAX_LEADING_DECODE_ERRORS: usize = 50;

/// What the stream turned out to be, from its first decoded packet.
#[derive(Debug, Clone, PartialEq)]
pub struct Format {
    pub codec: String,
    pub sample_rate: u32,
    pub channels: usize,
}

/// Receives the decoded audio.
pub trait Sink {
    /// One packet of interleaved samples in [-1, 1].
    fn samples(&mut self, interleaved: &[f32]);
}

/// Decodes all of `source` into `sink`; returns the format and the frames decoded. A decoder
/// panic (a bug on some malformed input) is caught here and reported as a corrupt file, so it
/// never reaches a worker.
pub fn run(
    source: Source,
    hint: Option<&str>,
    limits: &Limits,
    sink: &mut dyn Sink,
) -> Result<(Format, u64), AudioError> {
    if source.size > limits.max_input_bytes {
        return Err(AudioError::TooLarge(format!(
            "the file is {} bytes; the limit is {}",
            source.size, limits.max_input_bytes
        )));
    }
    let failure = source.failure.clone();
    let result = catch_unwind(AssertUnwindSafe(|| {
        decode_packets(source, hint, limits, sink)
    }))
    .unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(AudioError::Corrupt(format!(
            "the decoder gave up on this file: {what}"
        )))
    });
    // A read that failed in the store says nothing about the file.
    match (result, failure.and_then(|f| f.get())) {
        (Err(_), Some(storage)) => Err(AudioError::Storage(storage)),
        (r, _) => r,
    }
}

fn decode_packets(
    source: Source,
    hint: Option<&str>,
    limits: &Limits,
    sink: &mut dyn Sink,
) -> Result<(Format, u64), AudioError> {
    let mss = MediaSourceStream::new(source.inner, MediaSourceStreamOptions::default());
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
    let mut reader = probed.format;
    let track = reader
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

    let mut format: Option<Format> = None;
    let mut frames: u64 = 0;
    let mut buf: Option<SampleBuffer<f32>> = None;
    let mut decode_errors = 0usize;
    loop {
        let packet = match reader.next_packet() {
            Ok(p) => p,
            Err(SymErr::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(SymErr::ResetRequired) => break,
            Err(e) => return Err(AudioError::Corrupt(e.to_string())),
        };
        if packet.track_id() != track_id {
            continue;
        }
        let audio = match decoder.decode(&packet) {
            Ok(a) => a,
            // A damaged frame inside an otherwise good stream is skipped, as players do;
            // a stream that is only damage is corrupt.
            Err(SymErr::DecodeError(e)) => {
                decode_errors += 1;
                if decode_errors > MAX_LEADING_DECODE_ERRORS && frames == 0 {
                    return Err(AudioError::Corrupt(e.to_string()));
                }
                continue;
            }
            Err(e) => return Err(AudioError::Corrupt(e.to_string())),
        };
        let spec = *audio.spec();
        let now = Format {
            codec: codec.clone(),
            sample_rate: spec.rate,
            channels: spec.channels.count(),
        };
        match &format {
            None => {
                check_format(&now)?;
                format = Some(now);
            }
            Some(f) if *f != now => {
                return Err(AudioError::UnsupportedCodec(format!(
                    "the stream changes from {} Hz x {} to {} Hz x {} mid-way",
                    f.sample_rate, f.channels, now.sample_rate, now.channels
                )))
            }
            Some(_) => {}
        }
        if audio.frames() == 0 {
            continue;
        }
        let b = buf.get_or_insert_with(|| SampleBuffer::new(audio.capacity() as u64, spec));
        if b.capacity() < audio.frames() * spec.channels.count() {
            *b = SampleBuffer::new(audio.capacity() as u64, spec);
        }
        b.copy_interleaved_ref(audio);
        frames += b.samples().len() as u64 / spec.channels.count().max(1) as u64;
        limits.check(frames, spec.rate, spec.channels.count())?;
        sanitize(b.samples_mut());
        sink.samples(b.samples());
    }
    match format {
        Some(f) if frames > 0 => Ok((f, frames)),
        _ => Err(AudioError::Empty),
    }
}

/// Float PCM is stored as is: a damaged or hostile file can hold samples far outside [-1, 1],
/// infinities and NaNs (found by the audio fuzz target: a float WAV decoded to 7,884,319).
/// Every sink is promised [-1, 1]: out-of-range values are clipped as a DAC would, and what is
/// not a number is silence, so no model input, peak or RMS is ever NaN or infinite.
fn sanitize(samples: &mut [f32]) {
    for s in samples {
        *s = if s.is_nan() { 0.0 } else { s.clamp(-1.0, 1.0) };
    }
}

fn check_format(f: &Format) -> Result<(), AudioError> {
    if f.sample_rate == 0 || f.sample_rate > MAX_SAMPLE_RATE {
        return Err(AudioError::UnsupportedCodec(format!(
            "sample rate {} Hz (1 to {MAX_SAMPLE_RATE} Hz accepted)",
            f.sample_rate
        )));
    }
    if f.channels == 0 || f.channels > MAX_CHANNELS {
        return Err(AudioError::UnsupportedCodec(format!(
            "{} channels (1 to {MAX_CHANNELS} accepted)",
            f.channels
        )));
    }
    Ok(())
}
