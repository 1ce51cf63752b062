//! CPU kernels for the element-wise and normalisation steps that dominate HTDemucs outside
//! its matmuls. candle runs these single-threaded with libm's scalar `exp`/`erf`; here they
//! run over rayon with branch-free polynomial approximations that LLVM vectorises, accurate to
//! a few float32 ulps (far inside the 1e-4 fidelity budget). Other devices use candle's own
//! ops, so results agree everywhere.
//!
//! By job: `approx` the scalar approximations, `slices` the vectorised loops over slices,
//! `stats` mergeable statistics, `scratch` the pooled scratch buffers, `ops` the candle ops
//! built on them.

mod approx;
mod ops;
mod scratch;
mod slices;
mod stats;

pub use approx::{exp, gelu};
pub(crate) use ops::contiguous;
pub use ops::{gelu_t, glu, softmax_last_dim, GroupNorm};
pub(crate) use scratch::Reused;
pub(crate) use slices::{
    affine_in_place, axpy, gelu_in_place, glu_residual, glu_slice, moments,
    softmax_rows_unnormalised,
};
pub(crate) use stats::Stats;
