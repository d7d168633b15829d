//! Live sessions: the list of sessions in progress (from the state
//! database, so across gateways), watching one (a screen snapshot, then
//! its output as Server-Sent Events in the protocol of asciinema-player's
//! `eventsource` driver), and ending one through the kill path.
//!
//! One feed follows each watched channel ([`recorder::Tail`]: this
//! machine's spool file when it has the session, else the uploaded
//! segments) and keeps the current screen; every watcher of the channel
//! subscribes to it, so a hundred watchers cost one reader and one screen.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant, SystemTime};

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use policy::lang::ViewerCapability;
use recorder::asciicast::Event as CastEvent;
use recorder::{Catalog, Tail};
use serde::{Deserialize, Serialize};
use state::{KillQueued, RecordingStatus};
use terminal::Screen;
use tokio::sync::broadcast;

use crate::App;
use crate::access::{Grant, Viewer, refused};
use crate::auth::{short, unavailable};
use crate::pages::{esc, layout, message, url_encode};
use crate::player::{SessionQuery, allowed};
use crate::sessions::when;
use web_front::Peer;

/// Messages a feed may queue for a slow watcher before it is resent the
/// screen instead.
const QUEUE: usize = 1024;
/// A feed nobody watches stops after this long.
const IDLE: Duration = Duration::from_secs(30);
/// How often a feed reads this machine's spool.
const SPOOL_EVERY: Duration = Duration::from_millis(200);
/// How long to wait for a channel's first bytes.
const FIRST_WAIT: Duration = Duration::from_secs(15);

/// What a watcher is sent, before SSE framing.
#[derive(Clone, Debug)]
enum Msg {
    /// JSON for a `message` event.
    Data(Arc<str>),
    /// The session ended: the `done` event.
    Done,
}

/// The followed state of one channel.
struct FeedState {
    screen: Option<Screen>,
    time_us: u64,
    ended: Option<String>,
}

/// One followed channel.
struct Feed {
    tx: broadcast::Sender<Msg>,
    state: Mutex<FeedState>,
}

/// Every feed of this process, by session and channel.
#[derive(Default)]
pub(crate) struct Hub {
    feeds: Mutex<HashMap<(String, String), Weak<Feed>>>,
}

/// Where feeds read from.
#[derive(Clone)]
pub(crate) struct LiveSource {
    /// This machine's spool directory (where `gatehouse serve` records).
    pub(crate) spool_dir: Option<PathBuf>,
    /// How often a feed looks for new output.
    pub(crate) every: Duration,
}

/// The JSON a watcher starts from: the screen as escape sequences, at the
/// stream's time.
#[derive(Serialize)]
struct Reset<'a> {
    cols: u16,
    rows: u16,
    time: f64,
    init: &'a str,
}

fn reset_json(screen: &Screen, time_us: u64) -> Arc<str> {
    let snap = screen.snapshot();
    serde_json::to_string(&Reset {
        cols: snap.cols,
        rows: snap.rows,
        time: time_us as f64 / 1e6,
        init: &snap.dump,
    })
    .unwrap_or_default()
    .into()
}

impl Hub {
    /// The feed of a channel, started if nobody watches it yet.
    fn feed(
        &self,
        catalog: Arc<Catalog>,
        source: &LiveSource,
        session_id: &str,
        channel: &str,
        prefix: &str,
    ) -> Arc<Feed> {
        let mut feeds = self.feeds.lock().unwrap_or_else(PoisonError::into_inner);
        feeds.retain(|_, f| f.strong_count() > 0);
        let key = (session_id.to_owned(), channel.to_owned());
        if let Some(feed) = feeds.get(&key).and_then(Weak::upgrade) {
            return feed;
        }
        let (tx, _) = broadcast::channel(QUEUE);
        let feed = Arc::new(Feed {
            tx,
            state: Mutex::new(FeedState {
                screen: None,
                time_us: 0,
                ended: None,
            }),
        });
        feeds.insert(key, Arc::downgrade(&feed));
        let tail = Tail::new(session_id, channel, prefix, source.spool_dir.clone());
        tokio::spawn(follow(
            Arc::clone(&feed),
            catalog,
            tail,
            source.every,
            session_id.to_owned(),
        ));
        feed
    }
}

