//! `gatehouse sessions` and `gatehouse recordings`: list and show recorded
//! sessions, verify a recording's hash chain and signature, export it as
//! asciicast, and rebuild the index from storage (issue 4).
//!
//! The recordings themselves are `recorder::Catalog`'s business; this module
//! only parses arguments, finds the trusted signing key and prints. Every
//! command works while the gateway runs: the index is SQLite in WAL mode and
//! storage objects are immutable once written.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use clap::{Subcommand, ValueEnum};
use config::Config;
use recorder::{ChannelRecord, SessionFilter, SessionRecord, Status};

mod export;

use export::{What, export};

use crate::catalog::{
    IndexUse, describe, open_catalog, plural, recording_signer_public_key, rfc3339, runtime,
};
use crate::load_config;

#[derive(Subcommand)]
pub(crate) enum SessionsCommand {
    /// List recorded sessions, newest first.
    #[command(after_help = "Examples:\n  \
        gatehouse sessions list --config /etc/gatehouse/gatehouse.yaml\n  \
        gatehouse sessions list -c gatehouse.yaml --user alice@example.com --since 2h\n  \
        gatehouse sessions list -c gatehouse.yaml --route prod-db --since 2026-03-01 --until 2026-03-02\n  \
        gatehouse sessions list -c gatehouse.yaml --status failed --json | jq -r .reason\n\n\
        TIME is RFC 3339 (2026-03-01T09:30:00Z, 2026-03-01T10:30:00+01:00, 2026-03-01) \
        or a duration meaning that long ago (90s, 15m, 2h, 3days). --since includes its \
        time and --until excludes it; both compare with the session's start. \
        --json prints one object per session and line, with the index's fields plus \
        started_at and ended_at in RFC 3339 UTC.")]
    List {
        /// The configuration file; the index is in its state_dir.
        #[arg(long, short)]
        config: PathBuf,
        #[command(flatten)]
        filter: FilterArgs,
        /// Print one JSON object per session and line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// End a live session: the running gateway shows the user a line,
    /// marks the recording and closes the connection.
    #[command(after_help = "Examples:\n  \
        gatehouse sessions kill -c gatehouse.yaml 0193a1f27c4e7b1a9d2e5f6a7b8c9d0e\n  \
        gatehouse sessions kill -c gatehouse.yaml ID --reason \"incident 4711\"\n\n\
        The request goes to the gateway through the state database; this waits up to \
        5 s for its answer. Exits 0 when the session was ended, 1 when no running \
        gateway has it, 2 when no gateway answered.")]
    Kill {
        /// The configuration file; the request goes through its state_dir.
        #[arg(long, short)]
        config: PathBuf,
        /// The session's id (as `sessions list` shows it).
        id: String,
        /// Why, shown to the user and kept in the audit log.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Show one session: who, where, when, its state and reason, its
    /// channels and the objects that hold its recording.
    #[command(after_help = "Examples:\n  \
        gatehouse sessions show --config gatehouse.yaml 0193a1f2-7c4e-7b1a-9d2e-5f6a7b8c9d0e\n  \
        gatehouse sessions show -c gatehouse.yaml ID --json | jq .channels\n\n\
        Shows what the index holds; `gatehouse recordings verify ID` checks the \
        recording itself.")]
    Show {
        /// The configuration file; the index is in its state_dir.
        #[arg(long, short)]
        config: PathBuf,
        /// The session id, as printed by `gatehouse sessions list`.
        id: String,
        /// Print one JSON object (the session with a `channels` array).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub(crate) enum RecordingsCommand {
    /// Check a sealed recording: the signature by the gateway's host key,
    /// every segment's sha256, the hash chain and the sealed objects.
    #[command(after_help = "Example:\n  \
        gatehouse recordings verify --config /etc/gatehouse/gatehouse.yaml ID\n\n\
        The trusted key is the first ed25519 key in the config's host_keys, the key \
        the gateway signs recordings with. Prints `ok: ...` and exits 0 when every \
        check passes; prints each problem and exits 1 otherwise.")]
    Verify {
        /// The configuration file: storage, index and host keys.
        #[arg(long, short, required_unless_present = "key")]
        config: Option<PathBuf>,
        /// The session id.
        #[arg(required_unless_present = "bundle", conflicts_with = "bundle")]
        id: Option<String>,
        /// Check an evidence bundle (`gatehouse recordings bundle`) instead,
        /// offline.
        #[arg(long, value_name = "FILE")]
        bundle: Option<PathBuf>,
        /// With --bundle: trust this OpenSSH ed25519 public key (the
        /// gateway's host key .pub) instead of the config's host key.
        #[arg(long, value_name = "PUBFILE", requires = "bundle")]
        key: Option<PathBuf>,
    },
    /// Write a session's evidence bundle: its signed meta.json and sealed
    /// recordings in one tar file, which `verify --bundle` checks offline.
    #[command(after_help = "Example:\n  \
        gatehouse recordings bundle --config /etc/gatehouse/gatehouse.yaml ID -o ID.tar\n  \
        gatehouse recordings verify --bundle ID.tar --key /etc/gatehouse/ssh_host_ed25519_key.pub\n\n\
        The bundle holds no segments: the signature covers the sealed objects' hashes.")]
    Bundle {
        /// The configuration file: storage and index.
        #[arg(long, short)]
        config: PathBuf,
        /// The session id.
        id: String,
        /// The file to write.
        #[arg(long, short, value_name = "FILE")]
        output: PathBuf,
    },
    /// Write a session's recording as an asciicast file.
    #[command(after_help = "Examples:\n  \
        gatehouse recordings export --config gatehouse.yaml ID -o session.cast\n  \
        gatehouse recordings export -c gatehouse.yaml ID --format v2 | asciinema play -\n  \
        gatehouse recordings export -c gatehouse.yaml ID --channel 1 -o second-channel.cast\n  \
        gatehouse recordings export -c gatehouse.yaml ID --stream stdout -o backup.tar\n\n\
        v3 is a terminal recording exactly as stored; v2 is for players that read only v2 \
        (asciinema 2.x). A channel without a terminal (rsync, git, `tar c`) is recorded \
        as a byte stream: it exports as asciicast text like a terminal, or with \
        --stream as the exact bytes of its stdout, stderr or (when input was recorded) \
        stdin. Export does not verify: run `gatehouse recordings verify ID` for that.")]
    Export {
        /// The configuration file: storage and index.
        #[arg(long, short)]
        config: PathBuf,
        /// The session id.
        id: String,
        /// The channel to export, as listed by `gatehouse sessions show`
        /// (default: the session's first channel).
        #[arg(long, value_name = "CH")]
        channel: Option<String>,
        /// The asciicast version to write.
        #[arg(long, value_enum, default_value_t = CastFormat::V3)]
        format: CastFormat,
        /// Write the exact bytes of one stream of a byte-stream recording
        /// instead of asciicast.
        #[arg(long, value_enum, value_name = "STREAM", conflicts_with = "format")]
        stream: Option<StreamName>,
        /// Write to FILE instead of stdout.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Rebuild the session index from the meta.json objects in storage.
    #[command(after_help = "Examples:\n  \
        gatehouse recordings reindex --config /etc/gatehouse/gatehouse.yaml\n  \
        gatehouse recordings reindex -c gatehouse.yaml --text\n\n\
        Use it after restoring the state database, or to index a bucket another \
        gateway wrote. Sessions still being recorded have no meta.json yet and keep \
        their rows; every session with a meta.json gets its row from storage. \
        With --text, the index of what was on screen is then cleared and rebuilt \
        from every sealed recording (search finds nothing until it is done).")]
    Reindex {
        /// The configuration file: storage and index.
        #[arg(long, short)]
        config: PathBuf,
        /// Also rebuild the text index (`recordings search`, the web
        /// app's search) from the recordings.
        #[arg(long)]
        text: bool,
    },
    /// Find the sessions and moments where text was on screen.
    Search(crate::textindex::SearchArgs),
}

/// The `--stream` of `recordings export`.
#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum StreamName {
    Stdout,
    Stderr,
    Stdin,
}

/// The `--format` of `recordings export`.
#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum CastFormat {
    /// asciicast v3, as stored.
    V3,
    /// asciicast v2 with absolute times.
    V2,
}

