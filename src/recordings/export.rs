//! `gatehouse recordings export`: a channel as asciicast, or one of its
//! byte streams exactly as it went through, to a file or stdout.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow};
use recorder::ExportFormat;

use super::{CastFormat, StreamName, finish_stdout, pick_channel};
use crate::catalog::{IndexUse, open_catalog, runtime};
use crate::load_config;

/// What an export reads from: the catalog, a runtime for it, and the
/// channel (the one asked for, or the session's first).
struct Source {
    catalog: recorder::Catalog,
    rt: tokio::runtime::Runtime,
    channel: String,
}

/// Opens the recordings of `config_path` for exporting `id`; `Err` with
/// the exit code when the configuration does not load (it printed why).
fn open(config_path: &Path, id: &str, channel: Option<&str>) -> Result<Result<Source, ExitCode>> {
    let config = match load_config(config_path) {
        Ok(c) => c,
        Err(code) => return Ok(Err(code)),
    };
    let catalog = open_catalog(&config, IndexUse::Storage)?
        .ok_or_else(|| anyhow!("cannot open the recordings"))?;
    let rt = runtime()?;
    let signed = rt
        .block_on(catalog.meta(id))
        .with_context(|| format!("cannot export session {id}"))?;
    let channel = pick_channel(&signed, id, channel)?.channel.clone();
    Ok(Ok(Source {
        catalog,
        rt,
        channel,
    }))
}

/// What `recordings export` writes: asciicast, or one byte stream.
pub(super) enum What {
    Cast(CastFormat),
    Stream(StreamName),
}

/// `recordings export`: one channel of session `id`, to `output` or stdout.
pub(super) fn export(
    config_path: &Path,
    id: &str,
    channel: Option<&str>,
    what: What,
    output: Option<&Path>,
) -> Result<ExitCode> {
    let source = match open(config_path, id, channel)? {
        Ok(source) => source,
        Err(code) => return Ok(code),
    };
    match what {
        What::Cast(format) => cast(&source, id, format, output),
        What::Stream(stream) => byte_stream(&source, id, stream, output),
    }
}

/// One channel as asciicast v3 or v2.
fn cast(source: &Source, id: &str, format: CastFormat, output: Option<&Path>) -> Result<ExitCode> {
    let Source {
        catalog,
        rt,
        channel,
    } = source;
    let channel = channel.as_str();
    let (format, name) = match format {
        CastFormat::V3 => (ExportFormat::V3, "v3"),
        CastFormat::V2 => (ExportFormat::V2, "v2"),
    };
    let bytes = rt
        .block_on(catalog.export(id, Some(channel), format))
        .with_context(|| format!("cannot export session {id} channel {channel}"))?;
    match output {
        Some(path) => {
            std::fs::write(path, &bytes)
                .with_context(|| format!("cannot write {}", path.display()))?;
            println!(
                "wrote session {id} channel {channel} as asciicast {name} to {} ({} bytes)",
                path.display(),
                bytes.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        None => {
            let mut out = std::io::stdout().lock();
            finish_stdout(out.write_all(&bytes).and_then(|()| out.flush()))
        }
    }
}

/// `--stream NAME`: the exact bytes, streamed out.
fn byte_stream(
    source: &Source,
    id: &str,
    stream: StreamName,
    output: Option<&Path>,
) -> Result<ExitCode> {
    let Source {
        catalog,
        rt,
        channel,
    } = source;
    let channel = channel.as_str();
    let (kind, name) = match stream {
        StreamName::Stdout => (recorder::stream::Kind::Stdout, "stdout"),
        StreamName::Stderr => (recorder::stream::Kind::Stderr, "stderr"),
        StreamName::Stdin => (recorder::stream::Kind::Stdin, "stdin"),
    };
    let what = || format!("cannot export {name} of session {id} channel {channel}");
    match output {
        Some(path) => {
            let file = std::fs::File::create(path)
                .with_context(|| format!("cannot write {}", path.display()))?;
            let mut out = std::io::BufWriter::new(file);
            let n = rt
                .block_on(catalog.export_stream(id, Some(channel), kind, &mut out))
                .with_context(what)?;
            out.flush()
                .with_context(|| format!("cannot write {}", path.display()))?;
            println!(
                "wrote {name} of session {id} channel {channel} to {} ({n} bytes)",
                path.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        None => {
            let mut out = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout());
            let written = rt.block_on(catalog.export_stream(id, Some(channel), kind, &mut out));
            match written {
                Ok(_) => finish_stdout(out.flush()),
                Err(recorder::Error::Format { reason, .. }) if reason.contains("Broken pipe") => {
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => Err(anyhow::Error::new(e).context(what())),
            }
        }
    }
}
