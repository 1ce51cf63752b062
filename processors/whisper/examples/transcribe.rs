//! Transcribes raw 16 kHz mono f32 little-endian samples and prints the result as JSON.
//!
//! `cargo run --release -p roar-whisper --example transcribe -- MODELS_DIR VARIATION FILE.f32 [BEAM] [nowords] [int8]`

use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        return Err(
            "usage: transcribe MODELS_DIR VARIATION FILE.f32 [BEAM] [nowords] [int8]".into(),
        );
    }
    let bytes = std::fs::read(&args[3])?;
    let audio: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let t0 = Instant::now();
    let flag = |f: &str| args.iter().skip(5).any(|a| a == f);
    let precision = if flag("int8") {
        roar_whisper::Precision::Int8
    } else {
        roar_whisper::Precision::F32
    };
    let w = roar_whisper::Whisper::load_with(
        args[1].as_ref(),
        &args[2],
        &candle_core::Device::Cpu,
        precision,
    )?;
    eprintln!("loaded in {:?}", t0.elapsed());
    let beam = args.get(4).map(|b| b.parse()).transpose()?;
    let opts = roar_whisper::TranscribeOptions {
        beam_size: beam,
        word_timestamps: !flag("nowords"),
        ..Default::default()
    };
    let t0 = Instant::now();
    let t = w.transcribe(&audio, &opts, &mut |_| true)?;
    eprintln!(
        "transcribed {:.1} s in {:?}",
        audio.len() as f32 / 16000.0,
        t0.elapsed()
    );
    println!(
        "{}",
        serde_json::to_string_pretty(&roar_whisper::to_verbose_json(&t))?
    );
    Ok(())
}
