//! One recorded session: the player page, the data it plays, the find bar
//! and screen queries (from the terminal model), and downloads.
//!
//! Every route looks the session up in the index and asks the access
//! policy first; a session the viewer may not see is "not found", the
//! same answer as one that does not exist.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use policy::lang::ViewerCapability;
use serde::{Deserialize, Serialize};
use state::{RecordingRow, RecordingStatus};

use crate::access::{Grant, Viewer, refused};
use crate::auth::{short, unavailable};
use crate::pages::{esc, layout, message, url_encode};
use crate::recording::Opened;
use crate::sessions::{duration, when};
use crate::{App, Error};
use web_front::Peer;

/// The longest break-glass reason kept, in characters.
pub(crate) const MAX_REASON: usize = 500;

/// The query every route of a session takes.
#[derive(Clone, Debug, Default, Deserialize)]
pub(crate) struct SessionQuery {
    /// The channel (default: the first).
    pub(crate) channel: Option<String>,
    /// A time to open at, in seconds.
    pub(crate) t: Option<f64>,
    /// Text to find and highlight.
    pub(crate) q: Option<String>,
    /// The break-glass reason, when the policy asks for one.
    pub(crate) reason: Option<String>,
    /// A download's format.
    pub(crate) format: Option<String>,
}

impl SessionQuery {
    /// The reason given, trimmed and bounded; empty when none.
    pub(crate) fn reason(&self) -> String {
        self.reason
            .as_deref()
            .unwrap_or_default()
            .trim()
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_REASON)
            .collect()
    }
}

/// A session the viewer may use for `cap`, with its index row.
pub(crate) struct Allowed {
    pub(crate) viewer: Viewer,
    pub(crate) row: RecordingRow,
    pub(crate) reason: String,
}

/// Looks `id` up and checks `cap`: the session and the viewer, or the
/// response to send (sign in, not found, or the break-glass reason form).
pub(crate) async fn allowed(
    app: &App,
    headers: &HeaderMap,
    peer: std::net::SocketAddr,
    id: &str,
    here: &str,
    query: &SessionQuery,
    cap: ViewerCapability,
) -> Result<Allowed, Response> {
    let viewer = Viewer::of(app, headers, peer, here).await?;
    let row = match app.store.recording(id).await {
        Ok(Some((row, _))) => row,
        Ok(None) => return Err(refused()),
        Err(e) => return Err(unavailable("state", &e.to_string())),
    };
    let reason = query.reason();
    match viewer.grant(app, &row, cap) {
        Grant::No => Err(refused()),
        Grant::WithReason if reason.is_empty() => Err(reason_form(&viewer, here, cap)),
        Grant::Yes | Grant::WithReason => Ok(Allowed {
            viewer,
            row,
            reason,
        }),
    }
}

/// The form that asks for a break-glass reason, then comes back to
/// `here` with it.
fn reason_form(viewer: &Viewer, here: &str, cap: ViewerCapability) -> Response {
    let (path, query) = here.split_once('?').unwrap_or((here, ""));
    let mut hidden = String::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == "reason" {
            continue;
        }
        let v = crate::pages::url_decode(v);
        let _ = write!(
            hidden,
            "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
            esc(k),
            esc(&v)
        );
    }
    let body = format!(
        "<p>The access policy lets you {} this session only with a reason, which goes into \
         the audit log.</p>\n<form id=\"reason\" method=\"get\" action=\"{}\">{hidden}\
         <label>Reason <input name=\"reason\" required maxlength=\"{MAX_REASON}\"></label> \
         <button type=\"submit\">Continue</button></form>",
        esc(cap.as_str()),
        esc(path)
    );
    layout(
        viewer,
        StatusCode::FORBIDDEN,
        "A reason is needed",
        &body,
        &[],
    )
}

/// Opens the channel, or says in one line why not.
async fn open(app: &App, id: &str, channel: Option<&str>) -> Result<Arc<Opened>, Response> {
    app.cache
        .open(&app.catalog, app.trusted.as_ref(), id, channel)
        .await
        .map_err(|e| match e {
            Error::NotFound(_) => refused(),
            e => {
                tracing::warn!(session_id = id, error = %e, "cannot open a recording");
                message(
                    StatusCode::BAD_GATEWAY,
                    "Unavailable",
                    "The recording cannot be read from storage right now. Try again in a moment.",
                )
            }
        })
}

