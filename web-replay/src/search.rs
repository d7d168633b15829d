//! `GET /search?q=`: what was on screen, across every recording the
//! viewer may both `search` and `play` (a hit opens the player at its
//! moment, so showing a hit of a recording one may not play would leak
//! it). Rate-limited per browser session and audited
//! (`recording.searched`); the query is never logged with its results.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use policy::lang::ViewerCapability;
use serde::Deserialize;
use state::{RecordingRow, TextCursor, TextHit, TextQuery};

use crate::App;
use crate::access::{Grant, Viewer};
use crate::auth::{short, unavailable};
use crate::pages::{esc, layout, url_encode};
use crate::player::clock;
use crate::sessions::when;
use web_front::Peer;

/// Hits on a page.
const PAGE: usize = 50;
/// Backend pages read at most to fill one of ours.
const MAX_PAGES: usize = 10;

#[derive(Deserialize)]
pub(crate) struct SearchQuery {
    #[serde(default)]
    q: String,
    after: Option<String>,
    #[serde(default)]
    reason: String,
}

/// The snippet as HTML, each match in `<mark>`. Ranges come from the
/// store; any that do not fall on character boundaries are skipped rather
/// than trusted.
fn marked(hit: &TextHit) -> String {
    let s = &hit.snippet;
    let mut out = String::new();
    let mut at = 0;
    for m in &hit.matches {
        let (Some(before), Some(inside)) = (s.get(at..m.start), s.get(m.start..m.end)) else {
            continue;
        };
        out += &esc(before);
        let _ = write!(out, "<mark>{}</mark>", esc(inside));
        at = m.end;
    }
    out += &esc(s.get(at..).unwrap_or_default());
    out
}

