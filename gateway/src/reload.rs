//! Configuration reload: on SIGHUP, or when the file's content changes.
//!
//! A reload takes effect for what is decided per connection and per
//! session: identities, routes, policies and `reevaluate_interval`. Live
//! sessions are re-checked against the new policy at once. Settings bound
//! to resources opened at start (listen address, host keys, user CA, state
//! directory, limits, IdP, recording) keep their running values; a change
//! to them is logged as needing a restart.
//!
//! **Invariant:** a configuration with problems never replaces the one in
//! force. Its problems are logged, with file:line:col, and the gateway goes
//! on with the old one.

use std::sync::Arc;

use audit::Event;
use tokio_util::sync::CancellationToken;

use crate::shared::Shared;
use config::{self, Config};

/// Reloads the configuration whenever SIGHUP arrives or its file changes,
/// until `shutdown` (the file follower is `config::follow`).
pub(crate) async fn follow(shared: Arc<Shared>, shutdown: CancellationToken) {
    let path = shared.config().source.clone();
    config::follow(path, shutdown, move |loaded, trigger| {
        reload(&shared, loaded, trigger);
    })
    .await;
}

fn reload(shared: &Shared, loaded: Result<Config, config::ConfigErrors>, trigger: &'static str) {
    let new = match loaded {
        Ok(new) => new,
        Err(errors) => {
            Event::ConfigRejected {
                trigger,
                problems: audit::count(errors.0.len()),
                detail: errors.to_string(),
            }
            .emit();
            return;
        }
    };
    let old = shared.config();
    for setting in needs_restart(&old, &new) {
        tracing::warn!(
            setting,
            "{setting} changed; restart the gateway to apply it (the running value stays)"
        );
    }
    let applied = Config {
        keys: new.keys,
        routes: new.routes,
        policies: new.policies,
        direct_access: new.direct_access,
        reevaluate_interval: new.reevaluate_interval,
        ..(*old).clone()
    };
    Event::ConfigReloaded {
        trigger,
        routes: audit::count(applied.routes.len()),
        keys: audit::count(applied.keys.len()),
        live_sessions: audit::count(shared.sessions().len()),
    }
    .emit();
    shared.set_config(applied);
}

/// The settings that differ and only take effect at start.
fn needs_restart(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    if old.listen != new.listen {
        changed.push("listen");
    }
    if old.metrics != new.metrics {
        changed.push("metrics");
    }
    if old.host_keys != new.host_keys {
        changed.push("host_keys");
    }
    if old.user_ca != new.user_ca {
        changed.push("user_ca");
    }
    if old.state_dir != new.state_dir {
        changed.push("state_dir");
    }
    if old.gateway_id != new.gateway_id {
        changed.push("gateway_id");
    }
    if old.limits != new.limits {
        changed.push("limits");
    }
    // These hold no secrets in their Debug form (the IdP's client secret is
    // redacted), and comparing it avoids a PartialEq on foreign types.
    if format!("{:?}", old.sign_in) != format!("{:?}", new.sign_in) {
        changed.push("idp");
    }
    if format!("{:?}", old.recording) != format!("{:?}", new.recording) {
        changed.push("recording");
    }
    if old.tracing != new.tracing {
        changed.push("tracing");
    }
    changed
}
