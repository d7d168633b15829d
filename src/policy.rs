//! `gatehouse policy check` and `gatehouse policy test`: ask the policy a
//! question, or run a table of expected decisions, without a gateway.
//! `policy check --viewer` asks the web app's access policy (`web.access`)
//! what a viewer may do with a recording instead.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use policy::lang::{
    AccessDecision, AccessRequest, Capabilities, DecidedBy, Decision, Exec, Forwarding, Identity,
    IdentityKind, Obligations, RecordingFacts, Request, Timestamp, ViewerCapability, testing,
};

use crate::catalog::{IndexUse, open_catalog, runtime};
use crate::load_config;

/// Exit status of `policy check` for a denial (0 is allowed, 2 an error).
const DENIED: u8 = 1;
const ERROR: u8 = 2;

#[derive(Subcommand)]
pub(crate) enum PolicyCommand {
    /// Ask the configured policy one question and print its answer: the
    /// decision, the deciding rule and reason, the capabilities and
    /// obligations, the certificate extensions and the next-check time.
    /// With --viewer, ask the web access policy what a viewer may do with a
    /// recording: each capability allowed or denied, the rule, the reason
    /// and whether the viewer must give a reason.
    #[command(after_help = "Examples:\n  \
        gatehouse policy check -c gatehouse.yaml --route prod-db --login postgres \\\n      \
        --email alice@example.com --groups sre,dev --from 10.1.2.3 --at 2026-03-30T19:30:00+02:00\n  \
        gatehouse policy check -c gatehouse.yaml --route deploy --login deploy --kind service --groups ci\n  \
        gatehouse policy check -c gatehouse.yaml --route prod-db --login alice \\\n      \
        --email alice@example.com --claims '{\"oncall\": {\"active\": true}}'\n\n\
        Viewers of recordings (web.access):\n  \
        gatehouse policy check -c gatehouse.yaml --viewer carol@example.com --groups auditors \\\n      \
        --route prod-db --login postgres --recorded-user bob@example.com --capability download\n  \
        gatehouse policy check -c gatehouse.yaml --viewer bob@example.com \\\n      \
        --session 0193a1f2-7c4e-7b1a-9d2e-5f6a7b8c9d0e\n\n\
        Exits 0 when the request (with --viewer: the --capability, default play) is allowed, \
        1 when it is denied, 2 on errors. --at defaults to now; --from to 127.0.0.1.")]
    Check(Box<CheckArgs>),
    /// Run a YAML table of expected decisions against the configured
    /// policies; prints every failed case with its line, then a summary.
    #[command(after_help = "Example:\n  gatehouse policy test policy-tests.yaml\n\n\
        The table names the configuration it tests (`config: gatehouse.yaml`, relative \
        to the table) unless --config is given. Exits 0 when every case passes, 1 when \
        one fails, 2 on errors. See the README's policy reference for the table's format.")]
    Test {
        /// The table of cases.
        file: PathBuf,
        /// The configuration to test, instead of the table's `config:`.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

/// The arguments of `policy check`: a route question, or with `--viewer` a
/// question of the web access policy.
#[derive(Args)]
pub(crate) struct CheckArgs {
    /// The configuration file whose policies answer.
    #[arg(long, short)]
    config: PathBuf,
    /// The route asked for (with --viewer: the recording's route).
    #[arg(long, required_unless_present_any = ["viewer"])]
    route: Option<String>,
    /// The login asked for on the target (with --viewer: the
    /// recording's login).
    #[arg(long, required_unless_present_any = ["viewer"])]
    login: Option<String>,
    /// The identity's email.
    #[arg(long, conflicts_with = "viewer")]
    email: Option<String>,
    /// The identity's groups, comma-separated.
    #[arg(long, value_delimiter = ',')]
    groups: Vec<String>,
    /// The identity's ID-token claims, as a JSON object.
    #[arg(long, value_name = "JSON")]
    claims: Option<String>,
    /// How the identity authenticated: `user` (IdP sign-in) or
    /// `service` (a registered key).
    #[arg(long, default_value = "user", value_parser = ["user", "service"])]
    kind: String,
    /// The client address.
    #[arg(long = "from", value_name = "IP", default_value = "127.0.0.1")]
    from: IpAddr,
    /// When the request is made: RFC 3339 with an offset.
    #[arg(long, value_name = "TIME")]
    at: Option<String>,
    /// Ask the web access policy instead, for this viewer (their email;
    /// --groups, --claims, --kind and --from describe them too).
    #[arg(long, value_name = "EMAIL")]
    viewer: Option<String>,
    /// The recording asked about, read from the recording index: its
    /// route, login and recorded identity.
    #[arg(
        long,
        value_name = "ID",
        requires = "viewer",
        conflicts_with_all = ["route", "login", "recorded_user"]
    )]
    session: Option<String>,
    /// The identity the recording is of (usually an email), when not
    /// given by --session.
    #[arg(long, value_name = "IDENTITY", requires = "viewer")]
    recorded_user: Option<String>,
    /// The capability whose answer sets the exit status (default
    /// play): list, play, search, download, watch_live, end_session.
    #[arg(long, value_name = "NAME", requires = "viewer", value_parser = capability)]
    capability: Option<ViewerCapability>,
}