/// Follows one channel into its feed until the session ends or nobody has
/// watched for [`IDLE`].
async fn follow(
    feed: Arc<Feed>,
    catalog: Arc<Catalog>,
    mut tail: Tail,
    every: Duration,
    id: String,
) {
    let started = Instant::now();
    let mut unwatched_since: Option<Instant> = None;
    let mut failing = false;
    let mut end_marker: Option<String> = None;
    loop {
        match tail.poll(&catalog).await {
            Ok(polled) => {
                failing = false;
                let mut state = feed.state.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(h) = &polled.header
                    && state.screen.is_none()
                {
                    match Screen::new(h.term.cols, h.term.rows, 0) {
                        Ok(screen) => {
                            let _ = feed.tx.send(Msg::Data(reset_json(&screen, 0)));
                            state.screen = Some(screen);
                        }
                        Err(e) => {
                            tracing::warn!(session_id = id, error = %e, "a live channel has a bad size");
                            state.ended = Some("the recording cannot be shown".to_owned());
                            let _ = feed.tx.send(Msg::Done);
                            return;
                        }
                    }
                }
                for e in polled.events {
                    let t = e.time_us as f64 / 1e6;
                    state.time_us = e.time_us;
                    if let Some(why) = recorder::tail::end_marker(&e.event) {
                        end_marker = Some(why.to_owned());
                    }
                    let Some(screen) = state.screen.as_mut() else {
                        continue;
                    };
                    let json = match &e.event {
                        CastEvent::Output(text) => {
                            screen.feed(text);
                            serde_json::to_string(&(t, "o", text))
                        }
                        CastEvent::Resize { cols, rows } => {
                            screen.resize(*cols, *rows);
                            serde_json::to_string(&(t, "r", format!("{cols}x{rows}")))
                        }
                        _ => continue,
                    };
                    if let Ok(json) = json {
                        let _ = feed.tx.send(Msg::Data(json.into()));
                    }
                }
                if let Some(ended) = polled.ended {
                    let mut why = end_marker
                        .clone()
                        .or(ended.reason)
                        .unwrap_or_else(|| "the session ended".to_owned());
                    if ended.status != recorder::Status::Sealed {
                        let _ = write!(why, " (recording {})", ended.status.as_str());
                    }
                    state.ended = Some(why);
                    let _ = feed.tx.send(Msg::Done);
                    return;
                }
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(session_id = id, error = %e, "following a live session failed; retrying");
                    failing = true;
                }
                let mut state = feed.state.lock().unwrap_or_else(PoisonError::into_inner);
                if state.screen.is_none() && started.elapsed() > FIRST_WAIT {
                    state.ended = Some("the session recorded nothing on this channel".to_owned());
                    let _ = feed.tx.send(Msg::Done);
                    return;
                }
            }
        }
        if feed.tx.receiver_count() == 0 {
            let since = *unwatched_since.get_or_insert_with(Instant::now);
            if since.elapsed() > IDLE {
                return;
            }
        } else {
            unwatched_since = None;
        }
        // This machine's spool is a file read away: looked at often, so a
        // watcher here sees output well within a second. Segments elsewhere
        // arrive once per upload, looked for at `every`.
        let wait = if tail.source() == recorder::tail::Source::Spool {
            SPOOL_EVERY.min(every)
        } else {
            every
        };
        tokio::time::sleep(wait).await;
    }
}