fn here(id: &str, tail: &str, q: &SessionQuery) -> String {
    let mut pairs = Vec::new();
    for (k, v) in [
        ("channel", q.channel.clone()),
        ("t", q.t.map(|t| t.to_string())),
        ("q", q.q.clone()),
        ("format", q.format.clone()),
    ] {
        if let Some(v) = v {
            pairs.push(format!("{k}={}", url_encode(&v)));
        }
    }
    let path = format!("/sessions/{}{tail}", url_encode(id));
    if pairs.is_empty() {
        path
    } else {
        format!("{path}?{}", pairs.join("&"))
    }
}

/// `GET /sessions/{id}`: the player page.
pub(crate) async fn page(
    State(app): State<Arc<App>>,
    axum::Extension(Peer(peer)): axum::Extension<Peer>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<SessionQuery>,
) -> Response {
    let here = here(&id, "", &q);
    let ok = match allowed(&app, &headers, peer, &id, &here, &q, ViewerCapability::Play).await {
        Ok(ok) => ok,
        Err(r) => return r,
    };
    if ok.row.meta_key.is_none() {
        if ok.row.status == RecordingStatus::Recording {
            return Redirect::to(&format!("/sessions/{}/watch", url_encode(&id))).into_response();
        }
        return message(
            StatusCode::CONFLICT,
            "Not sealed",
            "This recording is not sealed yet; it can be played once it is.",
        );
    }
    let opened = match open(&app, &id, q.channel.as_deref()).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let meta = &opened.signed.meta;
    let s = &meta.session;
    let reason = ok.reason.clone();
    let with = |extra: &str| {
        let mut u = format!("channel={}", url_encode(&opened.channel));
        if !reason.is_empty() {
            u += &format!("&reason={}", url_encode(&reason));
        }
        if !extra.is_empty() {
            u += "&";
            u += extra;
        }
        u
    };
    let base = format!("/sessions/{}", url_encode(&id));
    let verification = if opened.report.ok {
        format!(
            "<span class=\"ok\" id=\"verified\">verified</span>: signature and hash chain \
             ({} segment{})",
            opened.report.segments_checked,
            if opened.report.segments_checked == 1 {
                ""
            } else {
                "s"
            }
        )
    } else {
        let mut v = String::from("<span class=\"bad\" id=\"verified\">failed</span><ul>");
        for p in &opened.report.problems {
            let _ = write!(v, "<li>{}</li>", esc(p));
        }
        v + "</ul>"
    };
    let channels: Vec<String> = meta
        .channels
        .iter()
        .map(|c| {
            let label = match &c.command {
                Some(cmd) => format!("{} ({} {})", c.channel, c.kind, cmd),
                None => format!("{} ({})", c.channel, c.kind),
            };
            if c.channel == opened.channel {
                format!("<strong>{}</strong>", esc(&label))
            } else {
                let mut u = format!("{base}?channel={}", url_encode(&c.channel));
                if !reason.is_empty() {
                    u += &format!("&reason={}", url_encode(&reason));
                }
                format!("<a href=\"{}\">{}</a>", esc(&u), esc(&label))
            }
        })
        .collect();
    let exit = opened
        .signed
        .meta
        .channels
        .iter()
        .find(|c| c.channel == opened.channel)
        .and_then(|c| c.exit_status)
        .or(meta.exit_status);
    let mut body = String::new();
    let _ = writeln!(
        body,
        "<dl id=\"meta\">\
         <dt>user</dt><dd id=\"identity\">{}</dd>\
         <dt>login@route</dt><dd>{}@{}</dd>\
         <dt>target</dt><dd>{}</dd>\
         <dt>started</dt><dd>{}</dd><dt>ended</dt><dd>{}</dd>\
         <dt>duration</dt><dd>{}</dd>\
         <dt>exit status</dt><dd>{}</dd>\
         <dt>certificate serial</dt><dd>{}</dd>\
         <dt>status</dt><dd>{}</dd>\
         <dt>recording</dt><dd>{verification}</dd>\
         <dt>channels</dt><dd id=\"channels\">{}</dd></dl>",
        esc(&s.identity),
        esc(&s.login),
        esc(&s.route),
        esc(&s.target),
        esc(&when(meta.started_at_ms)),
        esc(&when(meta.ended_at_ms)),
        duration(meta.ended_at_ms.saturating_sub(meta.started_at_ms)),
        exit.map(|e| e.to_string()).unwrap_or_default(),
        s.cert_serial.map(|e| e.to_string()).unwrap_or_default(),
        esc(meta.status.as_str()),
        channels.join(", "),
    );
    if let Some(d) = &opened.damage {
        let _ = write!(
            body,
            "<p class=\"bad\">The recording is damaged at {}; it plays up to there.</p>",
            esc(d)
        );
    }
    let markers: Vec<(f64, &str)> = opened
        .timeline
        .markers()
        .map(|(_, t, label)| (t as f64 / 1e6, label))
        .collect();
    let markers = serde_json::to_string(&markers).unwrap_or_default();
    let _ = write!(
        body,
        "<div id=\"controls\">\
         <label>speed <select id=\"speed\">{}</select></label> \
         <label><input type=\"checkbox\" id=\"idle\"> skip idle (2 s)</label> \
         <form id=\"find\"><input id=\"find-q\" placeholder=\"find in this recording\" value=\"{}\" aria-label=\"Find\"> \
         <button type=\"submit\">find</button> <button type=\"button\" id=\"find-prev\">prev</button> \
         <button type=\"button\" id=\"find-next\">next</button> <span id=\"find-status\"></span></form> \
         <button type=\"button\" id=\"copy\">copy screen text</button></div>\n\
         <div id=\"player\" data-cols=\"{}\" data-rows=\"{}\" data-cast=\"{}\" data-find=\"{}\" data-t=\"{}\" data-q=\"{}\" data-markers=\"{}\"></div>\n\
         <p id=\"downloads\">download: <a href=\"{}\">.cast v3</a> <a href=\"{}\">.cast v2</a> \
         <a href=\"{}\">.txt</a> <a href=\"{}\">signed bundle</a></p>\n",
        ["0.25", "0.5", "1", "2", "4", "8", "16"]
            .iter()
            .map(|s| format!(
                "<option{}>{s}</option>",
                if *s == "1" { " selected" } else { "" }
            ))
            .collect::<String>(),
        esc(q.q.as_deref().unwrap_or_default()),
        opened.timeline.size().0,
        opened.timeline.size().1,
        esc(&format!("{base}/cast?{}", with(""))),
        esc(&format!("{base}/find?{}", with(""))),
        q.t.filter(|t| t.is_finite() && *t >= 0.0)
            .map(|t| t.to_string())
            .unwrap_or_default(),
        esc(q.q.as_deref().unwrap_or_default()),
        esc(&markers),
        esc(&format!("{base}/download?{}", with("format=v3"))),
        esc(&format!("{base}/download?{}", with("format=v2"))),
        esc(&format!("{base}/download?{}", with("format=txt"))),
        esc(&format!("{base}/download?{}", with("format=bundle"))),
    );
    layout(
        &ok.viewer,
        StatusCode::OK,
        &format!("{}@{} · {}", s.login, s.route, s.identity),
        &body,
        &["/assets/player.css", "/assets/player.js", "/assets/app.js"],
    )
}

