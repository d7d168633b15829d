//! One client connection: authenticate, authorize, then proxy channels.
//!
//! Refusals before authentication (unregistered key, unknown route, denied
//! by policy) are shown to the user as one plain line. SSH has no message
//! field in a userauth failure, so the line travels as the instructions of
//! a keyboard-interactive round without prompts, which OpenSSH prints; the
//! attempt is then rejected. Route details are only revealed after the key
//! has proven an identity, so an anonymous client cannot enumerate routes.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use policy::lang::{Capabilities, Decision, Exec, Identity, IdentityKind, Request, Timestamp};
use russh::keys::{HashAlg, PublicKey};
use russh::server::{
    Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Response, Session, VerifiedPublicKey,
};
use russh::{Channel, ChannelId, ChannelOpenFailure, MethodKind, MethodSet, Pty, Sig};
use tokio::sync::{OwnedSemaphorePermit, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::Error;
use crate::config::{RecordMode, Route};
use crate::forward::{self, Kind};
use crate::oidc::SignedIn;
use crate::proxy::{self, ChannelRecording, ProxiedChannel, UpstreamChannel, WindowSize};
use crate::recording::{self, SessionSlot, Tap};
use crate::server::Shared;
use crate::sessions::LiveSession;
use crate::sign_in::{self, SignIn};
use crate::upstream::DialContext;

/// How long a forwarded channel request may wait for the target's reply.
/// Requests are answered in order, so this only bounds a broken target.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// Channels one client connection may have open at once. Each costs an
/// upstream connection, so this bounds what one client can make us dial.
const MAX_CHANNELS: usize = 64;

/// How long one keyboard-interactive round waits for a pending sign-in
/// before sending the client an empty round to answer. Each round trip
/// lets russh read the socket again, so a client that went away is noticed,
/// and the IdP polling stopped, within this long.
const SIGN_IN_TICK: Duration = Duration::from_secs(1);

/// Beyond the device code's expiry, how long a pending sign-in keeps the
/// connection from the authentication timeout: enough for the final poll.
const SIGN_IN_GRACE: Duration = Duration::from_secs(15);

/// The title of the sign-in prompt.
const SIGN_IN_TITLE: &str = "Sign in to Gatehouse";

/// Where a connection's device-code sign-in stands. A connection starts at
/// most one device authorization (issue 3's abuse limits).
enum SignInStage {
    NotStarted,
    /// Polling the IdP in a spawned task; `instructions` are shown again if
    /// the client restarts keyboard-interactive.
    Pending {
        instructions: String,
        task: JoinHandle<Result<SignedIn, Error>>,
    },
    /// Finished, one way or the other.
    Over,
}

/// What an authenticated connection may do.
struct Authorized {
    identity: Arc<Identity>,
    route: Arc<Route>,
    login: String,
    decision: Decision,
}

/// The russh handler of one client connection.
pub struct Connection {
    shared: Arc<Shared>,
    /// The session id: in every log line, audit event and certificate.
    id: String,
    peer: SocketAddr,
    span: tracing::Span,
    /// Held until authentication succeeds, so unauthenticated connections
    /// are capped separately from authenticated ones.
    unauthenticated: Option<OwnedSemaphorePermit>,
    /// Cancelled when authentication succeeds; stops the auth timer.
    authenticated: CancellationToken,
    /// Cancelled when the client connection ends; stops its channels.
    closed: CancellationToken,
    /// The line to show in the keyboard-interactive round, once known.
    refusal: Option<String>,
    /// The refusal has been shown; every further attempt is rejected.
    refusal_shown: bool,
    /// The first unregistered key offered, to tell the user which key to
    /// register.
    unregistered_key: Option<String>,
    /// With sign-in: the first key the client offered that is not a
    /// registered service key. It is the one that gets bound; the client
    /// is asked to prove it (sign) before anything else happens.
    candidate_key: Option<String>,
    /// The candidate key after the client proved it, with the user name
    /// it was proven under: the binding is made for this key only.
    proven_key: Option<(String, String)>,
    /// Where the device-code sign-in stands.
    sign_in: SignInStage,
    /// Moves the unauthenticated connection's deadline (see
    /// `server::serve_connection`) while a sign-in is pending.
    auth_deadline: watch::Sender<tokio::time::Instant>,
    /// The fingerprint of the key that authenticated, if any.
    key_fingerprint: Option<String>,
    /// The connection's recording, started with its first recorded
    /// channel and sealed when the connection ends.
    recording: SessionSlot,
    /// Ends every channel of the session with the line it carries.
    ender: watch::Sender<Option<String>>,
    authorized: Option<Authorized>,
    /// The session in the live registry, once authenticated: its current
    /// decision is what new channels follow.
    live: Option<Arc<LiveSession>>,
    channels: HashMap<ChannelId, ProxiedChannel>,
    /// Port, agent and X11 forwarding: the remote-forward connection and
    /// the limit on forwarded channels.
    forwards: forward::Forwards,
}

/// How a connection's handler and its accept-loop task talk about the
/// connection's life.
pub(crate) struct Lifecycle {
    /// Cancelled when authentication succeeds; stops the auth timer.
    pub authenticated: CancellationToken,
    /// The unauthenticated connection's deadline.
    pub auth_deadline: watch::Sender<tokio::time::Instant>,
    /// Cancelled when the client connection ends.
    pub closed: CancellationToken,
    /// The connection's recording, sealed by the accept-loop task.
    pub recording: SessionSlot,
}

impl Connection {
    pub(crate) fn new(
        shared: Arc<Shared>,
        id: String,
        peer: SocketAddr,
        span: tracing::Span,
        unauthenticated: OwnedSemaphorePermit,
        lifecycle: Lifecycle,
    ) -> Self {
        let Lifecycle {
            authenticated,
            auth_deadline,
            closed,
            recording,
        } = lifecycle;
        Connection {
            shared,
            id,
            peer,
            span,
            unauthenticated: Some(unauthenticated),
            authenticated,
            closed,
            refusal: None,
            refusal_shown: false,
            unregistered_key: None,
            candidate_key: None,
            proven_key: None,
            sign_in: SignInStage::NotStarted,
            auth_deadline,
            key_fingerprint: None,
            recording,
            ender: watch::Sender::new(None),
            authorized: None,
            live: None,
            channels: HashMap::new(),
            forwards: forward::Forwards::default(),
        }
    }

    fn identity_for(&self, key: &PublicKey) -> Option<Arc<Identity>> {
        let fp = key.fingerprint(HashAlg::Sha256).to_string();
        self.shared.config().keys.get(&fp).cloned()
    }

    /// What authentication answers once a refusal is known: after the user
    /// has seen it, nothing more; before, only the keyboard-interactive
    /// round that shows it.
    fn refused(&self) -> Option<Auth> {
        if self.refusal_shown {
            Some(Self::final_rejection())
        } else if self.refusal.is_some() {
            Some(Self::keyboard_interactive_only())
        } else {
            None
        }
    }

    fn audit_denied(&self, user: &str, identity: &str, key_fingerprint: &str, reason: &str) {
        tracing::info!(
            target: "audit",
            event = "auth.denied",
            session_id = %self.id,
            peer = %self.peer,
            identity,
            key_fingerprint = %key_fingerprint,
            user = %user,
            reason = %reason,
        );
    }

    /// Decides whether `identity` may have what the user name asks for.
    fn authorize(&self, user: &str, identity: &Arc<Identity>) -> Result<Authorized, String> {
        let Some((login, route_name)) = split_user(user) else {
            return Err(no_route_line(user));
        };
        let config = self.shared.config();
        let Some(route) = config.routes.get(route_name) else {
            return Err(format!("gatehouse: unknown route {route_name:?}"));
        };
        if !route.offers(login) {
            return Err(format!(
                "gatehouse: access denied: login {login} is not allowed on route {route_name}"
            ));
        }
        let decision = policy::lang::evaluate(
            &route.policy,
            &Request {
                identity,
                login,
                source: self.peer.ip(),
                now: Timestamp::now(),
                session_start: None,
            },
        );
        if !decision.allowed {
            return Err(format!(
                "gatehouse: access denied: {}",
                denial_reason(&route.name, &decision)
            ));
        }
        Ok(Authorized {
            identity: Arc::clone(identity),
            route: Arc::clone(route),
            login: login.to_owned(),
            decision,
        })
    }

    /// The final rejection after the user has seen the line. It lists only
    /// `publickey`: OpenSSH treats an empty list as "try everything again"
    /// and would repeat the keyboard-interactive round (and the line)
    /// three times, while its keys are already exhausted.
    fn final_rejection() -> Auth {
        Auth::Reject {
            proceed_with_methods: Some(MethodSet::from(&[MethodKind::PublicKey][..])),
            partial_success: false,
        }
    }

    fn keyboard_interactive_only() -> Auth {
        Auth::Reject {
            proceed_with_methods: Some(MethodSet::from(&[MethodKind::KeyboardInteractive][..])),
            partial_success: false,
        }
    }

    /// The decision new channels and requests follow: the live session's,
    /// which re-evaluation keeps current. `None` before authentication.
    fn decision(&self) -> Option<Decision> {
        match (&self.live, &self.authorized) {
            (Some(live), _) => Some(live.decision()),
            (None, Some(auth)) => Some(auth.decision.clone()),
            (None, None) => None,
        }
    }

    /// The capabilities in force for new channels and requests: the
    /// session's current decision's. `None` before authentication.
    fn capabilities(&self) -> Option<Capabilities> {
        self.decision().map(|d| d.capabilities)
    }

    /// How to dial the target for a new channel under the current decision.
    /// `None` before authentication.
    fn current_dial_context(&self) -> Option<DialContext> {
        self.dial_context(&self.decision()?)
    }

    /// How to dial the target for a new channel under `decision`.
    fn dial_context(&self, decision: &Decision) -> Option<DialContext> {
        let auth = self.authorized.as_ref()?;
        let identity = match &self.live {
            Some(live) => live.identity(),
            None => Arc::clone(&auth.identity),
        };
        Some(DialContext {
            route: Arc::clone(&auth.route),
            login: auth.login.clone(),
            identity,
            session_id: self.id.clone(),
            extensions: decision.capabilities.certificate_extensions(),
            force_command: decision.capabilities.force_command().map(str::to_owned),
            cert_ttl: decision.obligations.cert_ttl,
            ca: Arc::clone(&self.shared.ca),
        })
    }

    /// Forwards a channel request to the target and relays the target's
    /// answer. The client connection waits meanwhile; that keeps replies
    /// exact (russh tracks one pending reply per channel) and only happens
    /// for the requests that start a channel.
    async fn forward(
        &mut self,
        id: ChannelId,
        session: &mut Session,
        request: ChannelRequest,
    ) -> Result<(), Error> {
        let Some(ch) = self.channels.get(&id) else {
            session.channel_failure(id)?;
            return Ok(());
        };
        let ready = ch.upstream.clone();
        // None: dialing failed and the channel task has told the client.
        let Some(up) = ready.await else {
            return Ok(());
        };
        if let Err(line) = self.start_channel_recording(id, &request, up.cert_serial) {
            session.extended_data(id, 1, format!("{line}\r\n").into_bytes())?;
            session.channel_failure(id)?;
            return Ok(());
        }
        let reply = up.expect_reply();
        let ok = match request.send(&up).await {
            Ok(()) => matches!(
                tokio::time::timeout(REPLY_TIMEOUT, reply).await,
                Ok(Ok(true))
            ),
            Err(_) => false,
        };
        if ok {
            session.channel_success(id)?;
        } else {
            tracing::debug!(channel = ?id, request = request.name(), "target refused request");
            session.channel_failure(id)?;
        }
        Ok(())
    }

    /// Refuses a request that starts a channel (shell, exec, subsystem)
    /// with a line on its stderr: `gatehouse: WHAT is not allowed on route
    /// ROUTE`. The request is answered with success and the channel then
    /// ends with exit status 1, because OpenSSH quits on a failed request
    /// before it prints what the channel said.
    fn refuse_with_line(
        &self,
        id: ChannelId,
        request: &str,
        what: &str,
        session: &mut Session,
    ) -> Result<(), Error> {
        self.audit_refused(request);
        let line = format!(
            "gatehouse: {what} is not allowed on route {}\r\n",
            self.route_name()
        );
        session.channel_success(id)?;
        session.extended_data(id, 1, line.into_bytes())?;
        session.exit_status_request(id, 1)?;
        session.eof(id)?;
        session.close(id)?;
        Ok(())
    }

    fn refuse_request(
        &self,
        id: ChannelId,
        what: &str,
        session: &mut Session,
    ) -> Result<(), Error> {
        self.audit_refused(what);
        session.channel_failure(id)?;
        Ok(())
    }

    fn audit_refused(&self, request: &str) {
        tracing::info!(
            target: "audit",
            event = "request.refused",
            session_id = %self.id,
            route = %self.route_name(),
            request,
        );
    }

    /// Accepts `identity` if the policy lets it have what `user` asks
    /// for; otherwise remembers the refusal line for the
    /// keyboard-interactive round that shows it.
    fn answer(
        &mut self,
        user: &str,
        identity: Arc<Identity>,
        fingerprint: &str,
        method: &str,
    ) -> Auth {
        match self.admit(user, identity, fingerprint, method) {
            Ok(()) => Auth::Accept,
            Err(line) => {
                self.refusal = Some(line);
                Self::keyboard_interactive_only()
            }
        }
    }

    /// Authorizes `identity` for `user` and, if allowed, makes the
    /// connection authorized: span fields and the `auth.accepted` event.
    fn admit(
        &mut self,
        user: &str,
        identity: Arc<Identity>,
        fingerprint: &str,
        method: &str,
    ) -> Result<(), String> {
        let _entered = self.span.enter();
        match self.authorize(user, &identity) {
            Ok(auth) => {
                self.span.record("identity", identity.label());
                self.span.record("route", auth.route.name.as_str());
                self.span.record("login", auth.login.as_str());
                self.key_fingerprint = (!fingerprint.is_empty()).then(|| fingerprint.to_owned());
                tracing::info!(
                    target: "audit",
                    event = "auth.accepted",
                    session_id = %self.id,
                    peer = %self.peer,
                    identity = identity.label(),
                    identity_kind = kind_name(identity.kind),
                    method,
                    key_fingerprint = %fingerprint,
                    route = %auth.route.name,
                    login = %auth.login,
                    rule = auth.decision.decided_by.rule_name().unwrap_or(""),
                    reason = %auth.decision.reason,
                    next_check = %auth.decision.next_check.map(|t| t.to_string()).unwrap_or_default(),
                );
                self.authorized = Some(auth);
                Ok(())
            }
            Err(line) => {
                self.audit_denied(user, identity.label(), fingerprint, &line);
                Err(line)
            }
        }
    }

    /// A keyboard-interactive round without prompts that shows `line`;
    /// the client's answer ends authentication.
    fn show(&mut self, line: String) -> Auth {
        self.refusal_shown = true;
        let instructions = format!("{line}\n");
        self.refusal = Some(line);
        Auth::Partial {
            name: Cow::Borrowed("Gatehouse"),
            instructions: Cow::Owned(instructions),
            prompts: Cow::Borrowed(&[]),
        }
    }

    /// One keyboard-interactive round of the device-code sign-in: start
    /// it, keep the client waiting in rounds of [`SIGN_IN_TICK`], or
    /// finish it.
    async fn sign_in_round(&mut self, sign_in: &Arc<SignIn>, user: &str, answered: bool) -> Auth {
        match &mut self.sign_in {
            SignInStage::NotStarted => {
                if split_user(user).is_none() {
                    return self.show(no_route_line(user));
                }
                match self.start_sign_in(sign_in).await {
                    Ok(instructions) => prompt(SIGN_IN_TITLE, instructions),
                    Err(line) => {
                        self.sign_in = SignInStage::Over;
                        self.show(line)
                    }
                }
            }
            SignInStage::Pending { instructions, task } => {
                if !answered {
                    // The client started keyboard-interactive again.
                    return prompt(SIGN_IN_TITLE, instructions.clone());
                }
                let joined = match tokio::time::timeout(SIGN_IN_TICK, task).await {
                    Err(_) => return prompt("", String::new()),
                    Ok(joined) => joined,
                };
                self.sign_in = SignInStage::Over;
                let result = joined.unwrap_or_else(|e| {
                    Err(Error::Io(std::io::Error::other(format!(
                        "sign-in task failed: {e}"
                    ))))
                });
                match self.complete_sign_in(sign_in, user, result).await {
                    Ok(()) => Auth::Accept,
                    Err(line) => self.show(line),
                }
            }
            SignInStage::Over => Self::final_rejection(),
        }
    }

    /// Starts a device authorization and its poller. Returns the
    /// instructions to show, or the line that says why it cannot start.
    async fn start_sign_in(&mut self, sign_in: &Arc<SignIn>) -> Result<String, String> {
        let key = self
            .proven_key
            .as_ref()
            .map(|(fp, _)| fp.clone())
            .unwrap_or_default();
        let permit = match sign_in.reserve(self.peer.ip()) {
            Ok(permit) => permit,
            Err(hit) => {
                tracing::warn!(
                    target: "audit",
                    event = "signin.refused",
                    session_id = %self.id,
                    peer = %self.peer,
                    key_fingerprint = %key,
                    limit = hit.setting(),
                );
                return Err(hit.user_line().to_owned());
            }
        };
        let started = async {
            let idp = sign_in.idp().await?;
            let auth = idp.start_device_authorization().await?;
            Ok::<_, Error>((idp, auth))
        };
        let (idp, auth) = match started.await {
            Ok(pair) => pair,
            Err(e) => {
                self.audit_sign_in_failed(sign_in, &key, &e);
                return Err(e.user_line());
            }
        };
        let left = auth
            .expires_at
            .saturating_duration_since(std::time::Instant::now());
        let until = tokio::time::Instant::from_std(auth.expires_at) + SIGN_IN_GRACE;
        self.auth_deadline.send_if_modified(|deadline| {
            let later = until > *deadline;
            if later {
                *deadline = until;
            }
            later
        });
        tracing::info!(
            target: "audit",
            event = "signin.started",
            session_id = %self.id,
            peer = %self.peer,
            key_fingerprint = %key.as_str(),
            issuer = %sign_in.issuer(),
            expires_in_s = left.as_secs(),
        );
        let instructions = sign_in_instructions(
            auth.verification_uri_complete.as_deref(),
            &auth.verification_uri,
            &auth.user_code,
            left,
        );
        // Stops polling as soon as the connection ends. Nobody is left to
        // hear about that then, so the task says it itself.
        let cancel = self.closed.child_token();
        let (id, peer, issuer) = (self.id.clone(), self.peer, sign_in.issuer().to_owned());
        let task = tokio::spawn(
            async move {
                let _permit = permit;
                let result = idp.wait_for_sign_in(&auth, &cancel).await;
                if let Err(e @ Error::SignInCancelled) = &result {
                    tracing::info!(
                        target: "audit",
                        event = "signin.failed",
                        session_id = %id,
                        peer = %peer,
                        key_fingerprint = %key,
                        issuer = %issuer,
                        reason = %e,
                    );
                }
                result
            }
            .instrument(self.span.clone()),
        );
        self.sign_in = SignInStage::Pending {
            instructions: instructions.clone(),
            task,
        };
        Ok(instructions)
    }

    /// Binds a finished sign-in to the proven key and authorizes it.
    async fn complete_sign_in(
        &mut self,
        sign_in: &SignIn,
        user: &str,
        result: Result<SignedIn, Error>,
    ) -> Result<(), String> {
        let key = match &self.proven_key {
            Some((fp, proven_for)) if proven_for == user => Some(fp.clone()),
            _ => None,
        };
        let fingerprint = key.clone().unwrap_or_default();
        let signed_in = match result {
            Ok(signed_in) => signed_in,
            Err(e) => {
                self.audit_sign_in_failed(sign_in, &fingerprint, &e);
                return Err(e.user_line());
            }
        };
        let who = signed_in.email.as_deref().unwrap_or(&signed_in.sub);
        tracing::info!(
            target: "audit",
            event = "signin.completed",
            session_id = %self.id,
            peer = %self.peer,
            identity = who,
            sub = %signed_in.sub,
            issuer = %signed_in.issuer,
            groups = ?signed_in.groups,
            key_fingerprint = %fingerprint,
            refresh_token = signed_in.refresh_token.is_some(),
        );
        let mut binding = None;
        if let Some(fp) = &key {
            match sign_in.bind(fp, &signed_in).await {
                Ok(b) => {
                    tracing::info!(
                        target: "audit",
                        event = "binding.created",
                        session_id = %self.id,
                        identity = who,
                        key_fingerprint = %fp,
                        expires_at = %humantime::format_rfc3339_seconds(b.expires_at),
                    );
                    binding = Some(b);
                }
                Err(e) => tracing::error!(
                    error = %e,
                    "cannot save the login binding; the next connection signs in again"
                ),
            }
        }
        let identity = Arc::new(sign_in::identity_of(&signed_in, binding.as_ref()));
        self.admit(user, identity, &fingerprint, "device_code")
    }

    fn audit_sign_in_failed(&self, sign_in: &SignIn, key: &str, error: &Error) {
        tracing::warn!(
            target: "audit",
            event = "signin.failed",
            session_id = %self.id,
            peer = %self.peer,
            key_fingerprint = %key,
            issuer = %sign_in.issuer(),
            reason = %error,
        );
    }

    /// Starts the connection's recording with its first recorded channel.
    /// Returns the mode the channel runs in: a best-effort route whose
    /// recording cannot start runs unrecorded (and the audit log says so);
    /// a strict one gets the line that refuses the channel.
    fn ensure_recording(&mut self, mode: RecordMode) -> Result<RecordMode, String> {
        if mode == RecordMode::Off {
            return Ok(mode);
        }
        let Some(auth) = &self.authorized else {
            return Ok(RecordMode::Off);
        };
        let mut slot = crate::lock(&self.recording);
        if slot.is_some() {
            return Ok(mode);
        }
        let info = recorder::SessionInfo {
            session_id: self.id.clone(),
            identity: auth.identity.label().to_owned(),
            login: auth.login.clone(),
            route: auth.route.name.clone(),
            target: auth.route.target.clone(),
            client_addr: self.peer.to_string(),
            client_key_fingerprint: self.key_fingerprint.clone(),
            cert_serial: None,
        };
        match self.shared.recorder().start_session(info) {
            Ok(session) => {
                *slot = Some(session);
                drop(slot);
                if mode == RecordMode::Strict {
                    tokio::spawn(
                        recording::watch_strict(
                            Arc::clone(&self.recording),
                            self.shared.config().recording.strict_grace,
                            self.ender.clone(),
                            self.closed.clone(),
                        )
                        .instrument(self.span.clone()),
                    );
                }
                Ok(mode)
            }
            Err(e) => self
                .recording_unavailable(mode, &e.to_string())
                .map(|()| RecordMode::Off),
        }
    }

    /// Starts recording a channel as its shell, exec or subsystem request
    /// arrives. `Err` is the line for a strict route that cannot record it.
    fn start_channel_recording(
        &self,
        id: ChannelId,
        request: &ChannelRequest,
        cert_serial: u64,
    ) -> Result<(), String> {
        let Some(ch) = self.channels.get(&id) else {
            return Ok(());
        };
        if ch.tap.mode() == RecordMode::Off {
            return Ok(());
        }
        let (kind, command) = match request {
            ChannelRequest::Shell => (recorder::ChannelKind::Shell, None),
            ChannelRequest::Exec(cmd) => (
                recorder::ChannelKind::Exec,
                Some(String::from_utf8_lossy(cmd).into_owned()),
            ),
            ChannelRequest::Subsystem(name) => {
                (recorder::ChannelKind::Subsystem, Some(name.clone()))
            }
            _ => return Ok(()),
        };
        let term = match &ch.pty {
            Some((term, size)) => recorder::asciicast::Term {
                cols: u16::try_from(size.cols).unwrap_or(u16::MAX),
                rows: u16::try_from(size.rows).unwrap_or(u16::MAX),
                term_type: Some(term.clone()),
            },
            None => recorder::asciicast::Term {
                cols: 80,
                rows: 24,
                term_type: None,
            },
        };
        let record_input = self.decision().is_some_and(|d| d.obligations.record_input);
        let spec = recorder::ChannelSpec {
            channel: format!("{}", id),
            kind,
            command: command.clone(),
            term,
            record_input,
            cert_serial: Some(cert_serial),
        };
        let opened = match crate::lock(&self.recording).as_ref() {
            Some(session) => session.open_channel(spec).map_err(|e| e.to_string()),
            None => Err("the session's recording did not start".to_owned()),
        };
        match opened {
            Ok(rec) => {
                ch.tap.start(rec, kind, command.as_deref());
                Ok(())
            }
            Err(reason) => self.recording_unavailable(ch.tap.mode(), &reason),
        }
    }

    /// A recording could not start: audited; a strict route gets the line
    /// that refuses it, a best-effort one runs on unrecorded.
    fn recording_unavailable(&self, mode: RecordMode, reason: &str) -> Result<(), String> {
        let route = self.route_name();
        tracing::warn!(
            target: "audit",
            event = "recording.unavailable",
            session_id = %self.id,
            route = %route,
            mode = mode.as_str(),
            reason = %reason,
        );
        match mode {
            RecordMode::Strict => Err(format!(
                "gatehouse: recording is unavailable and route {route} requires recording"
            )),
            _ => Ok(()),
        }
    }

    fn route_name(&self) -> String {
        self.authorized
            .as_ref()
            .map(|a| a.route.name.clone())
            .unwrap_or_default()
    }
}

/// A request that starts or shapes a session channel, forwarded as is.
enum ChannelRequest {
    Pty {
        term: String,
        size: WindowSize,
        modes: Vec<(Pty, u32)>,
    },
    Env {
        name: String,
        value: String,
    },
    Shell,
    Exec(Vec<u8>),
    Subsystem(String),
}

impl ChannelRequest {
    fn name(&self) -> &'static str {
        match self {
            ChannelRequest::Pty { .. } => "pty-req",
            ChannelRequest::Env { .. } => "env",
            ChannelRequest::Shell => "shell",
            ChannelRequest::Exec(_) => "exec",
            ChannelRequest::Subsystem(_) => "subsystem",
        }
    }

    async fn send(&self, up: &UpstreamChannel) -> Result<(), russh::Error> {
        let w = &up.write;
        match self {
            ChannelRequest::Pty { term, size, modes } => {
                w.request_pty(
                    true,
                    term,
                    size.cols,
                    size.rows,
                    size.pix_width,
                    size.pix_height,
                    modes,
                )
                .await
            }
            ChannelRequest::Env { name, value } => {
                w.set_env(true, name.clone(), value.clone()).await
            }
            ChannelRequest::Shell => w.request_shell(true).await,
            ChannelRequest::Exec(command) => w.exec(true, command.clone()).await,
            ChannelRequest::Subsystem(name) => w.request_subsystem(true, name.clone()).await,
        }
    }
}