/// Runs one `gatehouse sessions` subcommand.
pub(crate) fn run_sessions(command: SessionsCommand) -> Result<ExitCode> {
    match command {
        SessionsCommand::List {
            config,
            filter,
            json,
        } => list(&config, &filter.parse()?, json),
        SessionsCommand::Show { config, id, json } => show(&config, &id, json),
        SessionsCommand::Kill { config, id, reason } => crate::logins::kill(&config, &id, &reason),
    }
}

/// Runs one `gatehouse recordings` subcommand.
pub(crate) fn run_recordings(command: RecordingsCommand) -> Result<ExitCode> {
    match command {
        RecordingsCommand::Verify {
            config,
            id,
            bundle,
            key,
        } => match (bundle, id, config) {
            (Some(bundle), _, config) => {
                crate::bundle::verify(config.as_deref(), key.as_deref(), &bundle)
            }
            (None, Some(id), Some(config)) => verify(&config, &id),
            _ => Err(anyhow!("give a session id and --config, or --bundle FILE")),
        },
        RecordingsCommand::Bundle { config, id, output } => {
            crate::bundle::write(&config, &id, &output)
        }
        RecordingsCommand::Export {
            config,
            id,
            channel,
            format: _,
            stream: Some(stream),
            output,
        } => export(
            &config,
            &id,
            channel.as_deref(),
            What::Stream(stream),
            output.as_deref(),
        ),
        RecordingsCommand::Export {
            config,
            id,
            channel,
            format,
            stream: None,
            output,
        } => export(
            &config,
            &id,
            channel.as_deref(),
            What::Cast(format),
            output.as_deref(),
        ),
        RecordingsCommand::Reindex { config, text } => reindex(&config, text),
        RecordingsCommand::Search(args) => crate::textindex::search(args),
    }
}