fn bytes_response(
    data: Vec<u8>,
    content_type: &'static str,
    attachment: Option<String>,
) -> Response {
    let mut response = data.into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Some(name) = attachment
        && let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\""))
    {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    response
}

/// A file name made of the session id's safe characters.
fn file_stem(id: &str, channel: &str) -> String {
    let safe = |s: &str| {
        s.chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect::<String>()
    };
    format!("{}-{}", safe(id), safe(channel))
}

/// `GET /sessions/{id}/cast`: the channel's asciicast v3, for the player.
/// Audited as `recording.viewed` (mode `web`) and noted for "viewed by".
pub(crate) async fn cast(
    State(app): State<Arc<App>>,
    axum::Extension(Peer(peer)): axum::Extension<Peer>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<SessionQuery>,
) -> Response {
    let here = here(&id, "", &q);
    let ok = match allowed(&app, &headers, peer, &id, &here, &q, ViewerCapability::Play).await {
        Ok(ok) => ok,
        Err(r) => return r,
    };
    let opened = match open(&app, &id, q.channel.as_deref()).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let data = match app.catalog.cast_bytes(&id, Some(&opened.channel)).await {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(session_id = id, error = %e, "cannot read a recording");
            return message(
                StatusCode::BAD_GATEWAY,
                "Unavailable",
                "The recording cannot be read right now.",
            );
        }
    };
    let end = opened.timeline.duration_us();
    audit::Event::RecordingViewed {
        session_id: audit::SessionId::new(&id),
        channel: opened.channel.clone(),
        viewer: ok.viewer.label().to_owned(),
        viewer_email: ok.viewer.identity.email.clone().unwrap_or_default(),
        mode: "web",
        ranges: format!("0:00-{}", clock(end)),
        verified: opened.report.ok,
        reason: ok.reason.clone(),
    }
    .emit();
    if let Err(e) = app
        .store
        .recording_viewed(&id, ok.viewer.label(), std::time::SystemTime::now())
        .await
    {
        tracing::warn!(session_id = id, error = %e, "cannot note a view");
    }
    bytes_response(data, "application/x-asciicast", None)
}

