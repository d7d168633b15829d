//! The `otel` feature's dependency invariant (issue 16): traces add no
//! gRPC stack (tonic) and no aws-lc, only the OTLP/HTTP exporter on the
//! reqwest and ring-based rustls already in the tree. Runs in every build,
//! with or without the feature, because it asks cargo about the feature.

use std::process::Command;

#[test]
fn the_otel_feature_brings_no_tonic_and_no_aws_lc() {
    let out = Command::new(env!("CARGO"))
        .args(["tree", "--locked", "--features", "otel", "-e", "normal"])
        .args(["--prefix", "none", "--format", "{p}"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo tree");
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The feature is really in the tree, so the check means something.
    for present in ["opentelemetry-otlp ", "tracing-opentelemetry ", "reqwest "] {
        assert!(tree.contains(present), "{present}is missing:\n{tree}");
    }
    for absent in ["aws-lc-sys", "aws-lc-rs", "tonic"] {
        assert!(
            !tree.lines().any(|l| l.starts_with(absent)),
            "--features otel pulls in {absent}:\n{tree}"
        );
    }
    // One reqwest: the exporter uses the one the IdP client already does.
    let mut reqwests: Vec<&str> = tree
        .lines()
        .filter(|l| l.starts_with("reqwest v"))
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    reqwests.sort_unstable();
    reqwests.dedup();
    assert_eq!(reqwests.len(), 1, "{reqwests:?}");
}
