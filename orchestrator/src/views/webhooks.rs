//! `/webhooks`: a user's outbound webhooks and how their deliveries went. The URL and secret
//! patterns are what the handler enforces (besides the SSRF guard), so the document states
//! exactly which requests are accepted.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use regex::Regex;
use roar_webhooks::status::DeliveryStatus;
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{ArrayBuilder, Object, ObjectBuilder, SchemaType, Type};
use utoipa::openapi::{Array, RefOr, Schema};
use utoipa::{IntoParams, ToSchema};

use super::schema as s;

/// Most filters one registration names.
pub const MAX_FILTERS: usize = 16;

/// The longest URL the document admits: `webhooks.max_url_len`'s default (a deployment that
/// lowers it answers 422 to longer ones).
pub const URL_MAX_LENGTH: usize = 2048;

/// One decimal octet, without leading zeros (which a URL parser reads as octal).
const OCTET: &str = "(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])";
/// A percent-encoded byte.
const PCT: &str = "%[0-9A-Fa-f]{2}";

/// A bracketed IPv6 address in the forms of RFC 3986's `IPv6address` (no zone id): eight
/// groups, or fewer around one `::`, the last 32 bits possibly a dotted IPv4 address. The
/// brackets are the only escapes of the pattern, which every regex dialect reads alike.
fn ipv6_pattern() -> String {
    let h = "[0-9A-Fa-f]{1,4}";
    let ls32 = format!("({h}:{h}|({OCTET}[.]){{3}}{OCTET})");
    let groups = |n: usize| match n {
        0 => String::new(),
        n => format!("({h}:){{{n}}}"),
    };
    // Up to `before + 1` groups ahead of the `::` (none at all allowed).
    let head = |before: usize| match before {
        0 => format!("({h})?"),
        b => format!("(({h}:){{0,{b}}}{h})?"),
    };
    let mut forms = vec![
        format!("{}{ls32}", groups(6)),
        format!("::{}{ls32}", groups(5)),
    ];
    for before in 0..=4 {
        forms.push(format!("{}::{}{ls32}", head(before), groups(4 - before)));
    }
    forms.push(format!("{}::{h}", head(5)));
    forms.push(format!("{}::", head(6)));
    format!("\\[({})\\]", forms.join("|"))
}

/// The URL forms a webhook may name: http(s); a host name whose last label starts with a
/// letter (one ending in a number is read as an IPv4 address) and has no `--` (which starts
/// punycode), a dotted IPv4 address or a bracketed IPv6 one; a port 1-65535; a path and query
/// of unreserved characters and percent escapes. Written with `[.]` and `[?]` rather than
/// escapes, so every regex dialect that reads the document reads it the same way.
pub fn url_pattern() -> String {
    let label = "[A-Za-z0-9]+(-[A-Za-z0-9]+)*";
    let last = "[A-Za-z][A-Za-z0-9]*(-[A-Za-z0-9]+)*";
    let port =
        "(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})";
    let ipv6 = ipv6_pattern();
    format!(
        "^https?://(({OCTET}[.]){{3}}{OCTET}|({label}[.])*{last}|{ipv6})(:{port})?\
         (/([A-Za-z0-9._~-]|{PCT})*)*([?]([A-Za-z0-9._~=&+-]|{PCT})*)?$"
    )
}

/// `whsec_` and the padded base64 of 24 to 64 bytes, as `sign::key` decodes it: whole groups,
/// then at most one padded group whose unused bits are zero.
pub const SECRET_PATTERN: &str = "^whsec_(([A-Za-z0-9+/]{4}){8,21}\
    |([A-Za-z0-9+/]{4}){8,20}([A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=|[A-Za-z0-9+/][AQgw]==)\
    |([A-Za-z0-9+/]{4}){21}[A-Za-z0-9+/][AQgw]==)$";

static URL_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(&url_pattern()).expect("the URL pattern compiles"));
static SECRET_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(SECRET_PATTERN).expect("the secret pattern compiles"));

/// Whether `url` has a form the document admits (the SSRF guard judges its address apart).
pub fn is_webhook_url(url: &str) -> bool {
    url.len() <= URL_MAX_LENGTH && URL_RE.is_match(url)
}

/// Whether `secret` has the form the document admits.
pub fn is_webhook_secret(secret: &str) -> bool {
    SECRET_RE.is_match(secret)
}

fn nullable(o: ObjectBuilder, t: Type) -> ObjectBuilder {
    o.schema_type(SchemaType::from_iter([t, Type::Null]))
}