/// A keyboard-interactive round without prompts.
fn prompt(name: &'static str, instructions: String) -> Auth {
    Auth::Partial {
        name: Cow::Borrowed(name),
        instructions: Cow::Owned(instructions),
        prompts: Cow::Borrowed(&[]),
    }
}

/// What the user reads while signing in (design §1): the link with the
/// code in it, the code to type for those who cannot click, and the
/// expiry.
fn sign_in_instructions(complete: Option<&str>, uri: &str, code: &str, left: Duration) -> String {
    let mut text = match complete {
        Some(link) => format!("  Open {link}\n  or go to {uri} and enter {code}\n"),
        None => format!("  Go to {uri} and enter {code}\n"),
    };
    text.push_str(&format!(
        "  This code expires in {}.\n",
        sign_in::expires_in_words(left)
    ));
    text
}

fn kind_name(kind: IdentityKind) -> &'static str {
    match kind {
        IdentityKind::Service => "service_key",
        IdentityKind::User => "user",
    }
}

/// Why a decision denies, as the user reads it: `route prod-db: outside
/// 09:00–18:00 Europe/Berlin`.
pub(crate) fn denial_reason(route: &str, decision: &Decision) -> String {
    format!("route {route}: {}", decision.reason)
}

fn no_route_line(user: &str) -> String {
    format!("gatehouse: no route in user name {user:?}: connect as ssh LOGIN@ROUTE@GATEWAY")
}

