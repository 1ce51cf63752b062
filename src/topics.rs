//! `roar topics`: creates the topics roar needs and checks that each existing one keeps its
//! messages as long as roar needs them (`retention.ms`): the command and file topics are the
//! system of record, so they keep forever, and a topic created by an older release (job topics
//! used to keep 30 days) or by hand is set right. `--check` only reports.

use std::ffi::{CStr, CString};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::bindings as rd;
use rdkafka::client::DefaultClientContext;
use roar_common::kafka::client_config;
use roar_common::Config;
use roar_schemas::topics::{self, TopicSpec};

const RETENTION: &str = "retention.ms";
const TIMEOUT: Duration = Duration::from_secs(30);

/// One topic whose retention is not what roar needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Drift {
    pub topic: String,
    /// What the broker says (`None`: not set on the topic, so the broker's default applies).
    pub found: Option<String>,
    pub wanted: i64,
}

/// Creates missing topics, then compares every topic's retention with what roar needs; unless
/// `check_only`, sets it right. Returns the topics that differed (before any fix).
pub async fn ensure(cfg: &Config, check_only: bool) -> Result<Vec<Drift>> {
    let specs = topics::all(cfg.kafka.partitions);
    if !check_only {
        crate::services::bootstrap_topics(cfg).await?;
    }
    let drift = retention_drift(cfg, &specs).await?;
    if !check_only && !drift.is_empty() {
        let cfg = cfg.clone();
        let fixes = drift.clone();
        tokio::task::spawn_blocking(move || set_retention(&cfg, &fixes))
            .await
            .context("the retention update thread")??;
    }
    Ok(drift)
}

/// The topics in `specs` whose `retention.ms` differs from the spec (missing topics are not
/// listed: creating them sets it).
pub async fn retention_drift(cfg: &Config, specs: &[TopicSpec]) -> Result<Vec<Drift>> {
    let admin: AdminClient<DefaultClientContext> = client_config(&cfg.kafka).create()?;
    let resources: Vec<ResourceSpecifier> = specs
        .iter()
        .map(|s| ResourceSpecifier::Topic(&s.name))
        .collect();
    let opts = AdminOptions::new().request_timeout(Some(TIMEOUT));
    let described = admin
        .describe_configs(resources.iter(), &opts)
        .await
        .context("describing the topics' configuration")?;
    let mut drift = Vec::new();
    for (spec, result) in specs.iter().zip(described) {
        let resource = match result {
            Ok(r) => r,
            // A topic that does not exist yet has nothing to fix.
            Err(rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition) => continue,
            Err(e) => bail!("describing {}: {e}", spec.name),
        };
        if resource.entries.is_empty() && !topic_exists(&admin, &spec.name)? {
            continue;
        }
        let found = resource
            .get(RETENTION)
            .and_then(|e| e.value.clone())
            .filter(|v| !v.is_empty());
        let ok = found
            .as_deref()
            .and_then(|v| v.parse::<i64>().ok())
            .is_some_and(|v| v == spec.retention_ms);
        if !ok {
            drift.push(Drift {
                topic: spec.name.clone(),
                found,
                wanted: spec.retention_ms,
            });
        }
    }
    Ok(drift)
}

fn topic_exists(admin: &AdminClient<DefaultClientContext>, topic: &str) -> Result<bool> {
    use rdkafka::client::Client;
    let client: &Client<DefaultClientContext> = admin.inner();
    let md = client
        .fetch_metadata(Some(topic), TIMEOUT)
        .context("reading topic metadata")?;
    Ok(md
        .topics()
        .iter()
        .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty()))
}

