//! The apply loop against the reference `apply_model` (demucs 4.0.1) with the small fixture
//! model: same track, same normalisation, unshifted, with the model's segment and with a
//! shorter override. Segment cutting, context padding, the model's own right padding, the
//! triangular blend and the denormalisation all have to agree for this to pass. The fixture
//! comes from `scripts/gen_apply_fixture.py`.

use std::path::Path;

use candle_core::Device;
use roar_demucs::apply::{separate, ApplyOptions};
use roar_demucs::separator::load_model;
use roar_demucs::SegmentModel;

#[test]
fn apply_matches_the_reference_apply_model() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let io = candle_core::safetensors::load(fixtures.join("apply_io.safetensors"), &Device::Cpu)
        .unwrap();
    let model = load_model(&fixtures.join("small.safetensors"), "small", &Device::Cpu).unwrap();
    let mix: Vec<Vec<f32>> = io["mix"].to_vec2().unwrap();
    let mut calls = 0;
    for (case, segment, segments) in [("default", None, 2), ("seg05", Some(0.5), 4)] {
        let opts = ApplyOptions {
            shifts: 0,
            segment,
            ..ApplyOptions::default()
        };
        let models: [&dyn SegmentModel; 1] = [&model];
        let out = separate(&models, &[vec![1.0; 4]], &mix, &opts, &mut |_, total| {
            calls = total;
            true
        })
        .unwrap();
        assert_eq!(calls, segments, "{case}: segments");
        // The fixture keeps every third sample of `[sources, channels, samples]`.
        let want: Vec<Vec<Vec<f32>>> = io[case].to_vec3().unwrap();
        assert_eq!(want.len(), model.sources().len(), "{case}: fixture sources");
        assert_eq!(out.len(), want.len(), "{case}: sources");
        for (s, (got, want)) in out.iter().zip(&want).enumerate() {
            assert_eq!(got.len(), mix.len(), "{case}: source {s} channels");
            assert_eq!(want.len(), mix.len(), "{case}: fixture channels");
            for (c, (got, want)) in got.iter().zip(want).enumerate() {
                assert_eq!(got.len(), mix[c].len(), "{case}: length");
                let kept: Vec<f32> = got.iter().step_by(3).copied().collect();
                let what = format!("{case}: source {s} channel {c}");
                roar_testkit::assert_close(&what, &kept, want, 1e-4);
            }
        }
    }
}
