//! Opaque pagination cursors: base64url of `<unix micros>:<id>` of the last item seen.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};

use crate::ApiError;

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 200;

pub fn encode(t: DateTime<Utc>, id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}:{id}", t.timestamp_micros()))
}

pub fn decode(c: &str) -> Result<(DateTime<Utc>, String), ApiError> {
    let bad = || ApiError::BadRequest("invalid cursor".into());
    let raw = URL_SAFE_NO_PAD.decode(c).map_err(|_| bad())?;
    let raw = String::from_utf8(raw).map_err(|_| bad())?;
    let (t, id) = raw.split_once(':').ok_or_else(bad)?;
    let t = DateTime::from_timestamp_micros(t.parse().map_err(|_| bad())?).ok_or_else(bad)?;
    if id.is_empty() || id.len() > 64 {
        return Err(bad());
    }
    Ok((t, id.to_string()))
}

/// A page size: 1..=MAX_LIMIT, DEFAULT_LIMIT when absent.
pub fn limit(l: Option<i64>) -> Result<i64, ApiError> {
    match l {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::BadRequest(format!(
            "limit {n} is outside 1..={MAX_LIMIT}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let t = DateTime::from_timestamp_micros(1_800_000_000_123_456).unwrap();
        assert_eq!(decode(&encode(t, "f1")).unwrap(), (t, "f1".to_string()));
        for bad in [
            "",
            "!!!",
            &URL_SAFE_NO_PAD.encode("x:f1"),
            &URL_SAFE_NO_PAD.encode("12"),
        ] {
            assert!(decode(bad).is_err(), "{bad}");
        }
        assert!(limit(Some(0)).is_err());
        assert_eq!(limit(None).unwrap(), DEFAULT_LIMIT);
    }
}
