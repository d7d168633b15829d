//! Gatehouse's audit events: one typed [`Event`] enum with stable names,
//! levels and field names, and the [`SessionId`] every session event carries.
//!
//! Log shippers parse these events, so their shape is an interface: every
//! event goes to the `audit` tracing target with an `event` field holding its
//! name (`session.ended`, `recording.lost`, ...) and the fields listed in
//! [`CATALOGUE`]. The README's event catalogue is checked against
//! [`CATALOGUE`] by a test, so the two cannot drift apart.
//!
//! **Invariant:** fields carry identifiers, fingerprints, serials, counts and
//! reasons, never secrets or terminal bytes. No event has a field for a
//! token, a key or a cookie.
//!
//! How a value renders in the text log format follows its type:
//! - `&'static str` fields are closed vocabularies (`cause`, `method`,
//!   `status`) and are quoted: `cause="killed"`;
//! - `String` fields are open text (identities, routes, reasons) and are
//!   written as they are: `route=prod-db`;
//! - numbers and booleans are plain: `cert_serial=17`, `ok=true`.
//!
//! In the JSON format every field is a JSON value of the same name.

use std::fmt;

/// A session's id: a UUIDv7 in simple form, so ids sort by start time. It
/// names the session in every audit event, log line, certificate key id and
/// recording.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(String);

impl SessionId {
    /// Wraps an id that was made elsewhere (read from the state database, a
    /// recording or the command line).
    pub fn new(id: impl Into<String>) -> Self {
        SessionId(id.into())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for SessionId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// How a field's value is handed to `tracing`; see the crate docs for the
/// rendering rules. Implemented for the field types events use.
pub trait FieldValue {
    /// The `tracing` value.
    type Value<'a>: tracing::Value
    where
        Self: 'a;
    /// This field's value.
    fn value(&self) -> Self::Value<'_>;
}

impl FieldValue for &'static str {
    type Value<'a> = &'a str;
    fn value(&self) -> &str {
        self
    }
}

impl FieldValue for String {
    type Value<'a> = tracing::field::DisplayValue<&'a str>;
    fn value(&self) -> Self::Value<'_> {
        tracing::field::display(self.as_str())
    }
}

impl FieldValue for Option<String> {
    type Value<'a> = tracing::field::DisplayValue<&'a str>;
    fn value(&self) -> Self::Value<'_> {
        tracing::field::display(self.as_deref().unwrap_or(""))
    }
}

impl FieldValue for SessionId {
    type Value<'a> = tracing::field::DisplayValue<&'a str>;
    fn value(&self) -> Self::Value<'_> {
        tracing::field::display(self.as_str())
    }
}

impl FieldValue for Vec<String> {
    type Value<'a> = tracing::field::DebugValue<&'a Vec<String>>;
    fn value(&self) -> Self::Value<'_> {
        tracing::field::debug(self)
    }
}

macro_rules! plain_values {
    ($($t:ty),*) => {$(
        impl FieldValue for $t {
            type Value<'a> = $t;
            fn value(&self) -> $t {
                *self
            }
        }
    )*};
}
plain_values!(u64, i64, bool);

/// One event of the catalogue, as documentation and tests see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventSpec {
    /// The stable name in the `event` field.
    pub name: &'static str,
    /// `info`, `warn` or `error`.
    pub level: &'static str,
    /// The field names, in order, after `event`.
    pub fields: &'static [&'static str],
    /// What it means.
    pub doc: &'static str,
}

