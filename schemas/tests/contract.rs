//! The event contract: every event round-trips, the bytes on the wire are pinned by committed
//! golden files, and every committed earlier schema version stays readable.
//!
//! After an intended format change, regenerate the golden files with
//! `ROAR_BLESS=1 cargo test -p roar-schemas --test contract`: the run rewrites the files that
//! differ and still fails, naming them, so that blessing can never turn a failure green. Review
//! the rewritten files, commit them with the schema, and run again without `ROAR_BLESS`.

use apache_avro::schema_compatibility::SchemaCompatibility;
use chrono::{TimeZone, Utc};
use roar_schemas::wire::fingerprint;
use roar_schemas::*;

fn meta() -> EventMeta {
    EventMeta {
        event_id: "00000000-0000-4000-8000-000000000001".into(),
        occurred_at: Utc.timestamp_micros(1_790_000_000_123_456).unwrap(),
        request_id: "req-1".into(),
        traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
        actor: "user:alice".into(),
    }
}

fn info() -> FileInfo {
    FileInfo {
        owner: "alice".into(),
        filename: "song.flac".into(),
        mime: "audio/flac".into(),
        size: 1234,
        sha256: "ab".repeat(32),
        storage_key: "uploads/f0/original".into(),
    }
}

fn output() -> Output {
    Output {
        path: "outputs/f1/demucs/htdemucs/vocals.wav".into(),
        kind: "vocals".into(),
        content_type: "audio/wav".into(),
        size: 99,
        sha256: "cd".repeat(32),
    }
}

fn file_events() -> Vec<(&'static str, FileEvent)> {
    let ev = |body| FileEvent {
        sealed: None,
        meta: meta(),
        file_id: "f1".into(),
        body,
    };
    vec![
        (
            "file_registered",
            ev(FileBody::Registered {
                info: info(),
                upload_expires_at: Utc.timestamp_micros(1_790_000_900_000_000).unwrap(),
            }),
        ),
        ("file_uploaded", ev(FileBody::Uploaded(info()))),
        (
            "file_probed",
            ev(FileBody::Probed(ProbeSummary {
                metadata_key: "outputs/f1/metadata.json".into(),
                codec: "flac".into(),
                duration_seconds: 3.5,
                sample_rate: 44100,
                channels: 2,
                frames: 154350,
                peak_dbfs: -0.5,
                rms_dbfs: -18.25,
            })),
        ),
        (
            "file_probe_failed",
            ev(FileBody::ProbeFailed {
                code: "undecodable".into(),
                message: "no audio track".into(),
            }),
        ),
        ("file_deleted", ev(FileBody::Deleted { reason: None })),
        (
            "file_generation_requested",
            ev(FileBody::GenerationRequested(Generation {
                owner: "alice".into(),
                filename: "calm piano.wav".into(),
                prompt: "calm piano".into(),
                job_id: "j1".into(),
                model: "musicgen".into(),
                variation: "small".into(),
                duration_seconds: 8.5,
            })),
        ),
        (
            "file_generation_failed",
            ev(FileBody::GenerationFailed {
                job_id: "j1".into(),
                code: "generation_canceled".into(),
                message: "canceled by request".into(),
            }),
        ),
    ]
}

fn job_events() -> Vec<(&'static str, JobEvent)> {
    let ev = |body| JobEvent {
        meta: meta(),
        job_id: "j1".into(),
        file_id: "f1".into(),
        model: "demucs".into(),
        variation: "htdemucs".into(),
        body,
    };
    vec![
        (
            "job_queued",
            ev(JobBody::Queued {
                owner: "alice".into(),
                model_version: "4".into(),
                params_json: "{}".into(),
            }),
        ),
        (
            "job_started",
            ev(JobBody::Started {
                worker: "w1".into(),
                attempt: 1,
            }),
        ),
        (
            "job_progress",
            ev(JobBody::Progress {
                percent: 42.5,
                message: "segment 3/7".into(),
            }),
        ),
        (
            "job_completed",
            ev(JobBody::Completed {
                outputs: vec![output()],
                duration_seconds: 12.0,
            }),
        ),
        (
            "job_failed",
            ev(JobBody::Failed {
                code: "oom".into(),
                message: "out of memory".into(),
                retryable: true,
            }),
        ),
        (
            "job_retry_scheduled",
            ev(JobBody::RetryScheduled {
                attempt: 2,
                not_before: Utc.timestamp_micros(1_790_000_060_000_000).unwrap(),
                reason: "oom".into(),
            }),
        ),
        (
            "job_canceled",
            ev(JobBody::Canceled {
                reason: "user".into(),
            }),
        ),
        (
            "job_skipped",
            ev(JobBody::Skipped {
                outputs: vec![output(), output()],
            }),
        ),
    ]
}

