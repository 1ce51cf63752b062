//! GPU utilisation and memory of a worker whose model runs on CUDA, read every
//! `processor.gpu_metrics_seconds` from `nvidia-smi`, the driver's own tool (the NVIDIA device
//! plugin mounts it into every GPU pod). Reading the tool rather than binding NVML keeps this
//! crate free of FFI and lets the CPU build compile and test the same code.
//!
//! On CPU the series are absent, not 0: a worker whose model runs on the CPU never starts the
//! sampler, and a CUDA worker that cannot run `nvidia-smi` logs why once and exports nothing,
//! since a 0 would read as an idle GPU.

use std::time::Duration;

use roar_common::metrics::{GPU_MEMORY_USED, GPU_UTILIZATION};
use tokio::process::Command;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The tool that reports the GPUs (from `PATH`).
pub const NVIDIA_SMI: &str = "nvidia-smi";

/// One GPU in one reading. A field the driver does not report (`[N/A]`, e.g. utilisation on a
/// MIG slice) is `None`.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuSample {
    /// The driver's index of the GPU (as `nvidia-smi` numbers them).
    pub gpu: String,
    /// Share of the last sample period in which a kernel ran, 0..=1.
    pub utilization: Option<f64>,
    pub memory_used_bytes: Option<f64>,
}

/// Why the GPUs could not be read (never fatal: the worker runs on without the series).
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    /// The tool is missing, failed or hung (retrying may help once the driver is back).
    #[error("gpu metrics unavailable: {0}")]
    Unavailable(String),
    /// The tool answered something this parser does not know (not retryable).
    #[error("gpu metrics: unexpected nvidia-smi output: {0}")]
    Malformed(String),
}

impl GpuError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, GpuError::Unavailable(_))
    }
}

const QUERY: [&str; 2] = [
    "--query-gpu=index,utilization.gpu,memory.used",
    "--format=csv,noheader,nounits",
];
/// Longest a reading may take before it counts as unavailable.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Parses `index, utilization %, memory used MiB` lines (`nvidia-smi` CSV without header and
/// units). No line means no GPU.
pub fn parse(out: &str) -> Result<Vec<GpuSample>, GpuError> {
    let bad = |line: &str, why: &str| GpuError::Malformed(format!("{why} in {line:?}"));
    let mut samples = Vec::new();
    for line in out.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let [gpu, util, mem] = fields[..] else {
            return Err(bad(line, "not 3 fields"));
        };
        if gpu.is_empty() || gpu.len() > 4 || !gpu.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad(line, "no GPU index"));
        }
        let number = |v: &str, most: f64| -> Result<Option<f64>, GpuError> {
            // `[N/A]`, `[Not Supported]`, `[Unknown Error]`: the driver has no value.
            if v.starts_with('[') && v.ends_with(']') {
                return Ok(None);
            }
            match v.parse::<f64>() {
                Ok(x) if x.is_finite() && (0.0..=most).contains(&x) => Ok(Some(x)),
                _ => Err(bad(line, "a value out of range")),
            }
        };
        samples.push(GpuSample {
            gpu: gpu.to_string(),
            utilization: number(util, 100.0)?.map(|p| p / 100.0),
            memory_used_bytes: number(mem, 1e9)?.map(|mib| mib * 1024.0 * 1024.0),
        });
    }
    Ok(samples)
}

/// One reading from `program` (normally [`NVIDIA_SMI`]), off the executor's threads.
pub async fn sample(program: &str) -> Result<Vec<GpuSample>, GpuError> {
    let run = Command::new(program)
        .args(QUERY)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(TIMEOUT, run)
        .await
        .map_err(|_| GpuError::Unavailable(format!("{program} took longer than {TIMEOUT:?}")))?
        .map_err(|e| GpuError::Unavailable(format!("{program}: {e}")))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(GpuError::Unavailable(format!(
            "{program} exited with {}: {}",
            out.status,
            err.trim().chars().take(200).collect::<String>()
        )));
    }
    parse(&String::from_utf8_lossy(&out.stdout))
}

