//! `gatehouse logins`: list and revoke login bindings, the keys that signed
//! in through the identity provider and skip the browser until they expire.
//!
//! The store is the `state` crate; this module only parses arguments,
//! prints, and writes the audit events of what it changed. Both commands work while the gateway runs: SQLite serializes
//! the writes and a revocation takes effect at the key's next connection.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use audit::Event;
use clap::{ArgGroup, Subcommand};
use config::Config;
use state::{
    Binding, BindingState, KillOutcome, KillQueued, Revoke, Revoked, Sqlite, Store, is_fingerprint,
};

use crate::load_config;

#[derive(Subcommand)]
pub(crate) enum LoginsCommand {
    /// List login bindings: who signed in with which key, and until when.
    #[command(after_help = "Examples:\n  \
        gatehouse logins list --config /etc/gatehouse/gatehouse.yaml\n  \
        gatehouse logins list --config gatehouse.yaml --json | jq -r 'select(.state == \"live\") | .email'\n\n\
        Lists expired and revoked bindings too, newest first. --json prints one \
        object per line with RFC 3339 UTC times and a state of live, expired or revoked.")]
    List {
        /// The configuration file; the bindings are in its state_dir.
        #[arg(long, short)]
        config: PathBuf,
        /// Print one JSON object per binding and line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke login bindings so their keys must sign in again.
    #[command(
        group(ArgGroup::new("which").required(true).args(["key", "user", "all"])),
        after_help = "Examples:\n  \
        gatehouse logins revoke --config gatehouse.yaml --user alice@example.com\n  \
        gatehouse logins revoke -c gatehouse.yaml --key \"$(ssh-keygen -lf id.pub | cut -d' ' -f2)\"\n  \
        gatehouse logins revoke --config gatehouse.yaml --all\n\n\
        A revoked binding stays in the list for audit, loses its refresh token and \
        no longer authenticates its key. \
        Exits 0 even when nothing matched."
    )]
    Revoke {
        /// The configuration file; the bindings are in its state_dir.
        #[arg(long, short)]
        config: PathBuf,
        /// Revoke the binding of this key fingerprint (SHA256:...).
        #[arg(long, value_name = "FINGERPRINT")]
        key: Option<String>,
        /// Revoke every binding of this user: the email (any case), or the
        /// IdP subject for users without one.
        #[arg(long, value_name = "EMAIL")]
        user: Option<String>,
        /// Revoke every binding.
        #[arg(long)]
        all: bool,
    },
}

/// Runs one `gatehouse logins` subcommand.
pub(crate) fn run(command: LoginsCommand) -> Result<ExitCode> {
    match command {
        LoginsCommand::List { config, json } => list(&config, json),
        LoginsCommand::Revoke {
            config,
            key,
            user,
            all,
        } => {
            let which = match (&key, &user, all) {
                (Some(fp), None, false) => {
                    let fp = fp.trim();
                    if !is_fingerprint(fp) {
                        bail!(
                            "{fp:?} is not a key fingerprint: pass SHA256:... as printed by `ssh-keygen -lf KEY.pub`"
                        );
                    }
                    Revoke::Key(fp.to_owned())
                }
                (None, Some(user), false) => Revoke::User(user.trim().to_owned()),
                (None, None, true) => Revoke::All,
                // clap's ArgGroup guarantees exactly one.
                _ => bail!("pass exactly one of --key, --user or --all"),
            };
            revoke(&config, which)
        }
    }
}

/// Opens the store in the config's state directory, or `None` when no
/// database exists yet. Not creating one here matters: run as root, this
/// command would leave a database the gateway's user cannot write.
fn open_store(config: &Config) -> Result<Option<Sqlite>> {
    if !Sqlite::exists(&config.state_dir) {
        return Ok(None);
    }
    Sqlite::open(&config.state_dir)
        .map(Some)
        .context("cannot open the state database")
}

/// Runs one store call to completion: the CLI is synchronous, the store's
/// API is async (its SQLite work runs on the runtime's blocking pool).
fn wait<T>(call: impl std::future::Future<Output = T>) -> Result<T> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    Ok(runtime.block_on(call))
}

fn list(config_path: &Path, json: bool) -> Result<ExitCode> {
    let config = match load_config(config_path) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let bindings = match open_store(&config)? {
        Some(store) => wait(store.bindings())?.context("cannot list the login bindings")?,
        None => Vec::new(),
    };
    let now = SystemTime::now();
    if json {
        for b in &bindings {
            println!("{}", b.to_json_line(now));
        }
    } else if bindings.is_empty() {
        println!("no login bindings");
    } else {
        print!("{}", table(&bindings, now));
    }
    Ok(ExitCode::SUCCESS)
}

fn revoke(config_path: &Path, which: Revoke) -> Result<ExitCode> {
    let config = match load_config(config_path) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let revoked = match open_store(&config)? {
        Some(store) => wait(store.revoke(which.clone(), SystemTime::now()))?
            .context("cannot revoke the login bindings")?,
        None => Revoked::default(),
    };
    let selector = which.to_string();
    for (fingerprint, who) in &revoked.bindings {
        Event::BindingRevoked {
            fingerprint: fingerprint.clone(),
            identity: who.clone(),
            selector: selector.clone(),
            revision: revoked.revision,
        }
        .emit();
    }
    match revoked.bindings.len() {
        0 => {
            let why = match &which {
                Revoke::Key(fp) => format!("no active binding for key {fp}"),
                Revoke::User(u) => format!("no active binding for user {u}"),
                Revoke::All => "there were no active bindings".to_owned(),
            };
            println!("revoked 0 login bindings: {why}");
        }
        1 => println!("revoked 1 login binding; its live sessions end within a second"),
        n => println!("revoked {n} login bindings; their live sessions end within a second"),
    }
    match revoked.web_sessions {
        0 => {}
        1 => println!("ended 1 signed-in browser session"),
        n => println!("ended {n} signed-in browser sessions"),
    }
    Ok(ExitCode::SUCCESS)
}

