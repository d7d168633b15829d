//! `GET /sessions`: recorded sessions, newest first, filtered in the URL
//! (so a link shares the view), a page at a time by cursor, showing only
//! what the viewer may `list`, with who has viewed each.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use policy::lang::ViewerCapability;
use serde::Deserialize;
use state::{RecordingCursor, RecordingFilter, RecordingRow, RecordingStatus};

use crate::App;
use crate::access::{Grant, Viewer};
use crate::pages::{esc, layout, url_encode};
use web_front::Peer;

/// Rows on a page.
pub(crate) const PAGE: usize = 50;
/// Rows read from the index per query while filling a page.
const BATCH: usize = 200;
/// Rows read at most for one page: a viewer who may list few sessions
/// among many gets a "more" link rather than a request that scans the
/// whole index.
const SCAN: usize = 5000;

/// The filters, exactly as the URL carries them.
#[derive(Clone, Debug, Default, Deserialize)]
pub(crate) struct Filters {
    #[serde(default)]
    pub(crate) user: String,
    #[serde(default)]
    pub(crate) route: String,
    #[serde(default)]
    pub(crate) login: String,
    #[serde(default)]
    pub(crate) target: String,
    #[serde(default)]
    pub(crate) since: String,
    #[serde(default)]
    pub(crate) until: String,
    #[serde(default)]
    pub(crate) active_at: String,
    #[serde(default)]
    pub(crate) status: String,
    #[serde(default)]
    pub(crate) min_duration: String,
    #[serde(default)]
    pub(crate) max_duration: String,
    #[serde(default)]
    pub(crate) exit: String,
    #[serde(default)]
    pub(crate) text: String,
    #[serde(default)]
    pub(crate) after: String,
}

/// A time a person types: RFC 3339, `YYYY-MM-DDTHH:MM[:SS]` (what a
/// browser's datetime field sends; UTC) or `YYYY-MM-DD` (midnight UTC).
pub(crate) fn parse_time(text: &str) -> Option<u64> {
    let text = text.trim();
    let ts = text
        .parse::<jiff::Timestamp>()
        .ok()
        .or_else(|| {
            text.parse::<jiff::civil::DateTime>()
                .ok()
                .and_then(|dt| dt.to_zoned(jiff::tz::TimeZone::UTC).ok())
                .map(|z| z.timestamp())
        })
        .or_else(|| {
            text.parse::<jiff::civil::Date>()
                .ok()
                .and_then(|d| d.to_zoned(jiff::tz::TimeZone::UTC).ok())
                .map(|z| z.timestamp())
        })?;
    u64::try_from(ts.as_millisecond()).ok()
}

/// Unix milliseconds as `2026-12-03 10:00:00Z`.
pub(crate) fn when(ms: u64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(t)
        .to_string()
        .replace('T', " ")
}

/// A duration as `1h02m03s`, `4m05s` or `6s`.
pub(crate) fn duration(ms: u64) -> String {
    let s = ms / 1000;
    match (s / 3600, s / 60 % 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s:02}s"),
        (h, m, s) => format!("{h}h{m:02}m{s:02}s"),
    }
}

