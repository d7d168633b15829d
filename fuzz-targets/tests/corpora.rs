//! Replays every committed fuzz corpus (`fuzz/corpus/<target>/`) through its
//! target. Crashes found by `dev/fuzz` are added to the corpus when fixed,
//! so this is also the regression test for each of them.

use std::path::{Path, PathBuf};

use fuzz_targets::{Harness, TARGETS};

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let inputs: Vec<_> = files
        .into_iter()
        .map(|p| {
            let data = std::fs::read(&p).unwrap();
            (p, data)
        })
        .collect();
    assert!(
        !inputs.is_empty(),
        "{}: the corpus of {target} is empty",
        dir.display()
    );
    inputs
}

fn replay(target: &str, run: impl Fn(&[u8])) {
    for (path, data) in corpus(target) {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&data)));
        assert!(outcome.is_ok(), "{target} fails on {}", path.display());
    }
}

#[test]
fn every_target_has_a_corpus_and_an_entry_point() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/fuzz_targets");
    for target in TARGETS {
        let entry = dir.join(format!("{target}.rs"));
        assert!(entry.is_file(), "{} is missing", entry.display());
        corpus(target);
    }
}

#[test]
fn config_corpus() {
    replay("config", fuzz_targets::config);
}

#[test]
fn policy_corpus() {
    replay("policy", fuzz_targets::policy);
}

#[test]
fn user_name_corpus() {
    replay("user_name", fuzz_targets::user_name);
}

#[test]
fn sign_in_prompt_corpus() {
    replay("sign_in_prompt", fuzz_targets::sign_in_prompt);
}

#[test]
fn token_response_corpus() {
    replay("token_response", fuzz_targets::token_response);
}

#[test]
fn asciicast_corpus() {
    replay("asciicast", fuzz_targets::asciicast);
}

#[test]
fn sftp_corpus() {
    replay("sftp", fuzz_targets::sftp);
}

#[test]
fn scp_corpus() {
    replay("scp", fuzz_targets::scp);
}

#[test]
fn stream_corpus() {
    replay("stream", fuzz_targets::stream);
}

#[test]
fn transfer_corpus() {
    replay("transfer", fuzz_targets::transfer);
}

#[test]
fn preauth_corpus() {
    let dir = tempfile::tempdir().unwrap();
    let harness = Harness::new(dir.path()).unwrap();
    replay("preauth", |data| harness.preauth(data));
}

#[test]
fn auth_corpus() {
    let dir = tempfile::tempdir().unwrap();
    let harness = Harness::new(dir.path()).unwrap();
    replay("auth", |data| {
        harness.auth(data);
    });
}

/// The auth harness is live: the registered key gets in as the route's
/// login, a stranger's key and a wrong route do not.
#[test]
fn auth_harness_lets_only_alice_in() {
    let dir = tempfile::tempdir().unwrap();
    let harness = Harness::new(dir.path()).unwrap();
    let user = |u: &str| [&[u8::try_from(u.len()).unwrap()][..], u.as_bytes()].concat();
    let registered = [&[3][..], &user("ghtest@t")].concat();
    let stranger = [&[0x83][..], &user("ghtest@t")].concat();
    let wrong_route = [&[3][..], &user("ghtest@nowhere")].concat();
    assert!(harness.auth(&registered));
    assert!(!harness.auth(&stranger));
    assert!(!harness.auth(&wrong_route));
}

#[test]
fn proxy_header_corpus() {
    replay("proxy_header", fuzz_targets::proxy_header);
}

#[test]
fn first_bytes_corpus() {
    replay("first_bytes", fuzz_targets::first_bytes);
}
