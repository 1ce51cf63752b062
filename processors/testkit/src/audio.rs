//! Committed audio fixtures as their generators read them: a FLAC file's 16-bit samples,
//! interleaved, exactly (no resampling, no conversion), so a test can check them against the
//! sums its generator recorded before comparing anything computed from them.

use std::path::Path;

use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::DecoderOptions;
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

/// The 16-bit samples of the FLAC file at `path`. A fixture that is missing or does not decode
/// fails the test here, naming the file.
pub fn flac_i16(path: &Path) -> Vec<i16> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let stream = MediaSourceStream::new(Box::new(file), Default::default());
    let mut hint = Hint::new();
    hint.with_extension("flac");
    let probed = symphonia::default::get_probe()
        .format(
            &hint,
            stream,
            &FormatOptions::default(),
            &MetadataOptions::default(),
        )
        .unwrap_or_else(|e| panic!("{path:?} is not a FLAC file: {e}"));
    let mut format = probed.format;
    let track = format
        .default_track()
        .unwrap_or_else(|| panic!("{path:?}: no audio track"));
    let mut decoder = symphonia::default::get_codecs()
        .make(&track.codec_params, &DecoderOptions::default())
        .unwrap_or_else(|e| panic!("{path:?}: no FLAC decoder: {e}"));
    let mut samples = Vec::new();
    loop {
        let packet = match format.next_packet() {
            Ok(p) => p,
            Err(SymphoniaError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                break
            }
            Err(e) => panic!("{path:?}: {e}"),
        };
        let decoded = decoder
            .decode(&packet)
            .unwrap_or_else(|e| panic!("{path:?}: an invalid FLAC frame: {e}"));
        let mut buf = SampleBuffer::<i16>::new(decoded.capacity() as u64, *decoded.spec());
        buf.copy_interleaved_ref(decoded);
        samples.extend_from_slice(buf.samples());
    }
    samples
}
