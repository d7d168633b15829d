//! The conformance suite every [`Store`] backend must pass.
//!
//! Each check gets a fresh, empty store and returns what went wrong
//! instead of panicking, so the suite can live in the library and any
//! backend's tests can run it:
//!
//! ```ignore
//! for check in state::conformance::CHECKS {
//!     let store = fresh_store();
//!     if let Err(failure) = (check.run)(&store).await { ... }
//! }
//! ```
//!
//! The checks state the contract the gateway relies on: what a binding
//! authenticates and when, what a revocation does, that a kill request is
//! answered by the gateway that holds the session and only by it, and how
//! the recording index moves through a session's life.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::{
    BindingState, ChannelStart, KillOutcome, KillQueued, LiveSession, NewBinding, RecordingChannel,
    RecordingFilter, RecordingRow, RecordingStart, RecordingStatus, RenewedIdentity, Revoke,
    Secret, Store,
};

/// Why a check failed: where, and what was seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure(pub String);

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<crate::Error> for Failure {
    fn from(e: crate::Error) -> Self {
        Failure(format!("store error: {e}"))
    }
}

type Outcome<'a> = Pin<Box<dyn Future<Output = Result<(), Failure>> + Send + 'a>>;

/// One named check.
pub struct Check {
    /// What it checks, as a test name.
    pub name: &'static str,
    /// Runs it against a fresh, empty store.
    pub run: for<'a> fn(&'a dyn Store) -> Outcome<'a>,
}

/// Every check.
pub const CHECKS: &[Check] = &[
    Check {
        name: "bind_then_live_round_trips_and_records_use",
        run: |s| Box::pin(bind_then_live(s)),
    },
    Check {
        name: "bindings_expire_at_created_plus_ttl",
        run: |s| Box::pin(expiry(s)),
    },
    Check {
        name: "revoke_selects_by_key_user_or_all",
        run: |s| Box::pin(revoke_selects(s)),
    },
    Check {
        name: "revoked_since_reports_revocations_even_after_a_rebind",
        run: |s| Box::pin(revoked_since(s)),
    },
    Check {
        name: "binding_again_replaces_the_old_binding",
        run: |s| Box::pin(rebind(s)),
    },
    Check {
        name: "list_is_newest_first_and_purge_removes_dead_rows",
        run: |s| Box::pin(list_and_purge(s)),
    },
    Check {
        name: "refresh_tokens_round_trip_rotate_and_are_wiped_by_revocation",
        run: |s| Box::pin(refresh_tokens(s)),
    },
    Check {
        name: "renew_takes_the_new_identity_and_skips_revoked_bindings",
        run: |s| Box::pin(renew(s)),
    },
    Check {
        name: "a_fingerprint_that_is_not_sha256_is_refused",
        run: |s| Box::pin(bad_fingerprint(s)),
    },
    Check {
        name: "kill_requests_reach_only_the_gateway_that_holds_the_session",
        run: |s| Box::pin(kills_reach_the_holder(s)),
    },
    Check {
        name: "a_restarted_gateway_drops_its_old_sessions_and_answers_their_kills",
        run: |s| Box::pin(gateway_restart(s)),
    },
    Check {
        name: "the_recording_index_follows_a_session_and_filters",
        run: |s| Box::pin(recording_index(s)),
    },
    Check {
        name: "the_sessions_page_filters_and_pages_by_cursor",
        run: |s| Box::pin(pages::filters_and_pages(s)),
    },
    Check {
        name: "views_are_kept_per_viewer_with_first_last_and_count",
        run: |s| Box::pin(pages::views(s)),
    },
    Check {
        name: "web_sessions_end_when_idle_expired_signed_out_or_revoked",
        run: |s| Box::pin(web_sessions(s)),
    },
    Check {
        name: "a_sign_in_in_progress_is_taken_once_and_only_before_it_expires",
        run: |s| Box::pin(web_logins(s)),
    },
    Check {
        name: "a_hand_off_makes_one_session_on_its_host_that_ends_with_its_parent",
        run: |s| Box::pin(web::handoffs(s)),
    },
    Check {
        name: "an_ssh_sign_in_link_is_approved_once_while_pending_and_redeemed_once",
        run: |s| Box::pin(web::ssh_links(s)),
    },
    Check {
        name: "text_search_finds_words_substrings_paths_and_addresses_in_any_case",
        run: |s| Box::pin(search::finds(s)),
    },
    Check {
        name: "text_search_takes_query_syntax_literally",
        run: |s| Box::pin(search::literal(s)),
    },
    Check {
        name: "text_search_pages_newest_session_first_lines_in_order",
        run: |s| Box::pin(search::pages(s)),
    },
    Check {
        name: "text_index_replaces_a_channel_and_clears_all",
        run: |s| Box::pin(search::replace_and_clear(s)),
    },
    Check {
        name: "text_unindexed_lists_sealed_sessions_until_each_is_marked",
        run: |s| Box::pin(search::unindexed(s)),
    },
    Check {
        name: "the_recording_filter_finds_sessions_by_text",
        run: |s| Box::pin(search::filter(s)),
    },
];

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(Failure(format!("{}:{}: {}", file!(), line!(), format!($($fmt)+))));
        }
    };
}

