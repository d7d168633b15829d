//! The web app's checks of the recording index: every filter of the
//! sessions page, pages by cursor, and who viewed what.

use super::{Failure, start, t};
use crate::{RecordingCursor, RecordingFilter, RecordingRow, RecordingStatus, Store};

/// Sessions `p0`..`p5`, a second apart from 10 s, with logins, targets,
/// durations and exit statuses that tell the filters apart.
async fn seed(s: &dyn Store) -> Result<(), Failure> {
    for (n, login, target, duration, exit) in [
        (0, "root", "db1.internal:22", Some(5_000), Some(0)),
        (1, "postgres", "db2.internal:22", Some(60_000), Some(1)),
        (2, "root", "web_1.internal:22", Some(500), Some(0)),
        (3, "deploy", "10.0.0.7:2222", Some(3_600_000), Some(130)),
        (4, "root", "db1.internal:22", None, None), // still running
        (5, "root", "db100.internal:22", Some(1_000), Some(0)),
    ] {
        let id = format!("p{n}");
        let at = 10_000 + n * 1000;
        let begin = crate::RecordingStart {
            login: login.to_owned(),
            target: target.to_owned(),
            ..start(&id, "carol", "pages", at)
        };
        s.recording_started(begin.clone()).await?;
        if let Some(d) = duration {
            let row = RecordingRow {
                start: begin,
                ended_at_ms: Some(at + d),
                duration_ms: Some(d),
                status: RecordingStatus::Sealed,
                reason: None,
                bytes: 10,
                exit_status: exit,
                meta_key: Some(format!("sessions/{id}/meta.json")),
            };
            s.recording_sealed(row, Vec::new()).await?;
        }
    }
    Ok(())
}

async fn ids(s: &dyn Store, filter: RecordingFilter) -> Result<Vec<String>, Failure> {
    let filter = RecordingFilter {
        route: Some("pages".to_owned()),
        ..filter
    };
    Ok(s.recordings(filter)
        .await?
        .into_iter()
        .map(|r| r.start.session_id)
        .collect())
}

pub(super) async fn filters_and_pages(s: &dyn Store) -> Result<(), Failure> {
    seed(s).await?;
    let all = RecordingFilter::default;
    ensure_eq!(ids(s, all()).await?, ["p5", "p4", "p3", "p2", "p1", "p0"]);
    ensure_eq!(
        ids(
            s,
            RecordingFilter {
                login: Some("root".to_owned()),
                ..all()
            }
        )
        .await?,
        ["p5", "p4", "p2", "p0"]
    );
    // A substring of the target, with LIKE's wildcards taken literally:
    // `_` must not match any character.
    ensure_eq!(
        ids(
            s,
            RecordingFilter {
                target: Some("db1".to_owned()),
                ..all()
            }
        )
        .await?,
        ["p5", "p4", "p0"]
    );
    ensure_eq!(
        ids(
            s,
            RecordingFilter {
                target: Some("b_1".to_owned()),
                ..all()
            }
        )
        .await?,
        ["p2"]
    );
    ensure_eq!(
        ids(
            s,
            RecordingFilter {
                target: Some("%".to_owned()),
                ..all()
            }
        )
        .await?,
        Vec::<String>::new()
    );
    // Active at 12.3 s: p0 ended at 15 s, p1 at 71 s, p2 at 12.5 s.
    ensure_eq!(
        ids(
            s,
            RecordingFilter {
                active_at_ms: Some(12_300),
                ..all()
            }
        )
        .await?,
        ["p2", "p1", "p0"]
    );
    // A session still running is active at any later instant.
    ensure_eq!(
        ids(
            s,
            RecordingFilter {
                active_at_ms: Some(99_000_000),
                ..all()
            }
        )
        .await?,
        ["p4"]
    );
    ensure_eq!(
        ids(
            s,
            RecordingFilter {
                min_duration_ms: Some(1_000),
                max_duration_ms: Some(60_000),
                ..all()
            }
        )
        .await?,
        ["p5", "p1", "p0"]
    );
    ensure_eq!(
        ids(
            s,
            RecordingFilter {
                exit_status: Some(130),
                ..all()
            }
        )
        .await?,
        ["p3"]
    );

    // Pages by cursor: two at a time, no repeats, no gaps, even when a
    // newer session arrives between pages.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let rows = s
            .recordings(RecordingFilter {
                route: Some("pages".to_owned()),
                after: after.clone(),
                limit: 2,
                ..all()
            })
            .await?;
        if rows.is_empty() {
            break;
        }
        if seen.is_empty() {
            s.recording_started(start("p9", "carol", "pages", 99_000))
                .await?;
        }
        after = rows.last().map(RecordingCursor::after);
        seen.extend(rows.into_iter().map(|r| r.start.session_id));
        ensure!(seen.len() <= 6, "pages never end: {seen:?}");
    }
    ensure_eq!(seen, ["p5", "p4", "p3", "p2", "p1", "p0"]);
    // Sessions that started in the same millisecond are ordered by id.
    s.recording_started(start("q1", "carol", "tie", 5)).await?;
    s.recording_started(start("q2", "carol", "tie", 5)).await?;
    let first = s
        .recordings(RecordingFilter {
            route: Some("tie".to_owned()),
            limit: 1,
            ..all()
        })
        .await?;
    ensure_eq!(first.len(), 1);
    let rest = s
        .recordings(RecordingFilter {
            route: Some("tie".to_owned()),
            after: first.last().map(RecordingCursor::after),
            ..all()
        })
        .await?;
    ensure_eq!(
        first
            .iter()
            .chain(&rest)
            .map(|r| r.start.session_id.as_str())
            .collect::<Vec<_>>(),
        ["q2", "q1"]
    );
    Ok(())
}

pub(super) async fn views(s: &dyn Store) -> Result<(), Failure> {
    ensure!(
        s.recording_viewers(&["v1".to_owned()]).await?.is_empty(),
        "nobody viewed v1 yet"
    );
    s.recording_viewed("v1", "alice@example.com", t(10)).await?;
    s.recording_viewed("v1", "bob@example.com", t(20)).await?;
    s.recording_viewed("v1", "alice@example.com", t(30)).await?;
    s.recording_viewed("v2", "bob@example.com", t(40)).await?;
    let got = s
        .recording_viewers(&["v1".to_owned(), "v2".to_owned(), "v3".to_owned()])
        .await?;
    let got: Vec<_> = got
        .iter()
        .map(|v| {
            (
                v.session_id.as_str(),
                v.viewer.as_str(),
                v.first_at_ms / 1000,
                v.last_at_ms / 1000,
                v.count,
            )
        })
        .collect();
    let (a, b) = ("alice@example.com", "bob@example.com");
    ensure_eq!(
        got,
        [
            ("v1", a, 10, 30, 2),
            ("v1", b, 20, 20, 1),
            ("v2", b, 40, 40, 1)
        ]
    );
    Ok(())
}