/// Splits `LOGIN@ROUTE`. OpenSSH already split `LOGIN@ROUTE@GATEWAY` at
/// its last `@`; route names cannot contain `@`, so the last one here
/// separates the route.
fn split_user(user: &str) -> Option<(&str, &str)> {
    let (login, route) = user.rsplit_once('@')?;
    (!login.is_empty() && !route.is_empty()).then_some((login, route))
}

impl russh::server::Handler for Connection {
    type Error = Error;

    async fn auth_none(&mut self, user: &str) -> Result<Auth, Self::Error> {
        if split_user(user).is_none() {
            // Nothing secret about a missing route: say so at once.
            self.refusal = Some(no_route_line(user));
            return Ok(Self::keyboard_interactive_only());
        }
        Ok(Auth::reject())
    }

    async fn auth_publickey_offered(
        &mut self,
        _user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        if let Some(answer) = self.refused() {
            return Ok(answer);
        }
        if self.identity_for(offer.public_key).is_some() {
            return Ok(Auth::Accept);
        }
        if self.shared.sign_in().is_some() {
            // The first other key is the one a sign-in binds: ask the
            // client to prove it. Clients offer keys in a stable order, so
            // the same key comes first on the next connection.
            let fp = offer.public_key.fingerprint(HashAlg::Sha256).to_string();
            return Ok(match &self.candidate_key {
                None => {
                    self.candidate_key = Some(fp);
                    Auth::Accept
                }
                Some(c) if *c == fp => Auth::Accept,
                Some(_) => Auth::reject(),
            });
        }
        if self.unregistered_key.is_none() {
            self.unregistered_key = Some(offer.public_key.fingerprint(HashAlg::Sha256).to_string());
        }
        // Let the client try its other keys.
        Ok(Auth::reject())
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        if let Some(answer) = self.refused() {
            return Ok(answer);
        }
        let fingerprint = key.public_key.fingerprint(HashAlg::Sha256).to_string();
        if let Some(identity) = self.identity_for(key.public_key) {
            return Ok(self.answer(user, identity, &fingerprint, "publickey"));
        }
        let Some(sign_in) = self.shared.sign_in().cloned() else {
            return Ok(Auth::reject());
        };
        if self.candidate_key.as_deref() != Some(fingerprint.as_str()) {
            return Ok(Auth::reject());
        }
        match sign_in.live_binding(&fingerprint).await {
            Ok(Some(binding)) => {
                let identity = Arc::new(sign_in::identity_of_binding(&binding));
                return Ok(self.answer(user, identity, &fingerprint, "binding"));
            }
            Ok(None) => {}
            Err(e) => {
                // A broken store must not lock people out: they sign in.
                tracing::error!(error = %e, "cannot look up login binding; asking to sign in");
            }
        }
        // Proven but not bound: partial success, and sign in next.
        self.proven_key = Some((fingerprint, user.to_owned()));
        Ok(Auth::Reject {
            proceed_with_methods: Some(MethodSet::from(&[MethodKind::KeyboardInteractive][..])),
            partial_success: true,
        })
    }