/// The filters of `sessions list`, which `replay` shares.
#[derive(clap::Args, Default)]
pub(crate) struct FilterArgs {
    /// Only sessions of this identity (any case).
    #[arg(long, value_name = "EMAIL")]
    user: Option<String>,
    /// Only sessions on this route.
    #[arg(long, value_name = "NAME")]
    route: Option<String>,
    /// Only sessions that started at or after TIME.
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Only sessions that started before TIME.
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// Only sessions in this state.
    #[arg(long, value_parser = parse_status)]
    status: Option<Status>,
    /// At most N sessions (the newest).
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
}

impl FilterArgs {
    pub(crate) fn parse(self) -> Result<ListFilter> {
        let now = SystemTime::now();
        Ok(ListFilter {
            user: self.user,
            route: self.route,
            since: self
                .since
                .map(|t| parse_time(&t, now).context("bad --since"))
                .transpose()?,
            until: self
                .until
                .map(|t| parse_time(&t, now).context("bad --until"))
                .transpose()?,
            status: self.status,
            limit: self.limit.unwrap_or(0),
        })
    }
}

/// `sessions list` filters, parsed.
pub(crate) struct ListFilter {
    /// Identity, compared without case: emails are case-insensitive.
    user: Option<String>,
    /// Route name, exact.
    route: Option<String>,
    /// Started at or after.
    since: Option<SystemTime>,
    /// Started before.
    until: Option<SystemTime>,
    /// Recording state.
    status: Option<Status>,
    /// At most this many; 0 means all.
    limit: usize,
}

fn list(config_path: &Path, filter: &ListFilter, json: bool) -> Result<ExitCode> {
    let config = match load_config(config_path) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let sessions = find_sessions(&config, filter)?;
    let mut out = std::io::stdout().lock();
    let written = if json {
        sessions
            .iter()
            .try_for_each(|s| writeln!(out, "{}", session_json(s, None)))
    } else if sessions.is_empty() {
        writeln!(out, "no sessions")
    } else {
        out.write_all(table(&sessions).as_bytes())
    };
    finish_stdout(written.and_then(|()| out.flush()))
}

