//! Writing separated audio: WAV (16-bit, 24-bit PCM or 32-bit float), FLAC (16-bit) and MP3
//! (CBR), all pure Rust. Clipping is handled first, as the reference `demucs.audio.save_audio`
//! does: by default the whole stem is scaled down just enough to fit (`rescale`), or samples
//! are clamped (`clamp`). Blocking and CPU-bound: run it off the async executor.

/// Why a stem could not be encoded.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EncodeError {
    #[error("unsupported output format {0:?} (expected one of wav16, wav24, float32, flac, mp3)")]
    UnknownFormat(String),
    #[error("mp3 bitrate {0} kbit/s is outside 32..=320")]
    Bitrate(u32),
    #[error("cannot encode: {0}")]
    Unsupported(String),
    #[error("encoder failed: {0}")]
    Encoder(String),
}

impl EncodeError {
    /// Encoding is deterministic: the same samples fail the same way every time.
    pub fn is_retryable(&self) -> bool {
        false
    }
}

/// An output format, named as in the catalogue's `format` parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Wav16,
    Wav24,
    Float32,
    Flac,
    Mp3 { kbps: u32 },
}

impl Format {
    /// `name` is the catalogue value; `mp3_kbps` only matters for mp3.
    pub fn parse(name: &str, mp3_kbps: u32) -> Result<Self, EncodeError> {
        Ok(match name {
            "wav16" => Format::Wav16,
            "wav24" => Format::Wav24,
            "float32" => Format::Float32,
            "flac" => Format::Flac,
            "mp3" if (32..=320).contains(&mp3_kbps) => Format::Mp3 { kbps: mp3_kbps },
            "mp3" => return Err(EncodeError::Bitrate(mp3_kbps)),
            other => return Err(EncodeError::UnknownFormat(other.to_string())),
        })
    }

    pub fn extension(&self) -> &'static str {
        match self {
            Format::Wav16 | Format::Wav24 | Format::Float32 => "wav",
            Format::Flac => "flac",
            Format::Mp3 { .. } => "mp3",
        }
    }

    pub fn content_type(&self) -> &'static str {
        match self {
            Format::Wav16 | Format::Wav24 | Format::Float32 => "audio/wav",
            Format::Flac => "audio/flac",
            Format::Mp3 { .. } => "audio/mpeg",
        }
    }
}

/// How to keep samples inside [-1, 1] before writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Clip {
    /// Divide the whole stem by `max(1.01 * peak, 1)`: no distortion, only a level change when
    /// the stem would clip (the reference's default).
    #[default]
    Rescale,
    /// Hard-limit every sample to ±0.99.
    Clamp,
}

impl Clip {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "rescale" => Some(Clip::Rescale),
            "clamp" => Some(Clip::Clamp),
            _ => None,
        }
    }

    /// Applies the strategy in place to `[channel][sample]` audio.
    pub fn apply(self, audio: &mut [Vec<f32>]) {
        match self {
            Clip::Rescale => {
                let peak = audio.iter().flatten().fold(0f32, |m, v| m.max(v.abs()));
                let scale = (1.01 * peak).max(1.0);
                if scale > 1.0 {
                    audio.iter_mut().flatten().for_each(|v| *v /= scale);
                }
            }
            Clip::Clamp => audio
                .iter_mut()
                .flatten()
                .for_each(|v| *v = v.clamp(-0.99, 0.99)),
        }
    }
}

/// Encodes `[channel][sample]` audio (already clip-protected) in `format`.
pub fn encode(
    audio: &[Vec<f32>],
    sample_rate: u32,
    format: Format,
) -> Result<Vec<u8>, EncodeError> {
    let channels = audio.len();
    if channels == 0 || channels > 2 || audio.iter().any(|c| c.len() != audio[0].len()) {
        return Err(EncodeError::Unsupported(format!(
            "{channels} channels of unequal or unsupported layout"
        )));
    }
    let frames = audio[0].len();
    let interleaved = (0..frames).flat_map(|i| audio.iter().map(move |c| c[i]));
    match format {
        Format::Wav16 => wav(interleaved, sample_rate, channels, 16, |v, out| {
            out.extend_from_slice(&(quantize(v, 16) as i16).to_le_bytes())
        }),
        Format::Wav24 => wav(interleaved, sample_rate, channels, 24, |v, out| {
            out.extend_from_slice(&quantize(v, 24).to_le_bytes()[..3])
        }),
        Format::Float32 => wav(interleaved, sample_rate, channels, 32, |v, out| {
            out.extend_from_slice(&v.to_le_bytes())
        }),
        Format::Flac => flac(interleaved, sample_rate, channels),
        Format::Mp3 { kbps } => mp3(
            &interleaved.collect::<Vec<_>>(),
            sample_rate,
            channels,
            kbps,
        ),
    }
}