    async fn auth_keyboard_interactive<'a>(
        &'a mut self,
        user: &str,
        _submethods: &str,
        response: Option<Response<'a>>,
    ) -> Result<Auth, Self::Error> {
        if self.refusal_shown {
            // The user has seen the line; end authentication.
            return Ok(Self::final_rejection());
        }
        if let Some(line) = self.refusal.clone() {
            return Ok(self.show(line));
        }
        if let Some(sign_in) = self.shared.sign_in().cloned() {
            return Ok(self.sign_in_round(&sign_in, user, response.is_some()).await);
        }
        let line = match &self.unregistered_key {
            Some(fp) => {
                self.audit_denied(user, "", fp, "key not registered");
                format!(
                    "gatehouse: access denied: key {fp} is not registered; ask an administrator to add it"
                )
            }
            None => {
                self.audit_denied(user, "", "", "no key offered");
                "gatehouse: access denied: offer a registered SSH key (passwords are not accepted)"
                    .to_owned()
            }
        };
        Ok(self.show(line))
    }

    async fn auth_succeeded(&mut self, session: &mut Session) -> Result<(), Self::Error> {
        self.unauthenticated = None;
        self.authenticated.cancel();
        if let Some(auth) = &self.authorized {
            let live = Arc::new(LiveSession::new(
                self.id.clone(),
                self.peer,
                auth.route.name.clone(),
                auth.login.clone(),
                self.key_fingerprint.clone(),
                Arc::clone(&auth.identity),
                auth.decision.clone(),
                self.ender.clone(),
                session.handle(),
            ));
            self.shared.sessions().insert(Arc::clone(&live));
            self.live = Some(live);
        }
        Ok(())
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some((decision, ctx)) = self
            .decision()
            .and_then(|d| self.dial_context(&d).map(|ctx| (d, ctx)))
        else {
            reply
                .reject(ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        };
        if self.channels.len() >= MAX_CHANNELS {
            reply
                .reject(ChannelOpenFailure::Other {
                    code: 4,
                    reason: format!("gatehouse: at most {MAX_CHANNELS} channels per connection"),
                })
                .await;
            return Ok(());
        }
        let mode = decision.obligations.record;
        let id = channel.id();
        let mode = match self.ensure_recording(mode) {
            Ok(mode) => mode,
            Err(line) => {
                reply
                    .reject(ChannelOpenFailure::Other {
                        code: 1,
                        reason: line,
                    })
                    .await;
                return Ok(());
            }
        };
        reply.accept().await;
        let recording = ChannelRecording {
            tap: Tap::new(mode, &self.id),
            ender: self.ender.subscribe(),
            probe: (mode == RecordMode::Strict).then(|| self.shared.recorder().clone()),
        };
        let proxied = proxy::start(
            ctx,
            channel,
            session.handle(),
            recording,
            self.closed.clone(),
            self.span.clone(),
        );
        self.channels.insert(id, proxied);
        Ok(())
    }

    fn adjust_window(&mut self, _channel: ChannelId, _current: u32) -> u32 {
        // Shrink the window while any channel's input is congested; see
        // ProxiedChannel::input_congested. russh calls this each time it
        // tops up a window, so the full window comes back as soon as the
        // congestion clears.
        if self.channels.values().any(ProxiedChannel::input_congested) {
            proxy::CONGESTED_WINDOW
        } else {
            self.shared.window_size()
        }
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.remove(&channel);
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host_to_connect: &str,
        port_to_connect: u32,
        originator_address: &str,
        originator_port: u32,
        reply: ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let route = self.route_name();
        let end =
            self.forwards
                .client_end(session.handle(), &self.id, &route, &self.closed, &self.span);
        // The policy checks the name the client sent, and the target is
        // asked to connect to exactly that name.
        let allowed = match (self.capabilities(), forward::policy_port(port_to_connect)) {
            (Some(caps), Some(port)) => caps
                .port_forward_local
                .destination_allowed(host_to_connect, port),
            _ => false,
        };
        match self.current_dial_context() {
            Some(ctx) if allowed => self.forwards.open_local(
                end,
                ctx,
                channel,
                reply,
                host_to_connect.to_owned(),
                port_to_connect,
                (originator_address.to_owned(), originator_port),
            ),
            _ => {
                end.refused(
                    Kind::Local,
                    &forward::destination(host_to_connect, port_to_connect),
                    &forward::destination(originator_address, originator_port),
                    "not allowed by policy",
                );
                reply
                    .reject(ChannelOpenFailure::Other {
                        code: forward::PROHIBITED,
                        reason: forward::not_allowed_line(host_to_connect, port_to_connect, &route),
                    })
                    .await;
            }
        }
        Ok(())
    }

    async fn tcpip_forward(
        &mut self,
        address: &str,
        port: &mut u32,
        session: &mut Session,
    ) -> Result<bool, Self::Error> {
        let route = self.route_name();
        let end =
            self.forwards
                .client_end(session.handle(), &self.id, &route, &self.closed, &self.span);
        let requested = forward::destination(address, *port);
        // Destinations of a remote forward are where the target listens.
        let allowed = match (self.capabilities(), forward::policy_port(*port)) {
            (Some(caps), Some(p)) => caps.port_forward_remote.destination_allowed(address, p),
            _ => false,
        };
        let ctx = match self.current_dial_context() {
            Some(ctx) if allowed => ctx,
            // OpenSSH prints "Warning: remote port forwarding failed for
            // listen port N"; a global request's failure carries no text.
            _ => {
                end.refused(Kind::Remote, &requested, "", "not allowed by policy");
                return Ok(false);
            }
        };
        match self
            .forwards
            .listen_remote(&end, &ctx, address, *port)
            .await
        {
            Ok(assigned) => {
                *port = assigned;
                tracing::info!(
                    target: "audit",
                    event = "forward.listening",
                    session_id = %self.id,
                    route = %route,
                    kind = "remote",
                    destination = %forward::destination(address, assigned),
                    requested = %requested,
                );
                Ok(true)
            }
            Err(reason) => {
                end.failed(Kind::Remote, &requested, "", &reason);
                Ok(false)
            }
        }
    }

    async fn cancel_tcpip_forward(
        &mut self,
        address: &str,
        port: u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        let cancelled = self.forwards.cancel_remote(address, port).await;
        tracing::info!(
            target: "audit",
            event = "forward.cancelled",
            session_id = %self.id,
            route = %self.route_name(),
            kind = "remote",
            destination = %forward::destination(address, port),
            ok = cancelled,
        );
        Ok(cancelled)
    }

    async fn agent_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<bool, Self::Error> {
        let route = self.route_name();
        if self.capabilities().is_some_and(|c| c.agent) {
            let Some(ready) = self.channels.get(&channel).map(|c| c.upstream.clone()) else {
                return Ok(false);
            };
            // Dialing failed: the channel task has told the client.
            let Some(up) = ready.await else {
                return Ok(false);
            };
            let end = self.forwards.client_end(
                session.handle(),
                &self.id,
                &route,
                &self.closed,
                &self.span,
            );
            // Waiting for the target's answer keeps the request ahead of the
            // shell or exec that follows it, so the target's session sees
            // SSH_AUTH_SOCK.
            let ok = forward::forward_agent(end, &up).await;
            tracing::info!(
                target: "audit",
                event = "agent.forwarded",
                session_id = %self.id,
                route = %route,
                cert_serial = up.cert_serial,
                ok,
            );
            return Ok(ok);
        }
        tracing::info!(
            target: "audit",
            event = "request.refused",
            session_id = %self.id,
            route = %route,
            request = "agent-forwarding",
        );
        // OpenSSH asks for agent forwarding without wanting a reply, so it
        // would never learn of the refusal; tell the user on stderr.
        let line = format!("gatehouse: agent forwarding is not allowed on route {route}\r\n");
        session.extended_data(channel, 1, line.into_bytes())?;
        Ok(false)
    }

    async fn x11_request(
        &mut self,
        channel: ChannelId,
        single_connection: bool,
        x11_auth_protocol: &str,
        x11_auth_cookie: &str,
        x11_screen_number: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if !self.capabilities().is_some_and(|c| c.x11) {
            return self.refuse_request(channel, "x11-forwarding", session);
        }
        let Some(ready) = self.channels.get(&channel).map(|c| c.upstream.clone()) else {
            session.channel_failure(channel)?;
            return Ok(());
        };
        let Some(up) = ready.await else {
            return Ok(());
        };
        let route = self.route_name();
        let end =
            self.forwards
                .client_end(session.handle(), &self.id, &route, &self.closed, &self.span);
        let request = forward::X11Request {
            single_connection,
            protocol: x11_auth_protocol.to_owned(),
            cookie: x11_auth_cookie.to_owned(),
            screen: x11_screen_number,
        };
        let ok = forward::forward_x11(end, &up, request).await;
        tracing::info!(
            target: "audit",
            event = "x11.forwarded",
            session_id = %self.id,
            route = %route,
            cert_serial = up.cert_serial,
            ok,
        );
        if ok {
            session.channel_success(channel)?;
        } else {
            session.channel_failure(channel)?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn pty_request(
        &mut self,
        channel: ChannelId,
        term: &str,
        col_width: u32,
        row_height: u32,
        pix_width: u32,
        pix_height: u32,
        modes: &[(Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let allowed = self.capabilities().is_some_and(|c| c.pty);
        if !allowed {
            return self.refuse_request(channel, "pty", session);
        }
        let size = WindowSize {
            cols: col_width,
            rows: row_height,
            pix_width,
            pix_height,
        };
        if let Some(ch) = self.channels.get_mut(&channel) {
            ch.pty = Some((term.to_owned(), size));
        }
        let request = ChannelRequest::Pty {
            term: term.to_owned(),
            size,
            modes: modes.to_vec(),
        };
        self.forward(channel, session, request).await
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        variable_name: &str,
        variable_value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let request = ChannelRequest::Env {
            name: variable_name.to_owned(),
            value: variable_value.to_owned(),
        };
        self.forward(channel, session, request).await
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if !self.capabilities().is_some_and(|c| c.shell) {
            return self.refuse_with_line(channel, "shell", "a login shell", session);
        }
        self.forward(channel, session, ChannelRequest::Shell).await
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        match self.capabilities().map(|c| c.exec) {
            Some(Exec::Any) => {}
            Some(Exec::Only(command)) => {
                // The certificate's force-command makes sshd run the one
                // allowed command whatever was asked (the request is in
                // SSH_ORIGINAL_COMMAND there), so the request may go on.
                tracing::info!(
                    target: "audit",
                    event = "exec.forced",
                    session_id = %self.id,
                    route = %self.route_name(),
                    requested = %String::from_utf8_lossy(data),
                    forced = %command,
                );
            }
            Some(Exec::Denied) | None => {
                return self.refuse_with_line(channel, "exec", "running commands", session);
            }
        }
        self.forward(channel, session, ChannelRequest::Exec(data.to_vec()))
            .await
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let allowed = match self.capabilities() {
            Some(c) if name == "sftp" => c.sftp,
            // Other subsystems run programs of the target's choosing.
            Some(c) => c.exec == Exec::Any,
            None => false,
        };
        if !allowed {
            let what = format!("the {name} subsystem");
            return self.refuse_with_line(channel, "subsystem", &what, session);
        }
        self.forward(channel, session, ChannelRequest::Subsystem(name.to_owned()))
            .await
    }

    async fn window_change_request(
        &mut self,
        channel: ChannelId,
        col_width: u32,
        row_height: u32,
        pix_width: u32,
        pix_height: u32,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(ch) = self.channels.get(&channel) {
            ch.tap.resize(col_width, row_height);
            ch.window.send_replace(Some(WindowSize {
                cols: col_width,
                rows: row_height,
                pix_width,
                pix_height,
            }));
        }
        Ok(())
    }

    async fn signal(
        &mut self,
        channel: ChannelId,
        signal: Sig,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(ch) = self.channels.get(&channel)
            && ch.signals.try_send(signal).is_err()
        {
            tracing::warn!(channel = ?channel, "signal queue full; signal dropped");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::split_user;

    #[test]
    fn user_names_split_at_the_last_at() {
        assert_eq!(split_user("alice@prod-db"), Some(("alice", "prod-db")));
        assert_eq!(split_user("a@b@prod-db"), Some(("a@b", "prod-db")));
        assert_eq!(split_user("alice"), None);
        assert_eq!(split_user("alice@"), None);
        assert_eq!(split_user("@prod-db"), None);
    }
}
