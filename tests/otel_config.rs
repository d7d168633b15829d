//! The `tracing` section against the binary's build (issue 16): a
//! gatehouse built without the `otel` feature refuses it in one line with
//! exit code 2 instead of running without the traces asked for; one built
//! with it names where the spans go.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{bin, run};

fn config_with_tracing() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("user_ca");
    let mut init = Command::new(bin());
    init.args(["ca", "init", "--key"]).arg(&ca);
    let (code, out, err) = run(init, Duration::from_secs(10));
    assert_eq!(code, 0, "{out}{err}");
    let path = dir.path().join("g.yaml");
    std::fs::write(
        &path,
        "listen: 127.0.0.1:0\nuser_ca: user_ca\nstate_dir: state\n\
         tracing:\n  otlp_endpoint: http://127.0.0.1:4318\n",
    )
    .unwrap();
    (dir, path)
}

#[test]
fn check_config_and_serve_follow_the_build() {
    let (_dir, path) = config_with_tracing();
    let mut check = Command::new(bin());
    check.arg("check-config").arg(&path);
    let (code, out, err) = run(check, Duration::from_secs(10));
    if cfg!(feature = "otel") {
        assert_eq!(code, 0, "{out}{err}");
        assert!(
            out.contains("traces to http://127.0.0.1:4318/v1/traces as gatehouse"),
            "{out}"
        );
    } else {
        assert_eq!(code, 2, "{out}{err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(err.contains("g.yaml:5:3: tracing is set"), "{err}");
        assert!(err.contains("--features otel"), "{err}");
        let mut serve = Command::new(bin());
        serve.args(["serve", "--config"]).arg(&path);
        let (code, out, err) = run(serve, Duration::from_secs(10));
        assert_eq!(code, 2, "{out}{err}");
        assert!(out.is_empty(), "serve must not start listening: {out}");
        assert!(err.contains("--features otel"), "{err}");
    }
}