fn record(model: &str, samples: &[GpuSample]) {
    for s in samples {
        if let Some(u) = s.utilization {
            metrics::gauge!(GPU_UTILIZATION, "model" => model.to_string(), "gpu" => s.gpu.clone())
                .set(u);
        }
        if let Some(m) = s.memory_used_bytes {
            metrics::gauge!(GPU_MEMORY_USED, "model" => model.to_string(), "gpu" => s.gpu.clone())
                .set(m);
        }
    }
}

/// Starts sampling for `model`'s worker when its `device` is a CUDA device and `every` is not
/// zero; `None` (no series at all) otherwise. Stops when `cancel` fires.
pub fn spawn(
    model: &str,
    device: &str,
    every: Duration,
    cancel: CancellationToken,
) -> Option<JoinHandle<()>> {
    if every.is_zero() || !device.starts_with("cuda") {
        return None;
    }
    let model = model.to_string();
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        let mut warned = false;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            match sample(NVIDIA_SMI).await {
                Ok(samples) => {
                    warned = false;
                    record(&model, &samples);
                }
                Err(e) if !warned => {
                    tracing::warn!(error = %e, "gpu utilisation not exported");
                    warned = true;
                }
                Err(_) => {}
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reading_of_two_gpus_and_a_mig_slice_parses() {
        let out = "0, 37, 1234\n1, 100, 81559\n2, [N/A], 10\n";
        let got = parse(out).unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].gpu, "0");
        assert_eq!(got[0].utilization, Some(0.37));
        assert_eq!(got[0].memory_used_bytes, Some(1234.0 * 1048576.0));
        assert_eq!(got[1].utilization, Some(1.0));
        assert_eq!(got[2].utilization, None, "MIG reports no utilisation");
        assert_eq!(got[2].memory_used_bytes, Some(10.0 * 1048576.0));
        assert!(parse("").unwrap().is_empty(), "no GPU, no sample");
    }

    #[test]
    fn unexpected_output_is_an_error_not_a_panic_or_a_made_up_value() {
        for out in [
            "0, 37",
            "0, 37, 12, 4",
            "x, 37, 12",
            ", 37, 12",
            "0, 137, 12",
            "0, -1, 12",
            "0, NaN, 12",
            "0, 37, inf",
            "No devices were found",
            "0, 3 7, 12",
        ] {
            let e = parse(out).unwrap_err();
            assert!(matches!(e, GpuError::Malformed(_)), "{out:?}: {e}");
            assert!(!e.is_retryable());
        }
    }

    #[tokio::test]
    async fn a_missing_tool_is_unavailable() {
        let e = sample("roar-no-such-nvidia-smi").await.unwrap_err();
        assert!(matches!(e, GpuError::Unavailable(_)), "{e}");
        assert!(e.is_retryable());
    }

    #[tokio::test]
    async fn a_cpu_worker_or_a_zero_interval_starts_no_sampler() {
        let cancel = CancellationToken::new();
        let every = Duration::from_secs(1);
        assert!(spawn("pitch", "cpu", every, cancel.clone()).is_none());
        assert!(spawn("demucs", "cuda", Duration::ZERO, cancel.clone()).is_none());
        let running = spawn("demucs", "cuda", every, cancel.clone()).expect("a CUDA worker");
        cancel.cancel();
        running.await.unwrap();
    }

    /// On a host with an NVIDIA GPU:
    /// `cargo nextest run --workspace --lib -E 'test(gpu_sampler_reads_the_driver)' --run-ignored only`.
    #[tokio::test]
    #[ignore = "needs an NVIDIA GPU and its driver's nvidia-smi"]
    async fn gpu_sampler_reads_the_driver() {
        let got = sample(NVIDIA_SMI).await.unwrap();
        assert!(!got.is_empty(), "no GPU reported");
        for s in got {
            assert!(s.memory_used_bytes.is_some_and(|m| m > 0.0), "{s:?}");
            assert!(
                s.utilization.is_none_or(|u| (0.0..=1.0).contains(&u)),
                "{s:?}"
            );
        }
    }
}