/// `GET /search`.
pub(crate) async fn page(
    State(app): State<Arc<App>>,
    axum::Extension(Peer(peer)): axum::Extension<Peer>,
    headers: HeaderMap,
    Query(q): Query<SearchQuery>,
) -> Response {
    let here = format!("/search?q={}", url_encode(&q.q));
    let viewer = match Viewer::of(&app, &headers, peer, &here).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let text = q.q.trim().to_owned();
    let reason: String = q
        .reason
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(crate::player::MAX_REASON)
        .collect();
    let mut body = format!(
        "<form id=\"search\" method=\"get\" action=\"/search\"><input name=\"q\" value=\"{}\" \
         aria-label=\"Search\"> <button type=\"submit\">search</button></form>\n",
        esc(&text)
    );
    if text.is_empty() {
        body += "<p>Words, or any part of a line: a path, an address, <code>rm -rf</code>.</p>";
        return layout(&viewer, StatusCode::OK, "Search", &body, &[]);
    }
    if !app.limits.search.allow(&viewer.session.id_hash) {
        body += "<p class=\"error\" id=\"problem\">Too many searches; wait a moment.</p>";
        return layout(&viewer, StatusCode::TOO_MANY_REQUESTS, "Search", &body, &[]);
    }

    let mut rows: HashMap<String, Option<RecordingRow>> = HashMap::new();
    let mut shown: Vec<(TextHit, RecordingRow)> = Vec::new();
    let mut need_reason = 0usize;
    let mut after = q.after.clone().map(TextCursor);
    let mut pages = 0;
    let next = loop {
        let page = match app
            .store
            .text_search(TextQuery {
                text: text.clone(),
                session_id: None,
                after: after.clone(),
                limit: PAGE,
            })
            .await
        {
            Ok(p) => p,
            Err(state::Error::Invalid(why)) => {
                let _ = write!(body, "<p class=\"error\" id=\"problem\">{}</p>", esc(&why));
                return layout(&viewer, StatusCode::BAD_REQUEST, "Search", &body, &[]);
            }
            Err(e) => return unavailable("state", &e.to_string()),
        };
        pages += 1;
        for hit in page.hits {
            if !rows.contains_key(&hit.session_id) {
                let row = match app.store.recording(&hit.session_id).await {
                    Ok(r) => r.map(|(row, _)| row),
                    Err(e) => return unavailable("state", &e.to_string()),
                };
                rows.insert(hit.session_id.clone(), row);
            }
            let Some(Some(row)) = rows.get(&hit.session_id) else {
                continue;
            };
            let search = viewer.grant(&app, row, ViewerCapability::Search);
            let play = viewer.grant(&app, row, ViewerCapability::Play);
            match (search, play) {
                (Grant::No, _) | (_, Grant::No) => continue,
                (Grant::WithReason, _) if reason.is_empty() => need_reason += 1,
                _ if shown.len() < PAGE => shown.push((hit, row.clone())),
                _ => {}
            }
        }
        after = page.next;
        if after.is_none() || shown.len() >= PAGE || pages >= MAX_PAGES {
            break after;
        }
    };

    audit::Event::RecordingSearched {
        viewer: viewer.label().to_owned(),
        web_session: short(&viewer.session.id_hash),
        scope: "all",
        session: String::new(),
        query: text.clone(),
        results: shown.len() as u64,
        peer: viewer.addr.to_string(),
    }
    .emit();

    body += "<ol class=\"hits\" id=\"hits\">\n";
    for (hit, row) in &shown {
        let s = &row.start;
        let mut link = format!(
            "/sessions/{}?channel={}&t={:.6}&q={}",
            url_encode(&hit.session_id),
            url_encode(&hit.channel),
            hit.time_us as f64 / 1e6 + 0.001,
            url_encode(&text)
        );
        if !reason.is_empty() {
            link += &format!("&reason={}", url_encode(&reason));
        }
        let _ = writeln!(
            body,
            "<li data-session=\"{}\"><a class=\"hit\" href=\"{}\">{}@{} · {} · {} · at {}{}</a><br>\
             <span class=\"snippet\">{}</span></li>",
            esc(&hit.session_id),
            esc(&link),
            esc(&s.login),
            esc(&s.route),
            esc(&s.identity),
            esc(&when(s.started_at_ms)),
            clock(hit.time_us),
            if hit.alternate {
                " (full-screen program)"
            } else {
                ""
            },
            marked(hit),
        );
    }
    body += "</ol>\n";
    if shown.is_empty() {
        body += "<p id=\"empty\">No matches in recordings you may search.</p>\n";
    }
    if need_reason > 0 {
        let _ = writeln!(
            body,
            "<form id=\"reason\" method=\"get\" action=\"/search\">\
             <input type=\"hidden\" name=\"q\" value=\"{}\">\
             <p>{need_reason} more match{} in recordings you may search only with a reason, \
             which goes into the audit log.</p><label>Reason <input name=\"reason\" required></label> \
             <button type=\"submit\">Show them</button></form>",
            esc(&text),
            if need_reason == 1 { "" } else { "es" }
        );
    }
    if let Some(next) = next {
        let mut url = format!(
            "/search?q={}&after={}",
            url_encode(&text),
            url_encode(next.as_str())
        );
        if !reason.is_empty() {
            url += &format!("&reason={}", url_encode(&reason));
        }
        let _ = write!(
            body,
            "<p><a id=\"more\" href=\"{}\">more →</a></p>",
            esc(&url)
        );
    }
    layout(&viewer, StatusCode::OK, "Search", &body, &[])
}

#[cfg(test)]
#[allow(clippy::single_range_in_vec_init)]
mod tests {
    use super::*;

    fn hit(snippet: &str, matches: Vec<std::ops::Range<usize>>) -> TextHit {
        TextHit {
            session_id: "s".into(),
            channel: "0".into(),
            steps: 1,
            time_us: 0,
            alternate: false,
            snippet: snippet.into(),
            matches,
        }
    }

    #[test]
    fn snippets_are_escaped_with_matches_marked() {
        let h = hit("\"><img src=x onerror=alert(1)>", vec![13..20]);
        assert_eq!(
            marked(&h),
            "&quot;&gt;&lt;img src=x <mark>onerror</mark>=alert(1)&gt;"
        );
    }

    #[test]
    fn ranges_off_character_boundaries_are_skipped() {
        let h = hit("é<b>", vec![1..2, 2..5]);
        assert_eq!(marked(&h), "é<mark>&lt;b&gt;</mark>");
    }
}
