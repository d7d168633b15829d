//! Authenticate: registered service keys, login bindings, and the
//! sign-in rounds in keyboard-interactive: a device code (issue 3) or,
//! for identity providers without the device grant, a sign-in link on the
//! web listener (issue 14).
//!
//! Refusals before authentication (unregistered key, unknown route, denied
//! by policy) are shown to the user as one plain line. SSH has no message
//! field in a userauth failure, so the line travels as the instructions of
//! a keyboard-interactive round without prompts, which OpenSSH prints; the
//! attempt is then rejected. Route details are only revealed after the key
//! has proven an identity, so an anonymous client cannot enumerate routes.

use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use audit::Event;
use policy::lang::Identity;
use russh::keys::{HashAlg, PublicKey};
use russh::server::{Auth, PublicKeyOffer, VerifiedPublicKey};
use russh::{MethodKind, MethodSet};
use tokio::sync::watch;

use crate::admission::Slot;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::Connection;
use super::authorize::{self, Asker, Authorized, Method, asks_for_something};
use super::direct::{CERT_USER, Issuing};
use crate::sign_in::{self, LINK_LIFETIME, LinkCloser, NewLink, SignIn, SignInPermit, Way};
use crate::{Error, lines};
use identity::{DeviceAuthorization, Idp, SignedIn};
use telemetry::labels::SignInResult;

/// How long one keyboard-interactive round waits for a pending sign-in
/// before sending the client an empty round to answer. Each round trip
/// lets russh read the socket again, so a client that went away is noticed,
/// and the IdP polling stopped, within this long. The wait is on the
/// sign-in task itself, so a sign-in that finishes ends it at once: the
/// client goes on as soon as the task has its answer, not at the next tick.
const SIGN_IN_TICK: Duration = Duration::from_secs(1);

/// Beyond the device code's (or link's) expiry, how long a pending sign-in
/// keeps the connection from the authentication timeout: enough for the
/// final poll.
const SIGN_IN_GRACE: Duration = Duration::from_secs(15);

/// The title of the sign-in prompt.
const SIGN_IN_TITLE: &str = "Sign in to Gatehouse";

/// What a connection knows while it authenticates. Dropped when
/// authentication succeeds; nothing here outlives that.
pub(crate) struct Authenticating {
    /// Held until authentication succeeds, so unauthenticated connections
    /// are capped separately from authenticated ones.
    pub(super) unauthenticated: Slot,
    /// Cancelled when authentication succeeds; stops the auth timer.
    pub(super) authenticated: CancellationToken,
    /// Moves the unauthenticated connection's deadline (see
    /// `server::serve_connection`) while a sign-in is pending.
    auth_deadline: watch::Sender<tokio::time::Instant>,
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
    /// Where the sign-in (device code or link) stands.
    sign_in: SignInStage,
    /// Set once the policy allowed the connection; becomes the live
    /// session when russh reports success.
    pub(super) authorized: Option<Authorized>,
    /// The last key the client proved (registered or the candidate): a
    /// direct-access certificate is signed for it.
    pub(super) proven_public: Option<PublicKey>,
    /// Set instead of `authorized` when the user name is `cert` (issue
    /// 16); carried into the connection when russh reports success.
    pub(super) issuing: Option<Issuing>,
}

/// Where a connection's sign-in stands. A connection starts at most one
/// device authorization or sign-in link (issue 3's abuse limits).
enum SignInStage {
    NotStarted,
    /// Polling the IdP (device code) or the state database (link) in a
    /// spawned task; `instructions` are shown again if the client restarts
    /// keyboard-interactive.
    Pending {
        instructions: String,
        /// How the user signs in, for `auth.accepted`.
        method: Method,
        task: JoinHandle<Result<SignedIn, Error>>,
    },
    /// Finished, one way or the other.
    Over,
}