impl Filters {
    /// The index filter, or what is wrong with a field (in words).
    fn parse(&self) -> Result<RecordingFilter, String> {
        let text = |v: &str| (!v.trim().is_empty()).then(|| v.trim().to_owned());
        let time = |name: &str, v: &str| match v.trim() {
            "" => Ok(None),
            v => parse_time(v).map(Some).ok_or_else(|| {
                format!("{name}: {v:?} is not a time; use 2026-12-03T10:00 (UTC) or RFC 3339")
            }),
        };
        let span = |name: &str, v: &str| match v.trim() {
            "" => Ok(None),
            v => humantime::parse_duration(v)
                .map(|d| Some(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)))
                .map_err(|_| format!("{name}: {v:?} is not a duration; use 90s, 5m or 1h")),
        };
        let status = match self.status.trim() {
            "" => None,
            v => Some(
                RecordingStatus::parse(v).ok_or_else(|| format!("status: {v:?} is not a state"))?,
            ),
        };
        let exit_status = match self.exit.trim() {
            "" => None,
            v => Some(
                v.parse::<i64>()
                    .map_err(|_| format!("exit: {v:?} is not a number"))?,
            ),
        };
        let after = match self.after.split_once('.') {
            None if self.after.is_empty() => None,
            Some((ms, id)) if !id.is_empty() => Some(RecordingCursor {
                started_at_ms: ms
                    .parse()
                    .map_err(|_| "the page link is damaged".to_owned())?,
                session_id: id.to_owned(),
            }),
            _ => return Err("the page link is damaged".to_owned()),
        };
        Ok(RecordingFilter {
            identity: text(&self.user),
            route: text(&self.route),
            login: text(&self.login),
            target: text(&self.target),
            since_ms: time("since", &self.since)?,
            until_ms: time("until", &self.until)?,
            active_at_ms: time("active at", &self.active_at)?,
            status,
            min_duration_ms: span("min duration", &self.min_duration)?,
            max_duration_ms: span("max duration", &self.max_duration)?,
            exit_status,
            text: text(&self.text),
            after,
            limit: BATCH,
        })
    }

    /// This view's URL with the page cursor set to `after`.
    fn url_after(&self, after: &RecordingCursor) -> String {
        let mut q = self.clone();
        q.after = format!("{}.{}", after.started_at_ms, after.session_id);
        format!("/sessions?{}", q.query())
    }

    fn query(&self) -> String {
        let pairs = [
            ("user", &self.user),
            ("route", &self.route),
            ("login", &self.login),
            ("target", &self.target),
            ("since", &self.since),
            ("until", &self.until),
            ("active_at", &self.active_at),
            ("status", &self.status),
            ("min_duration", &self.min_duration),
            ("max_duration", &self.max_duration),
            ("exit", &self.exit),
            ("text", &self.text),
            ("after", &self.after),
        ];
        pairs
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| format!("{k}={}", url_encode(v)))
            .collect::<Vec<_>>()
            .join("&")
    }

    fn form(&self) -> String {
        let field = |name: &str, label: &str, value: &str, kind: &str| {
            format!(
                "<label>{label} <input type=\"{kind}\" name=\"{name}\" value=\"{}\"></label>",
                esc(value)
            )
        };
        let mut status =
            String::from("<label>status <select name=\"status\"><option value=\"\">any</option>");
        for s in RecordingStatus::ALL {
            let selected = if self.status == s.as_str() {
                " selected"
            } else {
                ""
            };
            let _ = write!(status, "<option{selected}>{}</option>", s.as_str());
        }
        status += "</select></label>";
        [
            "<form id=\"filters\" class=\"filters\" method=\"get\" action=\"/sessions\">"
                .to_owned(),
            field("user", "user", &self.user, "text"),
            field("route", "route", &self.route, "text"),
            field("login", "login", &self.login, "text"),
            field("target", "target", &self.target, "text"),
            field("since", "since", &self.since, "text"),
            field("until", "until", &self.until, "text"),
            field("active_at", "active at", &self.active_at, "text"),
            status,
            field("min_duration", "min duration", &self.min_duration, "text"),
            field("max_duration", "max duration", &self.max_duration, "text"),
            field("exit", "exit status", &self.exit, "text"),
            field("text", "has text", &self.text, "text"),
            "<button type=\"submit\">Filter</button> <a href=\"/sessions\">clear</a></form>"
                .to_owned(),
        ]
        .join("\n")
    }
}

/// The rows of one page the viewer may list, and the cursor of the next
/// page when there may be more.
pub(crate) async fn visible_page(
    app: &App,
    viewer: &Viewer,
    mut filter: RecordingFilter,
) -> Result<(Vec<RecordingRow>, Option<RecordingCursor>), state::Error> {
    let mut rows = Vec::new();
    let mut scanned = 0;
    loop {
        let batch = app.store.recordings(filter.clone()).await?;
        let full = batch.len() == filter.limit;
        for row in batch {
            scanned += 1;
            let cursor = RecordingCursor::after(&row);
            if viewer.grant(app, &row, ViewerCapability::List) != Grant::No {
                rows.push(row);
                if rows.len() == PAGE {
                    return Ok((rows, Some(cursor)));
                }
            }
            filter.after = Some(cursor);
        }
        if !full {
            return Ok((rows, None));
        }
        if scanned >= SCAN {
            return Ok((rows, filter.after));
        }
    }
}

