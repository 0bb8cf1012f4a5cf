//! The stream connector's metric families (added to the runtime's registry, beside pycti's).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

/// Counters the engine moves; `cli` registers them.
#[derive(Debug, Clone, Default)]
pub struct StreamMetrics {
    pub events_read: Counter,
    pub entries_added: Counter,
    pub entries_removed: Counter,
    pub batches: Counter,
    pub esm_errors: Counter,
    pub list_size: Gauge,
    pub lag_seconds: Gauge,
}
