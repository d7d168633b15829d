//! `gatehouse policy check` and `gatehouse policy test`: ask the policy a
//! question, or run a table of expected decisions, without a gateway.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use policy::lang::{
    Capabilities, DecidedBy, Decision, Exec, Forwarding, Identity, IdentityKind, Obligations,
    Request, Timestamp, testing,
};

use crate::load_config;

/// Exit status of `policy check` for a denial (0 is allowed, 2 an error).
const DENIED: u8 = 1;
const ERROR: u8 = 2;

#[derive(Subcommand)]
pub(crate) enum PolicyCommand {
    /// Ask the configured policy one question and print its answer: the
    /// decision, the deciding rule and reason, the capabilities and
    /// obligations, the certificate extensions and the next-check time.
    #[command(after_help = "Examples:\n  \
        gatehouse policy check -c gatehouse.yaml --route prod-db --login postgres \\\n      \
        --email alice@example.com --groups sre,dev --from 10.1.2.3 --at 2026-03-30T19:30:00+02:00\n  \
        gatehouse policy check -c gatehouse.yaml --route deploy --login deploy --kind service --groups ci\n  \
        gatehouse policy check -c gatehouse.yaml --route prod-db --login alice \\\n      \
        --email alice@example.com --claims '{\"oncall\": {\"active\": true}}'\n\n\
        Exits 0 when the request is allowed, 1 when it is denied, 2 on errors. \
        --at defaults to now; --from to 127.0.0.1.")]
    Check {
        /// The configuration file whose policies answer.
        #[arg(long, short)]
        config: PathBuf,
        /// The route asked for.
        #[arg(long)]
        route: String,
        /// The login asked for on the target.
        #[arg(long)]
        login: String,
        /// The identity's email.
        #[arg(long)]
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
    },
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

/// Runs one `gatehouse policy` subcommand.
pub(crate) fn run(command: PolicyCommand) -> Result<ExitCode> {
    match command {
        PolicyCommand::Check {
            config,
            route,
            login,
            email,
            groups,
            claims,
            kind,
            from,
            at,
        } => {
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
                Some(text) => text
                    .parse::<Timestamp>()
                    .with_context(|| format!("bad --at {text:?}: write RFC 3339 with an offset, e.g. 2026-03-30T10:00:00+02:00"))?,
                None => Timestamp::now(),
            };
            check(&config, &route, &login, &identity, from, now)
        }
        PolicyCommand::Test { file, config } => test(&file, config.as_deref()),
    }
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
    let report = table.run(&config.policies);
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