/// The indexed sessions that pass `filter`, newest first.
pub(crate) fn find_sessions(config: &Config, filter: &ListFilter) -> Result<Vec<SessionRecord>> {
    Ok(match open_catalog(config, IndexUse::Read)? {
        None => Vec::new(),
        Some(catalog) => {
            // The index matches identities exactly; the user filter runs
            // here so `Alice@Example.com` finds `alice@example.com`, and
            // the limit must then apply after it.
            let query = SessionFilter {
                identity: None,
                route: filter.route.clone(),
                since_ms: filter.since.map(unix_ms),
                until_ms: filter.until.map(unix_ms),
                status: filter.status,
                limit: if filter.user.is_some() {
                    0
                } else {
                    filter.limit
                },
            };
            let mut all = runtime()?
                .block_on(catalog.list(&query))
                .context("cannot list the recorded sessions")?;
            if let Some(user) = &filter.user {
                all.retain(|s| s.info.identity.eq_ignore_ascii_case(user.trim()));
                if filter.limit > 0 {
                    all.truncate(filter.limit);
                }
            }
            all
        }
    })
}

fn show(config_path: &Path, id: &str, json: bool) -> Result<ExitCode> {
    let config = match load_config(config_path) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let found = match open_catalog(&config, IndexUse::Read)? {
        Some(catalog) => runtime()?
            .block_on(catalog.show(id))
            .with_context(|| format!("cannot read session {id} from the index"))?,
        None => None,
    };
    let Some((session, channels)) = found else {
        bail!(
            "no session {id} in the index; check the id with `gatehouse sessions list`, \
             or run `gatehouse recordings reindex` if the state database was replaced"
        );
    };
    let text = if json {
        format!("{}\n", session_json(&session, Some(&channels)))
    } else {
        details(&session, &channels)
    };
    let mut out = std::io::stdout().lock();
    finish_stdout(out.write_all(text.as_bytes()).and_then(|()| out.flush()))
}

fn verify(config_path: &Path, id: &str) -> Result<ExitCode> {
    let config = match load_config(config_path) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let trusted = recording_signer_public_key(&config)?;
    let catalog = open_catalog(&config, IndexUse::Storage)?
        .ok_or_else(|| anyhow!("cannot open the recordings"))?;
    let report = runtime()?
        .block_on(catalog.verify(id, Some(&trusted)))
        .with_context(|| format!("cannot verify session {id}"))?;
    if report.ok {
        println!(
            "ok: session {id}: signature by the gateway's host key and {} segment{} check out",
            report.segments_checked,
            plural(report.segments_checked),
        );
        return Ok(ExitCode::SUCCESS);
    }
    for problem in &report.problems {
        println!("{id}: {problem}");
    }
    eprintln!(
        "gatehouse: session {id} failed verification with {} problem{}",
        report.problems.len(),
        plural(report.problems.len() as u64),
    );
    Ok(ExitCode::FAILURE)
}

/// The channel the user asked for, or the session's first. The catalog
/// reports an unknown channel as an unknown session; this names the
/// channels instead, so the user can pick one.
pub(crate) fn pick_channel<'a>(
    signed: &'a recorder::SignedMeta,
    id: &str,
    channel: Option<&str>,
) -> Result<&'a recorder::meta::ChannelMeta> {
    let channels = &signed.meta.channels;
    match channel {
        Some(ch) => channels.iter().find(|c| c.channel == ch).ok_or_else(|| {
            let names: Vec<&str> = channels.iter().map(|c| c.channel.as_str()).collect();
            anyhow!(
                "session {id} has no channel {ch:?}; its channels are {}",
                names.join(", ")
            )
        }),
        None => channels.first().ok_or_else(|| {
            anyhow!("session {id} recorded no channels, so there is nothing to show")
        }),
    }
}

