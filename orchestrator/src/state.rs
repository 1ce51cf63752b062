use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use roar_common::auth::Authenticator;
use roar_common::kafka::EventProducer;
use roar_common::storage::Storage;
use roar_common::Config;
use roar_projections::ReadModel;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub cfg: Arc<Config>,
    pub producer: EventProducer,
    pub storage: Storage,
    pub read: ReadModel,
    pub auth: Authenticator,
    pub metrics: PrometheusHandle,
}
