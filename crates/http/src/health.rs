//! Components a feature adds to `/health` (e.g. the NATS ingest connection): each reports a short state and
//! whether it is healthy. The database is checked by `/health` itself; a registered component that is unhealthy
//! makes the answer `degraded` but keeps it a 200, since the process still serves HTTP (a liveness probe must not
//! restart a replica because an optional input is down).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

/// What a component reports: a word for `/health` (`connected`, `disconnected`, …) and whether that is healthy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentState {
    pub state: String,
    pub healthy: bool,
}

type Probe = Arc<dyn Fn() -> ComponentState + Send + Sync>;

/// The registered components of a process. Cheap to read; probes must not block (they read a flag).
#[derive(Default)]
pub struct HealthComponents {
    probes: RwLock<BTreeMap<String, Probe>>,
}

impl std::fmt::Debug for HealthComponents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthComponents").finish_non_exhaustive()
    }
}

impl HealthComponents {
    /// Adds (or replaces) the component `name`.
    pub fn register(&self, name: &str, probe: impl Fn() -> ComponentState + Send + Sync + 'static) {
        let mut probes = match self.probes.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        probes.insert(name.to_owned(), Arc::new(probe));
    }

    /// Every component's current state, by name.
    pub fn report(&self) -> BTreeMap<String, ComponentState> {
        let probes: Vec<(String, Probe)> = match self.probes.read() {
            Ok(g) => g.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            Err(poisoned) => poisoned
                .into_inner()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        };
        probes.into_iter().map(|(k, p)| (k, p())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_report_their_current_state() {
        let c = HealthComponents::default();
        assert!(c.report().is_empty());
        let up = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let probe = up.clone();
        c.register("nats", move || {
            let healthy = probe.load(std::sync::atomic::Ordering::Relaxed);
            ComponentState {
                state: if healthy { "connected" } else { "disconnected" }.into(),
                healthy,
            }
        });
        assert_eq!(c.report()["nats"].state, "disconnected");
        up.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(c.report()["nats"].healthy);
    }
}
