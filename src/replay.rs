//! `gatehouse replay ID`: play a recording in the terminal, or export a
//! time range of it. The player is `replay_tui`; the screens come from the
//! `terminal` crate's keyframe index, kept as a sidecar object beside the
//! recording (built on first open, checked against the recording on every
//! open). Every view is audited (`recording.viewed`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, ValueEnum};
use recorder::Status;
use replay_tui::{Info, Player, Verification, clock, parse_clock};
use terminal::{HashReader, Index, Loaded, Timeline};

use crate::catalog::{
    IndexUse, open_catalog, plural, recording_signer_public_key, rfc3339, runtime,
};
use crate::load_config;
use crate::recordings::pick_channel;

/// `gatehouse replay` arguments.
#[derive(Args)]
#[command(after_help = "Examples:\n  \
    gatehouse replay --config /etc/gatehouse/gatehouse.yaml ID\n  \
    gatehouse replay -c gatehouse.yaml --user alice@example.com --since 1day\n  \
    gatehouse replay -c gatehouse.yaml ID --channel 1 --as auditor@example.com\n  \
    gatehouse replay -c gatehouse.yaml ID --from 1:20 --to 3:00 --format txt\n\n\
    The recording is verified first (signature and hash chain); one that fails opens \
    only with --force, under a red banner. Press ? in the player for its keys. Every \
    view and export is written to the audit log as recording.viewed.")]
pub(crate) struct ReplayArgs {
    /// The configuration file: storage, index and host keys.
    #[arg(long, short)]
    config: PathBuf,
    /// The session id (see `gatehouse sessions list`). Without one, a
    /// list of the sessions that pass the filters opens; Enter plays one.
    id: Option<String>,
    #[command(flatten)]
    filter: crate::recordings::FilterArgs,
    /// The channel, as listed by `gatehouse sessions show` (default: the
    /// first).
    #[arg(long, value_name = "CH")]
    channel: Option<String>,
    /// Open a recording that fails verification, under a banner.
    #[arg(long)]
    force: bool,
    /// Longest pause played in full while the idle cap is on (`i`).
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = humantime::parse_duration)]
    idle_limit: Duration,
    /// Searches are regular expressions instead of plain text.
    #[arg(long)]
    regex: bool,
    /// Start paused.
    #[arg(long)]
    paused: bool,
    /// Watch a session that is still being recorded, from its latest
    /// output (`L` in the player goes back to it). New output shows within
    /// two `segment_interval`s, sooner on the gateway's own machine.
    #[arg(long)]
    follow: bool,
    /// Who you are, for the audit event (your email).
    #[arg(long = "as", value_name = "EMAIL")]
    viewer_email: Option<String>,
    /// Export from this time (`mm:ss` or `hh:mm:ss`) instead of playing.
    #[arg(long, value_name = "TIME")]
    from: Option<String>,
    /// Export up to this time.
    #[arg(long, value_name = "TIME")]
    to: Option<String>,
    /// Export as asciicast v3 (starting from the screen at --from) or as
    /// the text that appeared on screen.
    #[arg(long, value_enum)]
    format: Option<ExportAs>,
    /// Write the export to FILE instead of stdout.
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
}

/// `--format` of `replay`.
#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum ExportAs {
    /// asciicast v3.
    Cast,
    /// Text, one line per line that appeared, with its time.
    Txt,
}

/// The sidecar's object key, beside the sealed recording.
fn sidecar_key(sealed_key: &str) -> String {
    match sealed_key.strip_suffix(".cast.zst") {
        Some(stem) => format!("{stem}.keyframes.zst"),
        None => format!("{sealed_key}.keyframes.zst"),
    }
}

fn time_arg(name: &str, text: Option<&str>, default: u64) -> Result<u64> {
    match text {
        None => Ok(default),
        Some(t) => parse_clock(t)
            .ok_or_else(|| anyhow!("--{name} {t:?} is not a time; use mm:ss or hh:mm:ss")),
    }
}