/// `v` in [-1, 1] to a signed integer of `bits`, rounded, saturating at the top. Scaled by
/// 2^(bits-1), the inverse of how decoders (symphonia, ffmpeg) read integer PCM back.
fn quantize(v: f32, bits: u32) -> i32 {
    let scale = (1i64 << (bits - 1)) as f64;
    (f64::from(v) * scale).round().clamp(-scale, scale - 1.0) as i32
}

fn wav(
    samples: impl Iterator<Item = f32>,
    sample_rate: u32,
    channels: usize,
    bits: u16,
    mut put: impl FnMut(f32, &mut Vec<u8>),
) -> Result<Vec<u8>, EncodeError> {
    let mut data = Vec::new();
    for v in samples {
        put(v, &mut data);
    }
    let data_len = u32::try_from(data.len())
        .ok()
        .filter(|n| *n <= u32::MAX - 36)
        .ok_or_else(|| EncodeError::Unsupported("audio too long for a WAV file".into()))?;
    // Format tag 3 is IEEE float; 1 is integer PCM.
    let tag: u16 = if bits == 32 { 3 } else { 1 };
    let block = channels as u16 * (bits / 8);
    let mut out = Vec::with_capacity(44 + data.len());
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&tag.to_le_bytes());
    out.extend_from_slice(&(channels as u16).to_le_bytes());
    out.extend_from_slice(&sample_rate.to_le_bytes());
    out.extend_from_slice(&(sample_rate * u32::from(block)).to_le_bytes());
    out.extend_from_slice(&block.to_le_bytes());
    out.extend_from_slice(&bits.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    out.extend_from_slice(&data);
    Ok(out)
}

fn flac(
    samples: impl Iterator<Item = f32>,
    sample_rate: u32,
    channels: usize,
) -> Result<Vec<u8>, EncodeError> {
    use flacenc::component::BitRepr;
    use flacenc::error::Verify;

    let ints: Vec<i32> = samples.map(|v| quantize(v, 16)).collect();
    let config = flacenc::config::Encoder::default()
        .into_verified()
        .map_err(|e| EncodeError::Encoder(format!("{e:?}")))?;
    let source =
        flacenc::source::MemSource::from_samples(&ints, channels, 16, sample_rate as usize);
    let mut stream = flacenc::encode_with_fixed_block_size(&config, source, config.block_size)
        .map_err(|e| EncodeError::Encoder(format!("{e:?}")))?;
    // flacenc counts the short last block in STREAMINFO's block sizes, which the FLAC format
    // excludes; symphonia then takes the stream for variable-block and cannot read it.
    let block = config.block_size.min(ints.len() / channels);
    stream
        .stream_info_mut()
        .set_block_sizes(block, block)
        .map_err(|e| EncodeError::Encoder(format!("{e:?}")))?;
    let mut sink = flacenc::bitsink::ByteSink::new();
    stream
        .write(&mut sink)
        .map_err(|e| EncodeError::Encoder(format!("{e:?}")))?;
    Ok(sink.as_slice().to_vec())
}

fn mp3(
    interleaved: &[f32],
    sample_rate: u32,
    channels: usize,
    kbps: u32,
) -> Result<Vec<u8>, EncodeError> {
    let mut encoder = rusty_mp3::Mp3Encoder::new(rusty_mp3::Mp3EncoderConfig {
        bitrate_kbps: kbps,
        vbr_quality: None,
    });
    encoder
        .push_pcm_f32(interleaved, channels as u16, sample_rate)
        .map_err(|e| EncodeError::Unsupported(format!("mp3 at {sample_rate} Hz: {e}")))?;
    encoder.finish();
    let mut out = Vec::new();
    while let Ok(packet) = encoder.next_packet() {
        out.extend_from_slice(&packet);
    }
    Ok(out)
}

#[cfg(test)]
#[path = "encode_tests.rs"]
mod tests;
