use super::*;

fn at(rfc: &str) -> SystemTime {
    humantime::parse_rfc3339(rfc).unwrap()
}

#[test]
fn times_are_rfc3339_with_any_offset_or_a_duration_ago() {
    let now = at("2026-03-01T12:00:00Z");
    for (text, want) in [
        ("2026-03-01T09:30:00Z", "2026-03-01T09:30:00Z"),
        ("2026-03-01T09:30:00", "2026-03-01T09:30:00Z"),
        ("2026-03-01 09:30:00z", "2026-03-01T09:30:00Z"),
        ("2026-03-01T10:30:00+01:00", "2026-03-01T09:30:00Z"),
        ("2026-02-28T23:30:00-10:00", "2026-03-01T09:30:00Z"),
        ("2026-03-01T09:30:00.250Z", "2026-03-01T09:30:00.250Z"),
        ("2026-03-01", "2026-03-01T00:00:00Z"),
        ("2h", "2026-03-01T10:00:00Z"),
        ("90s", "2026-03-01T11:58:30Z"),
        ("1day 2h", "2026-02-28T10:00:00Z"),
        (" 15m ", "2026-03-01T11:45:00Z"),
    ] {
        assert_eq!(parse_time(text, now).unwrap(), at(want), "{text}");
    }
    for bad in [
        "",
        "yesterday",
        "2026-13-01",
        "2026-03-01T25:00:00Z",
        "12:00",
        "-2h",
    ] {
        let e = parse_time(bad, now).unwrap_err().to_string();
        assert!(e.contains("RFC 3339"), "{bad}: {e}");
    }
}

#[test]
fn statuses_parse_by_name_and_say_the_choices() {
    assert_eq!(parse_status("failed"), Ok(Status::Failed));
    let e = parse_status("done").unwrap_err();
    assert!(e.contains("sealed, interrupted or failed"), "{e}");
}

#[test]
fn sizes_and_durations_read_like_a_person_would_say_them() {
    for (n, want) in [
        (0, "0B"),
        (1023, "1023B"),
        (1536, "1.5KiB"),
        (12 << 20, "12.0MiB"),
        (3 << 30, "3.0GiB"),
    ] {
        assert_eq!(human_bytes(n), want, "{n}");
    }
    assert_eq!(human(Duration::ZERO), "0s");
    assert_eq!(human(Duration::from_millis(999)), "<1s");
    assert_eq!(human(Duration::from_secs(725)), "12m5s");
    assert_eq!(human(Duration::from_secs(2 * 86_400)), "2d");
}

#[test]
fn the_table_aligns_columns_and_dashes_what_is_not_known_yet() {
    let s = |id: &str, who: &str, status: Status, ended: bool| SessionRecord {
        info: recorder::SessionInfo {
            session_id: id.into(),
            identity: who.into(),
            login: "deploy".into(),
            route: "prod-db".into(),
            ..Default::default()
        },
        gateway_id: "gw".into(),
        started_at_ms: 1_772_359_200_000,
        ended_at_ms: ended.then_some(1_772_359_392_000),
        duration_ms: ended.then_some(192_000),
        status,
        reason: None,
        bytes: if ended { 2048 } else { 0 },
        exit_status: ended.then_some(0),
        prefix: String::new(),
        meta_key: None,
    };
    let out = table(&[
        s("sess-long-id", "alice@example.com", Status::Sealed, true),
        s("s2", "bo@x.io", Status::Recording, false),
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].starts_with("ID            START"), "{out}");
    assert_eq!(
        lines[1],
        "sess-long-id  2026-03-01T10:00:00Z  3m12s     alice@example.com  deploy@prod-db  sealed     2.0KiB  0"
    );
    assert!(
        lines[2].starts_with("s2            2026-03-01T10:00:00Z  -  "),
        "{out}"
    );
    assert!(lines[2].ends_with("recording  0B      -"), "{out}");
}