/// Who ran the command: the local user.
fn local_user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// Writes `recording.viewed`: who (the local user and `--as`), which
/// session and channel, how, the time ranges shown, and whether the
/// recording was verified.
fn audit_view(
    args: &ReplayArgs,
    id: &str,
    channel: &str,
    mode: &'static str,
    ranges: &[(u64, u64)],
    verified: bool,
) {
    audit::Event::RecordingViewed {
        session_id: audit::SessionId::new(id),
        channel: channel.to_owned(),
        viewer: local_user(),
        viewer_email: args.viewer_email.clone().unwrap_or_default(),
        mode,
        ranges: ranges_text(ranges),
        verified,
        reason: String::new(),
    }
    .emit();
}

fn ranges_text(ranges: &[(u64, u64)]) -> String {
    ranges
        .iter()
        .map(|(a, b)| format!("{}-{}", clock(*a), clock(*b)))
        .collect::<Vec<_>>()
        .join(",")
}

/// The session to play: the one given, or the one picked from the list
/// (with whether `f` picked it, to follow it live).
fn choose_session(
    config: &config::Config,
    args: &mut ReplayArgs,
) -> Result<Option<(String, bool)>> {
    if let Some(id) = args.id.take() {
        return Ok(Some((id, args.follow)));
    }
    let filter = std::mem::take(&mut args.filter).parse()?;
    let sessions = crate::recordings::find_sessions(config, &filter)?;
    if sessions.is_empty() {
        bail!("no recorded sessions match; see gatehouse sessions list");
    }
    let table = crate::recordings::table(&sessions);
    let mut lines = table.lines().map(str::to_owned);
    let header = lines.next().unwrap_or_default();
    let rows: Vec<String> = lines.collect();
    let picked = replay_tui::pick(
        &format!("Recorded sessions ({})", sessions.len()),
        &header,
        &rows,
    )
    .context("the terminal failed")?;
    Ok(picked.and_then(|choice| {
        let follow = matches!(choice, replay_tui::Choice::Follow(_)) || args.follow;
        sessions
            .get(choice.row())
            .map(|s| (s.info.session_id.clone(), follow))
    }))
}

