//! The README documents what log shippers depend on. These tests hold it
//! to the code, so the two cannot drift apart.

use std::fmt::Write;

/// The README's audit event catalogue, exactly as `audit::CATALOGUE`
/// renders it.
fn catalogue_table() -> String {
    let mut table =
        String::from("| event | level | fields (after `event`) | meaning |\n|---|---|---|---|\n");
    for e in audit::CATALOGUE {
        let fields = e
            .fields
            .iter()
            .map(|f| format!("`{f}`"))
            .collect::<Vec<_>>()
            .join(", ");
        let doc = e.doc.split_whitespace().collect::<Vec<_>>().join(" ");
        let _ = writeln!(
            table,
            "| `{}` | {} | {} | {} |",
            e.name, e.level, fields, doc
        );
    }
    table
}

#[test]
fn the_readme_lists_every_audit_event_with_its_level_and_fields() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let want = catalogue_table();
    assert!(
        readme.contains(&want),
        "README.md's audit event catalogue differs from audit::CATALOGUE; it should read:\n\n{want}"
    );
}
