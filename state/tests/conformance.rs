//! The state conformance suite on the SQLite backend: every check on a
//! fresh database in its own directory.

#![allow(clippy::expect_used)]

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_passes_the_conformance_suite() {
    let mut failures = Vec::new();
    for check in state::conformance::CHECKS {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = state::Sqlite::open(&dir.path().join("state")).expect("open");
        if let Err(failure) = (check.run)(&store).await {
            failures.push(format!("{}: {failure}", check.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} checks failed:\n{}",
        failures.len(),
        state::conformance::CHECKS.len(),
        failures.join("\n")
    );
}
