//! The projection's errors at its boundary.

/// Why the projector, a rebuild or the lag probe stopped or could not go on.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("projector database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("projector kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("projector migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A dead letter could not be written (the broker is away): the batch is tried again.
    #[error("projector dead-letter topic: {0}")]
    DeadLetter(#[from] roar_common::kafka::KafkaError),
    /// Stopped by its cancellation token (a rebuild; the live model is untouched).
    #[error("rebuild canceled")]
    Canceled,
    /// Needs an operator: a topic is missing, a background task died.
    #[error("projector: {0}")]
    Other(String),
}

impl ProjectionError {
    /// Database and broker failures are transient; a failed migration, a cancel or a missing
    /// topic is not helped by trying again.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ProjectionError::Db(_) | ProjectionError::Kafka(_) | ProjectionError::DeadLetter(_)
        )
    }
}

/// An event that decodes but cannot be applied (it breaks a rule of the state machine). Never
/// retryable: it goes to the dead-letter topic and the partition moves on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid event: {0}")]
pub struct Invalid(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_failures_are_retryable_and_the_rest_are_not() {
        assert!(ProjectionError::Db(sqlx::Error::PoolTimedOut).is_retryable());
        assert!(
            ProjectionError::DeadLetter(roar_common::kafka::KafkaError::Delivery {
                topic: "roar.dlq.v1".into(),
                reason: "timed out".into(),
            })
            .is_retryable()
        );
        assert!(!ProjectionError::Canceled.is_retryable());
        assert!(!ProjectionError::Other("topic x has no partitions".into()).is_retryable());
    }
}