fn reindex(config_path: &Path, text: bool) -> Result<ExitCode> {
    let config = match load_config(config_path) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let from = describe(&config.recording.recorder.storage);
    let catalog = open_catalog(&config, IndexUse::Write)?
        .ok_or_else(|| anyhow!("cannot open the recordings"))?;
    let n = runtime()?
        .block_on(catalog.reindex())
        .with_context(|| format!("cannot reindex from {from}"))?;
    println!("reindexed {n} session{} from {from}", plural(n as u64));
    if text {
        return crate::textindex::reindex_text(&config);
    }
    Ok(ExitCode::SUCCESS)
}

/// A closed pipe (`| head`) is the reader's choice, not a failure.
fn finish_stdout(result: std::io::Result<()>) -> Result<ExitCode> {
    match result {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(e).context("cannot write to stdout")
        }
        _ => Ok(ExitCode::SUCCESS),
    }
}

fn parse_status(name: &str) -> Result<Status, String> {
    Status::parse(name).ok_or_else(|| {
        format!("unknown status {name:?}: use recording, uploading, sealed, interrupted or failed")
    })
}

/// Parses `--since`/`--until`: RFC 3339 (UTC `Z`, a `±HH:MM` offset, no
/// zone meaning UTC, or a bare date meaning its UTC midnight), or a
/// duration meaning that long before `now`.
fn parse_time(text: &str, now: SystemTime) -> Result<SystemTime> {
    let text = text.trim();
    if let Ok(ago) = humantime::parse_duration(text) {
        return now
            .checked_sub(ago)
            .ok_or_else(|| anyhow!("{text} ago is before the clock's range"));
    }
    let bad = || {
        anyhow!(
            "{text:?} is neither an RFC 3339 time (2026-03-01T09:30:00Z) nor a duration ago (2h, 3days)"
        )
    };
    if text.len() == 10 {
        return humantime::parse_rfc3339(&format!("{text}T00:00:00Z")).map_err(|_| bad());
    }
    // humantime reads only UTC, so a numeric offset is taken off here.
    let (local, offset) = match split_offset(text) {
        Some((local, offset)) => (local, offset),
        None => (text, 0),
    };
    let local =
        humantime::parse_rfc3339_weak(local.trim_end_matches(['Z', 'z'])).map_err(|_| bad())?;
    let utc = if offset >= 0 {
        local.checked_sub(Duration::from_secs(offset.unsigned_abs()))
    } else {
        local.checked_add(Duration::from_secs(offset.unsigned_abs()))
    };
    utc.ok_or_else(bad)
}

