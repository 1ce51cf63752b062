#!/usr/bin/env python3
"""A foreign client of roar's topics: reads roar.files.v1 and roar.job-events.v1 from the
beginning up to where they ended when it started, decodes every event with the committed Avro
schemas, loads them into DuckDB and prints a small report as JSON: files, jobs per model,
outcomes, run-time percentiles and failure causes. See docs/analytics.md.

    python3 examples/analytics/report.py --brokers localhost:29092 --out roar.duckdb

Messages are Avro single-object encoded: C3 01, the 8-byte CRC-64-AVRO fingerprint of the
writer's schema, then the datum. Schemas are looked up by that fingerprint, computed by the
official `avro` package (fastavro's own canonical form gives other fingerprints), among the
current schema and every version under schemas/avro/history/, and the datum is read with
fastavro into the current schema, so old events stay readable.
"""

import argparse
import io
import json
import pathlib
import sys
import time
import uuid

import avro.schema
import duckdb
import fastavro
from confluent_kafka import Consumer, KafkaException, TopicPartition

REPO = pathlib.Path(__file__).resolve().parents[2]
MARKER = b"\xc3\x01"
TOPICS = {"roar.files.v1": "file_event", "roar.job-events.v1": "job_event"}


class SchemaSet:
    """One event type's readable writer schemas, by fingerprint, and its current schema."""

    def __init__(self, schemas_dir: pathlib.Path, stem: str):
        current = schemas_dir / f"{stem}.avsc"
        history = sorted((schemas_dir / "history").glob(f"{stem}.v*.avsc"))
        self.reader = fastavro.parse_schema(json.loads(current.read_text()))
        self.writers = {}
        for path in [current, *history]:
            text = path.read_text()
            fingerprint = avro.schema.parse(text).fingerprint("CRC-64-AVRO")
            self.writers[fingerprint] = fastavro.parse_schema(json.loads(text))

    def decode(self, payload: bytes) -> dict:
        if len(payload) < 10 or payload[:2] != MARKER:
            raise ValueError("not an Avro single-object message")
        writer = self.writers.get(payload[2:10])
        if writer is None:
            raise ValueError(f"unknown schema fingerprint {payload[2:10].hex()}")
        # Union branches that are records come back as (name, fields), so the body says which
        # event it is; a record-or-null union still reads as the record (or None).
        return fastavro.schemaless_reader(
            io.BytesIO(payload[10:]), writer, self.reader,
            return_record_name=True, return_record_name_override=True)


def body_kind(body) -> tuple:
    """(record name without namespace, fields) of the event body, a union of records."""
    name, fields = body
    return name.rsplit(".", 1)[-1], fields


def read_topic(brokers: str, topic: str, schemas: SchemaSet, timeout: float):
    """Every event of `topic` up to the high watermarks seen at the start, in partition order."""
    consumer = Consumer({
        "bootstrap.servers": brokers,
        # A throw-away group: nothing is committed, the topic is read from the start each run.
        "group.id": f"roar-analytics-{uuid.uuid4()}",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    })
    try:
        meta = consumer.list_topics(topic, timeout=timeout).topics[topic]
        if meta.error is not None:
            raise KafkaException(meta.error)
        ends = {}
        for p in meta.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
            if high > low:
                ends[p] = high
        consumer.assign([TopicPartition(topic, p, 0) for p in ends])
        deadline = time.monotonic() + timeout
        while ends:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}: partitions {sorted(ends)} not read to the end")
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            if msg.error():
                raise KafkaException(msg.error())
            yield msg.partition(), msg.offset(), schemas.decode(msg.value())
            if msg.offset() + 1 >= ends.get(msg.partition(), 0):
                ends.pop(msg.partition(), None)
    finally:
        consumer.close()


