//! `roar-demucs` separates music into stems with Hybrid Transformer Demucs (v4), re-implemented
//! on candle so that it runs without Python and matches the reference (`facebookresearch/demucs`)
//! numerically. A model is a spectrogram branch (STFT with realfft, complex as channels) and a
//! waveform branch, each a stack of convolutional encoders with DConv residuals, joined at the
//! bottom by a cross-domain transformer and mirrored by decoders; the two branches' outputs are
//! summed. [`Separator`] loads one model or a bag (`htdemucs_ft`) from safetensors keyed like the
//! PyTorch state dict, and [`apply::separate`] runs it over a whole track in overlapping segments
//! with triangular overlap-add and random shifts, reporting progress and stopping between
//! segments when asked. Memory is bounded by the segment, not the track.
//!
//! `unsafe` is kept to the modules that need it: `gemm` (matrix products over checked
//! views), `parallel` (blocks of a buffer written by parallel tasks), `simd_x86` (dispatch to
//! the CPU's vector extensions) and the `*_x86` kernels (intrinsics). Every other module is
//! safe code over their safe interfaces: the compiler holds them to it (`unsafe_code` is denied
//! but for the modules named here). Process-wide allocator settings are the worker's
//! (`roar_processors::alloc`), not this library's.

#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod apply;
pub mod attention;
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod attention_x86;
pub mod checkpoint;
pub mod config;
pub mod conv;
pub mod dconv;
mod device_conv;
mod error;
pub mod fast;
#[allow(unsafe_code)]
mod gemm;
#[cfg(feature = "hub")]
pub mod hub;
pub mod layers;
mod linear;
pub mod model;
#[allow(unsafe_code)]
mod parallel;
mod random;
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod rows_x86;
pub mod separator;
#[allow(unsafe_code)]
mod simd_x86;
pub mod stft;
mod token_norm;
pub mod transformer;
mod winograd;

pub use candle_core::Device;
pub use config::HTDemucsConfig;
pub use error::{DemucsError, Result};
pub use model::HTDemucs;
pub use separator::Separator;
use simd_x86::simd;

/// What the apply loop needs from a model: one fixed-length segment in, one separation out.
/// Implemented by [`HTDemucs`]; tests may implement it with simple closed-form separators.
pub trait SegmentModel: Send + Sync {
    /// Source names in output order, e.g. drums, bass, other, vocals.
    fn sources(&self) -> &[String];
    /// Channels the model expects (2 for the released models).
    fn audio_channels(&self) -> usize;
    /// Sample rate the model was trained at (44.1 kHz for the released models).
    fn samplerate(&self) -> u32;
    /// The training segment in samples; longer inputs must be split by the caller.
    fn segment_samples(&self) -> usize;
    /// `[batch, audio_channels, length]` with `length <= segment_samples()` →
    /// `[batch, sources, audio_channels, length]`. The apply loop builds `mix` on the CPU; the
    /// model moves it to its own device (`to_device` is free when they already match).
    fn forward(&self, mix: &candle_core::Tensor) -> Result<candle_core::Tensor>;
}
