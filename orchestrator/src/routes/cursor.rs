//! Page cursors: `<unix micros>.<id>` of the last item seen (keyset pagination). Clients pass
//! `next_cursor` back as it came; the form is documented so that it can be checked.

use chrono::{DateTime, Utc};

use crate::views::{DEFAULT_LIMIT, MAX_LIMIT, MIN_LIMIT};
use crate::ApiError;

pub fn encode(t: DateTime<Utc>, id: &str) -> String {
    format!("{}.{id}", t.timestamp_micros())
}

/// The position a cursor names; `id_letter` is the kind of id the list holds (`f`, `j`).
pub fn decode(c: &str, id_letter: char) -> Result<(DateTime<Utc>, String), ApiError> {
    let bad = || ApiError::BadRequest(format!("invalid cursor {c:?}"));
    let (t, id) = c.split_once('.').ok_or_else(bad)?;
    let digits = !t.is_empty() && t.len() <= 16 && t.bytes().all(|b| b.is_ascii_digit());
    if !digits || !roar_schemas::ids::is_valid_id(id_letter, id) {
        return Err(bad());
    }
    let t = DateTime::from_timestamp_micros(t.parse().map_err(|_| bad())?).ok_or_else(bad)?;
    Ok((t, id.to_string()))
}

/// A page size: MIN_LIMIT..=MAX_LIMIT, DEFAULT_LIMIT when absent.
pub fn limit(l: Option<i64>) -> Result<i64, ApiError> {
    match l {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (MIN_LIMIT..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::BadRequest(format!(
            "limit {n} is outside {MIN_LIMIT}..={MAX_LIMIT}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let t = DateTime::from_timestamp_micros(1_800_000_000_123_456).unwrap();
        let f = "f0123456789abcdef0123456789abcdef";
        assert_eq!(decode(&encode(t, f), 'f').unwrap(), (t, f.to_string()));
        let epoch = DateTime::from_timestamp_micros(0).unwrap();
        assert_eq!(
            decode(&format!("0.{f}"), 'f').unwrap(),
            (epoch, f.to_string())
        );
        for bad in [
            "",
            "!!!",
            "x.f0123456789abcdef0123456789abcdef",
            "-1.f0123456789abcdef0123456789abcdef",
            "+1.f0123456789abcdef0123456789abcdef",
            "12345678901234567.f0123456789abcdef0123456789abcdef",
            "12.",
            "12.f1",
            "12.j0123456789abcdef0123456789abcdef",
            "MTIzNDU2OmYx",
        ] {
            assert!(decode(bad, 'f').is_err(), "{bad}");
        }
        assert!(limit(Some(0)).is_err());
        assert!(limit(Some(MAX_LIMIT + 1)).is_err());
        assert_eq!(limit(Some(MAX_LIMIT)).unwrap(), MAX_LIMIT);
        assert_eq!(limit(None).unwrap(), DEFAULT_LIMIT);
    }

    #[test]
    fn the_documented_cursor_form_is_what_decode_accepts() {
        let f = "f0123456789abcdef0123456789abcdef";
        let pattern = crate::views::schema::pattern_of(&crate::views::schema::cursor('f'));
        for c in [
            format!("1800000000123456.{f}"),
            format!("0.{f}"),
            format!("9999999999999999.{f}"),
            format!("12345678901234567.{f}"),
            format!("1.{f}x"),
            format!(".{f}"),
            format!("1.j{}", &f[1..]),
            format!("1:{f}"),
            format!(" 1.{f}"),
        ] {
            assert_eq!(pattern.is_match(&c), decode(&c, 'f').is_ok(), "{c}");
        }
    }
}