/// Splits `...T10:30:00+01:00` into the local time and the offset in
/// seconds east of UTC.
fn split_offset(text: &str) -> Option<(&str, i64)> {
    let at = text.len().checked_sub(6)?;
    let (local, zone) = (text.get(..at)?, text.get(at..)?);
    let sign = match zone.as_bytes() {
        [b'+', _, _, b':', _, _] => 1,
        [b'-', _, _, b':', _, _] => -1,
        _ => return None,
    };
    if !local.contains(['T', 't', ' ']) {
        return None;
    }
    let hours: i64 = zone.get(1..3)?.parse().ok()?;
    let minutes: i64 = zone.get(4..6)?.parse().ok()?;
    Some((local, sign * (hours * 3600 + minutes * 60)))
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// One session as a JSON object: the index's fields (as the recorder
/// serializes them) plus RFC 3339 times, and the channels for `show`.
fn session_json(s: &SessionRecord, channels: Option<&[ChannelRecord]>) -> serde_json::Value {
    let mut v = serde_json::to_value(s).unwrap_or_default();
    if let Some(obj) = v.as_object_mut() {
        obj.insert("started_at".into(), rfc3339(s.started_at_ms).into());
        obj.insert(
            "ended_at".into(),
            s.ended_at_ms
                .map(rfc3339)
                .map_or(serde_json::Value::Null, Into::into),
        );
        if let Some(channels) = channels {
            obj.insert(
                "channels".into(),
                serde_json::to_value(channels).unwrap_or_default(),
            );
        }
    }
    v
}

/// The `sessions list` table: aligned columns, one session per line.
pub(crate) fn table(sessions: &[SessionRecord]) -> String {
    let header = [
        "ID",
        "START",
        "DURATION",
        "IDENTITY",
        "LOGIN@ROUTE",
        "STATUS",
        "BYTES",
        "EXIT",
    ]
    .map(str::to_owned);
    let rows: Vec<[String; 8]> = std::iter::once(header)
        .chain(sessions.iter().map(|s| {
            [
                s.info.session_id.clone(),
                rfc3339(s.started_at_ms),
                s.duration_ms
                    .map_or("-".to_owned(), |ms| human(Duration::from_millis(ms))),
                s.info.identity.clone(),
                format!("{}@{}", s.info.login, s.info.route),
                s.status.to_string(),
                human_bytes(s.bytes),
                s.exit_status.map_or("-".to_owned(), |c| c.to_string()),
            ]
        }))
        .collect();
    crate::text::columns(&rows, "")
}

/// The `sessions show` text: one field per line, then the channels and
/// the objects that hold the recording.
fn details(s: &SessionRecord, channels: &[ChannelRecord]) -> String {
    let dash = || "-".to_owned();
    let mut fields: Vec<(&str, String)> = vec![
        ("session", s.info.session_id.clone()),
        ("status", s.status.to_string()),
    ];
    if let Some(reason) = &s.reason {
        fields.push(("reason", reason.clone()));
    }
    fields.extend([
        ("identity", s.info.identity.clone()),
        ("login", s.info.login.clone()),
        ("route", s.info.route.clone()),
        ("target", s.info.target.clone()),
        ("client", s.info.client_addr.clone()),
        (
            "client key",
            s.info.client_key_fingerprint.clone().unwrap_or_else(dash),
        ),
        (
            "cert serial",
            s.info.cert_serial.map_or_else(dash, |n| n.to_string()),
        ),
        ("gateway", s.gateway_id.clone()),
        ("start", rfc3339(s.started_at_ms)),
        ("end", s.ended_at_ms.map_or_else(dash, rfc3339)),
        (
            "duration",
            s.duration_ms
                .map_or_else(dash, |ms| human(Duration::from_millis(ms))),
        ),
        ("bytes", s.bytes.to_string()),
        ("exit", s.exit_status.map_or_else(dash, |c| c.to_string())),
    ]);
    let mut out = String::new();
    for (name, value) in &fields {
        out.push_str(&format!("{:<12} {value}\n", format!("{name}:")));
    }

    out.push_str(&format!("\nchannels ({}):\n", channels.len()));
    let header = [
        "CHANNEL", "KIND", "COMMAND", "INPUT", "BYTES", "SEGMENTS", "EXIT",
    ]
    .map(str::to_owned);
    let rows: Vec<[String; 7]> = std::iter::once(header)
        .chain(channels.iter().map(|c| {
            [
                c.channel.clone(),
                c.kind.clone(),
                c.command.clone().unwrap_or_else(dash),
                if c.record_input { "recorded" } else { "off" }.to_owned(),
                c.output_bytes.to_string(),
                c.segments.to_string(),
                c.exit_status.map_or_else(dash, |code| code.to_string()),
            ]
        }))
        .collect();
    out.push_str(&crate::text::columns(&rows, "  "));

    out.push_str("\nobjects:\n");
    out.push_str(&format!("  prefix     {}\n", s.prefix));
    out.push_str(&format!(
        "  meta       {}\n",
        s.meta_key.as_deref().unwrap_or("- (not sealed yet)")
    ));
    for c in channels {
        out.push_str(&format!(
            "  channel {:<2} {}\n",
            c.channel,
            c.sealed_key.as_deref().unwrap_or("- (not sealed yet)")
        ));
    }
    out
}

/// A duration in its two largest units: `45s`, `12m5s`, `3h12m`, `2d4h`;
/// `<1s` for a session that ended within its first second.
fn human(d: Duration) -> String {
    if !d.is_zero() && d < Duration::from_secs(1) {
        return "<1s".to_owned();
    }
    crate::text::duration(d)
}

/// Bytes for people: `512B`, `1.5KiB`, `12.0MiB`.
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n}B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = UNITS[0];
    for next in &UNITS[1..] {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = next;
    }
    format!("{value:.1}{unit}")
}

#[cfg(test)]
mod tests;
