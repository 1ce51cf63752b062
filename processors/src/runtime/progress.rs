//! Progress from a blocking model run to the job-events topic, throttled. The model reports as
//! often as it likes through a small bounded channel (a full channel drops the report: only the
//! newest matters); an async task forwards at most one report per interval.

use std::time::Duration;

use roar_common::kafka::EventProducer;
use roar_schemas::topics::JOB_EVENTS;
use roar_schemas::{JobBody, JobEvent};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// What the blocking side holds: cheap, never blocks.
pub(crate) fn reporter(tx: mpsc::Sender<(f32, String)>) -> Box<dyn FnMut(f32, &str) + Send> {
    let mut last = -1.0f32;
    Box::new(move |percent, message| {
        // Identical reports are noise; a full channel means the emitter is behind.
        if percent > last {
            last = percent;
            let _ = tx.try_send((percent, message.to_string()));
        }
    })
}

/// Forwards reports until the sender side is dropped (the run ended). Send failures are only
/// logged: progress is advisory and the job's outcome event is what counts.
pub(crate) fn spawn_emitter(
    producer: EventProducer,
    template: JobEvent,
    mut rx: mpsc::Receiver<(f32, String)>,
    interval: Duration,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut next_at = tokio::time::Instant::now();
        while let Some(mut report) = rx.recv().await {
            tokio::time::sleep_until(next_at).await;
            // Skip to the newest report that arrived while waiting.
            while let Ok(newer) = rx.try_recv() {
                report = newer;
            }
            let (percent, message) = report;
            let ev = JobEvent {
                meta: template.meta.follow(template.meta.actor.clone()),
                body: JobBody::Progress { percent, message },
                ..template.clone()
            };
            if let Err(e) = producer.send(JOB_EVENTS, &ev.file_id, &ev).await {
                tracing::debug!(error = %e, "progress event not sent");
            }
            next_at = tokio::time::Instant::now() + interval;
        }
    })
}