/// `GET /sessions`.
pub(crate) async fn list(
    State(app): State<Arc<App>>,
    axum::Extension(Peer(peer)): axum::Extension<Peer>,
    headers: HeaderMap,
    Query(filters): Query<Filters>,
) -> Response {
    let here = match filters.query() {
        q if q.is_empty() => "/sessions".to_owned(),
        q => format!("/sessions?{q}"),
    };
    let viewer = match Viewer::of(&app, &headers, peer, &here).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let mut body = filters.form();
    let filter = match filters.parse() {
        Ok(f) => f,
        Err(problem) => {
            body += &format!("\n<p class=\"error\" id=\"problem\">{}</p>", esc(&problem));
            return layout(&viewer, StatusCode::BAD_REQUEST, "Sessions", &body, &[]);
        }
    };
    if !filters.text.trim().is_empty() {
        audit::Event::RecordingSearched {
            viewer: viewer.label().to_owned(),
            web_session: crate::auth::short(&viewer.session.id_hash),
            scope: "list",
            session: String::new(),
            query: filters.text.clone(),
            results: 0,
            peer: viewer.addr.to_string(),
        }
        .emit();
    }
    let (rows, next) = match visible_page(&app, &viewer, filter).await {
        Ok(v) => v,
        Err(e) => return crate::auth::unavailable("state", &e.to_string()),
    };
    let ids: Vec<String> = rows.iter().map(|r| r.start.session_id.clone()).collect();
    let mut viewers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    match app.store.recording_viewers(&ids).await {
        Ok(views) => {
            for v in views {
                viewers.entry(v.session_id).or_default().push(v.viewer);
            }
        }
        Err(e) => return crate::auth::unavailable("state", &e.to_string()),
    }
    body += "\n<table id=\"sessions\"><thead><tr><th>started</th><th>user</th><th>login@route</th>\
             <th>target</th><th>duration</th><th>status</th><th>exit</th><th>viewed by</th><th></th>\
             </tr></thead><tbody>\n";
    for row in &rows {
        let s = &row.start;
        let id = url_encode(&s.session_id);
        let mut links = String::new();
        if viewer.grant(&app, row, ViewerCapability::Play) != Grant::No && row.meta_key.is_some() {
            let _ = write!(links, "<a class=\"play\" href=\"/sessions/{id}\">play</a>");
        }
        if row.status == RecordingStatus::Recording
            && viewer.grant(&app, row, ViewerCapability::WatchLive) != Grant::No
        {
            let _ = write!(
                links,
                " <a class=\"watch\" href=\"/sessions/{id}/watch\">watch live</a>"
            );
        }
        let _ = writeln!(
            body,
            "<tr data-session=\"{}\"><td>{}</td><td class=\"user\">{}</td><td>{}@{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td class=\"viewed\">{}</td><td>{links}</td></tr>",
            esc(&s.session_id),
            esc(&when(s.started_at_ms)),
            esc(&s.identity),
            esc(&s.login),
            esc(&s.route),
            esc(&s.target),
            row.duration_ms.map(duration).unwrap_or_default(),
            esc(row.status.as_str()),
            row.exit_status.map(|e| e.to_string()).unwrap_or_default(),
            esc(&viewers
                .get(&s.session_id)
                .map(|v| v.join(", "))
                .unwrap_or_default()),
        );
    }
    body += "</tbody></table>\n";
    if rows.is_empty() {
        body += "<p id=\"empty\">No sessions you may see match.</p>\n";
    }
    if let Some(next) = next {
        let _ = write!(
            body,
            "<p><a id=\"older\" href=\"{}\">older sessions →</a></p>",
            esc(&filters.url_after(&next))
        );
    }
    layout(&viewer, StatusCode::OK, "Sessions", &body, &[])
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn times_typed_in_the_page_parse_as_utc() {
        assert_eq!(parse_time("1970-01-01T00:00:01Z"), Some(1000));
        assert_eq!(parse_time("1970-01-02"), Some(86_400_000));
        assert_eq!(parse_time("1970-01-01T01:00"), Some(3_600_000));
        assert_eq!(parse_time("yesterday"), None);
    }

    #[test]
    fn filters_parse_or_say_which_field_is_wrong() {
        let f = Filters {
            login: " root ".into(),
            min_duration: "5m".into(),
            exit: "130".into(),
            after: "1000.abc".into(),
            ..Filters::default()
        };
        let got = f.parse().unwrap();
        assert_eq!(got.login.as_deref(), Some("root"));
        assert_eq!(got.min_duration_ms, Some(300_000));
        assert_eq!(got.exit_status, Some(130));
        assert_eq!(
            got.after,
            Some(RecordingCursor {
                started_at_ms: 1000,
                session_id: "abc".into()
            })
        );
        let bad = |f: Filters| f.parse().unwrap_err();
        assert!(
            bad(Filters {
                exit: "x".into(),
                ..Filters::default()
            })
            .starts_with("exit:")
        );
        assert!(
            bad(Filters {
                status: "done".into(),
                ..Filters::default()
            })
            .starts_with("status:")
        );
        assert!(
            bad(Filters {
                max_duration: "long".into(),
                ..Filters::default()
            })
            .starts_with("max duration:")
        );
        assert_eq!(
            bad(Filters {
                after: "junk".into(),
                ..Filters::default()
            }),
            "the page link is damaged"
        );
    }

    #[test]
    fn the_next_page_link_keeps_the_filters_and_escapes_them() {
        let f = Filters {
            user: "a&b@example.com".into(),
            ..Filters::default()
        };
        let next = RecordingCursor {
            started_at_ms: 5,
            session_id: "id".into(),
        };
        assert_eq!(
            f.url_after(&next),
            "/sessions?user=a%26b%40example.com&after=5.id"
        );
    }

    #[test]
    fn durations_read_like_a_clock() {
        assert_eq!(duration(5_400), "5s");
        assert_eq!(duration(245_000), "4m05s");
        assert_eq!(duration(3_723_000), "1h02m03s");
    }
}