pub(crate) fn run(mut args: ReplayArgs) -> Result<ExitCode> {
    let config = match load_config(&args.config) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let exporting = args.format.is_some() || args.from.is_some() || args.to.is_some();
    if args.id.is_none() && exporting {
        bail!("an export needs a session id; see gatehouse sessions list");
    }
    let Some((id, follow)) = choose_session(&config, &mut args)? else {
        return Ok(ExitCode::SUCCESS);
    };
    let id = id.as_str();
    let trusted = recording_signer_public_key(&config)?;
    let catalog = open_catalog(&config, IndexUse::Storage)?
        .ok_or_else(|| anyhow!("cannot open the recordings"))?;
    let rt = runtime()?;
    if let Some((record, channels)) = rt
        .block_on(catalog.show(id))
        .with_context(|| format!("cannot look up session {id}"))?
        && record.meta_key.is_none()
        && matches!(record.status, Status::Recording | Status::Uploading)
    {
        if exporting {
            bail!("session {id} is still being recorded; export it once it has ended");
        }
        return play_live(
            &config,
            &args,
            LiveSession {
                record,
                channels,
                catalog,
                rt,
                trusted,
            },
            follow,
        );
    }
    if follow {
        eprintln!("session {id} has ended; playing its recording");
    }
    let signed = rt
        .block_on(catalog.meta(id))
        .with_context(|| format!("cannot open session {id}"))?;
    let channels = &signed.meta.channels;
    let channel = if args.channel.is_none() && channels.len() > 1 && !exporting {
        match pick_channel_of(id, channels)? {
            Some(c) => c.clone(),
            None => return Ok(ExitCode::SUCCESS),
        }
    } else {
        pick_channel(&signed, id, args.channel.as_deref())?.clone()
    };
    let report = rt
        .block_on(catalog.verify(id, Some(&trusted)))
        .with_context(|| format!("cannot verify session {id}"))?;
    let verification = if report.ok {
        Verification::Verified {
            segments: report.segments_checked,
        }
    } else if args.force {
        Verification::Failed(report.problems.clone())
    } else {
        for problem in &report.problems {
            eprintln!("{id}: {problem}");
        }
        bail!(
            "session {id} failed verification with {} problem{}; open it anyway with --force",
            report.problems.len(),
            plural(report.problems.len() as u64)
        );
    };
    // Read as a stream out of the decompressor: only the compressed object
    // and the timeline's compressed steps are ever held.
    let what = || format!("session {id} channel {}", channel.channel);
    let sealed = rt
        .block_on(catalog.storage().get(&channel.sealed_key))
        .with_context(|| format!("cannot read {}", what()))?;
    let stream = recorder::sealed_reader(&sealed, &channel.sealed_key).with_context(what)?;
    let (cast_header, mut reader) =
        recorder::asciicast::Reader::new(std::io::BufReader::new(HashReader::new(stream)))
            .with_context(what)?;
    let header = reader.header_line().to_owned();
    let (timeline, damage) = Timeline::read(&cast_header, &mut reader);
    let hash = reader.into_inner().into_inner().hash();
    drop(sealed);
    if let Some(e) = &damage {
        if report.ok {
            // Verified, so the bytes are as recorded: the recorder wrote a
            // line the reader does not accept.
            tracing::warn!(session_id = id, error = %e, "a verified recording has a line that does not parse");
        }
        eprintln!("{}: damaged at {e}; playing up to it", what());
    }

    // The keyframe index: the sidecar if it belongs to these bytes, else
    // built now and stored for the next open (best effort: a read-only
    // credential still plays).
    let key = sidecar_key(&channel.sealed_key);
    let sidecar = rt.block_on(catalog.storage().get(&key)).ok();
    let (index, loaded) = Index::load_or_build(sidecar.as_deref(), &hash, &timeline)?;
    // A damaged recording's index covers only what could be read: it is
    // not stored.
    if loaded != Loaded::FromSidecar && damage.is_none() {
        if let Loaded::Rebuilt(why) = &loaded {
            tracing::warn!(session_id = id, reason = %why, "rebuilt the keyframe sidecar");
        }
        match index.to_sidecar(&hash) {
            Ok(data) => {
                if let Err(e) = rt.block_on(catalog.storage().put(&key, data.into())) {
                    tracing::warn!(session_id = id, error = %e, "cannot store the keyframe sidecar");
                }
            }
            Err(e) => {
                tracing::warn!(session_id = id, error = %e, "cannot encode the keyframe sidecar")
            }
        }
    }

    let viewed = |mode: &'static str, ranges: &[(u64, u64)]| {
        audit_view(&args, id, &channel.channel, mode, ranges, report.ok);
    };

    if exporting {
        let from = time_arg("from", args.from.as_deref(), 0)?;
        let to = time_arg("to", args.to.as_deref(), timeline.duration_us())?;
        if from > to {
            bail!("--from {} is after --to {}", clock(from), clock(to));
        }
        let data = match args.format.unwrap_or(ExportAs::Cast) {
            ExportAs::Cast => replay_tui::export::cast(&timeline, &index, &header, from, to)?,
            ExportAs::Txt => replay_tui::export::text(&index, from, to).into_bytes(),
        };
        write_out(args.output.as_deref(), &data)?;
        viewed("export", &[(from, to)]);
        return Ok(ExitCode::SUCCESS);
    }

    let meta = &signed.meta;
    let info = Info {
        session_id: id.to_owned(),
        channel: channel.channel.clone(),
        identity: meta.session.identity.clone(),
        login_route: format!("{}@{}", meta.session.login, meta.session.route),
        target: meta.session.target.clone(),
        started: rfc3339(meta.started_at_ms),
        ended: rfc3339(meta.ended_at_ms),
        exit_status: channel.exit_status.or(meta.exit_status),
        cert_serial: meta.session.cert_serial,
        verification,
    };
    let mut player = Player::new(
        timeline,
        index,
        info,
        args.idle_limit,
        args.regex,
        !args.paused,
    )?;
    if let Some(e) = &damage {
        player.say(format!("damaged at {e}: played up to it"));
    }
    let result = replay_tui::run(&mut player);
    // After the terminal is restored, so the event never lands on the UI.
    viewed("play", &player.watched());
    result.context("the terminal failed")?;
    Ok(ExitCode::SUCCESS)
}

/// A channel as the channel list shows it: the sealed manifest's or the
/// index's (for a live session).
trait ChannelRow {
    /// Name, kind, output bytes and command.
    fn row(&self) -> (&str, &str, u64, Option<&str>);
}

impl ChannelRow for recorder::meta::ChannelMeta {
    fn row(&self) -> (&str, &str, u64, Option<&str>) {
        (
            &self.channel,
            &self.kind,
            self.output_bytes,
            self.command.as_deref(),
        )
    }
}

