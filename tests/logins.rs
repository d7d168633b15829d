//! `gatehouse logins list` and `revoke` against a binding store written
//! directly (bindings cannot be made through SSH until device sign-in
//! lands).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use common::{World, bin, run};
use state::{NewBinding, Secret, Sqlite, Store};

const HOUR: Duration = Duration::from_secs(3600);

fn fp(c: char) -> String {
    format!("SHA256:{}", c.to_string().repeat(43))
}

fn gatehouse(args: &[&str], config: &Path) -> (i32, String, String) {
    let mut c = Command::new(bin());
    c.args(args).arg("--config").arg(config);
    run(c, Duration::from_secs(20))
}

fn bind(store: &Sqlite, c: char, sub: &str, email: Option<&str>, at: SystemTime) {
    block(store.bind(
        NewBinding {
            fingerprint: fp(c),
            sub: sub.to_owned(),
            email: email.map(str::to_owned),
            groups: vec!["ops".to_owned()],
            issuer: "https://idp.example.com".to_owned(),
            refresh_token: Some(Secret::new("rt-e2e-secret")),
            claims_json: "{}".to_owned(),
            ttl: 12 * HOUR,
        },
        at,
    ))
    .unwrap();
}

/// Runs one state-store call from a synchronous test.
fn block<T>(call: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(call)
}