/// `GET /live`: sessions in progress the viewer may watch.
pub(crate) async fn list(
    State(app): State<Arc<App>>,
    axum::Extension(Peer(peer)): axum::Extension<Peer>,
    headers: HeaderMap,
) -> Response {
    let viewer = match Viewer::of(&app, &headers, peer, "/live").await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let live = match app.store.live_sessions().await {
        Ok(l) => l,
        Err(e) => return unavailable("state", &e.to_string()),
    };
    let mut body = String::from(
        "<table id=\"live\"><thead><tr><th>started</th><th>user</th><th>login@route</th>\
         <th>gateway</th><th></th></tr></thead><tbody>\n",
    );
    let mut shown = 0;
    for s in live {
        // The index row has the login; the live row names the gateway.
        let row = match app.store.recording(&s.session_id).await {
            Ok(Some((row, _))) => row,
            Ok(None) => continue,
            Err(e) => return unavailable("state", &e.to_string()),
        };
        if viewer.grant(&app, &row, ViewerCapability::WatchLive) == Grant::No {
            continue;
        }
        shown += 1;
        let id = url_encode(&s.session_id);
        let _ = writeln!(
            body,
            "<tr data-session=\"{}\"><td>{}</td><td class=\"user\">{}</td><td>{}@{}</td><td>{}</td>\
             <td><a class=\"watch\" href=\"/sessions/{id}/watch\">watch</a></td></tr>",
            esc(&s.session_id),
            esc(&when(row.start.started_at_ms)),
            esc(&row.start.identity),
            esc(&row.start.login),
            esc(&row.start.route),
            esc(&s.gateway_id),
        );
    }
    body += "</tbody></table>\n";
    if shown == 0 {
        body += "<p id=\"empty\">No live sessions you may watch.</p>\n";
    }
    layout(&viewer, StatusCode::OK, "Live sessions", &body, &[])
}

/// The first channel of a live session (or the one asked for).
async fn live_channel(app: &App, id: &str, asked: Option<&str>) -> Option<String> {
    let (_, channels) = app.store.recording(id).await.ok()??;
    match asked {
        Some(c) => channels
            .iter()
            .any(|ch| ch.channel == c)
            .then(|| c.to_owned()),
        None => channels.first().map(|c| c.channel.clone()),
    }
}

/// `GET /sessions/{id}/watch`: the live player page.
pub(crate) async fn watch(
    State(app): State<Arc<App>>,
    axum::Extension(Peer(peer)): axum::Extension<Peer>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<SessionQuery>,
) -> Response {
    let here = format!("/sessions/{}/watch", url_encode(&id));
    let ok = match allowed(
        &app,
        &headers,
        peer,
        &id,
        &here,
        &q,
        ViewerCapability::WatchLive,
    )
    .await
    {
        Ok(ok) => ok,
        Err(r) => return r,
    };
    let Some(channel) = live_channel(&app, &id, q.channel.as_deref()).await else {
        return message(
            StatusCode::CONFLICT,
            "Nothing to watch yet",
            "This session has no recorded channel yet. Reload in a moment.",
        );
    };
    let s = &ok.row.start;
    let base = format!("/sessions/{}", url_encode(&id));
    let mut extra = format!("channel={}", url_encode(&channel));
    if !ok.reason.is_empty() {
        extra += &format!("&reason={}", url_encode(&ok.reason));
    }
    let mut body = format!(
        "<dl id=\"meta\"><dt>user</dt><dd id=\"identity\">{}</dd><dt>login@route</dt><dd>{}@{}</dd>\
         <dt>target</dt><dd>{}</dd><dt>started</dt><dd>{}</dd>\
         <dt>state</dt><dd id=\"live-state\">live</dd></dl>\n\
         <div id=\"player\" data-live=\"{}\" data-status=\"{}\"></div>\n",
        esc(&s.identity),
        esc(&s.login),
        esc(&s.route),
        esc(&s.target),
        esc(&when(s.started_at_ms)),
        esc(&format!("{base}/live?{extra}")),
        esc(&format!("{base}/status")),
    );
    if ok.viewer.grant(&app, &ok.row, ViewerCapability::EndSession) != Grant::No {
        let _ = writeln!(
            body,
            "<form id=\"end\" method=\"post\" action=\"{base}/end\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <label>Reason <input name=\"reason\" required maxlength=\"{}\"></label> \
             <button type=\"submit\">End this session</button></form>",
            esc(&ok.viewer.session.csrf),
            crate::player::MAX_REASON,
        );
    }
    audit::Event::SessionWatched {
        session_id: audit::SessionId::new(&id),
        channel: channel.clone(),
        viewer: ok.viewer.label().to_owned(),
        web_session: short(&ok.viewer.session.id_hash),
        reason: ok.reason.clone(),
        peer: ok.viewer.addr.to_string(),
    }
    .emit();
    if let Err(e) = app
        .store
        .recording_viewed(&id, ok.viewer.label(), SystemTime::now())
        .await
    {
        tracing::warn!(session_id = id, error = %e, "cannot note a view");
    }
    layout(
        &ok.viewer,
        StatusCode::OK,
        &format!("Live: {}@{} · {}", s.login, s.route, s.identity),
        &body,
        &["/assets/player.css", "/assets/player.js", "/assets/app.js"],
    )
}