impl ChannelRow for recorder::ChannelRecord {
    fn row(&self) -> (&str, &str, u64, Option<&str>) {
        (
            &self.channel,
            &self.kind,
            self.output_bytes,
            self.command.as_deref(),
        )
    }
}

/// Lets the user pick one of a session's channels; `None` if they quit.
fn pick_channel_of<'a, C: ChannelRow>(id: &str, channels: &'a [C]) -> Result<Option<&'a C>> {
    let rows: Vec<String> = channels
        .iter()
        .map(|c| {
            let (name, kind, bytes, command) = c.row();
            format!(
                "{name:<6} {kind:<10} {bytes:>10}  {}",
                command.unwrap_or("")
            )
        })
        .collect();
    let picked = replay_tui::pick(
        &format!("Session {id}: {} channels", channels.len()),
        &format!("{:<6} {:<10} {:>10}  COMMAND", "CH", "KIND", "OUTPUT"),
        &rows,
    )
    .context("the terminal failed")?;
    Ok(picked.and_then(|c| channels.get(c.row())))
}

/// A session the index says is still being recorded.
struct LiveSession {
    record: recorder::SessionRecord,
    channels: Vec<recorder::ChannelRecord>,
    catalog: recorder::Catalog,
    rt: tokio::runtime::Runtime,
    trusted: [u8; 32],
}

/// Plays a session while it is recorded: from its start, or with
/// `follow` from its latest output.
fn play_live(
    config: &config::Config,
    args: &ReplayArgs,
    live: LiveSession,
    follow: bool,
) -> Result<ExitCode> {
    let LiveSession {
        record,
        channels,
        catalog,
        rt,
        trusted,
    } = live;
    let id = record.info.session_id.clone();
    let channel = match &args.channel {
        Some(name) => channels
            .iter()
            .find(|c| &c.channel == name)
            .ok_or_else(|| {
                let names: Vec<&str> = channels.iter().map(|c| c.channel.as_str()).collect();
                anyhow!(
                    "session {id} has no channel {name:?}; its channels are {}",
                    names.join(", ")
                )
            })?
            .clone(),
        None if channels.len() > 1 => match pick_channel_of(&id, &channels)? {
            Some(c) => c.clone(),
            None => return Ok(ExitCode::SUCCESS),
        },
        None => channels.first().cloned().ok_or_else(|| {
            anyhow!("session {id} has not opened a channel yet; try again shortly")
        })?,
    };
    let rec = &config.recording.recorder;
    let tail = recorder::Tail::new(
        &id,
        &channel.channel,
        &record.prefix,
        Some(rec.spool_dir.clone()),
    );
    let start = crate::follow::start(crate::follow::Source {
        catalog,
        rt,
        tail,
        session_id: id.clone(),
        every: crate::follow::poll_interval(rec.segment_interval),
        trusted,
    })?;
    let mut timeline = Timeline::empty(&start.header);
    for step in start.steps {
        timeline.push(step);
    }
    let info = Info {
        session_id: id.clone(),
        channel: channel.channel.clone(),
        identity: record.info.identity.clone(),
        login_route: format!("{}@{}", record.info.login, record.info.route),
        target: record.info.target.clone(),
        started: rfc3339(record.started_at_ms),
        ended: String::new(),
        exit_status: channel.exit_status,
        cert_serial: record.info.cert_serial,
        verification: Verification::Unsealed,
    };
    let mut player = Player::live(
        timeline,
        start.updates,
        info,
        args.idle_limit,
        args.regex,
        follow,
    )?;
    let result = replay_tui::run(&mut player);
    audit_view(
        args,
        &id,
        &channel.channel,
        if follow { "follow" } else { "play" },
        &player.watched(),
        matches!(player.info().verification, Verification::Verified { .. }),
    );
    result.context("the terminal failed")?;
    Ok(ExitCode::SUCCESS)
}

fn write_out(path: Option<&Path>, data: &[u8]) -> Result<()> {
    match path {
        Some(p) => std::fs::write(p, data).with_context(|| format!("cannot write {}", p.display())),
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(data)
                .and_then(|()| out.flush())
                .context("cannot write to stdout")
        }
    }
}