macro_rules! ensure_eq {
    ($got:expr, $want:expr $(, $($ctx:tt)+)?) => {{
        let (got, want) = (&$got, &$want);
        ensure!(
            got == want,
            "{} is {:?}, expected {:?}{}",
            stringify!($got),
            got,
            want,
            String::new() $(+ ": " + &format!($($ctx)+))?
        );
    }};
}

// After the macros, so the checks there can use them.
mod pages;
mod search;
mod web;
use web::{web_logins, web_sessions};

const HOUR: Duration = Duration::from_secs(3600);
const T0: u64 = 1_800_000_000;

fn t(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// A valid-looking fingerprint made of one repeated character.
fn fp(c: char) -> String {
    format!("SHA256:{}", c.to_string().repeat(43))
}

fn new(fingerprint: &str, sub: &str, email: Option<&str>) -> NewBinding {
    NewBinding {
        fingerprint: fingerprint.to_owned(),
        sub: sub.to_owned(),
        email: email.map(str::to_owned),
        groups: Vec::new(),
        issuer: "https://idp.example.com".to_owned(),
        refresh_token: None,
        claims_json: "{}".to_owned(),
        ttl: HOUR,
    }
}

async fn bind(s: &dyn Store, fingerprint: &str, email: &str, at: u64) -> Result<(), Failure> {
    s.bind(
        NewBinding {
            groups: vec!["ops".to_owned(), "dev".to_owned()],
            refresh_token: Some(Secret::new("rt-for-tests")),
            ..new(fingerprint, &format!("sub-{email}"), Some(email))
        },
        t(at),
    )
    .await?;
    Ok(())
}

async fn fingerprints(s: &dyn Store) -> Result<Vec<String>, Failure> {
    Ok(s.bindings()
        .await?
        .into_iter()
        .map(|b| b.fingerprint)
        .collect())
}

async fn bind_then_live(s: &dyn Store) -> Result<(), Failure> {
    let made = s
        .bind(
            NewBinding {
                groups: vec!["ops".to_owned()],
                ..new(&fp('a'), "u-1", Some("alice@example.com"))
            },
            t(T0),
        )
        .await?;
    ensure_eq!(made.created_at, t(T0));
    ensure_eq!(made.authenticated_at, t(T0));
    ensure_eq!(made.expires_at, t(T0) + HOUR);
    ensure_eq!(made.last_used_at, None);
    ensure_eq!(made.revoked_at, None);
    let live = s.live_binding(&fp('a'), t(T0 + 60)).await?;
    let Some(live) = live else {
        return Err(Failure("a fresh binding is not live".to_owned()));
    };
    ensure_eq!(
        live,
        crate::Binding {
            last_used_at: Some(t(T0 + 60)),
            ..made.clone()
        }
    );
    ensure_eq!(live.groups, ["ops"]);
    ensure_eq!(live.who(), "alice@example.com");
    ensure_eq!(s.bindings().await?, vec![live]);
    ensure_eq!(s.live_binding(&fp('b'), t(T0)).await?, None);
    Ok(())
}

async fn expiry(s: &dyn Store) -> Result<(), Failure> {
    s.bind(new(&fp('a'), "u", None), t(T0)).await?;
    // expires_at itself is already past.
    for (after, want_live) in [
        (0, true),
        (1, true),
        (3599, true),
        (3600, false),
        (7200, false),
    ] {
        let got = s.live_binding(&fp('a'), t(T0 + after)).await?;
        ensure_eq!(got.is_some(), want_live, "at +{after}s");
        let listed = s.bindings().await?;
        let want = if want_live {
            BindingState::Live
        } else {
            BindingState::Expired
        };
        ensure_eq!(
            listed.first().map(|b| b.state(t(T0 + after))),
            Some(want),
            "at +{after}s"
        );
    }
    // The last use recorded is the last successful one.
    let listed = s.bindings().await?;
    ensure_eq!(
        listed.first().and_then(|b| b.last_used_at),
        Some(t(T0 + 3599))
    );
    Ok(())
}

/// Which bindings a revocation case selects, given the case's number.
type Selector = dyn Fn(usize) -> Revoke + Sync;

async fn revoke_selects(s: &dyn Store) -> Result<(), Failure> {
    // Each case gets its own four keys and users, so one store serves all;
    // "all" comes last and must take every key still unrevoked.
    let cases: [(&str, &Selector, &[char]); 5] = [
        ("one key", &|i| Revoke::Key(case_fp(i, 'b')), &['b']),
        (
            "user, any case",
            &|i| Revoke::User(format!("ALICE{i}@Example.COM")),
            &['a', 'b'],
        ),
        (
            "user by sub when there is no email",
            &|i| Revoke::User(format!("carol{i}-sub")),
            &['c'],
        ),
        (
            "nobody",
            &|_| Revoke::User("mallory@example.com".to_owned()),
            &[],
        ),
        ("unknown key", &|_| Revoke::Key(fp('z')), &[]),
    ];
    let now = t(T0 + 10);
    for (i, (name, which, revoked)) in cases.iter().enumerate() {
        bind(s, &case_fp(i, 'a'), &format!("alice{i}@example.com"), T0).await?;
        bind(
            s,
            &case_fp(i, 'b'),
            &format!("Alice{i}@example.com"),
            T0 + 1,
        )
        .await?;
        s.bind(
            new(&case_fp(i, 'c'), &format!("carol{i}-sub"), None),
            t(T0 + 2),
        )
        .await?;
        bind(s, &case_fp(i, 'd'), &format!("dave{i}@example.com"), T0 + 3).await?;
        let before = s.revision().await?;
        let done = s.revoke(which(i), now).await?;
        let mut got: Vec<String> = done.bindings.iter().map(|(f, _)| f.clone()).collect();
        got.sort();
        let want: Vec<String> = revoked.iter().map(|c| case_fp(i, *c)).collect();
        ensure_eq!(got, want, "{name}");
        let bumped = u64::from(!revoked.is_empty());
        ensure_eq!(s.revision().await?, before + bumped, "{name}");
        ensure_eq!(done.revision, before + bumped, "{name}");
        for c in ['a', 'b', 'c', 'd'] {
            let is_revoked = revoked.contains(&c);
            let live = s.live_binding(&case_fp(i, c), now).await?;
            ensure_eq!(live.is_none(), is_revoked, "{name}: key {c}");
            let row = s
                .bindings()
                .await?
                .into_iter()
                .find(|b| b.fingerprint == case_fp(i, c));
            let Some(row) = row else {
                return Err(Failure(format!("{name}: revoked rows must be kept")));
            };
            ensure_eq!(row.revoked_at.is_some(), is_revoked, "{name}: key {c}");
            if is_revoked {
                ensure_eq!(row.state(now), BindingState::Revoked, "{name}");
                ensure_eq!(
                    s.refresh_token(&case_fp(i, c)).await?,
                    None,
                    "{name}: wiped"
                );
            }
        }
        // Revoking again finds nothing new and leaves the revision.
        let before = s.revision().await?;
        ensure!(
            s.revoke(which(i), now).await?.bindings.is_empty(),
            "{name}: again"
        );
        ensure_eq!(s.revision().await?, before, "{name}");
    }
    let all = s.revoke(Revoke::All, now).await?;
    let unrevoked_before = 5 * 4 - 1 - 2 - 1;
    ensure_eq!(all.bindings.len(), unrevoked_before, "all");
    ensure!(
        s.bindings().await?.iter().all(|b| b.revoked_at.is_some()),
        "all: every binding is revoked"
    );
    Ok(())
}

fn case_fp(case: usize, c: char) -> String {
    let tag = char::from_digit(u32::try_from(case).unwrap_or(0), 10).unwrap_or('9');
    format!("SHA256:{tag}{}", c.to_string().repeat(42))
}

async fn revoked_since(s: &dyn Store) -> Result<(), Failure> {
    bind(s, &fp('a'), "a@example.com", T0).await?;
    bind(s, &fp('b'), "b@example.com", T0).await?;
    let start = s.revision().await?;
    let none = s.revoked_since(start).await?;
    ensure_eq!(none.revision, start);
    ensure!(none.fingerprints.is_empty(), "nothing revoked yet");
    s.revoke(Revoke::Key(fp('a')), t(T0 + 1)).await?;
    let mid = s.revision().await?;
    bind(s, &fp('a'), "a@example.com", T0 + 2).await?; // signs in again
    s.revoke(Revoke::Key(fp('b')), t(T0 + 3)).await?;
    let got = s.revoked_since(start).await?;
    ensure_eq!(got.fingerprints, vec![fp('a'), fp('b')]);
    ensure_eq!(got.revision, start + 2);
    ensure_eq!(s.revoked_since(mid).await?.fingerprints, vec![fp('b')]);
    ensure!(
        s.live_binding(&fp('a'), t(T0 + 4)).await?.is_some(),
        "the new sign-in of a is live"
    );
    Ok(())
}

async fn rebind(s: &dyn Store) -> Result<(), Failure> {
    bind(s, &fp('a'), "old@example.com", T0).await?;
    s.live_binding(&fp('a'), t(T0 + 1)).await?;
    s.revoke(Revoke::All, t(T0 + 2)).await?;
    let again = s
        .bind(
            NewBinding {
                groups: vec!["new".to_owned()],
                refresh_token: Some(Secret::new("rt-new")),
                ..new(&fp('a'), "new-sub", Some("new@example.com"))
            },
            t(T0 + 100),
        )
        .await?;
    ensure_eq!(again.sub, "new-sub");
    ensure_eq!(again.groups, ["new"]);
    ensure_eq!(again.created_at, t(T0 + 100));
    ensure_eq!(again.last_used_at, None, "a new sign-in is unused");
    ensure_eq!(again.revoked_at, None, "a new sign-in is not revoked");
    ensure_eq!(s.bindings().await?, vec![again]);
    ensure_eq!(
        s.refresh_token(&fp('a')).await?,
        Some(Secret::new("rt-new"))
    );
    Ok(())
}

async fn list_and_purge(s: &dyn Store) -> Result<(), Failure> {
    bind(s, &fp('a'), "a@example.com", T0).await?;
    bind(s, &fp('b'), "b@example.com", T0 + 7200).await?;
    bind(s, &fp('c'), "c@example.com", T0 + 3600).await?;
    s.revoke(Revoke::Key(fp('c')), t(T0 + 3700)).await?;
    ensure_eq!(fingerprints(s).await?, [fp('b'), fp('c'), fp('a')]);
    // a expired at T0+1h, c was revoked at T0+1h+100s, b lives.
    ensure_eq!(s.purge_expired(t(T0 + 3600)).await?, 1);
    ensure_eq!(s.purge_expired(t(T0 + 3700)).await?, 1);
    ensure_eq!(fingerprints(s).await?, [fp('b')]);
    ensure!(
        s.revoked_since(0).await?.fingerprints.is_empty(),
        "the revocation log is purged too"
    );
    Ok(())
}

async fn refresh_tokens(s: &dyn Store) -> Result<(), Failure> {
    bind(s, &fp('a'), "a@example.com", T0).await?;
    s.bind(new(&fp('b'), "b", None), t(T0)).await?;
    ensure_eq!(
        s.refresh_token(&fp('a')).await?,
        Some(Secret::new("rt-for-tests"))
    );
    ensure_eq!(
        s.refresh_token(&fp('b')).await?,
        None,
        "bound without a token"
    );
    ensure_eq!(s.refresh_token(&fp('z')).await?, None, "no binding");
    s.renew(&fp('a'), None, Some(Secret::new("rt-rotated")), t(T0 + 5))
        .await?;
    ensure_eq!(
        s.refresh_token(&fp('a')).await?,
        Some(Secret::new("rt-rotated"))
    );
    s.renew(&fp('a'), None, None, t(T0 + 6)).await?;
    ensure_eq!(
        s.refresh_token(&fp('a')).await?,
        Some(Secret::new("rt-rotated")),
        "a refresh without rotation keeps the token"
    );
    s.revoke(Revoke::Key(fp('a')), t(T0 + 7)).await?;
    ensure_eq!(
        s.refresh_token(&fp('a')).await?,
        None,
        "revocation wipes it"
    );
    Ok(())
}

async fn renew(s: &dyn Store) -> Result<(), Failure> {
    bind(s, &fp('a'), "a@example.com", T0).await?;
    let renewed = s
        .renew(
            &fp('a'),
            Some(RenewedIdentity {
                email: None,
                groups: vec!["admins".to_owned()],
                claims_json: r#"{"level":2}"#.to_owned(),
            }),
            None,
            t(T0 + 60),
        )
        .await?;
    let Some(renewed) = renewed else {
        return Err(Failure("a live binding was not renewed".to_owned()));
    };
    ensure_eq!(renewed.authenticated_at, t(T0 + 60));
    ensure_eq!(renewed.created_at, t(T0), "renewal is not a new sign-in");
    ensure_eq!(renewed.groups, ["admins"]);
    ensure_eq!(renewed.email, None, "the new token had no email");
    ensure_eq!(renewed.claims_json, r#"{"level":2}"#);
    let plain = s.renew(&fp('a'), None, None, t(T0 + 90)).await?;
    ensure_eq!(
        plain.map(|b| (b.authenticated_at, b.groups)),
        Some((t(T0 + 90), vec!["admins".to_owned()])),
        "a refresh without an ID token keeps the identity"
    );
    s.revoke(Revoke::All, t(T0 + 100)).await?;
    ensure_eq!(s.renew(&fp('a'), None, None, t(T0 + 110)).await?, None);
    Ok(())
}

async fn bad_fingerprint(s: &dyn Store) -> Result<(), Failure> {
    for bad in [
        "",
        "SHA256:short",
        "MD5:aa:bb",
        "SHA256:!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!",
    ] {
        ensure!(
            s.bind(new(bad, "u", None), t(T0)).await.is_err(),
            "{bad:?} was bound"
        );
    }
    ensure!(s.bindings().await?.is_empty(), "nothing was stored");
    Ok(())
}

fn live(id: &str, gateway: &str) -> LiveSession {
    LiveSession {
        session_id: id.to_owned(),
        gateway_id: gateway.to_owned(),
        identity: "alice@example.com".to_owned(),
        route: "prod".to_owned(),
        started_at_ms: T0 * 1000,
    }
}

async fn kills_reach_the_holder(s: &dyn Store) -> Result<(), Failure> {
    s.gateway_started("gw-1", t(T0)).await?;
    s.gateway_started("gw-2", t(T0)).await?;
    let start = s.last_kill_id().await?;
    s.session_opened(live("s-1", "gw-1")).await?;
    s.session_opened(live("s-2", "gw-2")).await?;
    ensure_eq!(
        s.live_sessions()
            .await?
            .into_iter()
            .map(|l| (l.session_id, l.gateway_id))
            .collect::<Vec<_>>(),
        [
            ("s-1".to_owned(), "gw-1".to_owned()),
            ("s-2".to_owned(), "gw-2".to_owned())
        ]
    );
    ensure_eq!(
        s.request_kill("nobody", "why", t(T0 + 1)).await?,
        KillQueued::NotLive
    );
    let queued = s.request_kill("s-2", "leaving", t(T0 + 1)).await?;
    let KillQueued::Queued { id, gateway_id } = queued else {
        return Err(Failure(format!(
            "a live session's kill was not queued: {queued:?}"
        )));
    };
    ensure_eq!(gateway_id, "gw-2");
    ensure!(
        s.kill_requests_for("gw-1", start).await?.is_empty(),
        "gw-1 must not see a request for gw-2's session"
    );
    let for_holder = s.kill_requests_for("gw-2", start).await?;
    ensure_eq!(
        for_holder
            .iter()
            .map(|k| (k.id, k.session_id.as_str(), k.reason.as_str()))
            .collect::<Vec<_>>(),
        [(id, "s-2", "leaving")]
    );
    ensure_eq!(s.kill_outcome(id).await?, None, "unanswered");
    s.kill_handled(id, KillOutcome::Ended, t(T0 + 2)).await?;
    ensure_eq!(s.kill_outcome(id).await?, Some(KillOutcome::Ended));
    ensure!(
        s.kill_requests_for("gw-2", start).await?.is_empty(),
        "an answered request is not handed out again"
    );
    ensure!(
        s.last_kill_id().await? >= id,
        "last_kill_id covers the request"
    );
    s.session_closed("s-2").await?;
    ensure_eq!(
        s.request_kill("s-2", "again", t(T0 + 3)).await?,
        KillQueued::NotLive,
        "a closed session is not live"
    );
    Ok(())
}

async fn gateway_restart(s: &dyn Store) -> Result<(), Failure> {
    s.gateway_started("gw-1", t(T0)).await?;
    s.session_opened(live("old", "gw-1")).await?;
    s.session_opened(live("other", "gw-2")).await?;
    let queued = s.request_kill("old", "bye", t(T0 + 1)).await?;
    let KillQueued::Queued { id, .. } = queued else {
        return Err(Failure(format!("not queued: {queued:?}")));
    };
    // gw-1 crashes and starts again: it holds nothing now.
    s.gateway_started("gw-1", t(T0 + 5)).await?;
    ensure_eq!(s.kill_outcome(id).await?, Some(KillOutcome::NotFound));
    ensure_eq!(
        s.live_sessions()
            .await?
            .into_iter()
            .map(|l| l.session_id)
            .collect::<Vec<_>>(),
        ["other"],
        "only gw-1's sessions are dropped"
    );
    Ok(())
}

fn start(id: &str, identity: &str, route: &str, at_ms: u64) -> RecordingStart {
    RecordingStart {
        session_id: id.to_owned(),
        identity: identity.to_owned(),
        login: "root".to_owned(),
        route: route.to_owned(),
        target: "10.0.0.1:22".to_owned(),
        client_addr: "127.0.0.1:50000".to_owned(),
        client_key_fingerprint: Some(fp('k')),
        cert_serial: None,
        gateway_id: "gw".to_owned(),
        started_at_ms: at_ms,
        prefix: format!("sessions/{id}"),
    }
}

async fn recording_index(s: &dyn Store) -> Result<(), Failure> {
    for (id, who, route, at) in [
        ("a", "alice", "db", 1000),
        ("b", "bob", "db", 2000),
        ("c", "alice", "web", 3000),
    ] {
        s.recording_started(start(id, who, route, at)).await?;
    }
    s.recording_channel_started(
        "a",
        ChannelStart {
            channel: "0".to_owned(),
            kind: "shell".to_owned(),
            command: None,
            record_input: false,
            cert_serial: Some(42),
        },
    )
    .await?;
    s.recording_segment_uploaded("a", "0", 0).await?;
    s.recording_segment_uploaded("a", "0", 2).await?;
    s.recording_segment_uploaded("a", "0", 1).await?; // late ack: never goes back
    s.recording_status(
        "b",
        RecordingStatus::Failed,
        Some("storage down".to_owned()),
    )
    .await?;

    let Some((a, channels)) = s.recording("a").await? else {
        return Err(Failure("session a is not indexed".to_owned()));
    };
    ensure_eq!(a.status, RecordingStatus::Recording);
    ensure_eq!(
        a.start.cert_serial,
        Some(42),
        "the first channel's serial is the session's"
    );
    ensure_eq!(
        channels
            .iter()
            .map(|c| (c.channel.as_str(), c.kind.as_str(), c.segments))
            .collect::<Vec<_>>(),
        [("0", "shell", 3)]
    );
    let Some((b, _)) = s.recording("b").await? else {
        return Err(Failure("session b is not indexed".to_owned()));
    };
    ensure_eq!(b.status, RecordingStatus::Failed);
    ensure_eq!(b.reason.as_deref(), Some("storage down"));
    ensure!(s.recording("zz").await?.is_none(), "unknown id");

    let ids = |rows: Vec<RecordingRow>| -> Vec<String> {
        rows.into_iter().map(|r| r.start.session_id).collect()
    };
    ensure_eq!(
        ids(s.recordings(RecordingFilter::default()).await?),
        ["c", "b", "a"]
    );
    let f = |f: RecordingFilter| f;
    ensure_eq!(
        ids(s
            .recordings(f(RecordingFilter {
                identity: Some("alice".to_owned()),
                ..Default::default()
            }))
            .await?),
        ["c", "a"]
    );
    ensure_eq!(
        ids(s
            .recordings(RecordingFilter {
                route: Some("db".to_owned()),
                ..Default::default()
            })
            .await?),
        ["b", "a"]
    );
    ensure_eq!(
        ids(s
            .recordings(RecordingFilter {
                since_ms: Some(1500),
                until_ms: Some(3000),
                ..Default::default()
            })
            .await?),
        ["b"]
    );
    ensure_eq!(
        ids(s
            .recordings(RecordingFilter {
                status: Some(RecordingStatus::Failed),
                ..Default::default()
            })
            .await?),
        ["b"]
    );
    ensure_eq!(
        ids(s
            .recordings(RecordingFilter {
                limit: 2,
                ..Default::default()
            })
            .await?),
        ["c", "b"]
    );

    // Sealing replaces the row and the channels with the final ones.
    let sealed = RecordingRow {
        start: RecordingStart {
            cert_serial: Some(42),
            ..start("a", "alice", "db", 1000)
        },
        ended_at_ms: Some(4000),
        duration_ms: Some(3000),
        status: RecordingStatus::Sealed,
        reason: None,
        bytes: 1234,
        exit_status: Some(0),
        meta_key: Some("sessions/a/meta.json".to_owned()),
    };
    let final_channels = vec![RecordingChannel {
        channel: "0".to_owned(),
        kind: "shell".to_owned(),
        command: None,
        record_input: false,
        output_bytes: 1234,
        segments: 3,
        sealed_key: Some("sessions/a/0.cast.zst".to_owned()),
        exit_status: Some(0),
    }];
    s.recording_sealed(sealed.clone(), final_channels.clone())
        .await?;
    ensure_eq!(s.recording("a").await?, Some((sealed, final_channels)));
    Ok(())
}