fn capability(name: &str) -> Result<ViewerCapability, String> {
    ViewerCapability::parse(name).ok_or_else(|| {
        let names: Vec<&str> = ViewerCapability::ALL.iter().map(|c| c.as_str()).collect();
        format!("unknown capability {name:?}; one of {}", names.join(", "))
    })
}

/// Runs one `gatehouse policy` subcommand.
pub(crate) fn run(command: PolicyCommand) -> Result<ExitCode> {
    match command {
        PolicyCommand::Check(args) => {
            // Every error of `check` exits 2, so that 1 always means denied.
            Ok(run_check(*args).unwrap_or_else(|e| {
                eprintln!("gatehouse: {e:#}");
                ExitCode::from(ERROR)
            }))
        }
        PolicyCommand::Test { file, config } => test(&file, config.as_deref()),
    }
}

fn run_check(args: CheckArgs) -> Result<ExitCode> {
    let CheckArgs {
        config,
        route,
        login,
        email,
        groups,
        claims,
        kind,
        from,
        at,
        viewer,
        session,
        recorded_user,
        capability,
    } = args;
    let email = viewer.clone().or(email);
    let mut identity = Identity::new(
        if kind == "service" {
            IdentityKind::Service
        } else {
            IdentityKind::User
        },
        email.clone().unwrap_or_else(|| "cli".to_owned()),
    );
    identity.email = email;
    identity.groups = groups;
    if let Some(json) = claims {
        let value: serde_json::Value =
            serde_json::from_str(&json).context("--claims is not JSON")?;
        if !value.is_object() {
            bail!("--claims must be a JSON object");
        }
        identity.claims = identity::claims_from_json(&value);
    }
    let now = match at {
        Some(text) => text.parse::<Timestamp>().with_context(|| {
            format!(
                "bad --at {text:?}: write RFC 3339 with an offset, e.g. 2026-03-30T10:00:00+02:00"
            )
        })?,
        None => Timestamp::now(),
    };
    if viewer.is_none() {
        let (Some(route), Some(login)) = (route, login) else {
            bail!("--route and --login are required");
        };
        return check(&config, &route, &login, &identity, from, now);
    }
    let recording = match (session, route, login, recorded_user) {
        (Some(id), ..) => Recording::Session(id),
        (None, Some(route), Some(login), Some(recorded_user)) => Recording::Given {
            route,
            login,
            recorded_user,
        },
        _ => bail!(
            "--viewer asks about a recording: give --session ID, or --route, --login and --recorded-user"
        ),
    };
    check_viewer(
        &config,
        &identity,
        from,
        now,
        recording,
        capability.unwrap_or(ViewerCapability::Play),
    )
}

