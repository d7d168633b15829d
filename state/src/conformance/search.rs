//! The text-search checks of the conformance suite: what a query finds
//! (words, substrings, case, paths, addresses, `rm -rf`), that query
//! syntax in the typed text is taken literally, the order and pages of
//! hits, replacing and clearing a channel's text, the queue of sessions to
//! index, and the recording filter's `text`.

use super::{Failure, start};
use crate::{
    RecordingChannel, RecordingFilter, RecordingRow, RecordingStatus, ScreenLine, Store,
    TextChunker, TextHit, TextQuery,
};

/// Session starts near real ones, a second apart, so chunk ordering is
/// checked on realistic times.
const T0_MS: u64 = 1_800_000_000_000;

fn sealed_channel(name: &str) -> RecordingChannel {
    RecordingChannel {
        channel: name.to_owned(),
        kind: "shell".to_owned(),
        sealed_key: Some(format!("x/{name}.cast.zst")),
        ..Default::default()
    }
}

/// Indexes session `id` (n seconds after T0) as `status` with sealed
/// `channels`.
async fn session(
    s: &dyn Store,
    id: &str,
    n: u64,
    status: RecordingStatus,
    channels: &[&str],
) -> Result<(), Failure> {
    let at = T0_MS + n * 1000;
    s.recording_started(start(id, "dora", "search", at)).await?;
    if status != RecordingStatus::Recording {
        let row = RecordingRow {
            start: start(id, "dora", "search", at),
            ended_at_ms: Some(at + 500),
            duration_ms: Some(500),
            status,
            meta_key: Some(format!("sessions/{id}/meta.json")),
            ..Default::default()
        };
        let channels = channels.iter().map(|c| sealed_channel(c)).collect();
        s.recording_sealed(row, channels).await?;
    }
    Ok(())
}

/// Lines of one screen, the n-th appearing at step n + 1 and n ms.
fn lines(texts: &[(&str, bool)]) -> Vec<ScreenLine> {
    texts
        .iter()
        .enumerate()
        .map(|(n, (text, alternate))| ScreenLine {
            steps: n as u64 + 1,
            time_us: n as u64 * 1000,
            alternate: *alternate,
            text: (*text).to_owned(),
        })
        .collect()
}

async fn index(
    s: &dyn Store,
    id: &str,
    channel: &str,
    texts: &[(&str, bool)],
) -> Result<u64, Failure> {
    let chunks = TextChunker::new(lines(texts).into_iter());
    Ok(s.text_index_replace(id, channel, Box::new(chunks))
        .await?
        .lines)
}

async fn search(s: &dyn Store, text: &str) -> Result<Vec<TextHit>, Failure> {
    Ok(s.text_search(TextQuery {
        text: text.to_owned(),
        limit: 500,
        ..Default::default()
    })
    .await?
    .hits)
}

/// (session, channel, matched texts) of each hit.
async fn found(s: &dyn Store, text: &str) -> Result<Vec<(String, String, Vec<String>)>, Failure> {
    Ok(search(s, text)
        .await?
        .into_iter()
        .map(|h| {
            let matched = h
                .matches
                .iter()
                .map(|r| h.snippet.get(r.clone()).unwrap_or("?").to_owned())
                .collect();
            (h.session_id, h.channel, matched)
        })
        .collect())
}

fn hit(id: &str, channel: &str, matched: &[&str]) -> (String, String, Vec<String>) {
    (
        id.to_owned(),
        channel.to_owned(),
        matched.iter().map(|m| (*m).to_owned()).collect(),
    )
}

