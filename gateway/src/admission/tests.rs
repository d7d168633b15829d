//! Admission rules, without sockets: slots, shedding, penalties.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn limits(pool: usize, per_source: usize) -> Limits {
    Limits {
        max_unauthenticated: pool,
        max_unauthenticated_per_source: per_source,
        ..Limits::default()
    }
}

#[test]
fn netblocks_group_by_prefix_and_unmap_ipv4_in_ipv6() {
    assert_eq!(
        Netblock::of(ip("10.1.2.3"), 24, 64),
        Netblock::of(ip("10.1.2.200"), 24, 64)
    );
    assert_ne!(
        Netblock::of(ip("10.1.2.3"), 32, 64),
        Netblock::of(ip("10.1.2.4"), 32, 64)
    );
    assert_eq!(
        Netblock::of(ip("::ffff:10.1.2.3"), 32, 64),
        Netblock::of(ip("10.1.2.3"), 32, 64)
    );
    assert_eq!(
        Netblock::of(ip("2001:db8:1:2:aaaa::1"), 32, 64),
        Netblock::of(ip("2001:db8:1:2:bbbb::9"), 32, 64)
    );
    assert_eq!(
        Netblock::of(ip("10.1.2.3"), 24, 64).to_string(),
        "10.1.2.0/24"
    );
    assert_eq!(
        Netblock::of(ip("2001:db8:1:2:aaaa::1"), 32, 64).to_string(),
        "2001:db8:1:2::/64"
    );
}

#[test]
fn one_source_cannot_hold_more_than_its_share() {
    let a = Admission::new(limits(64, 2));
    let now = Instant::now();
    let _s1 = a.admit(ip("127.0.0.2"), now).unwrap();
    let _s2 = a.admit(ip("127.0.0.2"), now).unwrap();
    assert_eq!(
        a.admit(ip("127.0.0.2"), now).err(),
        Some(Refused::PerSource)
    );
    // Another source is unaffected.
    assert!(a.admit(ip("127.0.0.3"), now).is_ok());
    assert_eq!(a.counters.refused_per_source.load(Ordering::Relaxed), 1);
}

#[test]
fn a_full_pool_sheds_a_silent_holder_from_the_most_crowded_netblock() {
    let a = Admission::new(limits(3, 10));
    let t0 = Instant::now();
    // One real client that has finished its key exchange, and two silent
    // sockets from one flooding source.
    let real = a.admit(ip("127.0.0.9"), t0).unwrap();
    real.state.authenticating();
    let old = a
        .admit(ip("127.0.0.2"), t0 + Duration::from_millis(1))
        .unwrap();
    let young = a
        .admit(ip("127.0.0.2"), t0 + Duration::from_millis(2))
        .unwrap();
    // A newcomer gets in; the oldest silent socket of the crowd goes.
    let newcomer = a
        .admit(ip("127.0.0.5"), t0 + Duration::from_millis(3))
        .unwrap();
    assert!(
        old.state.shed.is_cancelled(),
        "the oldest silent holder is shed"
    );
    assert!(!young.state.shed.is_cancelled());
    assert!(
        !real.state.shed.is_cancelled(),
        "a client past the key exchange stays"
    );
    assert!(!newcomer.state.shed.is_cancelled());
    assert_eq!(a.counters.shed.load(Ordering::Relaxed), 1);
    // The pool still holds three.
    assert_eq!(lock(&a.inner).holders.len(), 3);
}

#[test]
fn a_full_pool_sheds_a_socket_that_never_spoke_before_a_client_in_its_key_exchange() {
    let a = Admission::new(limits(3, 10));
    let t0 = Instant::now();
    // A real client mid key exchange: it has sent its version line. It is
    // the oldest and alone in its netblock; the silent sockets are younger
    // and fewer per netblock than it would take to outrank it.
    let real = a.admit(ip("127.0.0.1"), t0).unwrap();
    assert!(real.state.read(21, 1 << 20));
    let silent = a
        .admit(ip("127.0.0.2"), t0 + Duration::from_millis(1))
        .unwrap();
    let junk = a
        .admit(ip("127.0.0.3"), t0 + Duration::from_millis(2))
        .unwrap();
    assert!(junk.state.read(4096, 1 << 20));
    let newcomer = a
        .admit(ip("127.0.0.4"), t0 + Duration::from_millis(3))
        .unwrap();
    assert!(silent.state.shed.is_cancelled(), "the silent socket goes");
    assert!(!real.state.shed.is_cancelled());
    assert!(!junk.state.shed.is_cancelled());
    // The next newcomer sheds the one before it, silent so far, and
    // still not the older real client.
    let _next = a
        .admit(ip("127.0.0.5"), t0 + Duration::from_millis(4))
        .unwrap();
    assert!(newcomer.state.shed.is_cancelled());
    assert!(!real.state.shed.is_cancelled());
}

