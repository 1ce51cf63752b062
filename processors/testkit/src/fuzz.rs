//! Fuzz harnesses on the stable toolchain: proptest strategies for garbage and for mutated
//! valid inputs (bit flips, lying length and size fields, truncation, insertions, cuts), and a
//! runner that prints how many cases ran. The seed is fixed, so CI runs the same cases every
//! time and a failure reproduces; set `PROPTEST_RNG_SEED` to explore others, `PROPTEST_CASES`
//! to run more. A failing case is shrunk to a small one and printed: make it a regression test.

use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};

/// The seed CI uses (any fixed value would do; this one is the date the harnesses were written).
pub const SEED: u64 = 20_261_206;

/// Values that break length and size arithmetic: zero, one, sign and width boundaries.
const INTERESTING: [u32; 12] = [
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0x7fff,
    0xffff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_fffe,
    0xffff_ffff,
    0x0100_0000,
];

/// One change to a byte string. Positions are taken modulo the length, so any value applies.
#[derive(Debug, Clone)]
pub enum Mutation {
    FlipBit {
        at: usize,
        bit: u8,
    },
    SetByte {
        at: usize,
        value: u8,
    },
    /// Overwrites 4 bytes with an interesting value, little- or big-endian: a header that lies
    /// about a size, a count, a rate.
    Lie {
        at: usize,
        which: usize,
        big_endian: bool,
    },
    Truncate {
        keep: usize,
    },
    Insert {
        at: usize,
        bytes: Vec<u8>,
    },
    Remove {
        at: usize,
        len: usize,
    },
    /// Repeats a slice of the input after itself (duplicated chunks, frames, fields).
    Repeat {
        at: usize,
        len: usize,
    },
}

/// A position, mostly within the first 64 bytes where headers live.
fn position() -> impl Strategy<Value = usize> {
    prop_oneof![3 => 0usize..64, 1 => any::<usize>()]
}

/// One mutation.
pub fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (position(), 0u8..8).prop_map(|(at, bit)| Mutation::FlipBit { at, bit }),
        (position(), any::<u8>()).prop_map(|(at, value)| Mutation::SetByte { at, value }),
        (position(), 0..INTERESTING.len(), any::<bool>()).prop_map(|(at, which, big_endian)| {
            Mutation::Lie {
                at,
                which,
                big_endian,
            }
        }),
        any::<usize>().prop_map(|keep| Mutation::Truncate { keep }),
        (position(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        (position(), 1usize..64).prop_map(|(at, len)| Mutation::Remove { at, len }),
        (position(), 1usize..64).prop_map(|(at, len)| Mutation::Repeat { at, len }),
    ]
}

/// `input` with `m` applied.
pub fn apply(input: &mut Vec<u8>, m: &Mutation) {
    let n = input.len();
    if n == 0 {
        if let Mutation::Insert { bytes, .. } = m {
            input.extend_from_slice(bytes);
        }
        return;
    }
    match m {
        Mutation::FlipBit { at, bit } => input[at % n] ^= 1 << bit,
        Mutation::SetByte { at, value } => input[at % n] = *value,
        Mutation::Lie {
            at,
            which,
            big_endian,
        } => {
            let v = INTERESTING[which % INTERESTING.len()];
            let bytes = if *big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            };
            let at = at % n;
            let end = (at + 4).min(n);
            input[at..end].copy_from_slice(&bytes[..end - at]);
        }
        Mutation::Truncate { keep } => input.truncate(keep % n),
        Mutation::Insert { at, bytes } => {
            let at = at % (n + 1);
            input.splice(at..at, bytes.iter().copied());
        }
        Mutation::Remove { at, len } => {
            let at = at % n;
            input.drain(at..(at + len).min(n));
        }
        Mutation::Repeat { at, len } => {
            let at = at % n;
            let piece = input[at..(at + len).min(n)].to_vec();
            let end = (at + len).min(n);
            input.splice(end..end, piece);
        }
    }
}

/// One of `seeds` (valid inputs) with 1 to 6 mutations; the value says which seed it came from.
pub fn mutated(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = (usize, Vec<u8>)> {
    assert!(!seeds.is_empty(), "mutated() needs at least one seed");
    (0..seeds.len(), prop::collection::vec(mutation(), 1..7)).prop_map(move |(i, ms)| {
        let mut bytes = seeds[i].clone();
        for m in &ms {
            apply(&mut bytes, m);
        }
        (i, bytes)
    })
}

/// Random bytes, up to `max_len` long.
pub fn garbage(max_len: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max_len)
}

/// Runs `check` on `cases` values of `strategy` (at least; `PROPTEST_CASES` may ask for more)
/// with the fixed [`SEED`] unless `PROPTEST_RNG_SEED` is set, prints the number of cases run,
/// and panics with the shrunk failing value when a check fails or panics.
pub fn fuzz<S>(name: &str, cases: u32, strategy: S, check: impl Fn(S::Value) -> Result<(), String>)
where
    S: Strategy,
    S::Value: Debug,
{
    let defaults = Config::default();
    let config = Config {
        cases: cases.max(defaults.cases),
        failure_persistence: None,
        rng_seed: match defaults.rng_seed {
            RngSeed::Random => RngSeed::Fixed(SEED),
            fixed => fixed,
        },
        ..defaults
    };
    let seed = config.rng_seed;
    let ran = AtomicU64::new(0);
    let result = TestRunner::new(config).run(&strategy, |value| {
        ran.fetch_add(1, Ordering::Relaxed);
        check(value).map_err(TestCaseError::fail)
    });
    println!(
        "fuzz {name}: {} cases ({seed:?})",
        ran.load(Ordering::Relaxed)
    );
    if let Err(e) = result {
        panic!("fuzz {name} failed: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_apply_to_any_input_without_panicking() {
        fuzz(
            "mutations",
            2_000,
            (garbage(64), prop::collection::vec(mutation(), 1..8)),
            |(mut bytes, ms)| {
                for m in &ms {
                    apply(&mut bytes, m);
                }
                // Growth is bounded: inserts add ≤ 15 bytes, repeats at most double.
                (bytes.len() <= (64 + 15 * 8) << 8)
                    .then_some(())
                    .ok_or_else(|| format!("grew to {}", bytes.len()))
            },
        );
    }

    #[test]
    fn a_lie_overwrites_four_bytes_in_the_asked_byte_order() {
        let mut b = vec![0u8; 8];
        apply(
            &mut b,
            &Mutation::Lie {
                at: 2,
                which: 10,
                big_endian: false,
            },
        );
        assert_eq!(b, [0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0]);
        let mut b = vec![0u8; 8];
        apply(
            &mut b,
            &Mutation::Lie {
                at: 0,
                which: 8,
                big_endian: true,
            },
        );
        assert_eq!(b, [0x80, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn a_failing_check_fails_the_run() {
        let r =
            std::panic::catch_unwind(|| fuzz("always fails", 10, garbage(4), |_| Err("no".into())));
        assert!(r.is_err());
    }
}
