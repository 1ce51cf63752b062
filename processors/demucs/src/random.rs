//! Models with random weights of the right shapes, for benchmarks and load tests when no
//! checkpoint is at hand (the released weights are not redistributable here).

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};

use crate::config::HTDemucsConfig;
use crate::model::HTDemucs;
use crate::Result;

/// Hands out N(0, 0.05²) tensors of whatever shape the loader asks for; scales and norm
/// weights come out random too, which is fine for timing.
struct RandomBackend;

impl SimpleBackend for RandomBackend {
    fn get(
        &self,
        s: Shape,
        _: &str,
        _: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        (Tensor::randn(0f32, 1.0, s, dev)? * 0.05)?.to_dtype(dtype)
    }
    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("random weights have no fixed shape for {name}")
    }
    fn contains_tensor(&self, _: &str) -> bool {
        true
    }
}

impl HTDemucs {
    /// A model of `cfg`'s architecture with random weights.
    pub fn random(cfg: &HTDemucsConfig, device: &Device) -> Result<Self> {
        let vb = VarBuilder::from_backend(Box::new(RandomBackend), DType::F32, device.clone());
        HTDemucs::load(vb, cfg)
    }
}
