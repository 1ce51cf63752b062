//! JSON Schema's `integer` is any number without a fractional part, `3.0` included, while
//! serde's integer types refuse `3.0`. Request fields documented as integers read through here,
//! so what the document calls valid is accepted.

use serde::de::Error;
use serde::{Deserialize, Deserializer};
use serde_json::Number;

fn from_number<T, E>(n: &Number) -> Result<T, E>
where
    T: TryFrom<i64> + TryFrom<u64>,
    E: Error,
{
    let out_of_range = || E::custom(format!("{n} is out of range"));
    if let Some(u) = n.as_u64() {
        return T::try_from(u).map_err(|_| out_of_range());
    }
    if let Some(i) = n.as_i64() {
        return T::try_from(i).map_err(|_| out_of_range());
    }
    match n.as_f64() {
        // Exactly representable integers only: beyond 2^53 a float names several integers.
        Some(f) if f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_992.0 => {
            T::try_from(f as i64).map_err(|_| out_of_range())
        }
        _ => Err(E::custom(format!("expected an integer, got {n}"))),
    }
}

/// An integer field.
pub fn integer<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i64> + TryFrom<u64>,
{
    from_number(&Number::deserialize(d)?)
}

/// An optional integer field (use with `#[serde(default)]`); `null` is absent.
pub fn optional_integer<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i64> + TryFrom<u64>,
{
    Option::<Number>::deserialize(d)?
        .map(|n| from_number(&n))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct S {
        #[serde(deserialize_with = "integer")]
        n: u64,
        #[serde(default, deserialize_with = "optional_integer")]
        o: Option<i32>,
    }

    fn parse(json: &str) -> Result<S, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn integral_numbers_are_integers_whatever_their_spelling() {
        let s = parse(r#"{"n": 3578.0, "o": -2.0}"#).unwrap();
        assert_eq!((s.n, s.o), (3578, Some(-2)));
        let s = parse(r#"{"n": 18446744073709551615, "o": null}"#).unwrap();
        assert_eq!((s.n, s.o), (u64::MAX, None));
        assert_eq!(parse(r#"{"n": 1e3}"#).unwrap().n, 1000);
        for bad in [
            r#"{"n": 1.5}"#,
            r#"{"n": -1}"#,
            r#"{"n": 1e300}"#,
            r#"{"n": "1"}"#,
            r#"{"n": 1, "o": 2147483648}"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