/// `m:ss` or `h:mm:ss` of microseconds.
pub(crate) fn clock(us: u64) -> String {
    let s = us / 1_000_000;
    match s / 3600 {
        0 => format!("{}:{:02}", s / 60, s % 60),
        h => format!("{h}:{:02}:{:02}", s / 60 % 60, s % 60),
    }
}

/// `GET /sessions/{id}/download?format=v3|v2|txt|bundle`.
pub(crate) async fn download(
    State(app): State<Arc<App>>,
    axum::Extension(Peer(peer)): axum::Extension<Peer>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<SessionQuery>,
) -> Response {
    let here = here(&id, "/download", &q);
    let ok = match allowed(
        &app,
        &headers,
        peer,
        &id,
        &here,
        &q,
        ViewerCapability::Download,
    )
    .await
    {
        Ok(ok) => ok,
        Err(r) => return r,
    };
    let format: &'static str = match q.format.as_deref().unwrap_or("v3") {
        "v3" => "v3",
        "v2" => "v2",
        "txt" => "txt",
        "bundle" => "bundle",
        _ => {
            return message(
                StatusCode::BAD_REQUEST,
                "Unknown format",
                "Download as v3, v2, txt or bundle.",
            );
        }
    };
    let opened = match open(&app, &id, q.channel.as_deref()).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let stem = file_stem(&id, &opened.channel);
    let made = match format {
        "bundle" => {
            let mut out = Vec::new();
            app.catalog.bundle(&id, &mut out).await.map(|_| {
                (
                    out,
                    "application/x-tar",
                    format!("{}.tar", file_stem(&id, "bundle")),
                )
            })
        }
        "v2" => app
            .catalog
            .export(&id, Some(&opened.channel), recorder::ExportFormat::V2)
            .await
            .map(|d| (d, "application/x-asciicast", format!("{stem}.v2.cast"))),
        "txt" => Ok((
            replay_text(&opened).into_bytes(),
            "text/plain; charset=utf-8",
            format!("{stem}.txt"),
        )),
        _ => app
            .catalog
            .cast_bytes(&id, Some(&opened.channel))
            .await
            .map(|d| (d, "application/x-asciicast", format!("{stem}.cast"))),
    };
    let (data, content_type, name) = match made {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(session_id = id, error = %e, "cannot make a download");
            return message(
                StatusCode::BAD_GATEWAY,
                "Unavailable",
                "The recording cannot be read right now.",
            );
        }
    };
    audit::Event::RecordingDownloaded {
        session_id: audit::SessionId::new(&id),
        channel: opened.channel.clone(),
        viewer: ok.viewer.label().to_owned(),
        web_session: short(&ok.viewer.session.id_hash),
        format,
        bytes: data.len() as u64,
        reason: ok.reason.clone(),
        peer: ok.viewer.addr.to_string(),
    }
    .emit();
    bytes_response(data, content_type, Some(name))
}