#[test]
fn logins_list_and_revoke_by_user_key_and_all() {
    let w = World::new();
    let config = w.write_config(&[w.route("t", "")], "");

    // Before any sign-in: nothing to list or revoke, and no database made.
    let (code, out, err) = gatehouse(&["logins", "list"], &config);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "no login bindings");
    let (code, out, err) = gatehouse(&["logins", "revoke", "--all"], &config);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("revoked 0 login bindings"), "{out}");
    assert!(!w.path("state/gatehouse.db").exists());

    let store = Sqlite::open(&w.path("state")).unwrap();
    let now = SystemTime::now();
    bind(
        &store,
        'a',
        "alice-sub",
        Some("Alice@Example.com"),
        now - 3 * HOUR,
    );
    bind(
        &store,
        'b',
        "alice-sub",
        Some("alice@example.com"),
        now - HOUR,
    );
    bind(&store, 'c', "bob-sub", None, now - 2 * HOUR);
    bind(
        &store,
        'd',
        "carol-sub",
        Some("carol@example.com"),
        now - 13 * HOUR,
    );
    block(store.live_binding(&fp('b'), now - Duration::from_secs(300))).unwrap();

    let (code, out, err) = gatehouse(&["logins", "list"], &config);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 5, "{out}");
    assert!(
        lines[0].starts_with("WHO") && lines[0].contains("EXPIRES IN"),
        "{out}"
    );
    // Newest first; who is the email, or the sub without one.
    let row = |i: usize, who: &str, c: char| {
        let line: &str = lines[i];
        assert!(line.starts_with(who), "row {i} is not {who}: {out}");
        assert!(line.contains(&fp(c)), "row {i} lacks key {c}: {out}");
        line.to_owned()
    };
    let b = row(1, "alice@example.com", 'b');
    assert!(
        b.contains(" 1h ") && b.contains(" 5m") && b.ends_with(" ago"),
        "{out}"
    );
    let c = row(2, "bob-sub", 'c');
    assert!(c.contains(" 2h ") && c.ends_with("never"), "{out}");
    let a = row(3, "Alice@Example.com", 'a');
    assert!(a.contains(" 3h ") && a.contains(" 8h5"), "{out}");
    let d = row(4, "carol@example.com", 'd');
    assert!(d.contains(" expired "), "{out}");
    assert!(!out.contains("rt-e2e-secret"));

    let (code, out, err) = gatehouse(&["logins", "list", "--json"], &config);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(lines.iter().all(|l| l.starts_with('{') && l.ends_with('}')));
    assert!(lines[0].contains(&format!("\"fingerprint\":\"{}\"", fp('b'))));
    assert!(lines[0].contains("\"state\":\"live\""), "{out}");
    assert!(lines[3].contains("\"state\":\"expired\""), "{out}");
    assert!(lines[1].contains("\"email\":null"), "{out}");
    assert!(!out.contains("rt-e2e-secret"));

    // The store stays open in this process while the CLI writes to it.
    let (code, out, err) = gatehouse(
        &["logins", "revoke", "--user", "ALICE@example.COM"],
        &config,
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.trim(),
        "revoked 2 login bindings; their live sessions end within a second"
    );
    assert!(err.contains("binding.revoked"), "audited: {err}");
    let now = SystemTime::now();
    assert!(block(store.live_binding(&fp('a'), now)).unwrap().is_none());
    assert!(block(store.live_binding(&fp('b'), now)).unwrap().is_none());
    assert!(block(store.live_binding(&fp('c'), now)).unwrap().is_some());
    assert_eq!(
        block(store.refresh_token(&fp('a'))).unwrap(),
        None,
        "token wiped"
    );
    assert_eq!(block(store.revision()).unwrap(), 1);

    let (code, out, _) = gatehouse(&["logins", "list"], &config);
    assert_eq!(code, 0);
    assert_eq!(out.matches(" revoked ").count(), 2, "{out}");

    let key_c = fp('c');
    let (code, out, err) = gatehouse(&["logins", "revoke", "--key", &key_c], &config);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.trim(),
        "revoked 1 login binding; its live sessions end within a second"
    );
    assert!(
        block(store.live_binding(&key_c, SystemTime::now()))
            .unwrap()
            .is_none()
    );

    let (code, out, err) = gatehouse(&["logins", "revoke", "--key", &key_c], &config);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.trim(),
        format!("revoked 0 login bindings: no active binding for key {key_c}")
    );

    // Only the expired binding is left unrevoked; --all revokes it too, so
    // nothing can renew it.
    let (code, out, err) = gatehouse(&["logins", "revoke", "--all"], &config);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.trim(),
        "revoked 1 login binding; its live sessions end within a second"
    );
    let (code, out, _) = gatehouse(&["logins", "revoke", "--all"], &config);
    assert_eq!(code, 0);
    assert_eq!(
        out.trim(),
        "revoked 0 login bindings: there were no active bindings"
    );
    assert!(
        block(store.bindings())
            .unwrap()
            .iter()
            .all(|b| b.revoked_at.is_some())
    );
    assert_eq!(
        block(store.bindings()).unwrap().len(),
        4,
        "rows kept for audit"
    );
    assert_eq!(block(store.revision()).unwrap(), 3);
}

#[test]
fn logins_revoke_needs_exactly_one_valid_selector() {
    let w = World::new();
    let config = w.write_config(&[w.route("t", "")], "");
    let (code, _, err) = gatehouse(&["logins", "revoke"], &config);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--key") && err.contains("--all"), "{err}");
    let (code, _, err) = gatehouse(&["logins", "revoke", "--all", "--user", "a@b"], &config);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot be used with"), "{err}");
    let (code, _, err) = gatehouse(&["logins", "revoke", "--key", "alice.pub"], &config);
    assert_eq!(code, 1);
    assert!(err.contains("is not a key fingerprint"), "{err}");

    let (_, out, _) = gatehouse(&["logins", "revoke", "--help"], &config);
    assert!(
        out.contains("Examples:") && out.contains("--user alice@example.com"),
        "{out}"
    );

    // A broken config is reported as check-config reports it.
    let bad = w.path("bad.yaml");
    std::fs::write(&bad, "listen: nowhere\n").unwrap();
    let (code, _, err) = gatehouse(&["logins", "list"], &bad);
    assert_eq!(code, 1);
    assert!(err.contains("bad listen address"), "{err}");
}