#[test]
fn a_full_pool_of_clients_past_the_key_exchange_sheds_the_oldest() {
    let a = Admission::new(limits(2, 10));
    let t0 = Instant::now();
    let first = a.admit(ip("127.0.0.2"), t0).unwrap();
    first.state.authenticating();
    let second = a
        .admit(ip("127.0.0.3"), t0 + Duration::from_millis(1))
        .unwrap();
    second.state.authenticating();
    let _third = a
        .admit(ip("127.0.0.4"), t0 + Duration::from_millis(2))
        .unwrap();
    assert!(first.state.shed.is_cancelled());
    assert!(!second.state.shed.is_cancelled());
}

#[test]
fn an_authenticated_slot_is_freed_and_not_penalized() {
    let a = Admission::new(limits(1, 1));
    let now = Instant::now();
    let s = a.admit(ip("127.0.0.2"), now).unwrap();
    s.state.authenticating();
    s.authenticated();
    // The slot is free at once, before the connection ends.
    let next = a.admit(ip("127.0.0.2"), now).unwrap();
    assert!(!s.state.shed.is_cancelled());
    drop(s);
    drop(next);
    assert!(
        lock(&a.inner)
            .penalties
            .contains_key(&Netblock::of(ip("127.0.0.2"), 32, 64))
    );
    // `next` left without trying: one noauth second, nothing for `s`.
    let pen = lock(&a.inner).penalties[&Netblock::of(ip("127.0.0.2"), 32, 64)];
    assert!(pen.expires <= Instant::now() + Duration::from_secs(1));
    assert!(!pen.enforced);
}

#[test]
fn penalties_add_up_to_the_minimum_then_refuse_until_they_run_out() {
    let a = Admission::new(limits(64, 64));
    let t0 = Instant::now();
    let src = ip("127.0.0.7");
    // Two failed authentications: 10 s, below the 15 s minimum.
    a.penalize(src, "authfail", t0);
    a.penalize(src, "authfail", t0);
    assert!(a.admit(src, t0).is_ok());
    // The third reaches it: refused for 15 s.
    a.penalize(src, "authfail", t0);
    assert_eq!(
        a.admit(src, t0 + Duration::from_secs(1)).err(),
        Some(Refused::Penalty)
    );
    assert_eq!(
        a.admit(src, t0 + Duration::from_secs(14)).err(),
        Some(Refused::Penalty)
    );
    // The rest of its netblock is refused too; other sources are not.
    assert!(
        a.admit(ip("127.0.0.8"), t0 + Duration::from_secs(1))
            .is_ok()
    );
    // Once it has run down, the source is back.
    assert!(a.admit(src, t0 + Duration::from_secs(16)).is_ok());
    assert_eq!(a.counters.penalties.load(Ordering::Relaxed), 1);
    assert!(a.counters.refused_penalty.load(Ordering::Relaxed) >= 2);
}

#[test]
fn penalties_never_exceed_the_maximum() {
    let a = Admission::new(limits(64, 64));
    let t0 = Instant::now();
    let src = ip("127.0.0.7");
    for _ in 0..1000 {
        a.penalize(src, "grace_exceeded", t0);
    }
    let pen = lock(&a.inner).penalties[&Netblock::of(src, 32, 64)];
    assert_eq!(pen.expires, t0 + Duration::from_secs(600));
    assert!(a.admit(src, t0 + Duration::from_secs(601)).is_ok());
}

#[test]
fn exempt_sources_and_disabled_penalties_are_never_refused() {
    let mut l = limits(64, 64);
    l.penalties.exempt = vec!["127.0.0.0/30".parse().unwrap()];
    let a = Admission::new(l);
    let t0 = Instant::now();
    for _ in 0..10 {
        a.penalize(ip("127.0.0.2"), "authfail", t0);
    }
    assert!(a.admit(ip("127.0.0.2"), t0).is_ok());

    let mut l = limits(64, 64);
    l.penalties.enabled = false;
    let a = Admission::new(l);
    for _ in 0..10 {
        a.penalize(ip("127.0.0.2"), "authfail", t0);
    }
    assert!(a.admit(ip("127.0.0.2"), t0).is_ok());
}

#[test]
fn the_penalty_table_is_bounded() {
    let mut l = limits(64, 64);
    l.penalties.max_sources = 2;
    let a = Admission::new(l);
    let t0 = Instant::now();
    for last in 2..10u8 {
        for _ in 0..4 {
            a.penalize(IpAddr::from([127, 0, 0, last]), "authfail", t0);
        }
    }
    assert_eq!(lock(&a.inner).penalties.len(), 2);
    // Untracked sources are let in (permissive overflow).
    assert!(a.admit(ip("127.0.0.9"), t0).is_ok());
    assert_eq!(a.admit(ip("127.0.0.2"), t0).err(), Some(Refused::Penalty));
}

#[test]
fn the_preauth_byte_cap_counts_until_authentication() {
    let a = Admission::new(limits(64, 64));
    let s = a.admit(ip("127.0.0.2"), Instant::now()).unwrap();
    assert!(s.state.read(1000, 1500));
    assert!(!s.state.read(1000, 1500));
    s.authenticated();
    assert!(s.state.read(1 << 30, 1500), "no cap after authentication");
}