/// The text that appeared on screen, one line per line with its time.
fn replay_text(opened: &Opened) -> String {
    let mut out = String::new();
    opened.index.text.for_each(|_, line| {
        let _ = writeln!(
            out,
            "[{}]{} {}",
            clock(line.time_us),
            if line.alternate { " (alt)" } else { "" },
            line.text
        );
    });
    out
}

/// One find-bar hit.
#[derive(Serialize)]
struct FindHit {
    /// Seconds at which the line showed the text.
    time: f64,
    /// The line.
    line: String,
    /// Byte range of the match in `line`.
    start: usize,
    end: usize,
    /// Whether it was on the alternate screen.
    alternate: bool,
}

/// The most hits a find returns.
const MAX_HITS: usize = 1000;

/// `GET /sessions/{id}/find?q=`: where the text appeared in this
/// recording (plain text; case-insensitive unless it has a capital), from
/// the terminal model. Audited as `recording.searched` (scope `session`).
pub(crate) async fn find(
    State(app): State<Arc<App>>,
    axum::Extension(Peer(peer)): axum::Extension<Peer>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<SessionQuery>,
) -> Response {
    let here = here(&id, "", &q);
    let ok = match allowed(&app, &headers, peer, &id, &here, &q, ViewerCapability::Play).await {
        Ok(ok) => ok,
        Err(r) => return r,
    };
    let text = q.q.clone().unwrap_or_default();
    if !app.limits.search.allow(&ok.viewer.session.id_hash) {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            "too many searches; wait a moment\n",
        )
            .into_response();
    }
    let opened = match open(&app, &id, q.channel.as_deref()).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let hits: Vec<FindHit> = match terminal::Query::plain(&text) {
        Ok(query) if !text.is_empty() => query
            .all(&opened.index)
            .into_iter()
            .take(MAX_HITS)
            .filter_map(|h| {
                let line = opened.index.text.get(h.line)?;
                Some(FindHit {
                    time: h.time_us as f64 / 1e6,
                    line: line.text,
                    start: h.start,
                    end: h.end,
                    alternate: h.alternate,
                })
            })
            .collect(),
        _ => Vec::new(),
    };
    audit::Event::RecordingSearched {
        viewer: ok.viewer.label().to_owned(),
        web_session: short(&ok.viewer.session.id_hash),
        scope: "session",
        session: id.clone(),
        query: text,
        results: hits.len() as u64,
        peer: ok.viewer.addr.to_string(),
    }
    .emit();
    axum::Json(hits).into_response()
}

/// The screen at a time, from the terminal model.
#[derive(Serialize)]
struct ScreenAt {
    /// Seconds.
    time: f64,
    cols: u16,
    rows: u16,
    alternate: bool,
    /// Each row's text, trailing spaces removed.
    lines: Vec<String>,
}

/// `GET /sessions/{id}/screen?t=`: the screen at `t` seconds (every step
/// at or before it applied), from the keyframe nearest before it.
pub(crate) async fn screen(
    State(app): State<Arc<App>>,
    axum::Extension(Peer(peer)): axum::Extension<Peer>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<SessionQuery>,
) -> Response {
    let here = here(&id, "", &q);
    if let Err(r) = allowed(&app, &headers, peer, &id, &here, &q, ViewerCapability::Play).await {
        return r;
    }
    let opened = match open(&app, &id, q.channel.as_deref()).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let t = q.t.filter(|t| t.is_finite() && *t >= 0.0).unwrap_or(0.0);
    let us = (t * 1e6) as u64;
    let steps = opened.timeline.steps_by(us);
    match opened.timeline.screen_at(&opened.index, steps) {
        Ok(screen) => {
            let (cols, rows) = screen.size();
            axum::Json(ScreenAt {
                time: t,
                cols,
                rows,
                alternate: screen.is_alternate(),
                lines: screen
                    .lines()
                    .into_iter()
                    .map(|l| l.trim_end().to_owned())
                    .collect(),
            })
            .into_response()
        }
        Err(e) => {
            tracing::warn!(session_id = id, error = %e, "cannot rebuild a screen");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot rebuild the screen\n",
            )
                .into_response()
        }
    }
}
