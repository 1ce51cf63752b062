//! Which accelerator a model worker runs its model on (`processor.device`). Only the choice
//! lives here; turning it into a candle device (and failing when the build lacks the backend)
//! is the processors' job, since only they link candle.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// `processor.device`: `auto`, `cpu`, `cuda[:N]` or `metal[:N]` (N: the device ordinal, 0 when
/// left out).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(try_from = "String", into = "String")]
pub enum DeviceSpec {
    /// The first GPU the build supports when one is there; the CPU otherwise.
    #[default]
    Auto,
    Cpu,
    Cuda(usize),
    Metal(usize),
}

/// A `processor.device` value that is none of the valid forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "processor.device {0:?} is not a device: expected auto, cpu, cuda, cuda:N, metal or metal:N"
)]
pub struct BadDevice(String);

impl FromStr for DeviceSpec {
    type Err = BadDevice;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        let (kind, ordinal) = match lower.split_once(':') {
            Some((k, n)) => match n.parse::<usize>() {
                Ok(n) => (k, Some(n)),
                Err(_) => return Err(BadDevice(s.to_string())),
            },
            None => (lower.as_str(), None),
        };
        match (kind, ordinal) {
            ("auto", None) => Ok(Self::Auto),
            ("cpu", None) => Ok(Self::Cpu),
            ("cuda", n) => Ok(Self::Cuda(n.unwrap_or(0))),
            ("metal", n) => Ok(Self::Metal(n.unwrap_or(0))),
            _ => Err(BadDevice(s.to_string())),
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
            Self::Metal(n) => write!(f, "metal:{n}"),
        }
    }
}

impl TryFrom<String> for DeviceSpec {
    type Error = BadDevice;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<DeviceSpec> for String {
    fn from(d: DeviceSpec) -> Self {
        d.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form_and_prints_it_back() {
        for (text, spec, printed) in [
            ("auto", DeviceSpec::Auto, "auto"),
            ("cpu", DeviceSpec::Cpu, "cpu"),
            (" CPU ", DeviceSpec::Cpu, "cpu"),
            ("cuda", DeviceSpec::Cuda(0), "cuda:0"),
            ("cuda:3", DeviceSpec::Cuda(3), "cuda:3"),
            ("metal", DeviceSpec::Metal(0), "metal:0"),
            ("metal:1", DeviceSpec::Metal(1), "metal:1"),
        ] {
            assert_eq!(text.parse::<DeviceSpec>(), Ok(spec), "{text}");
            assert_eq!(spec.to_string(), printed);
            assert_eq!(printed.parse::<DeviceSpec>(), Ok(spec));
        }
    }

    #[test]
    fn refuses_what_is_no_device_and_names_the_valid_forms() {
        for bad in [
            "", "gpu", "cuda:", "cuda:x", "cuda:-1", "cpu:0", "auto:1", "cuda:0:1",
        ] {
            let e = bad.parse::<DeviceSpec>().unwrap_err().to_string();
            assert!(e.contains(&format!("{bad:?}")), "{e}");
            assert!(e.contains("cuda:N"), "{e}");
        }
    }
}
