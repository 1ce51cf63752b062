//! A 30-minute stereo WAV (317 MB; its f32 samples would be 635 MB) is probed, and refused by
//! a worker's decoded-size limit, within a memory bound checked from outside: the work runs in
//! a child process (this test binary run again) that reports its peak RSS (`VmHWM`), so nothing
//! else in the test process counts. The file is generated for the run, never committed.
//! A unit test rather than an integration test: it needs no binary of its own.

use std::io::Write;
use std::path::Path;
use std::process::Command;

use crate::audio::{self, Limits, Source};
use roar_common::config::StorageConfig;
use roar_common::storage::Storage;

const CHILD_ENV: &str = "ROAR_DECODE_MEMORY_CHILD";
const RATE: u32 = 44_100;
const SECONDS: u32 = 30 * 60;
/// A quarter of the file, an eighth of its samples.
const PEAK_RSS_LIMIT_KB: u64 = 80 * 1024;

/// Writes the WAV a few KiB at a time, so the generator holds no more than the decoder may.
fn write_wav(path: &Path) {
    let frames = u64::from(RATE) * u64::from(SECONDS);
    let data_len = (frames * 4) as u32;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let header: Vec<u8> = [
        b"RIFF".as_slice(),
        &(36 + data_len).to_le_bytes(),
        b"WAVEfmt ",
        &16u32.to_le_bytes(),
        &1u16.to_le_bytes(), // PCM
        &2u16.to_le_bytes(), // channels
        &RATE.to_le_bytes(),
        &(RATE * 4).to_le_bytes(),
        &4u16.to_le_bytes(),
        &16u16.to_le_bytes(),
        b"data",
        &data_len.to_le_bytes(),
    ]
    .concat();
    f.write_all(&header).unwrap();
    // 441 Hz at 44.1 kHz repeats every 100 frames: one period, written over and over; the
    // right channel at half the level.
    let period: Vec<u8> = (0..100)
        .flat_map(|i| {
            let s = (16_384.0 * (2.0 * std::f64::consts::PI * f64::from(i) / 100.0).sin()) as i16;
            [s.to_le_bytes(), (s / 2).to_le_bytes()].concat()
        })
        .collect();
    for _ in 0..frames / 100 {
        f.write_all(&period).unwrap();
    }
    f.flush().unwrap();
}

fn peak_rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status")
}

/// The child: probe the file from the local store, then decode it as a worker whose
/// decoded-size limit is far smaller than the file.
async fn child(store_dir: &str) {
    let storage = Storage::from_config(&StorageConfig {
        url: format!("file://{store_dir}"),
        ..Default::default()
    })
    .unwrap();
    let reader = storage.reader("uploads/f-long/original").await.unwrap();
    let probe = Limits {
        max_seconds: 3.0 * 3600.0,
        max_input_bytes: 1 << 30,
        max_decoded_bytes: 1 << 30,
    };
    let limits = probe.clone();
    let m = tokio::task::spawn_blocking(move || {
        audio::measure(Source::object(reader), Some("wav"), &limits)
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(m.frames, u64::from(RATE) * u64::from(SECONDS));
    assert_eq!((m.format.sample_rate, m.format.channels), (RATE, 2));
    // The left channel peaks at 16384/32768 (-6.02 dBFS).
    assert!((m.peak_dbfs + 6.02).abs() < 0.01, "{}", m.peak_dbfs);

    let reader = storage.reader("uploads/f-long/original").await.unwrap();
    let worker = Limits {
        max_decoded_bytes: 32 << 20,
        ..probe
    };
    let e = tokio::task::spawn_blocking(move || {
        audio::decode_from(Source::object(reader), None, &worker)
    })
    .await
    .unwrap()
    .unwrap_err();
    assert_eq!(e.code(), "too_large");
    println!("VmHWM_KB={}", peak_rss_kb());
}

#[tokio::test]
async fn a_30_minute_wav_is_probed_and_refused_within_a_memory_bound() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        return child(&dir).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("uploads/f-long/original");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    write_wav(&file);
    assert!(std::fs::metadata(&file).unwrap().len() > 300_000_000);

    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "audio::memory_tests::a_30_minute_wav_is_probed_and_refused_within_a_memory_bound",
            "--exact",
            "--nocapture",
        ])
        .env(CHILD_ENV, dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let peak: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM_KB="))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM_KB line in the child's output: {stdout}"));
    println!("probe + refused decode of a 317 MB WAV: peak RSS {peak} kB");
    assert!(
        peak < PEAK_RSS_LIMIT_KB,
        "peak RSS {peak} kB over {PEAK_RSS_LIMIT_KB} kB for a 317 MB file"
    );
}