/// Sets `retention.ms` on each drifted topic with IncrementalAlterConfigs, which only touches
/// the one key (the older AlterConfigs would reset every other setting of the topic, and some
/// brokers implement only the incremental one). rust-rdkafka wraps only the older call, so this
/// goes through librdkafka's C API. Blocking: call it off the async executor.
fn set_retention(cfg: &Config, drift: &[Drift]) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = client_config(&cfg.kafka).create()?;
    let rk = admin.inner().native_ptr();
    let key = CString::new(RETENTION)?;
    let names: Vec<CString> = drift
        .iter()
        .map(|d| CString::new(d.topic.as_str()))
        .collect::<Result<_, _>>()?;
    let values: Vec<CString> = drift
        .iter()
        .map(|d| CString::new(d.wanted.to_string()))
        .collect::<Result<_, _>>()?;
    // SAFETY: every pointer passed to librdkafka comes from it (rk, resources, options, queue,
    // event) or is a CString that outlives the call; each object is destroyed once, after its
    // last use, on every path out of this block; the result array belongs to the event.
    unsafe {
        let mut resources: Vec<*mut rd::rd_kafka_ConfigResource_t> = Vec::new();
        for (name, value) in names.iter().zip(&values) {
            let r = rd::rd_kafka_ConfigResource_new(
                rd::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_TOPIC,
                name.as_ptr(),
            );
            resources.push(r);
            let err = rd::rd_kafka_ConfigResource_add_incremental_config(
                r,
                key.as_ptr(),
                rd::rd_kafka_AlterConfigOpType_t::RD_KAFKA_ALTER_CONFIG_OP_TYPE_SET,
                value.as_ptr(),
            );
            if !err.is_null() {
                let msg = CStr::from_ptr(rd::rd_kafka_error_string(err))
                    .to_string_lossy()
                    .into_owned();
                rd::rd_kafka_error_destroy(err);
                rd::rd_kafka_ConfigResource_destroy_array(resources.as_mut_ptr(), resources.len());
                bail!("setting {RETENTION} on {}: {msg}", name.to_string_lossy());
            }
        }
        let options = rd::rd_kafka_AdminOptions_new(
            rk,
            rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_INCREMENTALALTERCONFIGS,
        );
        let mut errstr = [0 as std::ffi::c_char; 256];
        rd::rd_kafka_AdminOptions_set_request_timeout(
            options,
            TIMEOUT.as_millis() as i32,
            errstr.as_mut_ptr(),
            errstr.len(),
        );
        let queue = rd::rd_kafka_queue_new(rk);
        rd::rd_kafka_IncrementalAlterConfigs(
            rk,
            resources.as_mut_ptr(),
            resources.len(),
            options,
            queue,
        );
        let event = rd::rd_kafka_queue_poll(queue, TIMEOUT.as_millis() as i32 + 5_000);
        let outcome = if event.is_null() {
            Err(format!("no answer within {TIMEOUT:?}"))
        } else if rd::rd_kafka_event_error(event) as i32 != 0 {
            Err(CStr::from_ptr(rd::rd_kafka_event_error_string(event))
                .to_string_lossy()
                .into_owned())
        } else {
            let result = rd::rd_kafka_event_IncrementalAlterConfigs_result(event);
            let mut n = 0usize;
            let each = rd::rd_kafka_IncrementalAlterConfigs_result_resources(result, &mut n);
            let mut failed = Vec::new();
            for i in 0..n {
                let r = *each.add(i);
                if rd::rd_kafka_ConfigResource_error(r) as i32 != 0 {
                    let why = rd::rd_kafka_ConfigResource_error_string(r);
                    let why = if why.is_null() {
                        "refused".into()
                    } else {
                        CStr::from_ptr(why).to_string_lossy().into_owned()
                    };
                    let name = CStr::from_ptr(rd::rd_kafka_ConfigResource_name(r));
                    failed.push(format!("{}: {why}", name.to_string_lossy()));
                }
            }
            if failed.is_empty() {
                Ok(())
            } else {
                Err(failed.join("; "))
            }
        };
        if !event.is_null() {
            rd::rd_kafka_event_destroy(event);
        }
        rd::rd_kafka_queue_destroy(queue);
        rd::rd_kafka_AdminOptions_destroy(options);
        rd::rd_kafka_ConfigResource_destroy_array(resources.as_mut_ptr(), resources.len());
        outcome.map_err(|e| anyhow::anyhow!("setting {RETENTION}: {e}"))
    }
}

/// What `roar topics` prints about `drift`.
pub fn describe(drift: &[Drift], fixed: bool) -> String {
    if drift.is_empty() {
        return "every topic keeps its messages as long as roar needs\n".into();
    }
    let mut out = String::new();
    for d in drift {
        let wanted = if d.wanted < 0 {
            "-1 (forever)".to_string()
        } else {
            d.wanted.to_string()
        };
        out.push_str(&format!(
            "{}: {RETENTION} {} → {wanted}{}\n",
            d.topic,
            d.found.as_deref().unwrap_or("unset (broker default)"),
            if fixed { " (set)" } else { "" }
        ));
    }
    out
}