/// Three indexed sessions: `t1` (oldest), `t2`, `t3` (two channels).
async fn seed(s: &dyn Store) -> Result<(), Failure> {
    let sealed = RecordingStatus::Sealed;
    session(s, "t1", 1, sealed, &["0"]).await?;
    session(s, "t2", 2, sealed, &["0"]).await?;
    session(s, "t3", 3, RecordingStatus::Interrupted, &["0", "1"]).await?;
    let t1 = [
        ("alice@web1:~$ sudo rm -rf /var/tmp/build", false),
        (
            "drwxr-xr-x 2 root root 4096 /etc/nginx/sites-enabled",
            false,
        ),
        ("Connection from 10.20.30.40 port 22", false),
        ("-- INSERT -- only-in-vim", true),
    ];
    let n = index(s, "t1", "0", &t1).await?;
    ensure_eq!(n, 4, "every line is indexed");
    index(
        s,
        "t2",
        "0",
        &[
            ("Total 42", false),
            ("tools are here", false),
            ("ls -la", false),
            ("ssh 10.20.30.4 -p 2222", false),
        ],
    )
    .await?;
    index(
        s,
        "t3",
        "0",
        &[
            ("TOTAL recall", false),
            (r#"quote "here" and NEAR(a b) and a*b OR c: x"#, false),
        ],
    )
    .await?;
    index(s, "t3", "1", &[]).await?;
    Ok(())
}

pub(super) async fn finds(s: &dyn Store) -> Result<(), Failure> {
    seed(s).await?;
    ensure_eq!(found(s, "rm -rf").await?, [hit("t1", "0", &["rm -rf"])]);
    ensure_eq!(
        found(s, "RM -Rf").await?,
        [hit("t1", "0", &["rm -rf"])],
        "case-insensitive"
    );
    ensure_eq!(
        found(s, "/etc/nginx").await?,
        [hit("t1", "0", &["/etc/nginx"])],
        "a path inside a longer one"
    );
    ensure_eq!(
        found(s, "10.20.30.40").await?,
        [hit("t1", "0", &["10.20.30.40"])]
    );
    ensure_eq!(
        found(s, "10.20.30.4").await?,
        [
            hit("t2", "0", &["10.20.30.4"]),
            hit("t1", "0", &["10.20.30.4"])
        ],
        "newest session first, substrings of longer addresses"
    );
    ensure_eq!(
        found(s, "  total ").await?,
        [hit("t3", "0", &["TOTAL"]), hit("t2", "0", &["Total"])],
        "trimmed, any case"
    );
    ensure_eq!(
        found(s, "ls").await?,
        [hit("t2", "0", &["ls"])],
        "a short query starts a word: not in tools"
    );
    ensure_eq!(found(s, "nginx/sites").await?.len(), 1);
    ensure_eq!(found(s, "nothing like this").await?, []);

    // Where and when: the exact line, its moment, its screen.
    let vim = search(s, "only-in-vim").await?;
    let (steps, time_us, alternate) = vim
        .first()
        .map(|h| (h.steps, h.time_us, h.alternate))
        .unwrap_or_default();
    ensure_eq!((vim.len(), steps, time_us, alternate), (1, 4, 3000, true));
    let path = search(s, "/etc/nginx").await?;
    ensure_eq!(
        path.first()
            .map(|h| (h.steps, h.alternate, h.snippet.as_str())),
        Some((
            2,
            false,
            "drwxr-xr-x 2 root root 4096 /etc/nginx/sites-enabled"
        ))
    );
    Ok(())
}

pub(super) async fn literal(s: &dyn Store) -> Result<(), Failure> {
    seed(s).await?;
    let t3 = |m: &str| vec![hit("t3", "0", &[m])];
    // Query syntax is text: each finds itself, literally, and no more.
    for (q, want) in [
        (r#""here""#, t3(r#""here""#)),
        ("NEAR(a b)", t3("NEAR(a b)")),
        ("a*b", t3("a*b")),
        ("OR c: x", t3("OR c: x")),
        (
            "here",
            vec![hit("t3", "0", &["here"]), hit("t2", "0", &["here"])],
        ),
        ("total OR recall", vec![]),
        ("rm*", vec![]),
        ("\"", vec![]),
        ("*", vec![]),
        ("\"\" OR \"\"", vec![]),
        ("NEAR(total recall)", vec![]),
        ("') OR 1=1 --", vec![]),
        ("text:total", vec![]),
        ("^total", vec![]),
        ("\"total", vec![]),
        ("a\nb", vec![]),
        ("", vec![]),
    ] {
        ensure_eq!(found(s, q).await?, want, "query {q:?}");
    }
    ensure!(
        s.text_search(TextQuery {
            text: "x".repeat(10_000),
            ..Default::default()
        })
        .await
        .is_err(),
        "a query too long is refused"
    );
    ensure!(
        s.text_search(TextQuery {
            text: "total".to_owned(),
            after: Some(crate::TextCursor("'; DROP TABLE x".to_owned())),
            ..Default::default()
        })
        .await
        .is_err(),
        "a cursor from elsewhere is refused"
    );
    Ok(())
}

pub(super) async fn pages(s: &dyn Store) -> Result<(), Failure> {
    seed(s).await?;
    session(s, "t4", 4, RecordingStatus::Sealed, &["0"]).await?;
    let many: Vec<String> = (0..130).map(|n| format!("build step {n} ok")).collect();
    let texts: Vec<(&str, bool)> = many.iter().map(|t| (t.as_str(), false)).collect();
    index(s, "t4", "0", &texts).await?;
    index(s, "t1", "1", &[("build step t1", false)]).await?;

    let all = search(s, "build step").await?;
    ensure_eq!(all.len(), 131);
    let steps: Vec<u64> = all.iter().take(130).map(|h| h.steps).collect();
    ensure_eq!(
        steps,
        (1..=130).collect::<Vec<u64>>(),
        "lines in order of appearance"
    );
    ensure_eq!(
        all.last().map(|h| h.session_id.as_str()),
        Some("t1"),
        "the older session last"
    );

    let mut paged = Vec::new();
    let mut after = None;
    for _ in 0..20 {
        let page = s
            .text_search(TextQuery {
                text: "build step".to_owned(),
                after: after.take(),
                limit: 50,
                ..Default::default()
            })
            .await?;
        ensure!(page.hits.len() <= 50, "a page has {} hits", page.hits.len());
        paged.extend(page.hits);
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    ensure!(after.is_none(), "paging never ended");
    ensure_eq!(paged, all, "pages add up to the whole, in the same order");

    let only = s
        .text_search(TextQuery {
            text: "build step".to_owned(),
            session_id: Some("t1".to_owned()),
            ..Default::default()
        })
        .await?;
    ensure_eq!(
        only.hits
            .iter()
            .map(|h| (h.session_id.as_str(), h.channel.as_str()))
            .collect::<Vec<_>>(),
        [("t1", "1")],
        "one session's hits"
    );
    let default_page = s
        .text_search(TextQuery {
            text: "build".to_owned(),
            ..Default::default()
        })
        .await?;
    ensure_eq!(default_page.hits.len(), crate::search::DEFAULT_HITS);
    ensure!(default_page.next.is_some(), "more after a full page");
    Ok(())
}

pub(super) async fn replace_and_clear(s: &dyn Store) -> Result<(), Failure> {
    seed(s).await?;
    index(s, "t1", "0", &[("replaced line", false)]).await?;
    ensure_eq!(found(s, "rm -rf").await?, [], "the old text is gone");
    ensure_eq!(found(s, "replaced").await?, [hit("t1", "0", &["replaced"])]);
    ensure_eq!(
        found(s, "10.20.30.4").await?,
        [hit("t2", "0", &["10.20.30.4"])],
        "other sessions keep theirs"
    );
    ensure!(
        s.text_index_replace("nope", "0", Box::new(std::iter::empty()))
            .await
            .is_err(),
        "a session the recording index does not know"
    );
    let state = s.text_index_state("t3").await?;
    ensure_eq!(
        state
            .iter()
            .map(|t| (t.channel.as_deref(), t.lines, t.failure.is_some()))
            .collect::<Vec<_>>(),
        [(Some("0"), 2, false), (Some("1"), 0, false)]
    );

    s.text_index_clear().await?;
    ensure_eq!(found(s, "total").await?, [], "cleared");
    ensure_eq!(found(s, "ls").await?, [], "both indexes cleared");
    ensure_eq!(s.text_index_state("t3").await?, []);
    ensure_eq!(s.text_unindexed(0).await?, ["t3", "t2", "t1"]);
    index(s, "t2", "0", &[("back again", false)]).await?;
    ensure_eq!(found(s, "back again").await?.len(), 1);
    Ok(())
}

pub(super) async fn unindexed(s: &dyn Store) -> Result<(), Failure> {
    use RecordingStatus::{Failed, Interrupted, Recording, Sealed};
    for (id, n, status, channels) in [
        ("u1", 1, Sealed, &["0"][..]),
        ("u2", 2, Interrupted, &["0"][..]),
        ("u3", 3, Recording, &[][..]),
        ("u4", 4, Failed, &[][..]),
        ("u5", 5, Sealed, &["0", "1"][..]),
        ("u6", 6, Sealed, &[][..]),
        ("u7", 7, Sealed, &["0"][..]),
    ] {
        session(s, id, n, status, channels).await?;
    }
    ensure_eq!(
        s.text_unindexed(0).await?,
        ["u7", "u6", "u5", "u2", "u1"],
        "sealed and interrupted, newest first"
    );
    ensure_eq!(s.text_unindexed(2).await?, ["u7", "u6"]);
    index(s, "u1", "0", &[]).await?; // no text is still indexed
    index(s, "u5", "0", &[("half", false)]).await?;
    s.text_index_failed("u6", None, "meta.json: not found")
        .await?;
    s.text_index_failed("u7", Some("0"), "not zstd").await?;
    ensure_eq!(
        s.text_unindexed(0).await?,
        ["u5", "u2"],
        "u5 has a channel left; failures leave the queue"
    );
    index(s, "u5", "1", &[]).await?;
    ensure_eq!(s.text_unindexed(0).await?, ["u2"]);
    let state = s.text_index_state("u6").await?;
    ensure_eq!(
        state
            .iter()
            .map(|t| (t.channel.clone(), t.failure.clone()))
            .collect::<Vec<_>>(),
        [(None, Some("meta.json: not found".to_owned()))]
    );
    // Indexing later (after a fix) clears the session's failure.
    index(s, "u6", "0", &[("fixed", false)]).await?;
    ensure_eq!(
        s.text_index_state("u6")
            .await?
            .iter()
            .map(|t| (t.channel.clone(), t.failure.is_some()))
            .collect::<Vec<_>>(),
        [(Some("0".to_owned()), false)]
    );
    Ok(())
}

pub(super) async fn filter(s: &dyn Store) -> Result<(), Failure> {
    seed(s).await?;
    session(s, "t0", 0, RecordingStatus::Sealed, &["0"]).await?;
    let ids = |text: &str| RecordingFilter {
        route: Some("search".to_owned()),
        text: Some(text.to_owned()),
        ..Default::default()
    };
    let list = |rows: Vec<RecordingRow>| -> Vec<String> {
        rows.into_iter().map(|r| r.start.session_id).collect()
    };
    ensure_eq!(list(s.recordings(ids("rm -rf")).await?), ["t1"]);
    ensure_eq!(list(s.recordings(ids("10.20.30.4")).await?), ["t2", "t1"]);
    ensure_eq!(list(s.recordings(ids("TOTAL")).await?), ["t3", "t2"]);
    ensure_eq!(list(s.recordings(ids("ls")).await?), ["t2"]);
    for q in ["\"*", "*", "", "total OR recall", "NEAR(total recall)"] {
        ensure_eq!(
            list(s.recordings(ids(q)).await?),
            Vec::<String>::new(),
            "{q:?}"
        );
    }
    ensure_eq!(
        list(
            s.recordings(RecordingFilter {
                status: Some(RecordingStatus::Sealed),
                ..ids("here")
            })
            .await?
        ),
        ["t2"],
        "with the other filters"
    );
    Ok(())
}