/// `GET /sessions/{id}/live`: the channel's screen, then its output, as
/// Server-Sent Events; a `done` event when the session ends.
pub(crate) async fn events(
    State(app): State<Arc<App>>,
    axum::Extension(Peer(peer)): axum::Extension<Peer>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<SessionQuery>,
) -> Response {
    let here = format!("/sessions/{}/watch", url_encode(&id));
    let ok = match allowed(
        &app,
        &headers,
        peer,
        &id,
        &here,
        &q,
        ViewerCapability::WatchLive,
    )
    .await
    {
        Ok(ok) => ok,
        Err(r) => return r,
    };
    let Some(channel) = live_channel(&app, &id, q.channel.as_deref()).await else {
        return refused();
    };
    let feed = app.live.feed(
        Arc::clone(&app.catalog),
        &app.live_source,
        &id,
        &channel,
        &ok.row.start.prefix,
    );
    // Subscribe and read the screen under the feed's lock: the follower
    // sends while holding it, so nothing falls between the two.
    let (first, rx, ended) = {
        let state = feed.state.lock().unwrap_or_else(PoisonError::into_inner);
        let first = state.screen.as_ref().map(|s| reset_json(s, state.time_us));
        (first, feed.tx.subscribe(), state.ended.is_some())
    };
    Sse::new(stream(feed, first, rx, ended))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

fn stream(
    feed: Arc<Feed>,
    first: Option<Arc<str>>,
    rx: broadcast::Receiver<Msg>,
    ended: bool,
) -> impl Stream<Item = Result<Event, Infallible>> {
    struct S {
        feed: Arc<Feed>,
        first: Option<Arc<str>>,
        rx: broadcast::Receiver<Msg>,
        done: bool,
        ended: bool,
    }
    let s = S {
        feed,
        first,
        rx,
        done: false,
        ended,
    };
    futures::stream::unfold(s, |mut s| async move {
        if s.done {
            return None;
        }
        if let Some(first) = s.first.take() {
            return Some((Ok(Event::default().data(&*first)), s));
        }
        if s.ended {
            s.done = true;
            return Some((Ok(Event::default().event("done").data("{}")), s));
        }
        loop {
            match s.rx.recv().await {
                Ok(Msg::Data(json)) => return Some((Ok(Event::default().data(&*json)), s)),
                Ok(Msg::Done) | Err(broadcast::error::RecvError::Closed) => {
                    s.done = true;
                    return Some((Ok(Event::default().event("done").data("{}")), s));
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    // Too slow: start again from the screen as it is now.
                    let state = s.feed.state.lock().unwrap_or_else(PoisonError::into_inner);
                    if let Some(screen) = &state.screen {
                        let json = reset_json(screen, state.time_us);
                        s.rx = s.feed.tx.subscribe();
                        drop(state);
                        return Some((Ok(Event::default().data(&*json)), s));
                    }
                }
            }
        }
    })
}

/// What `GET /sessions/{id}/status` answers.
#[derive(Serialize)]
struct Status {
    /// `live`, or the recording's state once it ended.
    state: String,
    /// Why it ended, in words.
    ended: Option<String>,
}

/// `GET /sessions/{id}/status`: whether a watched session still runs and,
/// once it ended, why (from the feed, else the index).
pub(crate) async fn status(
    State(app): State<Arc<App>>,
    axum::Extension(Peer(peer)): axum::Extension<Peer>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<SessionQuery>,
) -> Response {
    let here = format!("/sessions/{}/watch", url_encode(&id));
    let ok = match allowed(
        &app,
        &headers,
        peer,
        &id,
        &here,
        &q,
        ViewerCapability::WatchLive,
    )
    .await
    {
        Ok(ok) => ok,
        Err(r) => return r,
    };
    let from_feed = {
        let feeds = app
            .live
            .feeds
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        feeds
            .iter()
            .filter(|((s, _), _)| *s == id)
            .filter_map(|(_, f)| f.upgrade())
            .find_map(|f| {
                f.state
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .ended
                    .clone()
            })
    };
    let row = &ok.row;
    let live = row.status == RecordingStatus::Recording && from_feed.is_none();
    // Once no feed remembers the end (nobody watched it end here), the
    // sealed recording's own end marker says why.
    let from_feed = match from_feed {
        None if !live && row.status != RecordingStatus::Recording => {
            end_marker(&app, &id, q.channel.as_deref()).await
        }
        other => other,
    };
    axum::Json(Status {
        state: if live {
            "live".to_owned()
        } else {
            row.status.as_str().to_owned()
        },
        ended: if live {
            None
        } else {
            from_feed
                .or(row.reason.clone())
                .or(Some("the session ended".to_owned()))
        },
    })
    .into_response()
}

/// The last `gatehouse.ended` marker of a sealed channel: the line its
/// user saw when the gateway ended the session. `None` when it ended
/// otherwise (the client left, the target closed) or cannot be read.
async fn end_marker(app: &App, id: &str, channel: Option<&str>) -> Option<String> {
    let opened = app
        .cache
        .open(&app.catalog, app.trusted.as_ref(), id, channel)
        .await
        .ok()?;
    opened
        .timeline
        .markers()
        .rev()
        .find_map(|(_, _, label)| recorder::tail::end_reason(label).map(str::to_owned))
}

#[derive(Deserialize)]
pub(crate) struct EndForm {
    csrf: Option<String>,
    reason: Option<String>,
}

/// `POST /sessions/{id}/end`: asks the gateway holding the session to end
/// it (the kill path of `gatehouse sessions kill`), with the viewer's
/// reason; waits a few seconds for the answer.
pub(crate) async fn end(
    State(app): State<Arc<App>>,
    axum::Extension(Peer(peer)): axum::Extension<Peer>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<EndForm>,
) -> Response {
    let here = format!("/sessions/{}/watch", url_encode(&id));
    let q = SessionQuery::default();
    let ok = match allowed(
        &app,
        &headers,
        peer,
        &id,
        &here,
        &q,
        ViewerCapability::EndSession,
    )
    .await
    {
        Ok(ok) => ok,
        Err(r) => return r,
    };
    let csrf_ok = form
        .csrf
        .as_deref()
        .is_some_and(|c| identity::constant_time_eq(c, &ok.viewer.session.csrf));
    if !csrf_ok {
        return message(
            StatusCode::FORBIDDEN,
            "Refused",
            "The form was not sent by this site (the CSRF check failed).",
        );
    }
    let reason = SessionQuery {
        reason: form.reason,
        ..SessionQuery::default()
    }
    .reason();
    if reason.is_empty() {
        return message(
            StatusCode::BAD_REQUEST,
            "A reason is needed",
            "Say why the session is ended.",
        );
    }
    let said = format!("ended by {} from the web app: {reason}", ok.viewer.label());
    let queued = match app.store.request_kill(&id, &said, SystemTime::now()).await {
        Ok(q) => q,
        Err(e) => return unavailable("state", &e.to_string()),
    };
    let request_id = match queued {
        KillQueued::Queued { id: request, .. } => request,
        KillQueued::NotLive => {
            return message(
                StatusCode::CONFLICT,
                "Not live",
                "The session is no longer live.",
            );
        }
    };
    audit::Event::SessionKillRequested {
        session_id: audit::SessionId::new(&id),
        viewer: ok.viewer.label().to_owned(),
        web_session: short(&ok.viewer.session.id_hash),
        reason: reason.clone(),
        request_id,
        peer: ok.viewer.addr.to_string(),
    }
    .emit();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(outcome)) = app.store.kill_outcome(request_id).await {
            return message(
                StatusCode::OK,
                "Session ended",
                &format!("The gateway answered: {}.", outcome.as_str()),
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    message(
        StatusCode::ACCEPTED,
        "Requested",
        "The gateway holding the session has not answered yet; it ends the session when it reads the request.",
    )
}
