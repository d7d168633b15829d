//! `gatehouse login --gateway HOST[:PORT] [-i KEY]`: fetches a
//! direct-access certificate for KEY (issue 16) and writes it where
//! OpenSSH looks for it, `KEY-cert.pub`.
//!
//! It runs the stock `ssh` client to `cert@HOST` with that key only, so the
//! sign-in is the usual one (a prompt with a device code or a link on the
//! terminal, or nothing when the key is bound already), and reads the
//! certificate from ssh's stdout. The certificate is checked before it is
//! written: a user certificate for KEY's public key, nothing else.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::Args;
use ssh_key::certificate::CertType;
use ssh_key::{Certificate, PublicKey};

use crate::tunnel::authority;

/// `gatehouse login`.
#[derive(Args)]
#[command(after_help = "Examples:\n  \
    gatehouse login --gateway gw.example.com\n  \
    gatehouse login --gateway gw.example.com:2222 -i ~/.ssh/id_ed25519\n  \
    ssh -i ~/.ssh/id_ed25519 postgres@db.internal    # OpenSSH finds id_ed25519-cert.pub\n\n\
    Without gatehouse installed, ssh does the same:\n  \
    ssh -p 2222 -i ~/.ssh/id_ed25519 cert@gw.example.com > ~/.ssh/id_ed25519-cert.pub")]
pub(crate) struct LoginArgs {
    /// The gateway, `HOST[:PORT]` (port 22 by default).
    #[arg(long, value_name = "HOST[:PORT]")]
    gateway: String,
    /// The private key to certify (default `~/.ssh/id_ed25519`); the
    /// certificate is written beside it as `KEY-cert.pub`.
    #[arg(short = 'i', long = "identity", value_name = "KEY")]
    key: Option<PathBuf>,
    /// An option for ssh, as with `ssh -o` (repeatable).
    #[arg(short = 'o', value_name = "OPTION")]
    options: Vec<String>,
    /// The ssh client to run.
    #[arg(long, value_name = "PROGRAM", default_value = "ssh")]
    ssh: PathBuf,
}

pub(crate) fn run(args: LoginArgs) -> Result<ExitCode> {
    let (host, port) = authority(&args.gateway, 22)?;
    let key = match &args.key {
        Some(key) => key.clone(),
        None => default_key()?,
    };
    let public = read_public_key(&key)?;
    let mut ssh = Command::new(&args.ssh);
    // Only this key: the gateway certifies the key the client proves, and
    // an agent's key offered first would be the one certified.
    ssh.args(["-T", "-o", "IdentitiesOnly=yes", "-i"])
        .arg(&key)
        .arg("-p")
        .arg(port.to_string());
    for option in &args.options {
        ssh.arg("-o").arg(option);
    }
    // A bare IPv6 address is fine here: ssh takes `user@::1`.
    ssh.arg(format!("cert@{host}"))
        .stdin(Stdio::inherit())
        .stderr(Stdio::inherit())
        .stdout(Stdio::piped());
    let output = ssh
        .output()
        .with_context(|| format!("cannot run {}", args.ssh.display()))?;
    if !output.status.success() {
        // ssh or the gateway has said why on stderr.
        bail!(
            "no certificate: ssh exited with {}",
            match output.status.code() {
                Some(code) => format!("status {code}"),
                None => "a signal".to_owned(),
            }
        );
    }
    let text = String::from_utf8(output.stdout).context("the gateway's answer is not text")?;
    let cert = check_certificate(text.trim(), &public)?;
    let path = cert_path(&key);
    write_certificate(&path, &cert)?;
    println!("{}", describe(&path, &cert, SystemTime::now()));
    Ok(ExitCode::SUCCESS)
}

/// `~/.ssh/id_ed25519`.
fn default_key() -> Result<PathBuf> {
    let home = std::env::var_os("HOME").context("HOME is not set; give the key with -i KEY")?;
    Ok(PathBuf::from(home).join(".ssh").join("id_ed25519"))
}

/// The public half of `key`, from `KEY.pub`.
fn read_public_key(key: &Path) -> Result<PublicKey> {
    let mut path = key.as_os_str().to_owned();
    path.push(".pub");
    let path = PathBuf::from(path);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read the public key {}", path.display()))?;
    PublicKey::from_openssh(text.trim())
        .with_context(|| format!("{} is not an OpenSSH public key", path.display()))
}

/// `KEY-cert.pub`, where OpenSSH looks for KEY's certificate.
fn cert_path(key: &Path) -> PathBuf {
    let mut path = key.as_os_str().to_owned();
    path.push("-cert.pub");
    PathBuf::from(path)
}

/// The gateway's answer as a user certificate for `public`.
fn check_certificate(line: &str, public: &PublicKey) -> Result<Certificate> {
    let cert = Certificate::from_openssh(line)
        .context("the gateway's answer is not an OpenSSH certificate")?;
    if cert.cert_type() != CertType::User {
        bail!("the gateway's certificate is not a user certificate");
    }
    if cert.public_key() != public.key_data() {
        bail!("the gateway's certificate is for another key than the one given with -i");
    }
    Ok(cert)
}

/// Writes the certificate with mode 0644, replacing an older one.
fn write_certificate(path: &Path, cert: &Certificate) -> Result<()> {
    let line = cert.to_openssh().context("cannot encode the certificate")?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    // The mode given to open() only applies to a new file, minus the umask.
    file.set_permissions(std::fs::Permissions::from_mode(0o644))
        .and_then(|()| file.write_all(format!("{line}\n").as_bytes()))
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// The one line printed: where, for which principals, until when.
fn describe(path: &Path, cert: &Certificate, now: SystemTime) -> String {
    let until = UNIX_EPOCH + Duration::from_secs(cert.valid_before());
    let left = until
        .duration_since(now)
        .map(|d| Duration::from_secs(d.as_secs() / 60 * 60))
        .unwrap_or_default();
    format!(
        "wrote {} for {}; valid until {} ({} from now)",
        path.display(),
        cert.valid_principals().join(", "),
        humantime::format_rfc3339_seconds(until),
        humantime::format_duration(left)
    )
}