def load(db, brokers: str, schemas_dir: pathlib.Path, timeout: float):
    db.execute("""CREATE OR REPLACE TABLE file_events (
        partition INTEGER, "offset" BIGINT, event_id VARCHAR, occurred_at TIMESTAMPTZ,
        file_id VARCHAR, kind VARCHAR, owner VARCHAR, size BIGINT, duration_seconds DOUBLE,
        code VARCHAR)""")
    db.execute("""CREATE OR REPLACE TABLE job_events (
        partition INTEGER, "offset" BIGINT, event_id VARCHAR, occurred_at TIMESTAMPTZ,
        job_id VARCHAR, file_id VARCHAR, model VARCHAR, variation VARCHAR, kind VARCHAR,
        attempt INTEGER, run_seconds DOUBLE, code VARCHAR, message VARCHAR)""")
    files = SchemaSet(schemas_dir, TOPICS["roar.files.v1"])
    rows = []
    for p, off, ev in read_topic(brokers, "roar.files.v1", files, timeout):
        kind, b = body_kind(ev["body"])
        info = b.get("info", b)
        rows.append((p, off, ev["meta"]["event_id"], ev["meta"]["occurred_at"], ev["file_id"],
                     kind, info.get("owner"), info.get("size"), b.get("duration_seconds"),
                     b.get("code")))
    db.executemany("INSERT INTO file_events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    jobs = SchemaSet(schemas_dir, TOPICS["roar.job-events.v1"])
    rows = []
    for p, off, ev in read_topic(brokers, "roar.job-events.v1", jobs, timeout):
        kind, b = body_kind(ev["body"])
        rows.append((p, off, ev["meta"]["event_id"], ev["meta"]["occurred_at"], ev["job_id"],
                     ev["file_id"], ev["model"], ev["variation"], kind, b.get("attempt"),
                     b.get("duration_seconds"), b.get("code"), b.get("message")))
    db.executemany(
        "INSERT INTO job_events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    # A job's outcome is its latest terminal event (a retried job fails, then completes).
    db.execute("""CREATE OR REPLACE VIEW jobs AS
        SELECT job_id, any_value(model) AS model, any_value(file_id) AS file_id,
               arg_max(kind, occurred_at) FILTER (WHERE kind IN
                   ('JobCompleted', 'JobFailed', 'JobCanceled', 'JobSkipped')) AS outcome,
               max(run_seconds) AS run_seconds
        FROM job_events GROUP BY job_id""")


def report(db) -> dict:
    def rows(sql):
        return db.execute(sql).fetchall()

    outcome_name = {"JobCompleted": "completed", "JobFailed": "failed",
                    "JobCanceled": "canceled", "JobSkipped": "skipped", None: "unfinished"}
    out = {
        "files": rows("SELECT count(DISTINCT file_id) FROM file_events")[0][0],
        "files_probed": rows(
            "SELECT count(DISTINCT file_id) FROM file_events WHERE kind = 'FileProbed'")[0][0],
        "jobs_per_model": dict(rows("SELECT model, count(*) FROM jobs GROUP BY model")),
        "outcomes": {},
        "run_seconds": {},
        "failure_causes": [],
    }
    for model, outcome, n in rows("SELECT model, outcome, count(*) FROM jobs GROUP BY ALL"):
        out["outcomes"].setdefault(model, {})[outcome_name[outcome]] = n
    for model, n, p50, p95 in rows("""
            SELECT model, count(*), quantile_cont(run_seconds, 0.5),
                   quantile_cont(run_seconds, 0.95)
            FROM job_events WHERE kind = 'JobCompleted' GROUP BY model"""):
        out["run_seconds"][model] = {"jobs": n, "p50": p50, "p95": p95}
    # A failed attempt that a retry superseded is still a cause worth counting.
    for model, code, n in rows("""
            SELECT model, code, count(*) FROM job_events WHERE kind = 'JobFailed'
            GROUP BY ALL ORDER BY 3 DESC, 1, 2"""):
        out["failure_causes"].append({"model": model, "code": code, "count": n})
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--brokers", default="localhost:29092", help="Kafka bootstrap servers")
    ap.add_argument("--schemas", default=str(REPO / "schemas" / "avro"),
                    help="folder with the .avsc files and history/")
    ap.add_argument("--out", default="roar-analytics.duckdb",
                    help="DuckDB database to (re)write; ':memory:' keeps nothing")
    ap.add_argument("--timeout", type=float, default=60.0,
                    help="seconds to read each topic to its end")
    args = ap.parse_args()
    db = duckdb.connect(args.out)
    load(db, args.brokers, pathlib.Path(args.schemas), args.timeout)
    json.dump(report(db), sys.stdout, indent=2, sort_keys=True)
    print()
    db.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