impl Authenticating {
    /// A connection that has not authenticated yet.
    pub(super) fn new(
        unauthenticated: Slot,
        authenticated: CancellationToken,
        auth_deadline: watch::Sender<tokio::time::Instant>,
    ) -> Self {
        Authenticating {
            unauthenticated,
            authenticated,
            auth_deadline,
            refusal: None,
            refusal_shown: false,
            unregistered_key: None,
            candidate_key: None,
            proven_key: None,
            sign_in: SignInStage::NotStarted,
            authorized: None,
            proven_public: None,
            issuing: None,
        }
    }

    /// What authentication answers once a refusal is known: after the user
    /// has seen it, nothing more; before, only the keyboard-interactive
    /// round that shows it.
    fn refused(&self) -> Option<Auth> {
        if self.refusal_shown {
            Some(final_rejection())
        } else if self.refusal.is_some() {
            Some(keyboard_interactive_only())
        } else {
            None
        }
    }

    /// A keyboard-interactive round without prompts that shows `line`;
    /// the client's answer ends authentication.
    fn show(&mut self, line: String) -> Auth {
        self.refusal_shown = true;
        let instructions = format!("{}\n", lines::for_prompt(&line));
        self.refusal = Some(line);
        Auth::Partial {
            name: Cow::Borrowed("Gatehouse"),
            instructions: Cow::Owned(instructions),
            prompts: Cow::Borrowed(&[]),
        }
    }
}

