//! The f0 CSV and JSON exports.

use roar_crepe::analysis::{f0_csv, f0_json};

use crate::synth::track;

#[test]
fn csv_and_json_rows() {
    let mut t = track(0.05, |t| (t < 0.025).then_some(69.0));
    t.f0_hz[1] = f32::NAN; // voiced but unusable: reported unvoiced
    t.confidence[2] = f32::NAN;
    let csv = f0_csv(&t);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "time,hz,midi,confidence,voiced");
    assert_eq!(lines.len(), 6);
    assert_eq!(lines[1], "0.0000,440.000,69.000,0.9000,1");
    assert_eq!(lines[2], "0.0100,,,0.9000,0");
    assert_eq!(lines[3], "0.0200,440.000,69.000,0.0000,1");
    assert_eq!(lines[4], "0.0300,,,0.0500,0");

    let j = f0_json(&t);
    assert_eq!(j["sample_rate"], 16_000);
    assert_eq!(j["hop_length"], 160);
    let frames = j["frames"].as_array().unwrap();
    assert_eq!(frames.len(), 5);
    assert_eq!(frames[0]["hz"], 440.0);
    assert_eq!(frames[0]["midi"], 69.0);
    assert_eq!(frames[0]["voiced"], true);
    assert!(frames[1]["hz"].is_null() && frames[1]["midi"].is_null());
    assert_eq!(frames[1]["voiced"], false);
    assert_eq!(frames[2]["confidence"], 0.0);
    assert_eq!(frames[3]["time"], 0.03);
    // Valid JSON text, no NaN anywhere.
    let text = serde_json::to_string(&j).unwrap();
    assert!(!text.contains("NaN"));
    let back: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(back, j);
}

#[test]
fn empty_track() {
    let t = track(0.0, |_| None);
    assert_eq!(f0_csv(&t), "time,hz,midi,confidence,voiced\n");
    assert_eq!(f0_json(&t)["frames"].as_array().unwrap().len(), 0);
}