fn job_request() -> JobRequested {
    JobRequested {
        meta: meta(),
        job_id: "j1".into(),
        file_id: "f1".into(),
        owner: "alice".into(),
        model: "pitch".into(),
        variation: "tiny".into(),
        model_version: "1".into(),
        params_json: r#"{"viterbi":true}"#.into(),
        attempt: 1,
        not_before: None,
        input: None,
    }
}

fn job_request_with_input() -> JobRequested {
    JobRequested {
        model: "whisper".into(),
        params_json: r#"{"word_timestamps":true}"#.into(),
        input: Some(JobInput {
            job_id: "j0".into(),
            model: "demucs".into(),
            variation: "htdemucs".into(),
            output: "vocals".into(),
        }),
        ..job_request()
    }
}

fn control() -> ControlEvent {
    ControlEvent {
        meta: meta(),
        job_id: "j1".into(),
        body: ControlBody::CancelRequested {
            file_id: "f1".into(),
            reason: "user".into(),
        },
    }
}

fn worker_alive() -> ControlEvent {
    ControlEvent {
        meta: meta(),
        job_id: String::new(),
        body: ControlBody::WorkerAlive {
            worker: "pitch@host-1".into(),
            model: "pitch".into(),
            model_version: "crepe-1".into(),
            variations: vec!["tiny".into(), "full".into()],
            device: "cpu".into(),
            interval_seconds: 10,
            stopping: false,
            versions: vec!["crepe-tiny-1".into(), "crepe-full-1".into()],
        },
    }
}

fn dead_letter() -> DeadLetter {
    DeadLetter {
        meta: meta(),
        source_topic: "roar.files.v1".into(),
        source_partition: 2,
        source_offset: 77,
        consumer_group: "roar-probe".into(),
        key: Some(b"f1".to_vec()),
        payload: Some(vec![0xde, 0xad]),
        error_kind: "undecodable".into(),
        error: "not an avro single-object message".into(),
    }
}

fn pipeline_requested() -> PipelineEvent {
    let step =
        |name: &str, job_id: &str, model: &str, input: Option<PipelineStepInput>| PipelineStep {
            name: name.into(),
            job_id: job_id.into(),
            model: model.into(),
            variation: "tiny".into(),
            model_version: "1".into(),
            params_json: "{}".into(),
            input,
        };
    PipelineEvent {
        meta: meta(),
        pipeline_id: "p1".into(),
        file_id: "f1".into(),
        owner: "alice".into(),
        body: PipelineBody::Requested {
            preset: Some("transcribe-vocals".into()),
            steps: vec![
                step("separate", "j1", "demucs", None),
                step(
                    "transcribe",
                    "j2",
                    "whisper",
                    Some(PipelineStepInput {
                        step: "separate".into(),
                        output: "vocals".into(),
                    }),
                ),
            ],
        },
    }
}

fn pipeline_cancel_requested() -> PipelineEvent {
    PipelineEvent {
        body: PipelineBody::CancelRequested {
            reason: Some("user".into()),
        },
        ..pipeline_requested()
    }
}

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden");