fn check(
    config_path: &Path,
    route_name: &str,
    login: &str,
    identity: &Identity,
    from: IpAddr,
    now: Timestamp,
) -> Result<ExitCode> {
    let config = match load_config(config_path) {
        Ok(c) => c,
        Err(_) => return Ok(ExitCode::from(ERROR)),
    };
    let Some(route) = config.routes.get(route_name) else {
        let mut names: Vec<&str> = config.routes.keys().map(String::as_str).collect();
        names.sort_unstable();
        eprintln!(
            "gatehouse: unknown route {route_name:?} (routes: {})",
            names.join(", ")
        );
        return Ok(ExitCode::from(ERROR));
    };
    if !route.offers(login) {
        println!("decision:     deny");
        println!(
            "reason:       login {login} is not allowed on route {route_name} (it offers {})",
            route.logins.join(", ")
        );
        return Ok(ExitCode::from(DENIED));
    }
    let decision = policy::lang::evaluate(
        &route.policy,
        &Request {
            identity,
            login,
            source: from,
            now,
            session_start: None,
        },
    );
    print!("{}", describe(&decision));
    Ok(if decision.allowed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(DENIED)
    })
}

/// The recording a viewer asks about.
enum Recording {
    /// Read its route, login and identity from the recording index.
    Session(String),
    /// As given on the command line.
    Given {
        route: String,
        login: String,
        recorded_user: String,
    },
}

fn check_viewer(
    config_path: &Path,
    viewer: &Identity,
    from: IpAddr,
    now: Timestamp,
    recording: Recording,
    asked: ViewerCapability,
) -> Result<ExitCode> {
    let config = match load_config(config_path) {
        Ok(c) => c,
        Err(_) => return Ok(ExitCode::from(ERROR)),
    };
    let Some(web) = &config.web else {
        bail!(
            "{} has no web section: viewers' access to recordings is configured under web.access",
            config_path.display()
        );
    };
    let (session, route, login, recorded_user) = match recording {
        Recording::Given {
            route,
            login,
            recorded_user,
        } => (None, route, login, recorded_user),
        Recording::Session(id) => {
            // Read only: a missing state database means nothing is indexed.
            let found = match open_catalog(&config, IndexUse::Read)? {
                Some(catalog) => runtime()?
                    .block_on(catalog.show(&id))
                    .with_context(|| format!("cannot read session {id} from the index"))?,
                None => None,
            };
            let (record, _) = found.ok_or_else(|| {
                anyhow!(
                    "unknown session {id}: it is not in the recording index (see `gatehouse sessions list`)"
                )
            })?;
            let info = record.info;
            (Some(id), info.route, info.login, info.identity)
        }
    };
    let decision = policy::lang::evaluate_access(
        &web.access,
        &AccessRequest {
            viewer,
            source: from,
            now,
            recording: RecordingFacts {
                route: &route,
                login: &login,
                recorded_user: &recorded_user,
            },
        },
    );
    if let Some(id) = &session {
        println!("session:      {id}");
    }
    println!("recording:    route {route}, login {login}, recorded user {recorded_user}");
    println!("viewer:       {}", viewer.label());
    if web.access.rule_count() == 0 {
        println!("note:         web.access has no rules, so every viewer is denied everything");
    }
    print!("{}", describe_access(&decision));
    let allowed = decision.allows(asked);
    println!(
        "decision:     {asked} {}",
        if allowed { "allowed" } else { "denied" }
    );
    Ok(if allowed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(DENIED)
    })
}

/// The access decision as `policy check --viewer` prints it: a table with a
/// line per capability.
fn describe_access(d: &AccessDecision<'_>) -> String {
    let rows: Vec<[String; 5]> = d
        .iter()
        .map(|(c, cd)| {
            let needs_reason = match (cd.allowed, cd.require_reason) {
                (false, _) => "-",
                (true, true) => "yes",
                (true, false) => "no",
            };
            let rule = cd
                .rule
                .map_or_else(|| "none (no allow rule matched)".to_owned(), str::to_owned);
            [
                c.as_str().to_owned(),
                if cd.allowed { "allow" } else { "deny" }.to_owned(),
                needs_reason.to_owned(),
                rule,
                cd.reason.to_owned(),
            ]
        })
        .collect();
    let header = ["capability", "decision", "needs reason", "rule", "reason"].map(str::to_owned);
    let mut widths = [0; 4];
    for row in std::iter::once(&header).chain(&rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        for (w, cell) in widths.iter().zip(row) {
            let _ = write!(out, "{cell:<w$}  ");
        }
        let _ = writeln!(out, "{}", row[4]);
    }
    out
}

