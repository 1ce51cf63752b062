//! Fuzzing the wire decoder: garbage, garbage behind a known schema's header (so it reaches the
//! Avro datum decoder), and mutated golden messages of every event and schema version. A
//! consumer loop hands whatever the broker delivers to [`decode`]: it must answer with an error,
//! never panic, and whatever it accepts must be an event that encodes and decodes to itself.

use std::fmt::Debug;

use proptest::prelude::*;
use roar_testkit::fuzz::{fuzz, garbage, mutated};

use roar_schemas::events::Event;
use roar_schemas::{decode, encode, ControlEvent, DeadLetter, FileEvent, JobEvent, JobRequested};

/// Every committed golden message (each event body, the current and earlier schema versions).
fn golden_messages() -> Vec<Vec<u8>> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden");
    let mut out: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .expect("the golden messages")
        .map(|e| std::fs::read(e.expect("a golden entry").path()).expect("a golden file"))
        .collect();
    out.sort();
    assert!(out.len() >= 19, "{} golden messages", out.len());
    out
}

/// `bytes` as an `E`: an error is fine; an event must survive its own round trip.
fn check<E: Event + Debug>(bytes: &[u8]) -> Result<(), String> {
    let Ok(event) = decode::<E>(bytes) else {
        return Ok(());
    };
    match decode::<E>(&encode(&event)) {
        Ok(again) if again == event => Ok(()),
        other => Err(format!(
            "{} decoded to {event:?}, which re-encodes to {other:?}",
            E::NAME
        )),
    }
}

fn check_every_event(bytes: &[u8]) -> Result<(), String> {
    check::<FileEvent>(bytes)?;
    check::<JobRequested>(bytes)?;
    check::<JobEvent>(bytes)?;
    check::<ControlEvent>(bytes)?;
    check::<DeadLetter>(bytes)
}

#[test]
fn the_decoder_refuses_garbage_and_mutations_without_panicking() {
    let seeds = golden_messages();
    // Each seed is still valid as committed (otherwise mutating it would prove little).
    let decodable = seeds
        .iter()
        .filter(|b| check_every_event(b).is_ok())
        .count();
    assert_eq!(decodable, seeds.len());
    let headers: Vec<Vec<u8>> = seeds.iter().map(|s| s[..10].to_vec()).collect();
    let inputs = prop_oneof![
        3 => mutated(seeds).prop_map(|(_, b)| b),
        1 => (prop::sample::select(headers), garbage(256)).prop_map(|(mut h, g)| {
            h.extend(g);
            h
        }),
        1 => garbage(64),
    ];
    fuzz("avro decoder", 10_000, inputs, |bytes| {
        check_every_event(&bytes)
    });
}

/// Avro's zig-zag varint of `n` (how lengths and counts are written).
fn zigzag(n: i64) -> Vec<u8> {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    let mut out = Vec::new();
    loop {
        let b = (z & 0x7f) as u8;
        z >>= 7;
        if z == 0 {
            out.push(b);
            return out;
        }
        out.push(b | 0x80);
    }
}

/// A length that lies (a string claiming far more than the message holds, up to more than
/// memory) is an error, not an allocation failure that aborts the consumer.
#[test]
fn a_length_claiming_gigabytes_is_refused() {
    let seed = golden_messages()
        .into_iter()
        .find(|m| decode::<FileEvent>(m).is_ok())
        .expect("a file event");
    // Right after the header comes the envelope's first string's length (zig-zag varint).
    for claim in [i64::MAX, 1 << 40, 1 << 31, 600 << 20] {
        let mut bytes = seed[..10].to_vec();
        bytes.extend(zigzag(claim));
        bytes.extend_from_slice(&seed[11..]);
        assert!(decode::<FileEvent>(&bytes).is_err(), "claim {claim}");
    }
}

/// Regression: an array whose count claims half a billion items. apache-avro reserves room for
/// the claimed count before reading an item, so with its default limit (512 Mi, counted in
/// items) this 60-byte message asked for some 30 GiB and aborted the process; the decoder's
/// claim limit now refuses it as an error.
#[test]
fn an_array_count_claiming_half_a_billion_items_is_refused() {
    use roar_schemas::{ControlBody, EventMeta};
    let event = ControlEvent {
        meta: EventMeta::new("r", "worker:w"),
        job_id: String::new(),
        body: ControlBody::WorkerAlive {
            worker: "w".into(),
            model: "pitch".into(),
            model_version: "v".into(),
            variations: vec!["zzzzzzzzzzzz".into()],
            device: "cpu".into(),
            interval_seconds: 1,
            stopping: false,
            versions: vec![],
        },
    };
    let bytes = encode(&event);
    // The array block: count 1 (zig-zag 2), the string's length 12 (zig-zag 24), its bytes.
    let at = bytes
        .windows(3)
        .position(|w| w == [2, 24, b'z'])
        .expect("the variations array");
    let mut lying = bytes[..at].to_vec();
    lying.extend(zigzag(500_000_000));
    lying.extend_from_slice(&bytes[at + 1..]);
    assert_eq!(decode::<ControlEvent>(&bytes).unwrap(), event);
    assert!(decode::<ControlEvent>(&lying).is_err());
}
