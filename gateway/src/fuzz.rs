//! Entry points for the fuzz targets in `fuzz/` and for the test that
//! replays their corpora under `cargo test` (`fuzz-targets` crate).
//!
//! Each function takes the fuzzer's bytes and drives the gateway code that
//! a stranger's input reaches: the user name a client sends, the text an
//! IdP sends that ends up in a keyboard-interactive prompt, and the SSH
//! server itself (before and during authentication) over an in-memory
//! stream. A panic is a finding; the properties asserted here are the
//! invariants the rest of the crate relies on.
//!
//! Not part of the gateway's API: hidden from the docs and used by nothing
//! but the fuzzing crates.

#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use russh::client;
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::connection::{link_instructions, sign_in_instructions, split_user};
use crate::shared::Shared;
use crate::{Error, keys, lines, server, sign_in};

/// Whole-connection bound per input, so a hang shows up as a slow unit
/// instead of stalling the fuzzer forever.
const PER_INPUT: Duration = Duration::from_secs(10);

/// Asserts that `text` can be shown in a client's terminal: printable
/// ASCII and newlines only, so no escape sequence gets through.
fn assert_printable(text: &str) {
    assert!(
        text.bytes()
            .all(|b| b == b'\n' || (0x20..0x7f).contains(&b)),
        "not printable: {text:?}"
    );
}

/// `LOGIN@ROUTE` from the SSH user name: a split must give back the name,
/// and the refusal line must be printable whatever the name held.
pub fn user_name(data: &[u8]) {
    let user = String::from_utf8_lossy(data);
    if let Some((login, route)) = split_user(&user) {
        assert!(!login.is_empty() && !route.is_empty());
        assert!(!route.contains('@'));
        assert_eq!(format!("{login}@{route}"), user);
    }
    assert_printable(&lines::for_prompt(&lines::no_route(&user)));
    assert_printable(&lines::for_prompt(&lines::unknown_route(&user)));
}

/// What an IdP sends back from device authorization (link, URL, user
/// code, lifetime) becomes the sign-in prompt, and a URL and phrase the
/// sign-in link's prompt: both must stay printable.
pub fn sign_in_prompt(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(4, '\u{0}');
    let complete = parts.next().filter(|s| !s.is_empty());
    let uri = parts.next().unwrap_or_default();
    let code = parts.next().unwrap_or_default();
    let secs = parts
        .next()
        .map(|s| {
            s.bytes()
                .fold(0u64, |n, b| n.wrapping_mul(31).wrapping_add(u64::from(b)))
        })
        .unwrap_or_default();
    let words = sign_in::expires_in_words(Duration::from_secs(secs));
    assert!(!words.is_empty());
    let instructions = sign_in_instructions(complete, uri, code, Duration::from_secs(secs));
    assert_printable(&lines::for_prompt(&instructions));
    // The sign-in link's prompt, with whatever URL and phrase.
    let instructions = link_instructions(uri, code, Duration::from_secs(secs));
    assert_printable(&lines::for_prompt(&instructions));
}

/// A gateway opened in a directory of its own, serving in-memory
/// connections on a single-threaded runtime.
pub struct Harness {
    runtime: tokio::runtime::Runtime,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    registered: Arc<PrivateKey>,
    stranger: Arc<PrivateKey>,
}

