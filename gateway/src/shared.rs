//! What every connection of one gateway shares: the configuration in
//! force, the state store, the live-session registry, the user CA, the
//! recorder and sign-in. The accept loop builds it; connections, the
//! re-evaluation tasks and reload read it. It depends on none of them, which
//! keeps the modules around it free of import circles.

use std::sync::{Arc, PoisonError, RwLock};

use tokio::sync::Semaphore;

use crate::admission::Admission;
use crate::keys::UserCa;
use crate::registry::Registry;
use crate::sign_in::SignIn;
use config::Config;

/// State shared by every connection.
pub(crate) struct Shared {
    /// The configuration in force; a reload swaps it.
    pub(crate) config: RwLock<Arc<Config>>,
    /// The state database: login bindings, revocations, kill requests.
    pub(crate) store: Arc<dyn state::Store>,
    /// The live sessions, re-checked against the policy.
    pub(crate) sessions: Arc<Registry>,
    /// The user CA that signs certificates for targets.
    pub(crate) ca: Arc<UserCa>,
    pub(crate) ssh: Arc<russh::server::Config>,
    /// Who may hold an unauthenticated slot, and penalties.
    pub(crate) admission: Arc<Admission>,
    pub(crate) connections: Arc<Semaphore>,
    /// Device-code sign-in, when the `idp` section is configured.
    pub(crate) sign_in: Option<Arc<SignIn>>,
    /// Records sessions (issue 4).
    pub(crate) recorder: recorder::Recorder,
    /// The process's metrics (issue 16): atomics, counted where things
    /// happen.
    pub(crate) metrics: Arc<telemetry::Metrics>,
}

impl Shared {
    /// Puts a new configuration in force for new connections and the next
    /// sweep of live sessions.
    pub(crate) fn set_config(&self, config: Config) {
        *self.config.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(config);
        self.sessions.sweep_now();
    }

    /// The configuration in force now.
    pub(crate) fn config(&self) -> Arc<Config> {
        Arc::clone(&self.config.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// The state database.
    pub(crate) fn store(&self) -> &Arc<dyn state::Store> {
        &self.store
    }

    /// The live sessions.
    pub(crate) fn sessions(&self) -> &Arc<Registry> {
        &self.sessions
    }

    /// The SSH window each client channel is granted when not congested.
    pub(crate) fn window_size(&self) -> u32 {
        self.ssh.window_size
    }

    /// The session recorder.
    pub(crate) fn recorder(&self) -> &recorder::Recorder {
        &self.recorder
    }

    /// The process's metrics.
    pub(crate) fn metrics(&self) -> &telemetry::Metrics {
        &self.metrics
    }

    /// Sign-in through the IdP, if configured.
    pub(crate) fn sign_in(&self) -> Option<&Arc<SignIn>> {
        self.sign_in.as_ref()
    }
}