/// Compares `bytes` with the golden file `dir/name.bin`. Blessing rewrites a file that differs
/// (or is missing) and reports it as an error all the same, so only a run in which nothing had
/// to be rewritten passes.
fn golden(dir: &str, name: &str, bytes: &[u8], bless: bool) -> Result<Vec<u8>, String> {
    let path = format!("{dir}/{name}.bin");
    let committed = std::fs::read(&path);
    if committed.as_deref().ok() == Some(bytes) {
        return Ok(bytes.to_vec());
    }
    if !bless {
        return Err(match committed {
            Ok(_) => format!(
                "{name}: wire bytes changed; if intended, bless (ROAR_BLESS=1) and add a history schema"
            ),
            Err(e) => format!("{path}: {e} (run with ROAR_BLESS=1 once)"),
        });
    }
    std::fs::write(&path, bytes).map_err(|e| format!("{path}: {e}"))?;
    Err(format!(
        "{name}: rewritten by ROAR_BLESS; review and commit it"
    ))
}

/// Encodes, checks the bytes against the committed golden file, decodes and compares.
fn check<E: Event>(name: &str, event: &E) -> Result<(), String> {
    let bytes = encode(event);
    let back: E = decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(&back, event, "{name}: round trip");

    let golden = golden(
        GOLDEN,
        name,
        &bytes,
        std::env::var_os("ROAR_BLESS").is_some(),
    )?;
    let from_golden: E = decode(&golden).unwrap();
    assert_eq!(&from_golden, event, "{name}: golden decodes");
    Ok(())
}