macro_rules! events {
    ($(
        $(#[doc = $doc:literal])+
        $variant:ident = $name:literal, $level:ident {
            $( $field:ident : $ty:ty ),* $(,)?
        }
    )*) => {
        /// Every audit event Gatehouse writes. Build one and call
        /// [`Event::emit`]; see [`CATALOGUE`] for names, levels and fields.
        #[derive(Debug, Clone, PartialEq)]
        #[allow(missing_docs)]
        pub enum Event {
            $( $(#[doc = $doc])+ $variant { $( $field: $ty ),* }, )*
        }

        impl Event {
            /// The stable name written in the `event` field.
            pub fn name(&self) -> &'static str {
                match self { $( Event::$variant { .. } => $name, )* }
            }

            /// The level it is logged at.
            pub fn level(&self) -> tracing::Level {
                match self { $( Event::$variant { .. } => tracing::Level::$level, )* }
            }

            /// Writes the event to the `audit` target.
            pub fn emit(&self) {
                match self {
                    $( Event::$variant { $( $field ),* } => {
                        tracing::event!(
                            target: "audit",
                            tracing::Level::$level,
                            event = $name,
                            $( $field = FieldValue::value($field) ),*
                        );
                    } )*
                }
            }
        }

        /// Every event: name, level, fields and meaning, in one list.
        pub const CATALOGUE: &[EventSpec] = &[
            $( EventSpec {
                name: $name,
                level: level_name(stringify!($level)),
                fields: &[ $( stringify!($field) ),* ],
                doc: concat!($( $doc ),+),
            }, )*
        ];
    };
}

const fn level_name(level: &'static str) -> &'static str {
    match level.as_bytes() {
        b"INFO" => "info",
        b"WARN" => "warn",
        b"ERROR" => "error",
        _ => "debug",
    }
}

events! {
    /// Connections were refused at accept, counted over a few seconds and
    /// written once per `limit`: the setting that refused them
    /// (`max_connections`, `max_unauthenticated_per_source`) or `penalty`
    /// for a penalized source. `peer` is the last one refused, `sources`
    /// how many netblocks were refused.
    ConnectionRefused = "connection.refused", WARN {
        peer: String, limit: &'static str, count: u64, sources: u64,
    }
    /// Unauthenticated connections were closed by the gateway, counted over
    /// a few seconds: `reason` is `shed` (the unauthenticated pool was full
    /// and a newcomer took the slot), `handshake_timeout` (no key exchange
    /// within `handshake_timeout`) or `preauth_bytes` (more than
    /// `max_preauth_bytes` before authenticating).
    ConnectionDropped = "connection.dropped", WARN {
        peer: String, reason: &'static str, count: u64, sources: u64,
    }
    /// A source netblock is refused until `until_s` seconds from now after
    /// repeated failures; `cause` is the failure that tipped it over
    /// (`authfail`, `noauth`, `grace_exceeded`). Written once per penalty,
    /// not per refused connection.
    SourcePenalized = "source.penalized", WARN {
        source: String, cause: &'static str, until_s: u64,
    }
    /// A client did not authenticate within `auth_timeout`.
    AuthTimeout = "auth.timeout", INFO { session_id: SessionId, peer: String }
    /// A client authenticated and the policy allowed the route; `method` is
    /// `publickey`, `binding`, `device_code` or `sign_in_link`.
    AuthAccepted = "auth.accepted", INFO {
        session_id: SessionId, peer: String, identity: String, identity_kind: &'static str,
        method: &'static str, key_fingerprint: String, route: String, login: String,
        rule: String, reason: String, next_check: String,
    }
    /// A client was refused before login; `reason` is the line it saw.
    AuthDenied = "auth.denied", INFO {
        session_id: SessionId, peer: String, identity: String, key_fingerprint: String,
        user: String, reason: String,
    }
    /// The state database failed (locked, disk full, unreadable) while a
    /// client logged in, so the login was refused: without it the gateway
    /// sees no revocations or kill requests. `operation` is what failed.
    StateUnavailable = "state.unavailable", ERROR {
        session_id: SessionId, peer: String, operation: &'static str, error: String,
    }
    /// A device-code sign-in was not started because a sign-in limit
    /// (`limit`) was reached.
    SigninRefused = "signin.refused", WARN {
        session_id: SessionId, peer: String, key_fingerprint: String, limit: &'static str,
    }
    /// A device-code sign-in was started; the code expires in `expires_in_s`.
    SigninStarted = "signin.started", INFO {
        session_id: SessionId, peer: String, key_fingerprint: String, issuer: String,
        expires_in_s: u64,
    }
    /// A sign-in failed: denied, expired, cancelled, or the IdP failed.
    SigninFailed = "signin.failed", WARN {
        session_id: SessionId, peer: String, key_fingerprint: String, issuer: String,
        reason: String,
    }
    /// A sign-in completed and its ID token was verified.
    SigninCompleted = "signin.completed", INFO {
        session_id: SessionId, peer: String, identity: String, sub: String, issuer: String,
        groups: Vec<String>, key_fingerprint: String, refresh_token: bool,
    }
    /// A live session's sign-in was renewed at the IdP for `reauth_every`.
    SigninRefreshed = "signin.refreshed", INFO { session_id: SessionId, identity: String, route: String }
    /// Renewing a live session's sign-in failed; the session ends.
    SigninRefreshFailed = "signin.refresh_failed", WARN { session_id: SessionId, route: String, reason: String }
    /// An SSH sign-in link was shown in place of a device code (the IdP
    /// has no device grant, or `idp.ssh_sign_in: link`). `link` names it
    /// (a prefix of its stored hash, never the URL's token).
    SigninLinkIssued = "signin.link_issued", INFO {
        session_id: SessionId, peer: String, key_fingerprint: String, link: String,
        expires_in_s: u64,
    }
    /// A signed-in browser approved an SSH sign-in link: `identity` will
    /// be bound to the SSH client's key. `peer` is the browser's address.
    SigninLinkApproved = "signin.link_approved", INFO {
        session_id: SessionId, link: String, identity: String, web_session: String, peer: String,
    }
    /// A sign-in link was opened or posted but cannot be approved:
    /// `reason` is `used` (replayed), `closed` (the SSH client left),
    /// `expired`, `unknown`, or `csrf`. `session_id` is empty for an
    /// unknown link.
    SigninLinkRefused = "signin.link_refused", WARN {
        session_id: SessionId, link: String, reason: &'static str, web_session: String,
        peer: String,
    }
    /// The identity provider could not be discovered.
    IdpUnavailable = "idp.unavailable", WARN { issuer: String, error: String }
    /// A sign-in was bound to the client key until `expires_at`.
    BindingCreated = "binding.created", INFO {
        session_id: SessionId, identity: String, key_fingerprint: String, expires_at: String,
    }
    /// An administrator revoked a login binding (`selector` says which).
    BindingRevoked = "binding.revoked", INFO {
        fingerprint: String, identity: String, selector: String, revision: u64,
    }
    /// A live session was re-checked and is still allowed, with other
    /// capabilities; new channels follow the new decision.
    SessionNarrowed = "session.narrowed", INFO {
        session_id: SessionId, route: String, rule: String, extensions: String,
    }
    /// A live session was ended by the gateway. `cause` is `policy`,
    /// `reauth`, `revoked`, `killed` or `recording`; `reason` is the line
    /// the user saw.
    SessionEnded = "session.ended", INFO {
        session_id: SessionId, peer: String, identity: String, route: String, login: String,
        cause: &'static str, rule: String, reason: String,
    }
    /// An authenticated connection closed.
    SessionClosed = "session.closed", INFO { session_id: SessionId, peer: String, duration_ms: u64 }
    /// A kill request for a session was answered by the gateway holding it.
    SessionKillAnswered = "session.kill_answered", INFO {
        session_id: SessionId, request_id: i64, outcome: &'static str,
    }
    /// The gateway logged into the target with a fresh certificate.
    TargetConnected = "target.connected", INFO {
        session_id: SessionId, route: String, target_addr: String, login: String,
        cert_serial: u64, cert_key_id: String, elapsed_ms: u64,
    }
    /// A direct-access certificate was issued for the client's own key
    /// (`ssh cert@GATEWAY`, issue 16). `principals` are `LOGIN@ROUTE`;
    /// `valid_before` is RFC 3339; `ttl_limit` says what set the lifetime
    /// (`rule`, `sign_in` or `time_window`).
    CertIssued = "cert.issued", INFO {
        session_id: SessionId, identity: String, key_fingerprint: String, serial: u64,
        principals: Vec<String>, valid_before: String, ttl_limit: &'static str,
        extensions: String, rules: String,
    }
    /// A direct-access certificate was refused: `rule` is the deny rule
    /// (empty when no allow rule matched), `reason` what the user read.
    CertRefused = "cert.refused", INFO {
        session_id: SessionId, identity: String, key_fingerprint: String, rule: String,
        reason: String,
    }
    /// Dialing or logging into the target failed; `user_line` is what the
    /// user saw, `detail` why.
    TargetError = "target.error", WARN {
        session_id: SessionId, route: String, login: String, side: &'static str,
        user_line: String, detail: String,
    }
    /// A channel request (`request`) was refused by the policy.
    RequestRefused = "request.refused", INFO { session_id: SessionId, route: String, request: &'static str }
    /// An exec request ran the policy's one allowed command instead.
    ExecForced = "exec.forced", INFO { session_id: SessionId, route: String, requested: String, forced: String }
    /// A session channel closed, with its exit status and byte counts.
    ChannelClosed = "channel.closed", INFO {
        session_id: SessionId, route: String, login: String, cert_serial: u64,
        exit_status: i64, exit_signal: String, bytes_to_target: u64, bytes_to_client: u64,
        duration_ms: u64, ended_by: &'static str,
    }
    /// A client kept sending past the hard cap while not reading its
    /// output; its channel was closed.
    ChannelOverrun = "channel.overrun", WARN { session_id: SessionId, route: String, limit_bytes: u64 }
    /// A port forward was refused by the policy or a limit.
    ForwardRefused = "forward.refused", INFO {
        session_id: SessionId, route: String, kind: &'static str, destination: String,
        originator: String, reason: String,
    }
    /// A port forward could not be set up.
    ForwardFailed = "forward.failed", WARN {
        session_id: SessionId, route: String, kind: &'static str, destination: String,
        originator: String, reason: String,
    }
    /// A forwarded channel opened.
    ForwardOpened = "forward.opened", INFO {
        session_id: SessionId, route: String, kind: &'static str, destination: String,
        originator: String,
    }
    /// A forwarded channel closed, with byte counts.
    ForwardClosed = "forward.closed", INFO {
        session_id: SessionId, route: String, kind: &'static str, destination: String,
        originator: String, bytes_to_target: u64, bytes_to_client: u64, duration_ms: u64,
        ended_by: &'static str,
    }
    /// The target listens for a remote forward.
    ForwardListening = "forward.listening", INFO {
        session_id: SessionId, route: String, kind: &'static str, destination: String,
        requested: String,
    }
    /// A remote forward was cancelled.
    ForwardCancelled = "forward.cancelled", INFO {
        session_id: SessionId, route: String, kind: &'static str, destination: String, ok: bool,
    }
    /// Agent forwarding was requested on the target.
    AgentForwarded = "agent.forwarded", INFO { session_id: SessionId, route: String, cert_serial: u64, ok: bool }
    /// X11 forwarding was requested on the target.
    X11Forwarded = "x11.forwarded", INFO { session_id: SessionId, route: String, cert_serial: u64, ok: bool }
    /// A session's recording started.
    RecordingStarted = "recording.started", INFO { session_id: SessionId, status: &'static str }
    /// A recording could not start; `mode` says whether the route refuses
    /// (`strict`) or runs unrecorded (`best_effort`).
    RecordingUnavailable = "recording.unavailable", WARN {
        session_id: SessionId, route: String, mode: &'static str, reason: String,
    }
    /// A strict route refused a channel because storage did not answer.
    RecordingRefused = "recording.refused", WARN { session_id: SessionId, route: String, reason: String }
    /// A channel's recording stopped after an error.
    RecordingStopped = "recording.stopped", WARN { session_id: SessionId, mode: &'static str, reason: String }
    /// A strict session's recording could no longer be stored; the session
    /// is ended with `cause = "recording"`.
    RecordingLost = "recording.lost", WARN { session_id: SessionId, mode: &'static str, reason: String }
    /// The spool reached `spool_max_bytes`; the channel's recording stopped.
    RecordingSpoolFull = "recording.spool_full", WARN {
        session_id: SessionId, channel: String, status: &'static str, reason: String,
    }
    /// Writing the spool failed; the channel's recording stopped.
    RecordingSpoolFailed = "recording.spool_failed", WARN {
        session_id: SessionId, channel: String, status: &'static str, reason: String,
    }
    /// Uploading a segment failed; the spool keeps it and it is retried.
    RecordingUploadFailed = "recording.upload_failed", WARN {
        session_id: SessionId, status: &'static str, reason: String,
    }
    /// Uploads work again after failures.
    RecordingUploadResumed = "recording.upload_resumed", INFO { session_id: SessionId, status: &'static str }
    /// A recording was sealed: sealed objects and signed meta.json stored.
    RecordingSealed = "recording.sealed", INFO { session_id: SessionId, status: &'static str, reason: String }
    /// A recording left by an earlier process was sealed as interrupted.
    RecordingInterrupted = "recording.interrupted", INFO { session_id: SessionId, status: &'static str, reason: String }
    /// A recording could not be completed; see `reason`.
    RecordingFailed = "recording.failed", ERROR { session_id: SessionId, status: &'static str, reason: String }
    /// Storage did not answer while a recording was sealed: the spool,
    /// which holds all of it, is kept and sealed once storage answers.
    RecordingSealDeferred = "recording.seal_deferred", WARN { session_id: SessionId, status: &'static str, reason: String }
    /// A spool left by an earlier process is being recovered.
    RecordingRecovering = "recording.recovering", INFO { session_id: SessionId, status: &'static str }
    /// `gatehouse recordings reindex` rebuilt the index from storage.
    RecordingReindexed = "recording.reindexed", INFO { sessions: u64 }
    /// Someone replayed or exported a recording (`gatehouse replay`, or
    /// the web player). `viewer` is the local user who ran it (the signed-in
    /// viewer in the web app), `viewer_email` what they gave with `--as`
    /// (the viewer's email in the web app; empty if nothing), `mode` is
    /// `play`, `follow` (a live session from its latest output), `export`
    /// or `web`, `ranges` the recording times shown (`m:ss-m:ss`,
    /// comma-separated; the web player is sent the whole recording),
    /// `verified` whether the recording passed verification (false only
    /// with `--force`), and `reason` the break-glass reason when the access
    /// policy asks for one.
    RecordingViewed = "recording.viewed", INFO {
        session_id: SessionId, channel: String, viewer: String, viewer_email: String,
        mode: &'static str, ranges: String, verified: bool, reason: String
    }
    /// A viewer searched recordings in the web app: `scope` is `all` (every
    /// recording they may search) or `session` (the find bar of one
    /// recording, named by `session`); `query` is what they typed (audited
    /// here, never logged with its results), `results` how many hits they
    /// were shown.
    RecordingSearched = "recording.searched", INFO {
        viewer: String, web_session: String, scope: &'static str, session: String,
        query: String, results: u64, peer: String,
    }
    /// A viewer downloaded a recording from the web app: `format` is `v3`,
    /// `v2`, `txt` or `bundle`; `reason` is the break-glass reason when the
    /// policy asks for one.
    RecordingDownloaded = "recording.downloaded", INFO {
        session_id: SessionId, channel: String, viewer: String, web_session: String,
        format: &'static str, bytes: u64, reason: String, peer: String,
    }
    /// A viewer started watching a live session in the web app.
    SessionWatched = "session.watched", INFO {
        session_id: SessionId, channel: String, viewer: String, web_session: String,
        reason: String, peer: String,
    }
    /// A viewer asked, from the web app, for a live session to be ended;
    /// the gateway holding it ends it (`session.ended`, `cause="killed"`)
    /// and answers (`session.kill_answered`).
    SessionKillRequested = "session.kill_requested", INFO {
        session_id: SessionId, viewer: String, web_session: String, reason: String,
        request_id: i64, peer: String,
    }
    /// A browser signed in to the web app. `web_session` names the browser
    /// session (a prefix of its stored hash, never the cookie); `peer` is
    /// the client address (from `X-Forwarded-For` only via a trusted proxy).
    WebSignin = "web.signin", INFO {
        web_session: String, identity: String, sub: String, issuer: String, groups: Vec<String>,
        peer: String,
    }
    /// A browser sign-in failed: denied at the IdP, a callback that does
    /// not match a sign-in this browser started, or the IdP failed.
    WebSigninFailed = "web.signin_failed", WARN { peer: String, reason: String }
    /// A browser session ended: `cause` is `signout`.
    WebSignout = "web.signout", INFO {
        web_session: String, identity: String, cause: &'static str, peer: String,
    }
    /// The HTTP proxy let a request through (`rule` allowed it). Written
    /// at debug level: one per request. `path` never has the query.
    HttpRequest = "http.request", DEBUG {
        route: String, method: String, path: String, identity: String, web_session: String,
        rule: String, peer: String,
    }
    /// The HTTP proxy's policy refused a request: `rule` (empty when no
    /// rule allowed it) and `reason` say why.
    HttpDenied = "http.denied", INFO {
        route: String, method: String, path: String, identity: String, web_session: String,
        rule: String, reason: String, peer: String,
    }
    /// A browser signed in to an HTTP route's host (the web app's session
    /// handed off with a one-time code).
    HttpSignin = "http.signin", INFO {
        route: String, identity: String, web_session: String, peer: String,
    }
    /// A hand-off to an HTTP route's host was refused: a code that is
    /// unknown, used, expired, for another host or another browser, or
    /// whose web app session ended.
    HttpSigninFailed = "http.signin_failed", WARN { route: String, reason: String, peer: String }
    /// The proxy could not get an answer from an upstream (`error`); the
    /// browser got a 502 or 504 page.
    HttpUpstreamFailed = "http.upstream_failed", WARN {
        route: String, upstream: String, method: String, path: String, error: String,
        peer: String,
    }
    /// An upgraded connection (a WebSocket) through the proxy was closed
    /// by the proxy: `cause` is `signed_out` (or revoked: the browser
    /// session ended), `denied` (a policy reload) or `idle`.
    HttpUpgradeClosed = "http.upgrade_closed", INFO {
        route: String, identity: String, web_session: String, cause: &'static str,
        duration_ms: u64,
    }
    /// A changed configuration was rejected; the old one stays in force.
    /// `detail` lists every problem with file:line:col.
    ConfigRejected = "config.rejected", ERROR { trigger: &'static str, problems: u64, detail: String }
    /// A changed configuration was put in force.
    ConfigReloaded = "config.reloaded", INFO {
        trigger: &'static str, routes: u64, keys: u64, live_sessions: u64,
    }
}

impl Event {
    /// The session the event concerns, when it concerns one.
    pub fn session_id(&self) -> Option<&SessionId> {
        match self {
            Event::AuthTimeout { session_id, .. }
            | Event::AuthAccepted { session_id, .. }
            | Event::AuthDenied { session_id, .. }
            | Event::StateUnavailable { session_id, .. }
            | Event::SigninRefused { session_id, .. }
            | Event::SigninStarted { session_id, .. }
            | Event::SigninFailed { session_id, .. }
            | Event::SigninCompleted { session_id, .. }
            | Event::SigninRefreshed { session_id, .. }
            | Event::SigninRefreshFailed { session_id, .. }
            | Event::BindingCreated { session_id, .. }
            | Event::SessionNarrowed { session_id, .. }
            | Event::SessionEnded { session_id, .. }
            | Event::SessionClosed { session_id, .. }
            | Event::SessionKillAnswered { session_id, .. }
            | Event::TargetConnected { session_id, .. }
            | Event::CertIssued { session_id, .. }
            | Event::CertRefused { session_id, .. }
            | Event::TargetError { session_id, .. }
            | Event::RequestRefused { session_id, .. }
            | Event::ExecForced { session_id, .. }
            | Event::ChannelClosed { session_id, .. }
            | Event::ChannelOverrun { session_id, .. }
            | Event::ForwardRefused { session_id, .. }
            | Event::ForwardFailed { session_id, .. }
            | Event::ForwardOpened { session_id, .. }
            | Event::ForwardClosed { session_id, .. }
            | Event::ForwardListening { session_id, .. }
            | Event::ForwardCancelled { session_id, .. }
            | Event::AgentForwarded { session_id, .. }
            | Event::X11Forwarded { session_id, .. }
            | Event::RecordingStarted { session_id, .. }
            | Event::RecordingUnavailable { session_id, .. }
            | Event::RecordingRefused { session_id, .. }
            | Event::RecordingStopped { session_id, .. }
            | Event::RecordingLost { session_id, .. }
            | Event::RecordingSpoolFull { session_id, .. }
            | Event::RecordingSpoolFailed { session_id, .. }
            | Event::RecordingUploadFailed { session_id, .. }
            | Event::RecordingUploadResumed { session_id, .. }
            | Event::RecordingSealed { session_id, .. }
            | Event::RecordingInterrupted { session_id, .. }
            | Event::RecordingFailed { session_id, .. }
            | Event::RecordingSealDeferred { session_id, .. }
            | Event::RecordingRecovering { session_id, .. }
            | Event::RecordingViewed { session_id, .. }
            | Event::RecordingDownloaded { session_id, .. }
            | Event::SessionWatched { session_id, .. }
            | Event::SessionKillRequested { session_id, .. }
            | Event::SigninLinkIssued { session_id, .. }
            | Event::SigninLinkApproved { session_id, .. }
            | Event::SigninLinkRefused { session_id, .. } => Some(session_id),
            Event::ConnectionRefused { .. }
            | Event::ConnectionDropped { .. }
            | Event::SourcePenalized { .. }
            | Event::IdpUnavailable { .. }
            | Event::BindingRevoked { .. }
            | Event::RecordingReindexed { .. }
            | Event::RecordingSearched { .. }
            | Event::WebSignin { .. }
            | Event::WebSigninFailed { .. }
            | Event::WebSignout { .. }
            | Event::HttpRequest { .. }
            | Event::HttpDenied { .. }
            | Event::HttpSignin { .. }
            | Event::HttpSigninFailed { .. }
            | Event::HttpUpstreamFailed { .. }
            | Event::HttpUpgradeClosed { .. }
            | Event::ConfigRejected { .. }
            | Event::ConfigReloaded { .. } => None,
        }
    }
}

/// Converts a count for an event field.
pub fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_well_formed() {
        let mut names: Vec<_> = CATALOGUE.iter().map(|e| e.name).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len(), "duplicate event names");
        for e in CATALOGUE {
            assert!(
                e.name.bytes().all(|b| b.is_ascii_lowercase()
                    || b == b'.'
                    || b == b'_'
                    || b.is_ascii_digit()),
                "{}",
                e.name
            );
            assert!(e.name.contains('.'), "{}", e.name);
            assert!(
                ["debug", "info", "warn", "error"].contains(&e.level),
                "{}",
                e.name
            );
            assert!(!e.doc.trim().is_empty(), "{}", e.name);
        }
    }

    #[test]
    fn session_events_carry_the_session_id() {
        // An event whose fields name a session_id must report it, and the
        // other way round: the two lists are kept by hand in session_id().
        for spec in CATALOGUE {
            let has_field = spec.fields.contains(&"session_id");
            let concerns_session = !matches!(
                spec.name,
                "connection.refused"
                    | "connection.dropped"
                    | "source.penalized"
                    | "idp.unavailable"
                    | "binding.revoked"
                    | "recording.reindexed"
                    // A search across every recording the viewer may
                    // search; a find bar inside one names it in `session`.
                    | "recording.searched"
                    // Browser sessions, named by their own web_session.
                    | "web.signin"
                    | "web.signin_failed"
                    | "web.signout"
                    // HTTP requests name a route and a browser session.
                    | "http.request"
                    | "http.denied"
                    | "http.signin"
                    | "http.signin_failed"
                    | "http.upstream_failed"
                    | "http.upgrade_closed"
                    | "config.rejected"
                    | "config.reloaded"
            );
            assert_eq!(has_field, concerns_session, "{}", spec.name);
        }
        let e = Event::RecordingLost {
            session_id: SessionId::new("abc"),
            mode: "strict",
            reason: "gone".into(),
        };
        assert_eq!(e.session_id().map(SessionId::as_str), Some("abc"));
        assert_eq!(e.name(), "recording.lost");
        assert_eq!(e.level(), tracing::Level::WARN);
    }

    #[test]
    fn catalogue_fields_match_what_emit_writes() {
        use std::sync::{Arc, Mutex};
        use tracing::field::{Field, Visit};

        #[derive(Default)]
        struct Names(Vec<String>);
        impl Visit for Names {
            fn record_debug(&mut self, field: &Field, _: &dyn fmt::Debug) {
                self.0.push(field.name().to_owned());
            }
        }
        struct Capture(Arc<Mutex<Vec<Vec<String>>>>);
        impl tracing::Subscriber for Capture {
            fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
                true
            }
            fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
                tracing::span::Id::from_u64(1)
            }
            fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
            fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
            fn event(&self, event: &tracing::Event<'_>) {
                assert_eq!(event.metadata().target(), "audit");
                let mut names = Names::default();
                event.record(&mut names);
                self.0
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(names.0);
            }
            fn enter(&self, _: &tracing::span::Id) {}
            fn exit(&self, _: &tracing::span::Id) {}
        }
        let seen = Arc::new(Mutex::new(Vec::new()));
        let event = Event::SessionEnded {
            session_id: SessionId::new("s1"),
            peer: "127.0.0.1:1".into(),
            identity: "alice".into(),
            route: "db".into(),
            login: "root".into(),
            cause: "recording",
            rule: String::new(),
            reason: "line".into(),
        };
        tracing::subscriber::with_default(Capture(Arc::clone(&seen)), || event.emit());
        let seen = seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let spec = CATALOGUE
            .iter()
            .find(|s| s.name == "session.ended")
            .copied();
        let mut expected = vec!["event".to_owned()];
        expected.extend(
            spec.map(|s| s.fields.to_vec())
                .unwrap_or_default()
                .into_iter()
                .map(str::to_owned),
        );
        assert_eq!(seen, vec![expected]);
    }
}