/// The decision as `policy check` prints it.
fn describe(d: &Decision) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "decision:     {}",
        if d.allowed { "allow" } else { "deny" }
    );
    let rule = match &d.decided_by {
        DecidedBy::Allow(name) | DecidedBy::Deny(name) => name.to_string(),
        DecidedBy::NoRuleAllowed => "none (no allow rule matched)".to_owned(),
        DecidedBy::SessionLimit => "none (max_session reached)".to_owned(),
        DecidedBy::ReauthenticationDue => "none (reauth_every due)".to_owned(),
        DecidedBy::BindingExpired => "none (the login binding expired)".to_owned(),
    };
    let _ = writeln!(out, "rule:         {rule}");
    let _ = writeln!(out, "reason:       {}", d.reason);
    if d.allowed {
        let _ = writeln!(out, "capabilities: {}", capabilities(&d.capabilities));
        let _ = writeln!(out, "obligations:  {}", obligations(&d.obligations));
        let mut cert = d.capabilities.certificate_extensions().join(" ");
        if let Some(cmd) = d.capabilities.force_command() {
            let _ = write!(cert, " force-command={cmd:?}");
        }
        let _ = writeln!(out, "certificate:  {}", cert.trim());
    }
    let next = d.next_check.map_or_else(
        || "never (nothing here depends on time)".to_owned(),
        |t| t.to_string(),
    );
    let _ = writeln!(out, "next check:   {next}");
    out
}

fn capabilities(c: &Capabilities) -> String {
    let mut parts = Vec::new();
    for (name, on) in [("pty", c.pty), ("shell", c.shell), ("sftp", c.sftp)] {
        if on {
            parts.push(name.to_owned());
        }
    }
    match &c.exec {
        Exec::Any => parts.push("exec".to_owned()),
        Exec::Only(cmd) => parts.push(format!("exec={cmd:?}")),
        Exec::Denied => {}
    }
    for (name, f) in [
        ("port_forward_local", &c.port_forward_local),
        ("port_forward_remote", &c.port_forward_remote),
    ] {
        match f {
            Forwarding::Any => parts.push(name.to_owned()),
            Forwarding::Only(lists) => {
                let lists: Vec<String> = lists
                    .iter()
                    .map(|l| {
                        l.iter()
                            .map(|p| p.as_str().to_owned())
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .collect();
                parts.push(format!("{name}={}", lists.join(" and ")));
            }
            Forwarding::Denied => {}
        }
    }
    if c.agent {
        parts.push("agent".to_owned());
    }
    if c.x11 {
        parts.push("x11".to_owned());
    }
    if parts.is_empty() {
        "none".to_owned()
    } else {
        parts.join(" ")
    }
}

fn obligations(o: &Obligations) -> String {
    let d = |d: Option<std::time::Duration>| {
        d.map_or_else(
            || "none".to_owned(),
            |d| humantime::format_duration(d).to_string(),
        )
    };
    format!(
        "record={} record_input={} max_session={} reauth_every={} cert_ttl={}",
        o.record.as_str(),
        o.record_input,
        d(o.max_session),
        d(o.reauth_every),
        humantime::format_duration(o.cert_ttl)
    )
}

fn test(file: &Path, config: Option<&Path>) -> Result<ExitCode> {
    let yaml =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let table = match testing::parse(&yaml) {
        Ok(t) => t,
        Err(errors) => {
            for e in &errors {
                eprintln!("{}:{e}", file.display());
            }
            return Ok(ExitCode::from(ERROR));
        }
    };
    let config_path = match (config, &table.config) {
        (Some(c), _) => c.to_owned(),
        (None, Some(c)) => file.parent().unwrap_or(Path::new("")).join(c),
        (None, None) => {
            eprintln!(
                "gatehouse: {} names no config: add `config: gatehouse.yaml` or pass --config",
                file.display()
            );
            return Ok(ExitCode::from(ERROR));
        }
    };
    let config = match load_config(&config_path) {
        Ok(c) => c,
        Err(_) => return Ok(ExitCode::from(ERROR)),
    };
    let access = config.web.as_ref().map(|w| &*w.access);
    let report = table.run_with_access(&config.policies, access);
    for failure in &report.failures {
        println!("{}:{failure}", file.display());
    }
    println!(
        "{}: {} passed, {} failed",
        file.display(),
        report.total - report.failures.len(),
        report.failures.len()
    );
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