#[test]
fn every_event_round_trips_and_matches_golden_bytes() {
    let mut errors = Vec::new();
    for (name, e) in file_events() {
        errors.extend(check(name, &e).err());
    }
    for (name, e) in job_events() {
        errors.extend(check(name, &e).err());
    }
    errors.extend(check("file_uploaded_sealed", &file_uploaded_sealed()).err());
    errors.extend(check("job_requested", &job_request()).err());
    errors.extend(check("job_requested_with_input", &job_request_with_input()).err());
    errors.extend(check("control_cancel_requested", &control()).err());
    errors.extend(check("control_worker_alive", &worker_alive()).err());
    errors.extend(check("dead_letter", &dead_letter()).err());
    errors.extend(check("pipeline_requested", &pipeline_requested()).err());
    errors.extend(check("pipeline_cancel_requested", &pipeline_cancel_requested()).err());
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

#[test]
fn blessing_rewrites_a_stale_golden_file_and_still_fails() {
    let dir = format!("{}/contract-bless", env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(format!("{dir}/stale.bin"), b"old").unwrap();
    let _ = std::fs::remove_file(format!("{dir}/missing.bin"));

    assert!(golden(&dir, "stale", b"new", false).is_err());
    let e = golden(&dir, "stale", b"new", true).unwrap_err();
    assert!(e.contains("rewritten"), "{e}");
    assert_eq!(std::fs::read(format!("{dir}/stale.bin")).unwrap(), b"new");
    assert!(golden(&dir, "missing", b"x", false).is_err());
    assert!(golden(&dir, "missing", b"x", true).is_err());
    // Once rewritten, a second run, blessing or not, compares and passes.
    assert_eq!(golden(&dir, "stale", b"new", true).unwrap(), b"new");
    assert_eq!(golden(&dir, "missing", b"x", false).unwrap(), b"x");
}

fn compatible<E: Event>() {
    let set = E::schemas();
    for old in set.readable() {
        if let Err(e) = SchemaCompatibility::can_read(old, &set.current) {
            panic!(
                "{}: current schema cannot read data written by a committed version: {e}",
                E::NAME
            );
        }
    }
}

#[test]
fn current_schemas_read_every_committed_version() {
    compatible::<FileEvent>();
    compatible::<JobRequested>();
    compatible::<JobEvent>();
    compatible::<ControlEvent>();
    compatible::<DeadLetter>();
    compatible::<PipelineEvent>();
}

#[test]
fn history_holds_the_current_version() {
    // A schema change must be committed together with a copy of the new version in history/,
    // otherwise data written by this build would be unreadable to the next one's history check.
    fn has_current<E: Event>() {
        let set = E::schemas();
        let n = set
            .readable()
            .filter(|s| fingerprint(s) == set.current_fingerprint)
            .count();
        assert!(n >= 1, "{}", E::NAME);
        let dir = format!("{}/avro/history", env!("CARGO_MANIFEST_DIR"));
        let found = std::fs::read_dir(&dir).unwrap().any(|f| {
            let f = f.unwrap();
            let name = f.file_name().into_string().unwrap();
            name.starts_with(E::NAME)
                && apache_avro::Schema::parse_str(&std::fs::read_to_string(f.path()).unwrap())
                    .map(|s| fingerprint(&s) == set.current_fingerprint)
                    .unwrap_or(false)
        });
        assert!(
            found,
            "{}: copy avro/{}.avsc to avro/history/{}.vN.avsc",
            E::NAME,
            E::NAME,
            E::NAME
        );
    }
    has_current::<FileEvent>();
    has_current::<JobRequested>();
    has_current::<JobEvent>();
    has_current::<ControlEvent>();
    has_current::<DeadLetter>();
    has_current::<PipelineEvent>();
}

#[test]
fn an_incompatible_change_is_detected() {
    // Proves the compatibility check can fail: a reader that adds a field without a default
    // cannot read the committed version.
    let old = &FileEvent::schemas().current;
    let text = include_str!("../avro/file_event.avsc").replace(
        r#"{"name": "file_id", "type": "string"},"#,
        r#"{"name": "file_id", "type": "string"}, {"name": "tenant", "type": "string"},"#,
    );
    let new = apache_avro::Schema::parse_str(&text).unwrap();
    assert!(SchemaCompatibility::can_read(old, &new).is_err());
}

#[test]
fn malformed_messages_are_clear_errors() {
    assert!(matches!(
        decode::<FileEvent>(b""),
        Err(DecodeError::NotSingleObject)
    ));
    assert!(matches!(
        decode::<FileEvent>(b"{\"json\":1}"),
        Err(DecodeError::NotSingleObject)
    ));
    // A job event is not a file event: the fingerprint is unknown for this type.
    let job = encode(&job_events()[0].1);
    let err = decode::<FileEvent>(&job).unwrap_err();
    assert!(matches!(err, DecodeError::UnknownSchema { .. }), "{err}");
    assert!(err.to_string().contains("file_event"));
    // Truncated datum.
    let mut bytes = encode(&file_events()[0].1);
    bytes.truncate(bytes.len() - 5);
    assert!(matches!(
        decode::<FileEvent>(&bytes),
        Err(DecodeError::Avro(_))
    ));
    // Trailing garbage.
    let mut bytes = encode(&file_events()[0].1);
    bytes.push(0);
    assert!(decode::<FileEvent>(&bytes).is_err());
    // Every error is permanent.
    assert!(!decode::<FileEvent>(b"").unwrap_err().is_retryable());
}

#[test]
fn header_is_marker_and_little_endian_rabin_fingerprint() {
    let bytes = encode(&control());
    assert_eq!(&bytes[..2], &[0xC3, 0x01]);
    assert_eq!(&bytes[2..10], &ControlEvent::schemas().current_fingerprint);
}

#[test]
fn no_two_union_branches_look_alike() {
    // Avro schema resolution picks union branches by shape, so two branches with the same field
    // names would be confused when reading data written by an older schema version.
    fn distinct<E: Event>() {
        let apache_avro::Schema::Record(rec) = &E::schemas().current else {
            return;
        };
        for f in &rec.fields {
            let apache_avro::Schema::Union(u) = &f.schema else {
                continue;
            };
            let mut shapes: Vec<Vec<String>> = u
                .variants()
                .iter()
                .filter_map(|v| match v {
                    apache_avro::Schema::Record(r) => {
                        Some(r.fields.iter().map(|f| f.name.clone()).collect())
                    }
                    _ => None,
                })
                .collect();
            let n = shapes.len();
            shapes.sort();
            shapes.dedup();
            assert_eq!(
                shapes.len(),
                n,
                "{}.{}: two union branches have the same fields",
                E::NAME,
                f.name
            );
        }
    }
    distinct::<FileEvent>();
    distinct::<JobEvent>();
    distinct::<ControlEvent>();
    distinct::<PipelineEvent>();
}

#[test]
fn a_message_written_with_an_earlier_version_decodes() {
    // control_event v1 predates WorkerAlive; a cancel written by a v1 producer must still read.
    let v1 = apache_avro::Schema::parse_str(include_str!("../avro/history/control_event.v1.avsc"))
        .unwrap();
    let event = control();
    let fp = fingerprint(&v1);
    assert_ne!(fp, ControlEvent::schemas().current_fingerprint);
    let mut bytes = vec![0xC3, 0x01];
    bytes.extend_from_slice(&fp);
    bytes.extend(apache_avro::to_avro_datum(&v1, event.to_value()).unwrap());
    assert_eq!(decode::<ControlEvent>(&bytes).unwrap(), event);
    // The same datum under a fingerprint nobody wrote is refused, not guessed.
    bytes[2] ^= 0xFF;
    assert!(matches!(
        decode::<ControlEvent>(&bytes),
        Err(wire::DecodeError::UnknownSchema { .. })
    ));
}

#[test]
fn a_worker_announcement_written_before_versions_existed_decodes_with_none() {
    // The golden bytes control_event v2 wrote (kept when v3 added `versions`): an announcement
    // from an older worker names no served versions; the orchestrator then trusts its
    // variations at any version, as before.
    let v2 = std::fs::read(format!("{GOLDEN}/control_worker_alive.v2.bin")).unwrap();
    let v2_schema =
        apache_avro::Schema::parse_str(include_str!("../avro/history/control_event.v2.avsc"))
            .unwrap();
    assert_eq!(v2[2..10], fingerprint(&v2_schema));
    let old: ControlEvent = decode(&v2).unwrap();
    let mut expected = worker_alive();
    if let ControlBody::WorkerAlive { versions, .. } = &mut expected.body {
        versions.clear();
    }
    assert_eq!(old, expected);
}

#[test]
fn a_job_request_written_before_inputs_existed_decodes_as_reading_the_upload() {
    // The golden bytes job_request v1 wrote (kept when v2 added `input`): a request from before
    // pipelines, still on the topics, must decode and mean what it meant then.
    let v1 = std::fs::read(format!("{GOLDEN}/job_requested.v1.bin")).unwrap();
    let v1_schema =
        apache_avro::Schema::parse_str(include_str!("../avro/history/job_request.v1.avsc"))
            .unwrap();
    assert_eq!(v1[2..10], fingerprint(&v1_schema));
    assert_ne!(
        fingerprint(&v1_schema),
        JobRequested::schemas().current_fingerprint
    );
    let old: JobRequested = decode(&v1).unwrap();
    assert_eq!(old, job_request());
    assert_eq!(old.input, None);
}

/// A version 3 upload whose filename is sealed: the body keeps a placeholder, `sealed` the
/// ciphertext (opaque bytes to this crate).
fn file_uploaded_sealed() -> FileEvent {
    let (_, mut e) = file_events().remove(1);
    if let FileBody::Uploaded(info) = &mut e.body {
        info.filename = "sealed.flac".into();
    }
    e.sealed = Some((0u8..=40).collect());
    e
}

#[test]
fn file_events_written_before_sealing_decode_unsealed() {
    // The golden bytes file_event v2 wrote (kept when v3 added `sealed`): uploads and song
    // requests from before crypto-shredding, still on the topics, decode as they were, with
    // their names in clear and nothing sealed.
    let v2_schema =
        apache_avro::Schema::parse_str(include_str!("../avro/history/file_event.v2.avsc")).unwrap();
    assert_ne!(
        fingerprint(&v2_schema),
        FileEvent::schemas().current_fingerprint
    );
    // Every variant, each into its own: Avro matches union branches by name, and apache-avro's
    // resolution by shape alone put a v2 `FileGenerationRequested` into `FileDeleted` (every
    // record fits its one defaulted field) and a `FileGenerationFailed` into `FileProbeFailed`.
    for (name, expected) in file_events() {
        let v2 = std::fs::read(format!("{GOLDEN}/{name}.v2.bin")).unwrap();
        assert_eq!(v2[2..10], fingerprint(&v2_schema), "{name}");
        let old: FileEvent = decode(&v2).unwrap();
        assert_eq!(old, expected, "{name}");
        assert_eq!(old.sealed, None, "{name}");
    }
}
