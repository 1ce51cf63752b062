//! `roar dlq list` and `roar dlq redrive <id>`: the operator's side of the dead-letter topic,
//! the same code as `GET /admin/dlq` and `POST /admin/dlq/{id}/redrive`.

use anyhow::{Context, Result};
use roar_common::kafka::EventProducer;
use roar_common::Config;
use roar_orchestrator::commands::dlq;
use roar_orchestrator::views::{DeadLetterView, RedriveView};

/// Prints every letter, newest first: one line each, or a JSON array with `json`.
pub async fn list(cfg: &Config, json: bool) -> Result<String> {
    let pool = crate::services::database(cfg).await?;
    let letters = dlq::list(&cfg.kafka, &pool)
        .await
        .context("listing dead letters")?;
    let views: Vec<DeadLetterView> = letters.iter().map(DeadLetterView::from).collect();
    if json {
        return Ok(serde_json::to_string_pretty(&views)? + "\n");
    }
    let mut out = String::new();
    for v in &views {
        let state = match &v.redrive {
            Some(r) => format!("redriven {} by {}", r.redriven_at.to_rfc3339(), r.actor),
            None => "waiting".into(),
        };
        out.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\t{}\n",
            v.letter_id,
            v.dead_lettered_at.to_rfc3339(),
            v.consumer_group,
            v.kind,
            state,
            v.error.replace(['\n', '\t'], " "),
        ));
    }
    if views.is_empty() {
        out.push_str("the dead-letter topic is empty\n");
    }
    Ok(out)
}

/// Sends letter `id` back to its source topic (once: a repeat says when it was sent).
pub async fn redrive(cfg: &Config, id: &str) -> Result<String> {
    let pool = crate::services::database(cfg).await?;
    let producer = EventProducer::new(&cfg.kafka)?;
    let actor = format!(
        "cli:{}",
        std::env::var("USER").unwrap_or_else(|_| "operator".into())
    );
    let (done, sent_now) = dlq::redrive(&cfg.kafka, &producer, &pool, id, &actor)
        .await
        .with_context(|| format!("re-driving {id}"))?;
    producer.flush(std::time::Duration::from_secs(10));
    let r = RedriveView::from(&done);
    Ok(if sent_now {
        format!(
            "{id} re-driven to {} partition {} offset {}\n",
            r.topic, r.partition, r.offset
        )
    } else {
        format!(
            "{id} was already re-driven {} by {} (to {} partition {} offset {}); nothing sent\n",
            r.redriven_at.to_rfc3339(),
            r.actor,
            r.topic,
            r.partition,
            r.offset
        )
    })
}