impl Connection {
    pub(super) fn asker(&self) -> Asker<'_> {
        Asker {
            id: &self.id,
            peer: self.peer,
        }
    }

    fn identity_for(&self, key: &PublicKey) -> Option<Arc<Identity>> {
        let fp = key.fingerprint(HashAlg::Sha256).to_string();
        self.shared.config().keys.get(&fp).cloned()
    }

    /// Accepts `identity` if the policy lets it have what `user` asks
    /// for; otherwise remembers the refusal line for the
    /// keyboard-interactive round that shows it.
    fn answer(
        &mut self,
        user: &str,
        identity: Arc<Identity>,
        fingerprint: &str,
        method: Method,
    ) -> Auth {
        match self.admit(user, identity, fingerprint, method) {
            Ok(()) => Auth::Accept,
            Err(line) => {
                if let Some(pre) = self.pre.as_mut() {
                    pre.refusal = Some(line);
                }
                keyboard_interactive_only()
            }
        }
    }

    /// Authorizes `identity` for `user` and, if allowed, remembers it for
    /// the live session; the span learns who it is.
    fn admit(
        &mut self,
        user: &str,
        identity: Arc<Identity>,
        fingerprint: &str,
        method: Method,
    ) -> Result<(), String> {
        if user == CERT_USER {
            return self.admit_direct(identity, fingerprint, method);
        }
        // Under the attempt's `authenticate` span when there is one (the
        // handler's callbacks run in it), else under the connection's.
        let current = tracing::Span::current();
        let parent = if current.is_none() {
            &self.span
        } else {
            &current
        };
        let span = tracing::info_span!(parent: parent, "authorize", result = tracing::field::Empty);
        let _entered = span.enter();
        let config = self.shared.config();
        let authorized = authorize::authorize(
            &config,
            self.shared.metrics(),
            &self.asker(),
            user,
            identity,
            fingerprint,
            method,
        );
        span.record("result", if authorized.is_ok() { "allow" } else { "deny" });
        let authorized = authorized?;
        self.span.record("identity", authorized.identity.label());
        self.span.record("route", authorized.route.name.as_str());
        self.span.record("login", authorized.login.as_str());
        if let Some(pre) = self.pre.as_mut() {
            pre.authorized = Some(authorized);
        }
        Ok(())
    }

    /// `auth_none`: a user name without a route is refused at once;
    /// anything else goes on to keys.
    pub(super) fn authenticate_none(&mut self, user: &str) -> Auth {
        let Some(pre) = self.pre.as_mut() else {
            return final_rejection();
        };
        if !asks_for_something(user) {
            // Nothing secret about a missing route: say so at once.
            pre.refusal = Some(lines::no_route(user));
            return keyboard_interactive_only();
        }
        Auth::reject()
    }

    /// `auth_publickey_offered`: registered keys are accepted for a
    /// signature; with sign-in, so is the first other key (the one a
    /// sign-in binds).
    pub(super) fn authenticate_offer(&mut self, offer: &PublicKeyOffer<'_>) -> Auth {
        let registered = self.identity_for(offer.public_key).is_some();
        let sign_in = self.shared.sign_in().is_some();
        let Some(pre) = self.pre.as_mut() else {
            return final_rejection();
        };
        if let Some(answer) = pre.refused() {
            return answer;
        }
        if registered {
            return Auth::Accept;
        }
        let fp = offer.public_key.fingerprint(HashAlg::Sha256).to_string();
        if sign_in {
            // Clients offer keys in a stable order, so the same key comes
            // first on the next connection.
            return match &pre.candidate_key {
                None => {
                    pre.candidate_key = Some(fp);
                    Auth::Accept
                }
                Some(c) if *c == fp => Auth::Accept,
                Some(_) => Auth::reject(),
            };
        }
        if pre.unregistered_key.is_none() {
            pre.unregistered_key = Some(fp);
        }
        // Let the client try its other keys.
        Auth::reject()
    }

    /// `auth_publickey`: a proven key. A registered one is authorized; a
    /// bound one is authorized as its signed-in identity; the candidate key
    /// without a binding gets partial success and signs in next.
    pub(super) async fn authenticate_key(
        &mut self,
        user: &str,
        key: &VerifiedPublicKey<'_>,
    ) -> Auth {
        let Some(pre) = self.pre.as_ref() else {
            return final_rejection();
        };
        if let Some(answer) = pre.refused() {
            return answer;
        }
        let fingerprint = key.public_key.fingerprint(HashAlg::Sha256).to_string();
        let registered = self.identity_for(key.public_key);
        let candidate = pre.candidate_key.as_deref() == Some(fingerprint.as_str());
        if (registered.is_some() || candidate)
            && let Some(pre) = self.pre.as_mut()
        {
            pre.proven_public = Some(key.public_key.clone());
        }
        if let Some(identity) = registered {
            return self.answer(user, identity, &fingerprint, Method::PublicKey);
        }
        let Some(sign_in) = self.shared.sign_in().cloned() else {
            return Auth::reject();
        };
        if !candidate {
            return Auth::reject();
        }
        match sign_in.live_binding(&fingerprint).await {
            Ok(Some(binding)) => {
                let identity = Arc::new(sign_in::identity_of_binding(&binding));
                return self.answer(user, identity, &fingerprint, Method::Binding);
            }
            Ok(None) => {}
            Err(e) => {
                // Fail closed: a binding revoked a moment ago looks like
                // no binding at all when the store cannot be read.
                self.state_failed("live_binding", &e);
                return keyboard_interactive_only();
            }
        }
        // Proven but not bound: partial success, and sign in next.
        if let Some(pre) = self.pre.as_mut() {
            pre.proven_key = Some((fingerprint, user.to_owned()));
        }
        Auth::Reject {
            proceed_with_methods: Some(MethodSet::from(&[MethodKind::KeyboardInteractive][..])),
            partial_success: true,
        }
    }

    /// Called with every answer to a login attempt: before a client is let
    /// in, its session is recorded in the state database as held by this
    /// gateway, so `gatehouse sessions kill` and revocations reach it. If
    /// the database fails (locked, disk full), the login fails closed with
    /// a line; sessions already live are not touched.
    pub(super) async fn hold_before_accept(&mut self, answer: Auth, interactive: bool) -> Auth {
        if !matches!(answer, Auth::Accept) {
            return answer;
        }
        let Some(authorized) = self.pre.as_ref().and_then(|p| p.authorized.as_ref()) else {
            return answer;
        };
        let held = state::LiveSession {
            session_id: self.id.to_string(),
            gateway_id: self.shared.config().gateway_id.clone(),
            identity: authorized.identity.label().to_owned(),
            route: authorized.route.name.clone(),
            started_at_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                .unwrap_or(0),
        };
        // Set before the write: if the connection is cut off while it
        // waits (the auth deadline, shutdown), the write still lands and
        // the accept-loop task must remove it.
        self.opened.store(true, Ordering::Release);
        match self.shared.store().session_opened(held).await {
            Ok(()) => Auth::Accept,
            Err(e) => {
                self.opened.store(false, Ordering::Release);
                self.state_failed("session_opened", &e);
                if interactive {
                    self.show(lines::STATE_UNAVAILABLE.to_owned())
                } else {
                    keyboard_interactive_only()
                }
            }
        }
    }

    /// Audits a state database failure during login and remembers the
    /// line for the keyboard-interactive round that shows it.
    fn state_failed(&mut self, operation: &'static str, e: &dyn std::fmt::Display) {
        Event::StateUnavailable {
            session_id: self.id.clone(),
            peer: self.peer.to_string(),
            operation,
            error: e.to_string(),
        }
        .emit();
        if let Some(pre) = self.pre.as_mut() {
            pre.refusal = Some(lines::STATE_UNAVAILABLE.to_owned());
        }
    }

    /// `auth_keyboard_interactive`: shows a refusal, runs the sign-in
    /// rounds, or explains which key to use.
    pub(super) async fn authenticate_interactive(&mut self, user: &str, answered: bool) -> Auth {
        let Some(pre) = self.pre.as_mut() else {
            return final_rejection();
        };
        if pre.refusal_shown {
            // The user has seen the line; end authentication.
            return final_rejection();
        }
        if let Some(line) = pre.refusal.clone() {
            return pre.show(line);
        }
        if let Some(sign_in) = self.shared.sign_in().cloned() {
            return self.sign_in_round(&sign_in, user, answered).await;
        }
        let unregistered = pre.unregistered_key.clone();
        let line = match &unregistered {
            Some(fp) => {
                authorize::audit_denied(&self.asker(), user, "", fp, "key not registered");
                lines::key_not_registered(fp)
            }
            None => {
                authorize::audit_denied(&self.asker(), user, "", "", "no key offered");
                lines::NO_KEY_OFFERED.to_owned()
            }
        };
        match self.pre.as_mut() {
            Some(pre) => pre.show(line),
            None => final_rejection(),
        }
    }

    /// Shows `line` in a keyboard-interactive round, ending authentication.
    fn show(&mut self, line: String) -> Auth {
        match self.pre.as_mut() {
            Some(pre) => pre.show(line),
            None => final_rejection(),
        }
    }

    /// One keyboard-interactive round of the sign-in: start it (a device
    /// code or a link), keep the client waiting in rounds of
    /// [`SIGN_IN_TICK`], or finish it.
    async fn sign_in_round(&mut self, sign_in: &Arc<SignIn>, user: &str, answered: bool) -> Auth {
        let Some(pre) = self.pre.as_mut() else {
            return final_rejection();
        };
        match &mut pre.sign_in {
            SignInStage::NotStarted => {
                if !asks_for_something(user) {
                    return self.show(lines::no_route(user));
                }
                match self.start_sign_in(sign_in, user).await {
                    Ok(instructions) => {
                        self.shared.metrics().sign_in(SignInResult::Started);
                        prompt(SIGN_IN_TITLE, instructions)
                    }
                    Err(line) => {
                        if let Some(pre) = self.pre.as_mut() {
                            pre.sign_in = SignInStage::Over;
                        }
                        self.show(line)
                    }
                }
            }
            SignInStage::Pending {
                instructions,
                method,
                task,
            } => {
                if !answered {
                    // The client started keyboard-interactive again.
                    return prompt(SIGN_IN_TITLE, instructions.clone());
                }
                let method = *method;
                // Ends the moment the task finishes.
                let joined = match tokio::time::timeout(SIGN_IN_TICK, task).await {
                    Err(_) => return prompt("", String::new()),
                    Ok(joined) => joined,
                };
                pre.sign_in = SignInStage::Over;
                let result = joined.unwrap_or_else(|e| {
                    Err(Error::Io(std::io::Error::other(format!(
                        "sign-in task failed: {e}"
                    ))))
                });
                match self.complete_sign_in(sign_in, user, result, method).await {
                    Ok(()) => Auth::Accept,
                    Err(line) => self.show(line),
                }
            }
            SignInStage::Over => final_rejection(),
        }
    }

    /// The proven key's fingerprint, or empty.
    fn proven_fingerprint(&self) -> String {
        self.pre
            .as_ref()
            .and_then(|p| p.proven_key.as_ref())
            .map(|(fp, _)| fp.clone())
            .unwrap_or_default()
    }

    /// Starts a sign-in for `user`, a device authorization or a sign-in
    /// link (see [`SignIn::way`]), and its poller. Returns the instructions
    /// to show, or the line that says why it cannot start.
    async fn start_sign_in(&mut self, sign_in: &Arc<SignIn>, user: &str) -> Result<String, String> {
        let key = self.proven_fingerprint();
        let permit = match sign_in.reserve(self.peer.ip()) {
            Ok(permit) => permit,
            Err(hit) => {
                self.shared.metrics().sign_in(SignInResult::Refused);
                Event::SigninRefused {
                    session_id: self.id.clone(),
                    peer: self.peer.to_string(),
                    key_fingerprint: key,
                    limit: hit.setting(),
                }
                .emit();
                return Err(hit.user_line().to_owned());
            }
        };
        let web_url = self
            .shared
            .config()
            .web
            .as_ref()
            .map(|w| w.public_url.clone());
        let started = async {
            match sign_in.way(web_url.as_deref()).await? {
                Way::Device(idp) => {
                    let auth = idp.start_device_authorization().await?;
                    Ok::<_, Error>(Started::Device(idp, auth))
                }
                Way::Link(public_url) => Ok(Started::Link(public_url)),
            }
        };
        // Each request is bounded by `http_timeout`; so is the whole start,
        // so an IdP that never answers costs the user one timeout, not one
        // per request.
        let bound = sign_in.http_timeout();
        let started = async {
            tokio::time::timeout(bound, started)
                .await
                .unwrap_or_else(|_| {
                    Err(Error::Identity(identity::Error::IdpUnavailable {
                        issuer: sign_in.issuer().to_owned(),
                        reason: format!(
                            "no answer to the sign-in within {}",
                            humantime::format_duration(bound)
                        ),
                    }))
                })
        };
        let started = match started.await {
            Ok(started) => started,
            Err(e) => {
                self.audit_sign_in_failed(sign_in, &key, &e);
                return Err(e.user_line());
            }
        };
        let (method, (instructions, task)) = match started {
            Started::Device(idp, auth) => (
                Method::DeviceCode,
                self.start_device(sign_in, permit, key, idp, auth),
            ),
            Started::Link(public_url) => (
                Method::SignInLink,
                self.start_link(sign_in, permit, key, user, &public_url)
                    .await?,
            ),
        };
        if let Some(pre) = self.pre.as_mut() {
            pre.sign_in = SignInStage::Pending {
                instructions: instructions.clone(),
                method,
                task,
            };
        }
        Ok(instructions)
    }

    /// Shows the device code and polls the IdP in a task.
    fn start_device(
        &self,
        sign_in: &SignIn,
        permit: SignInPermit,
        key: String,
        idp: Idp,
        auth: DeviceAuthorization,
    ) -> (String, JoinHandle<Result<SignedIn, Error>>) {
        let left = auth
            .expires_at
            .saturating_duration_since(std::time::Instant::now());
        self.stretch_auth_deadline(tokio::time::Instant::from_std(auth.expires_at) + SIGN_IN_GRACE);
        Event::SigninStarted {
            session_id: self.id.clone(),
            peer: self.peer.to_string(),
            key_fingerprint: key.clone(),
            issuer: sign_in.issuer().to_owned(),
            expires_in_s: left.as_secs(),
        }
        .emit();
        let instructions = sign_in_instructions(
            auth.verification_uri_complete.as_deref(),
            &auth.verification_uri,
            &auth.user_code,
            left,
        );
        let cancel = self.closed.child_token();
        let task = self.spawn_poller(sign_in, permit, key, async move {
            idp.wait_for_sign_in(&auth, &cancel)
                .await
                .map_err(Error::from)
        });
        (instructions, task)
    }

    /// Makes a sign-in link for `user` at `public_url`, stores it, and
    /// waits in a task for the web app to approve it; the link is closed
    /// when that task ends without the approval, however it ends.
    async fn start_link(
        &mut self,
        sign_in: &Arc<SignIn>,
        permit: SignInPermit,
        key: String,
        user: &str,
        public_url: &str,
    ) -> Result<(String, JoinHandle<Result<SignedIn, Error>>), String> {
        let link = match NewLink::generate() {
            Ok(link) => link,
            Err(e) => {
                self.audit_sign_in_failed(sign_in, &key, &e);
                return Err(e.user_line());
            }
        };
        let created_at = SystemTime::now();
        let expires_at = created_at + LINK_LIFETIME;
        let store = Arc::clone(self.shared.store());
        let stored = store
            .ssh_link_create(state::SshLink {
                id_hash: link.id_hash.clone(),
                phrase: link.phrase.clone(),
                fingerprint: key.clone(),
                client_addr: self.peer.ip().to_string(),
                user_name: user.to_owned(),
                gateway_id: self.shared.config().gateway_id.clone(),
                session_id: self.id.to_string(),
                created_at,
                expires_at,
            })
            .await;
        if let Err(e) = stored {
            let e = Error::from(e);
            self.state_failed("ssh_link_create", &e);
            self.audit_sign_in_failed(sign_in, &key, &e);
            return Err(lines::STATE_UNAVAILABLE.to_owned());
        }
        // From here on the link is stored: the closer goes with the task.
        let mut closer = LinkCloser::new(store, link.id_hash.clone());
        self.stretch_auth_deadline(tokio::time::Instant::now() + LINK_LIFETIME + SIGN_IN_GRACE);
        Event::SigninLinkIssued {
            session_id: self.id.clone(),
            peer: self.peer.to_string(),
            key_fingerprint: key.clone(),
            link: sign_in::link_name(&link.id_hash),
            expires_in_s: LINK_LIFETIME.as_secs(),
        }
        .emit();
        let instructions = link_instructions(&link.url(public_url), &link.phrase, LINK_LIFETIME);
        let cancel = self.closed.child_token();
        let approver = Arc::clone(sign_in);
        let task = self.spawn_poller(sign_in, permit, key, async move {
            let approval = sign_in::wait_for_approval(&mut closer, expires_at, &cancel).await;
            drop(closer);
            approver.link_signed_in(approval?)
        });
        Ok((instructions, task))
    }

    /// Moves the unauthenticated connection's deadline to `until` if that
    /// is later: a pending sign-in keeps the connection as long as its
    /// code or link lives.
    fn stretch_auth_deadline(&self, until: tokio::time::Instant) {
        if let Some(pre) = self.pre.as_ref() {
            pre.auth_deadline.send_if_modified(|deadline| {
                let later = until > *deadline;
                if later {
                    *deadline = until;
                }
                later
            });
        }
    }

    /// Runs a sign-in's wait in a task that holds the sign-in's place in
    /// the limits until it ends. The wait stops as soon as the connection
    /// ends; nobody is left to hear about that then, so the task says it
    /// itself.
    fn spawn_poller(
        &self,
        sign_in: &SignIn,
        permit: SignInPermit,
        key: String,
        wait: impl Future<Output = Result<SignedIn, Error>> + Send + 'static,
    ) -> JoinHandle<Result<SignedIn, Error>> {
        let (id, peer, issuer) = (self.id.clone(), self.peer, sign_in.issuer().to_owned());
        let metrics = Arc::clone(&self.shared.metrics);
        tokio::spawn(
            async move {
                let _permit = permit;
                let result = wait.await;
                if let Err(e @ Error::Identity(identity::Error::SignInCancelled)) = &result {
                    metrics.sign_in(SignInResult::Failed);
                    Event::SigninFailed {
                        session_id: id,
                        peer: peer.to_string(),
                        key_fingerprint: key,
                        issuer,
                        reason: e.to_string(),
                    }
                    .emit();
                }
                result
            }
            .instrument(
                tracing::info_span!(parent: &self.span, "sign_in", issuer = %sign_in.issuer()),
            ),
        )
    }

    /// Binds a finished sign-in to the proven key and authorizes it.
    async fn complete_sign_in(
        &mut self,
        sign_in: &SignIn,
        user: &str,
        result: Result<SignedIn, Error>,
        method: Method,
    ) -> Result<(), String> {
        let key = match self.pre.as_ref().and_then(|p| p.proven_key.as_ref()) {
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
        self.shared.metrics().sign_in(SignInResult::Completed);
        Event::SigninCompleted {
            session_id: self.id.clone(),
            peer: self.peer.to_string(),
            identity: who.to_owned(),
            sub: signed_in.sub.clone(),
            issuer: signed_in.issuer.clone(),
            groups: signed_in.groups.clone(),
            key_fingerprint: fingerprint.clone(),
            refresh_token: signed_in.refresh_token.is_some(),
        }
        .emit();
        let mut binding = None;
        if let Some(fp) = &key {
            match sign_in.bind(fp, &signed_in).await {
                Ok(b) => {
                    Event::BindingCreated {
                        session_id: self.id.clone(),
                        identity: who.to_owned(),
                        key_fingerprint: fp.clone(),
                        expires_at: humantime::format_rfc3339_seconds(b.expires_at).to_string(),
                    }
                    .emit();
                    binding = Some(b);
                }
                Err(e) => tracing::error!(
                    error = %e,
                    "cannot save the login binding; the next connection signs in again"
                ),
            }
        }
        let identity = Arc::new(sign_in::identity_of(&signed_in, binding.as_ref()));
        self.admit(user, identity, &fingerprint, method)
    }

    /// Audits a failed sign-in (and counts it).
    fn audit_sign_in_failed(&self, sign_in: &SignIn, key: &str, error: &Error) {
        self.shared.metrics().sign_in(SignInResult::Failed);
        Event::SigninFailed {
            session_id: self.id.clone(),
            peer: self.peer.to_string(),
            key_fingerprint: key.to_owned(),
            issuer: sign_in.issuer().to_owned(),
            reason: error.to_string(),
        }
        .emit();
    }
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

/// A keyboard-interactive round without prompts.
fn prompt(name: &'static str, instructions: String) -> Auth {
    Auth::Partial {
        name: Cow::Borrowed(name),
        instructions: Cow::Owned(lines::for_prompt(&instructions)),
        prompts: Cow::Borrowed(&[]),
    }
}

/// A sign-in that started: how the user signs in this time.
enum Started {
    /// A device code from this IdP.
    Device(Idp, DeviceAuthorization),
    /// A sign-in link on the web listener at this `web.public_url`.
    Link(String),
}

/// What the user reads while signing in with a link (issue 14): the URL,
/// the phrase the page shows too, and the expiry.
pub(crate) fn link_instructions(url: &str, phrase: &str, left: Duration) -> String {
    format!(
        "  Open {url}\n  and check that the page shows: {phrase}\n  This link expires in {}.\n",
        sign_in::expires_in_words(left)
    )
}

/// What the user reads while signing in (design §1): the link with the
/// code in it, the code to type for those who cannot click, and the
/// expiry.
pub(crate) fn sign_in_instructions(
    complete: Option<&str>,
    uri: &str,
    code: &str,
    left: Duration,
) -> String {
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
