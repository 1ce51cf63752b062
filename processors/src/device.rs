//! `processor.device` made real: the candle device a worker loads its model on, or an error
//! at start-up that says what this build or this machine lacks. A worker never falls back to
//! the CPU behind an explicit `cuda:N`: a GPU deployment that silently runs on the CPU is
//! slower by orders of magnitude and looks healthy.

use candle_core::{Device, DeviceLocation};
use roar_common::device::DeviceSpec;

/// Why the configured device cannot be used. Neither goes away by retrying: the build or the
/// machine has to change.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("processor.device is {spec} but this roar was built without {backend} ({how})")]
    NotBuilt {
        spec: DeviceSpec,
        backend: &'static str,
        how: &'static str,
    },
    #[error("processor.device is {spec} but it cannot be opened: {reason}")]
    Unavailable { spec: DeviceSpec, reason: String },
}

impl DeviceError {
    pub fn is_retryable(&self) -> bool {
        false
    }
}

/// Whether this build has candle's CUDA backend (`--features cuda`).
pub const CUDA_BUILT: bool = cfg!(feature = "cuda");

/// The device `spec` names. `auto` takes CUDA GPU 0 when the build has CUDA and the GPU opens,
/// the CPU otherwise (saying why when a CUDA build falls back).
pub fn select(spec: DeviceSpec) -> Result<Device, DeviceError> {
    match spec {
        DeviceSpec::Cpu => Ok(Device::Cpu),
        DeviceSpec::Auto if !CUDA_BUILT => Ok(Device::Cpu),
        DeviceSpec::Auto => match Device::new_cuda(0) {
            Ok(d) => Ok(d),
            Err(e) => {
                tracing::warn!(error = %e, "processor.device is auto and CUDA GPU 0 does not open: running on the cpu");
                Ok(Device::Cpu)
            }
        },
        DeviceSpec::Cuda(_) if !CUDA_BUILT => Err(DeviceError::NotBuilt {
            spec,
            backend: "CUDA",
            how: "build with `cargo build --release --features cuda`, or set processor.device = \"cpu\"",
        }),
        DeviceSpec::Cuda(n) => Device::new_cuda(n).map_err(|e| DeviceError::Unavailable {
            spec,
            reason: e.to_string(),
        }),
        // candle has a Metal backend, but roar has no `metal` feature to build it with yet.
        DeviceSpec::Metal(_) => Err(DeviceError::NotBuilt {
            spec,
            backend: "Metal",
            how: "roar has no Metal build yet; use cpu or cuda:N",
        }),
    }
}

/// How metrics and liveness announcements name `device`: `cpu`, `cuda:0`, `metal:0`.
pub fn label(device: &Device) -> String {
    match device.location() {
        DeviceLocation::Cpu => "cpu".into(),
        DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_and_auto_run_on_the_cpu_without_a_gpu_build() {
        assert_eq!(label(&select(DeviceSpec::Cpu).unwrap()), "cpu");
        if !CUDA_BUILT {
            assert_eq!(label(&select(DeviceSpec::Auto).unwrap()), "cpu");
        }
    }

    #[test]
    fn a_gpu_the_build_lacks_is_a_clear_error_not_a_silent_cpu() {
        if !CUDA_BUILT {
            let e = select(DeviceSpec::Cuda(1)).unwrap_err();
            assert!(!e.is_retryable());
            let e = e.to_string();
            assert!(e.contains("cuda:1") && e.contains("--features cuda"), "{e}");
        }
        let e = select(DeviceSpec::Metal(0)).unwrap_err().to_string();
        assert!(e.contains("metal:0") && e.contains("Metal"), "{e}");
    }
}
