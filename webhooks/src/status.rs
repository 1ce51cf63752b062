//! The words of the `webhook_deliveries.status` column and of the `roar_webhook_deliveries_total`
//! outcome label: each spelled once, here.

use std::fmt;
use std::str::FromStr;

/// Where one event's delivery to one webhook stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryStatus {
    /// Waiting for its first attempt, or for a retry at `next_attempt_at`.
    Pending,
    /// A 2xx answered. Final.
    Delivered,
    /// Every attempt of `webhooks.max_attempts` failed. Final.
    Failed,
    /// The SSRF guard refused the address (or the stored secret is unusable). Final.
    Refused,
}

/// Text that is no delivery status (a row written by something other than this crate).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown delivery status {0:?}")]
pub struct UnknownStatus(pub String);

impl DeliveryStatus {
    /// Every status, in the order a delivery may reach them.
    pub const ALL: [DeliveryStatus; 4] = [
        DeliveryStatus::Pending,
        DeliveryStatus::Delivered,
        DeliveryStatus::Failed,
        DeliveryStatus::Refused,
    ];

    /// The stored (and listed) text.
    pub const fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Refused => "refused",
        }
    }

    /// Whether no attempt follows.
    pub fn is_final(self) -> bool {
        self != DeliveryStatus::Pending
    }

    /// The metric's outcome label for an attempt that left the delivery in this status: a
    /// delivery still pending after an attempt is one to retry.
    pub const fn outcome(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "retry",
            other => other.as_str(),
        }
    }
}

impl FromStr for DeliveryStatus {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, UnknownStatus> {
        DeliveryStatus::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_string()))
    }
}

impl TryFrom<String> for DeliveryStatus {
    type Error = UnknownStatus;

    fn try_from(s: String) -> Result<Self, UnknownStatus> {
        s.parse()
    }
}

impl fmt::Display for DeliveryStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
