//! `gatehouse recordings bundle ID -o FILE` and `gatehouse recordings
//! verify --bundle FILE`: evidence that leaves the system and is checked
//! offline (`recorder::verify_bundle`).

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow};

use crate::catalog::{IndexUse, open_catalog, plural, recording_signer_public_key, runtime};
use crate::load_config;

/// Writes the bundle of session `id` to `output`.
pub(crate) fn write(config_path: &Path, id: &str, output: &Path) -> Result<ExitCode> {
    let config = match load_config(config_path) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let catalog = open_catalog(&config, IndexUse::Storage)?
        .ok_or_else(|| anyhow!("cannot open the recordings"))?;
    // Written beside the target and renamed: a failed bundle leaves no
    // half a file under the name the user gave.
    let mut tmp_name = output.as_os_str().to_owned();
    tmp_name.push(".partial");
    let tmp = std::path::PathBuf::from(tmp_name);
    let result = (|| -> Result<u64> {
        let mut file = std::fs::File::create(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        let bytes = runtime()?
            .block_on(catalog.bundle(id, &mut file))
            .with_context(|| format!("cannot bundle session {id}"))?;
        file.flush()?;
        file.sync_all()?;
        std::fs::rename(&tmp, output)
            .with_context(|| format!("cannot write {}", output.display()))?;
        Ok(bytes)
    })();
    let bytes = match result {
        Ok(b) => b,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    println!(
        "wrote session {id}'s bundle to {} ({bytes} bytes of sealed recordings)",
        output.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Checks a bundle against the config's host key or `key`.
pub(crate) fn verify(config: Option<&Path>, key: Option<&Path>, bundle: &Path) -> Result<ExitCode> {
    let trusted = match (key, config) {
        (Some(key), _) => crate::hostkey::ed25519_public_key_file(key)?,
        (None, Some(path)) => match load_config(path) {
            Ok(c) => recording_signer_public_key(&c)?,
            Err(code) => return Ok(code),
        },
        (None, None) => return Err(anyhow!("give --key PUBFILE or --config FILE to trust")),
    };
    let file =
        std::fs::File::open(bundle).with_context(|| format!("cannot open {}", bundle.display()))?;
    let report = recorder::verify_bundle(std::io::BufReader::new(file), Some(&trusted))
        .with_context(|| format!("{} is not a readable bundle", bundle.display()))?;
    let name = bundle.display();
    if report.ok {
        println!(
            "ok: {name}: session {}: signature by the gateway's host key and every sealed recording check out",
            report.session_id
        );
        return Ok(ExitCode::SUCCESS);
    }
    for problem in &report.problems {
        println!("{name}: {problem}");
    }
    eprintln!(
        "gatehouse: {name} failed verification with {} problem{}",
        report.problems.len(),
        plural(report.problems.len() as u64),
    );
    Ok(ExitCode::FAILURE)
}