impl Harness {
    /// Writes a config with one route, a registered key and an IdP that
    /// is down (sign-ins fail at discovery) into `dir`, and opens it.
    pub fn new(dir: &Path) -> Result<Harness, Error> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        keys::generate_private_key(&dir.join("user_ca"), "fuzz user CA")?;
        let registered = keys::new_ed25519_key();
        let stranger = keys::new_ed25519_key();
        let public = |k: &PrivateKey| k.public_key().to_openssh().unwrap_or_default();
        // The route's target is never dialled: the client ends every
        // connection before it opens a channel.
        let text = format!(
            "listen: 127.0.0.1:0\n\
             user_ca: user_ca\n\
             state_dir: state\n\
             limits:\n  auth_rejection_delay: 0s\n  penalties: {{enabled: false}}\n\
             idp:\n  issuer: http://127.0.0.1:9\n  client_id: gatehouse\n\
             identities:\n  - name: alice\n    email: alice@example.com\n    groups: [ops]\n    keys: [\"{}\"]\n\
             routes:\n  - name: t\n    target: 127.0.0.1:9\n    logins: [ghtest]\n    host_key: \"{}\"\n    \
             policy: {{rules: [{{allow: ops, when: {{groups: ops}}}}]}}\n",
            public(&registered),
            public(&stranger),
        );
        let path = dir.join("gatehouse.yaml");
        std::fs::write(&path, &text)?;
        let config = config::parse(&path, &text)?;
        let shared = runtime.block_on(server::open(config, Arc::default()))?;
        Ok(Harness {
            runtime,
            shared,
            shutdown: CancellationToken::new(),
            registered: Arc::new(registered),
            stranger: Arc::new(stranger),
        })
    }

    /// Starts one connection on an in-memory stream, as the accept loop
    /// would; returns the client's end.
    fn connect(&self) -> Option<tokio::io::DuplexStream> {
        let peer = SocketAddr::from(([127, 0, 0, 2], 40_000));
        let slot = self
            .shared
            .admission
            .admit(peer.ip(), Instant::now())
            .ok()?;
        let (client, server) = tokio::io::duplex(1 << 16);
        tokio::spawn(server::serve_connection(
            Arc::clone(&self.shared),
            server,
            peer,
            None,
            slot,
            self.shutdown.clone(),
        ));
        Some(client)
    }

    /// Sends `data` as everything a client says before hanging up: the
    /// version exchange, key exchange and whatever follows, unencrypted.
    /// The gateway must answer or close, never panic or hang.
    pub fn preauth(&self, data: &[u8]) {
        self.runtime.block_on(async {
            let Some(client) = self.connect() else {
                panic!("the admission pool refused a connection when none was open");
            };
            let (mut from_gateway, mut to_gateway) = tokio::io::split(client);
            let send = async {
                let _ = to_gateway.write_all(data).await;
                let _ = to_gateway.shutdown().await;
            };
            // Drained so the gateway's writes never block.
            let drain = async {
                let mut sink = Vec::new();
                let _ = from_gateway.read_to_end(&mut sink).await;
            };
            let done = tokio::time::timeout(PER_INPUT, futures::future::join(send, drain)).await;
            assert!(done.is_ok(), "the gateway neither answered nor closed");
        });
    }

    /// A real SSH client (russh's) completes the key exchange, then runs
    /// up to eight authentication steps that `data` chooses: `none`,
    /// keyboard-interactive starts and answers (any number, any text; an
    /// open round is always answered, as russh's client requires), and
    /// public keys, registered or not, under any user name. Only the
    /// registered key as `ghtest@t` may get in; every text shown must be
    /// printable.
    /// Returns whether someone got in.
    pub fn auth(&self, data: &[u8]) -> bool {
        self.runtime.block_on(async {
            let Some(stream) = self.connect() else {
                panic!("the admission pool refused a connection when none was open");
            };
            let config = Arc::new(client::Config::default());
            let steps = async {
                let mut handle = client::connect_stream(config, stream, AnyHostKey).await?;
                let mut input = Input(data);
                // russh's client sends an answer only while a
                // keyboard-interactive round is open, and while one is
                // open it sends nothing else (it waits for the answer and
                // drops other requests). Either way it would wait for a
                // reply that never comes, so an open round is always
                // answered and answers are sent only then.
                let mut round_open = false;
                for _ in 0..8 {
                    let Some(op) = input.byte() else { break };
                    let op = if round_open { 2 } else { op };
                    let in_as = match op % 4 {
                        0 => {
                            round_open = false;
                            let user = input.string();
                            let result = handle.authenticate_none(user.as_str()).await?;
                            assert!(!result.success(), "`none` let {user:?} in");
                            false
                        }
                        1 => {
                            let sub = input.string();
                            let user = input.string();
                            let reply = handle
                                .authenticate_keyboard_interactive_start(user.as_str(), Some(sub))
                                .await?;
                            round_open = interactive_round(&reply);
                            interactive_reply(&reply, &user)
                        }
                        2 if !round_open => continue,
                        2 => {
                            let n = input.byte().unwrap_or(0) % 5;
                            let answers = (0..n).map(|_| input.string()).collect();
                            let reply = handle
                                .authenticate_keyboard_interactive_respond(answers)
                                .await?;
                            round_open = interactive_round(&reply);
                            interactive_reply(&reply, "")
                        }
                        _ => {
                            round_open = false;
                            let registered = op & 0x80 == 0;
                            let key = if registered {
                                Arc::clone(&self.registered)
                            } else {
                                Arc::clone(&self.stranger)
                            };
                            let user = input.string();
                            let hash = handle.best_supported_rsa_hash().await?.flatten();
                            let result = handle
                                .authenticate_publickey(
                                    user.as_str(),
                                    PrivateKeyWithHashAlg::new(key, hash),
                                )
                                .await?;
                            // Only alice's key, for the one login and
                            // route the policy gives her, gets in.
                            if result.success() {
                                assert!(registered, "an unregistered key got in as {user:?}");
                                assert_eq!(user, "ghtest@t", "alice got in as {user:?}");
                            }
                            result.success()
                        }
                    };
                    if in_as {
                        return Ok(true);
                    }
                }
                Ok::<_, russh::Error>(false)
            };
            let done = tokio::time::timeout(PER_INPUT, steps).await;
            assert!(done.is_ok(), "authentication neither finished nor failed");
            matches!(done, Ok(Ok(true)))
        })
    }
}

/// The gateway's keyboard-interactive answers: prompts and text the
/// client prints must be printable, and nothing signs in while the IdP is
/// down.
fn interactive_reply(reply: &client::KeyboardInteractiveAuthResponse, user: &str) -> bool {
    match reply {
        client::KeyboardInteractiveAuthResponse::Success => {
            panic!("keyboard-interactive let {user:?} in with the IdP down")
        }
        client::KeyboardInteractiveAuthResponse::Failure { .. } => false,
        client::KeyboardInteractiveAuthResponse::InfoRequest {
            name,
            instructions,
            prompts,
        } => {
            assert_printable(name);
            assert_printable(instructions);
            for p in prompts {
                assert_printable(&p.prompt);
            }
            false
        }
    }
}

/// Whether the gateway's reply leaves a keyboard-interactive round open
/// for answers.
fn interactive_round(reply: &client::KeyboardInteractiveAuthResponse) -> bool {
    matches!(
        reply,
        client::KeyboardInteractiveAuthResponse::InfoRequest { .. }
    )
}

/// Accepts whatever host key the gateway shows: the harness's own.
struct AnyHostKey;

impl client::Handler for AnyHostKey {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        _key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

/// Reads choices and strings from the fuzzer's bytes.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&first, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(first)
    }

    /// A length-prefixed string, cut short where the input ends.
    fn string(&mut self) -> String {
        let len = usize::from(self.byte().unwrap_or(0));
        let (taken, rest) = self.0.split_at(len.min(self.0.len()));
        self.0 = rest;
        String::from_utf8_lossy(taken).into_owned()
    }
}
