//! `gatehouse recordings reindex --text` and `gatehouse recordings search`:
//! rebuild the index of what was on screen, and search it from the shell.
//! The indexing itself is `web_replay::indexer` (the web app runs it in
//! the background); the matching rule is `state::search`'s.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use recorder::Catalog;
use state::{Sqlite, Store, TextCursor, TextHit, TextQuery};

use crate::catalog::{describe, plural, runtime};
use crate::load_config;

/// The store and catalog of a configuration, sharing one store (the
/// indexer writes the text index and reads the recording index).
fn open(config: &config::Config) -> Result<(Arc<dyn Store>, Catalog)> {
    let store: Arc<dyn Store> =
        Arc::new(Sqlite::open(&config.state_dir).context("cannot open the state database")?);
    let storage = &config.recording.recorder.storage;
    let catalog = Catalog::open(Arc::clone(&store), storage)
        .with_context(|| format!("cannot open the recordings in {}", describe(storage)))?;
    Ok((store, catalog))
}

/// Clears the text index and indexes every sealed or interrupted session
/// again; prints one line of totals. Sessions that fail are recorded as
/// failed in the store (and named on stderr); ones that hit an outage are
/// left for the web app's indexer to retry.
pub(crate) fn reindex_text(config: &config::Config) -> Result<ExitCode> {
    let (store, catalog) = open(config)?;
    let rt = runtime()?;
    let started = Instant::now();
    rt.block_on(store.text_index_clear())
        .context("cannot clear the text index")?;
    let due = rt
        .block_on(store.text_unindexed(0))
        .context("cannot list the recordings to index")?;
    let (mut sessions, mut lines, mut bytes, mut failed) = (0u64, 0u64, 0u64, 0u64);
    for id in &due {
        match rt.block_on(web_replay::indexer::index_session(
            &catalog,
            store.as_ref(),
            id,
        )) {
            Ok(report) => {
                sessions += 1;
                lines += report.lines;
                bytes += report.recording_bytes;
                if report.failed > 0 {
                    eprintln!(
                        "gatehouse: session {id}: {} channel{} could not be indexed; \
                         see `gatehouse sessions show {id}`",
                        report.failed,
                        plural(report.failed)
                    );
                }
            }
            Err(e) => {
                failed += 1;
                eprintln!("gatehouse: {e}");
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "indexed {sessions} recording{}, {lines} line{}, {:.1} MiB in {seconds:.1} s{}",
        plural(sessions),
        plural(lines),
        bytes as f64 / f64::from(1 << 20),
        if failed > 0 {
            format!("; {failed} could not be indexed")
        } else {
            String::new()
        }
    );
    Ok(if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `recordings search` arguments.
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    gatehouse recordings search -c /etc/gatehouse/gatehouse.yaml 'rm -rf'\n  \
    gatehouse recordings search -c gatehouse.yaml /etc/nginx --session ID\n  \
    gatehouse recordings search -c gatehouse.yaml 10.0.0.7 --json | jq -r .session_id\n\n\
    The text is taken literally, without case. Three characters or more match anywhere \
    in a line (paths, addresses); one or two match at the start of a word. Each line \
    printed is SESSION CHANNEL TIME then the line, with `|` before lines of a \
    full-screen program (vim, less). Replay one with `gatehouse replay SESSION --channel \
    CHANNEL` and `g` TIME. Only recordings the text index holds are searched: the web \
    app indexes sealed recordings as they come, and `gatehouse recordings reindex \
    --text` rebuilds the index.")]
pub(crate) struct SearchArgs {
    /// The configuration file; the text index is in its state_dir.
    #[arg(long, short)]
    config: std::path::PathBuf,
    /// What to find.
    text: String,
    /// Only in this session.
    #[arg(long, value_name = "ID")]
    session: Option<String>,
    /// At most N lines (the newest sessions first).
    #[arg(long, value_name = "N", default_value_t = 50)]
    limit: usize,
    /// Continue after a previous search's last line (printed on stderr).
    #[arg(long, value_name = "CURSOR")]
    after: Option<String>,
    /// Print one JSON object per line found.
    #[arg(long)]
    json: bool,
}

/// A recorded line made safe for a terminal: control characters (there
/// should be none) become `?`, so a recording can never drive the
/// terminal that searches it.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

fn hit_json(hit: &TextHit) -> serde_json::Value {
    serde_json::json!({
        "session_id": hit.session_id,
        "channel": hit.channel,
        "time_us": hit.time_us,
        "time": replay_tui::clock(hit.time_us),
        "steps": hit.steps,
        "alternate": hit.alternate,
        "line": hit.snippet,
        "matches": hit.matches.iter().map(|m| [m.start, m.end]).collect::<Vec<_>>(),
    })
}

pub(crate) fn search(args: SearchArgs) -> Result<ExitCode> {
    let config = match load_config(&args.config) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    if !Sqlite::exists(&config.state_dir) {
        bail!(
            "no state database in {}, so nothing is indexed yet",
            config.state_dir.display()
        );
    }
    let store = Sqlite::open(&config.state_dir).context("cannot open the state database")?;
    let page = runtime()?
        .block_on(store.text_search(TextQuery {
            text: args.text.clone(),
            session_id: args.session.clone(),
            after: args.after.clone().map(TextCursor),
            limit: args.limit.max(1),
        }))
        .map_err(|e| match e {
            state::Error::Invalid(why) => anyhow!("{why}"),
            other => anyhow!(other).context("cannot search the text index"),
        })?;
    let mut out = std::io::stdout().lock();
    let mut written = Ok(());
    for hit in &page.hits {
        if written.is_err() {
            break;
        }
        written = if args.json {
            writeln!(out, "{}", hit_json(hit))
        } else {
            writeln!(
                out,
                "{}  {}  {:>7} {} {}",
                hit.session_id,
                hit.channel,
                replay_tui::clock(hit.time_us),
                if hit.alternate { "|" } else { " " },
                printable(&hit.snippet)
            )
        };
    }
    let flushed = written.and_then(|()| out.flush());
    if let Err(e) = flushed
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        return Err(e).context("cannot write to stdout");
    }
    if page.hits.is_empty() {
        eprintln!("no lines match");
        return Ok(ExitCode::FAILURE);
    }
    if let Some(next) = &page.next {
        eprintln!("more: --after {}", next.as_str());
    }
    Ok(ExitCode::SUCCESS)
}
