//! Behaviour of the public API: errors, cancellation, progress, resampling.

mod common;

use roar_crepe::convert::cents_between;
use roar_crepe::resample::to_16k;
use roar_crepe::{Capacity, Crepe, CrepeError, Device, PitchTrack, TrackOptions};

#[test]
fn missing_weights_name_the_file_and_the_fetch_command() {
    let dir = std::env::temp_dir().join("roar-crepe-no-weights-here");
    let err = Crepe::load(&dir, Capacity::Full, &Device::Cpu).unwrap_err();
    assert!(matches!(err, CrepeError::WeightsMissing { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains(&dir.join("full.pth").display().to_string()),
        "{msg}"
    );
    assert!(msg.contains("scripts/crepe/fetch-weights.sh"), "{msg}");
    assert!(!err.is_retryable());
}

#[test]
fn garbage_weights_are_rejected() {
    let file = std::env::temp_dir().join(format!("roar-crepe-garbage-{}.pth", std::process::id()));
    std::fs::write(&file, b"not a zip archive").unwrap();
    let err = Crepe::load(&file, Capacity::Tiny, &Device::Cpu).unwrap_err();
    std::fs::remove_file(&file).ok();
    assert!(matches!(err, CrepeError::InvalidWeights { .. }), "{err:?}");
    assert!(!err.is_retryable());
}

#[test]
fn weights_of_the_other_capacity_are_rejected() {
    let file = common::weights_dir().join("tiny.pth");
    // The file itself loads as the tiny model it is.
    common::load(Capacity::Tiny);
    let err = Crepe::load(&file, Capacity::Full, &Device::Cpu).unwrap_err();
    assert!(err.to_string().contains("wrong capacity"), "{err}");
}

#[test]
fn progress_reports_and_cancel_stops_between_batches() {
    let crepe = common::load(Capacity::Tiny);
    let audio = vec![0.1f32; 16_000];
    let opts = TrackOptions {
        batch_size: Some(20),
        ..TrackOptions::default()
    };
    // 101 frames in batches of 20: 0.0, then after each of 6 batches.
    let mut seen = Vec::new();
    crepe
        .track(&audio, &opts, &mut |p| {
            seen.push(p);
            true
        })
        .unwrap();
    assert_eq!(seen.len(), 7);
    assert_eq!(seen[0], 0.0);
    assert_eq!(*seen.last().unwrap(), 1.0);
    assert!(seen.windows(2).all(|w| w[0] < w[1]));

    let mut calls = 0;
    let err = crepe
        .track(&audio, &opts, &mut |_| {
            calls += 1;
            calls < 3
        })
        .unwrap_err();
    assert!(matches!(err, CrepeError::Canceled));
    assert!(err.is_retryable());
    assert_eq!(calls, 3);
}

#[test]
fn bad_options_are_input_errors() {
    let crepe = common::load(Capacity::Tiny);
    for opts in [
        TrackOptions {
            hop_length: 0,
            ..TrackOptions::default()
        },
        TrackOptions {
            fmin: 500.0,
            fmax: 100.0,
            ..TrackOptions::default()
        },
    ] {
        let err = crepe.track(&[0.0; 100], &opts, &mut |_| true).unwrap_err();
        assert!(matches!(err, CrepeError::InvalidInput(_)), "{err:?}");
    }
    assert!(crepe.activations_vec(&[0.0; 1000]).is_err());
}

#[test]
fn track_at_44k1_after_resampling() {
    let crepe = common::load(Capacity::Tiny);
    let w = 2.0 * std::f64::consts::PI * 196.0 / 44_100.0;
    let audio: Vec<f32> = (0..44_100)
        .map(|i| (0.4 * (w * i as f64).sin()) as f32)
        .collect();
    let audio = to_16k(&audio, 44_100).unwrap();
    let track: PitchTrack = crepe
        .track(&audio, &TrackOptions::default(), &mut |_| true)
        .unwrap();
    assert_eq!(track.len(), 101);
    assert!((track.times[100] - 1.0).abs() < 1e-9);
    let inner = &track.f0_hz[5..96];
    let good = inner
        .iter()
        .filter(|&&f| cents_between(f as f64, 196.0).abs() <= 50.0)
        .count();
    assert_eq!(good, inner.len(), "{inner:?}");
    assert!(track.voiced[5..96].iter().all(|&v| v));
    assert!(track.voiced_f0().nth(50).unwrap().is_some());
    // The track serialises (for storage next to other roar results).
    let json = serde_json::to_string(&track).unwrap();
    let back: PitchTrack = serde_json::from_str(&json).unwrap();
    assert_eq!(back.len(), track.len());
}

#[test]
fn crepe_can_move_to_a_blocking_thread() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<Crepe>();
    assert_send_sync::<CrepeError>();
    assert_send_sync::<PitchTrack>();
}