pub fn url_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .max_length(Some(URL_MAX_LENGTH))
        .pattern(Some(url_pattern()))
        .description(Some(
            "where deliveries go: http(s), a host name, a dotted IPv4 address or a bracketed \
             IPv6 one (`http://[2001:db8::1]/hook`; no zone id, no credentials), optional \
             port, path and query. A literal loopback, private, link-local, metadata or other \
             non-public address (and `localhost`) answers 422; a name is resolved at each \
             delivery and refused there when it resolves to one (`webhooks.allow_networks` \
             opens networks in development).",
        ))
        .build()
}

/// Every filter an `events` entry may name, from the job event kinds.
fn filter_words() -> Object {
    let words = roar_webhooks::dispatch::filter_words();
    s::words(words.iter().map(String::as_str))
}

/// `events` (and `callback_events`): 1 to 16 filters.
pub fn events_schema(null_too: bool) -> Array {
    let mut a = ArrayBuilder::new()
        .items(filter_words())
        .min_items(Some(1))
        .max_items(Some(MAX_FILTERS))
        .description(Some(
            "which events are delivered: `*`, `job.*`, `job.<kind>`, `pipeline.*` or \
             `pipeline.<outcome>` (the end of the pipeline a preset or chained request started: \
             its callback only); absent: every way a job ends (`job.completed`, `job.failed`, \
             `job.canceled`, `job.skipped`), and for a preset or chained request's callback \
             also `pipeline.*`",
        ));
    if null_too {
        a = a.schema_type(SchemaType::from_iter([Type::Array, Type::Null]));
    }
    a.build()
}

/// `secret` (and `callback_secret`).
pub fn secret_schema(null_too: bool) -> Object {
    let o = ObjectBuilder::new()
        .pattern(Some(SECRET_PATTERN))
        .description(Some(
            "`whsec_` and the base64 of 24 to 64 random bytes; absent: one is made and \
             returned once",
        ));
    if null_too {
        nullable(o, Type::String).build()
    } else {
        o.schema_type(Type::String).build()
    }
}

fn events_or_null() -> RefOr<Schema> {
    events_schema(true).into()
}

fn secret_or_null() -> RefOr<Schema> {
    secret_schema(true).into()
}

fn url_or_absent() -> RefOr<Schema> {
    url_schema().into()
}

/// `POST /webhooks`. `null` is the same as absent for `events` and `secret`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookRequest {
    #[schema(schema_with = url_or_absent)]
    pub url: String,
    #[serde(default)]
    #[schema(schema_with = events_or_null)]
    pub events: Option<Vec<String>>,
    #[serde(default)]
    #[schema(schema_with = secret_or_null)]
    pub secret: Option<String>,
}

/// What `store::new_id` makes.
pub const WEBHOOK_ID_PATTERN: &str = "^wh_[0-9a-f]{32}$";

fn webhook_id() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(WEBHOOK_ID_PATTERN))
        .description(Some("a webhook id as `POST /webhooks` returned it"))
        .build()
}

/// Routes on one webhook: `{webhook_id}` in the path. Anything that is not one of the caller's
/// webhooks (a malformed id included) is 404.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct WebhookPath {
    #[param(schema_with = webhook_id, required = true)]
    pub webhook_id: String,
}

/// A registered webhook.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookView {
    #[schema(schema_with = webhook_id)]
    pub webhook_id: String,
    /// As stored (normalised: a bare host gets its `/`).
    pub url: String,
    pub events: Vec<String>,
    /// Set on a job's `callback_url` registration: the one job it follows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    pub created_at: DateTime<Utc>,
    /// The signing secret: only in the answer to its creation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// `GET /webhooks`.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookList {
    pub webhooks: Vec<WebhookView>,
}

fn delivery_status() -> Object {
    s::words(DeliveryStatus::ALL.iter().map(|d| d.as_str()))
}

/// One event's delivery to one webhook.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryView {
    /// The `webhook-id` header receivers deduplicate on (the same on every retry).
    pub event_id: String,
    /// `job.<kind>`.
    pub event_type: String,
    /// `pending`, `delivered`, `failed` (attempts exhausted) or `refused` (the address guard).
    #[schema(schema_with = delivery_status)]
    pub status: String,
    pub attempts: i32,
    /// When a pending delivery is tried next.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_status_code: Option<i32>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// `GET /webhooks/{webhook_id}/deliveries`: the newest 100.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryList {
    pub deliveries: Vec<DeliveryView>,
}