/// How long `sessions kill` waits for the holding gateway to answer.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// `gatehouse sessions kill`: asks the gateway that holds a session,
/// through the state database, to end it, and waits for its answer.
/// Exits 0 when it ended, 1 when no gateway holds it, 2 when the holder
/// did not answer in time.
pub(crate) fn kill(config_path: &Path, id: &str, reason: &str) -> Result<ExitCode> {
    let config = match load_config(config_path) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let Some(store) = open_store(&config)? else {
        println!(
            "no state database in {}: no gateway has run with this configuration",
            config.state_dir.display()
        );
        return Ok(ExitCode::from(2));
    };
    wait(async {
        let queued = store
            .request_kill(id, reason, SystemTime::now())
            .await
            .context("cannot ask the gateway to end the session")?;
        let (request, holder) = match queued {
            KillQueued::Queued { id, gateway_id } => (id, gateway_id),
            KillQueued::NotLive => {
                println!("no live session {id} on any gateway");
                return Ok(ExitCode::FAILURE);
            }
        };
        let deadline = tokio::time::Instant::now() + KILL_WAIT;
        loop {
            match store
                .kill_outcome(request)
                .await
                .context("cannot read the gateway's answer")?
            {
                Some(KillOutcome::Ended) => {
                    println!("session {id} ended");
                    return Ok(ExitCode::SUCCESS);
                }
                Some(KillOutcome::NotFound) => {
                    println!("no live session {id} on gateway {holder}: it ended meanwhile");
                    return Ok(ExitCode::FAILURE);
                }
                None if tokio::time::Instant::now() >= deadline => {
                    println!(
                        "gateway {holder}, which holds session {id}, did not answer within {}s; \
                         is it running with state_dir {}?",
                        KILL_WAIT.as_secs(),
                        config.state_dir.display()
                    );
                    return Ok(ExitCode::from(2));
                }
                None => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    })?
}

/// The `logins list` table: aligned columns, one binding per line.
fn table(bindings: &[Binding], now: SystemTime) -> String {
    let header = ["WHO", "KEY", "AGE", "EXPIRES IN", "LAST USED"].map(str::to_owned);
    let rows: Vec<[String; 5]> = std::iter::once(header)
        .chain(bindings.iter().map(|b| {
            let expires = match b.state(now) {
                BindingState::Live => human(since(now, b.expires_at)),
                state => state.as_str().to_owned(),
            };
            let last_used = match b.last_used_at {
                Some(t) => format!("{} ago", human(since(t, now))),
                None => "never".to_owned(),
            };
            [
                b.who().to_owned(),
                b.fingerprint.clone(),
                human(since(b.created_at, now)),
                expires,
                last_used,
            ]
        }))
        .collect();
    crate::text::columns(&rows, "")
}

/// `later - earlier`, zero when the clock says otherwise.
fn since(earlier: SystemTime, later: SystemTime) -> Duration {
    later.duration_since(earlier).unwrap_or_default()
}

/// A duration in its two largest units: `45s`, `12m5s`, `3h12m`, `2d4h`.
fn human(d: Duration) -> String {
    crate::text::duration(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_a_person_would_say_them() {
        for (secs, want) in [
            (0, "0s"),
            (45, "45s"),
            (60, "1m"),
            (725, "12m5s"),
            (3600, "1h"),
            (3 * 3600 + 12 * 60 + 59, "3h12m"),
            (86_400 + 4 * 3600, "1d4h"),
            (30 * 86_400, "30d"),
        ] {
            assert_eq!(human(Duration::from_secs(secs)), want, "{secs}s");
        }
    }

    #[test]
    fn the_table_aligns_columns_and_says_expired_or_revoked() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let hour = Duration::from_secs(3600);
        let b = |who: &str, fp: char, revoked: bool| Binding {
            fingerprint: format!("SHA256:{}", fp.to_string().repeat(43)),
            sub: format!("sub-{who}"),
            email: Some(who.to_owned()),
            groups: vec![],
            issuer: "https://idp".to_owned(),
            created_at: t0,
            expires_at: t0 + 12 * hour,
            last_used_at: Some(t0 + hour),
            revoked_at: revoked.then_some(t0 + hour),
            claims_json: "{}".to_owned(),
            authenticated_at: t0,
        };
        let now = t0 + 3 * hour + Duration::from_secs(12 * 60);
        let out = table(
            &[b("alice@example.com", 'a', false), b("bo@x.io", 'b', true)],
            now,
        );
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert!(lines[0].starts_with("WHO                KEY"), "{out}");
        assert!(lines[1].ends_with("3h12m  8h48m       2h12m ago"), "{out}");
        assert!(
            lines[2].starts_with("bo@x.io            SHA256:bbb"),
            "{out}"
        );
        assert!(lines[2].contains("  revoked "), "{out}");
        let expired = table(&[b("c@x", 'c', false)], t0 + 13 * hour);
        assert!(expired.contains("  expired "), "{expired}");
    }
}
