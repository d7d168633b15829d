//! Every line the SSH user reads from the gateway, in one place.
//!
//! A refusal is one plain line that names the route but never internal
//! detail (addresses, keys, stack traces); the audit log has that. Lines
//! that travel as keyboard-interactive text or as a disconnect message go
//! through [`for_prompt`] first: OpenSSH prints non-ASCII bytes there as
//! `\ooo` escapes unless the client runs in a UTF-8 locale, so a policy
//! reason with an en dash (`09:00–18:00`) or an e-mail address with an
//! umlaut would arrive garbled (issue 10). Lines written to a channel's
//! stderr reach the user's terminal as bytes and stay as they are.

use policy::lang::Decision;

/// The line of a strict route whose recording can no longer be stored.
pub(crate) const RECORDING_LOST: &str =
    "gatehouse: session ended: the recording can no longer be stored and this route requires it";

/// The target could not be reached.
pub(crate) fn target_unreachable(route: &str) -> String {
    format!("gatehouse: target {route} unreachable")
}

/// The target's host key is not the one the route pins or certifies.
pub(crate) fn host_key_rejected(route: &str) -> String {
    format!("gatehouse: target {route} presented an unexpected host key; refusing to connect")
}

/// The target refused the gateway's certificate.
pub(crate) fn cert_rejected(route: &str, login: &str) -> String {
    format!(
        "gatehouse: target {route} refused the gateway's certificate for login {login} (does it trust the Gatehouse user CA?)"
    )
}

/// The target broke the protocol during setup.
pub(crate) fn target_failed(route: &str) -> String {
    format!("gatehouse: target {route} failed during setup")
}

/// The user denied the sign-in at the IdP.
pub(crate) const SIGN_IN_DENIED: &str = "gatehouse: sign-in was denied";

/// The device code or the sign-in link expired.
pub(crate) const SIGN_IN_EXPIRED: &str = "gatehouse: sign-in expired, run ssh again";

/// The client went away during sign-in.
pub(crate) const SIGN_IN_CANCELLED: &str = "gatehouse: sign-in cancelled";

/// `idp.ssh_sign_in: device` with an IdP that has no device grant.
pub(crate) const SIGN_IN_NO_DEVICE_GRANT: &str =
    "gatehouse: sign-in is not available: the identity provider offers no device sign-in";

/// `idp.ssh_sign_in: link` without a web address.
pub(crate) const SIGN_IN_NO_WEB_ADDRESS: &str =
    "gatehouse: sign-in is not available: this gateway has no web address for a sign-in link";

/// `idp.ssh_sign_in: auto` with neither the device grant nor a web address.
pub(crate) const SIGN_IN_NEITHER_WAY: &str = "gatehouse: sign-in is not available: the identity provider offers no device sign-in and this gateway has no web address for a sign-in link";

/// The IdP could not be reached.
pub(crate) const IDP_UNAVAILABLE: &str = "gatehouse: identity provider unavailable";

/// The IdP's ID token did not verify.
pub(crate) const TOKEN_REJECTED: &str =
    "gatehouse: sign-in failed: the identity provider's token was not valid";

/// The signed-in e-mail's domain is not allowed.
pub(crate) fn domain_not_allowed(email: &str) -> String {
    format!("gatehouse: access denied: {email} is not from an allowed domain")
}

/// Anything on our side; the audit log has the detail.
pub(crate) const INTERNAL: &str =
    "gatehouse: internal error; the administrator can find details in the audit log";

/// A user name without `@ROUTE` (other than `cert`).
pub(crate) fn no_route(user: &str) -> String {
    format!("gatehouse: no route in user name {user:?}: connect as ssh LOGIN@ROUTE@GATEWAY")
}

/// The direct-access policy refused a certificate (issue 16).
pub(crate) fn direct_denied(reason: &str) -> String {
    format!("gatehouse: direct access denied: {reason}")
}

/// `cert` without a proven key: there is nothing to certify.
pub(crate) const DIRECT_NEEDS_KEY: &str = "gatehouse: a direct-access certificate is for the key you sign in with; connect with ssh -i KEY cert@GATEWAY";

/// A route the configuration does not have.
pub(crate) fn unknown_route(route: &str) -> String {
    format!("gatehouse: unknown route {route:?}")
}

/// A login the route's `logins:` list does not offer.
pub(crate) fn login_not_allowed(login: &str, route: &str) -> String {
    format!("gatehouse: access denied: login {login} is not allowed on route {route}")
}

/// Why a decision denies, as the user reads it: `route prod-db: outside
/// 09:00–18:00 Europe/Berlin`.
pub(crate) fn denial_reason(route: &str, decision: &Decision) -> String {
    format!("route {route}: {}", decision.reason)
}

/// The policy denied the connection.
pub(crate) fn access_denied(route: &str, decision: &Decision) -> String {
    format!(
        "gatehouse: access denied: {}",
        denial_reason(route, decision)
    )
}

/// A key that is neither registered nor signed in (no IdP configured).
pub(crate) fn key_not_registered(fingerprint: &str) -> String {
    format!(
        "gatehouse: access denied: key {fingerprint} is not registered; ask an administrator to add it"
    )
}

/// A client that offered no key at all (no IdP configured).
pub(crate) const NO_KEY_OFFERED: &str =
    "gatehouse: access denied: offer a registered SSH key (passwords are not accepted)";

/// The version and key exchange did not finish within `handshake_timeout`.
/// The state database failed while a client logged in (locked, disk
/// full): the gateway cannot see revocations then, so it refuses.
pub(crate) const STATE_UNAVAILABLE: &str =
    "gatehouse: the gateway cannot reach its state database; try again in a minute";

pub(crate) const HANDSHAKE_TIMED_OUT: &str = "gatehouse: key exchange timed out";

/// The unauthenticated pool was full and a newcomer took this slot.
pub(crate) const SHED: &str =
    "gatehouse: too many connections are waiting to log in; run ssh again";

/// Authentication did not finish within `auth_timeout`.
pub(crate) const AUTH_TIMED_OUT: &str = "gatehouse: authentication timed out";

/// The gateway is stopping.
pub(crate) const SHUTTING_DOWN: &str = "gatehouse: the gateway is shutting down";

/// A live session whose policy no longer allows it.
pub(crate) fn access_revoked(why: &str) -> String {
    format!("gatehouse: session ended: access revoked ({why})")
}

/// A live session whose sign-in was revoked with `gatehouse logins revoke`.
pub(crate) fn sign_in_revoked() -> String {
    access_revoked("your sign-in was revoked by an administrator")
}

/// A live session whose sign-in the IdP would not renew.
pub(crate) const REAUTH_FAILED: &str =
    "gatehouse: session ended: your sign-in could not be renewed; run ssh again to sign in";

/// A session ended with `gatehouse sessions kill`.
pub(crate) fn killed(reason: &str) -> String {
    if reason.is_empty() {
        "gatehouse: session ended by an administrator".to_owned()
    } else {
        format!("gatehouse: session ended by an administrator: {reason}")
    }
}

/// A request that starts a channel, refused by the policy.
pub(crate) fn not_allowed(what: &str, route: &str) -> String {
    format!("gatehouse: {what} is not allowed on route {route}")
}

/// Agent forwarding refused by the policy.
pub(crate) fn agent_not_allowed(route: &str) -> String {
    not_allowed("agent forwarding", route)
}

/// A port forward refused by the policy.
pub(crate) fn forward_not_allowed(destination: &str, route: &str) -> String {
    format!("gatehouse: port forwarding to {destination} is not allowed on route {route}")
}

/// The target could not reach a forward's destination.
pub(crate) fn forward_unreachable(route: &str, destination: &str) -> String {
    format!("gatehouse: target {route} could not connect to {destination}")
}

/// The target did not answer a forward in time.
pub(crate) fn forward_no_answer(route: &str, destination: &str) -> String {
    format!("gatehouse: target {route} did not answer the forward to {destination}")
}

/// Too many forwarded channels on one connection.
pub(crate) fn too_many_forwards(max: usize) -> String {
    format!("gatehouse: at most {max} forwarded channels per connection")
}

/// Too many session channels on one connection.
pub(crate) fn too_many_channels(max: usize) -> String {
    format!("gatehouse: at most {max} channels per connection")
}

/// A strict route whose recording cannot start.
pub(crate) fn recording_unavailable(route: &str) -> String {
    format!("gatehouse: recording is unavailable and route {route} requires recording")
}

/// A strict route whose storage did not answer the probe.
pub(crate) fn recording_storage_unavailable(route: &str) -> String {
    format!("gatehouse: recording storage is unavailable and route {route} requires recording")
}

/// A client that flooded input while not reading output.
pub(crate) fn channel_overrun(limit_mib: usize) -> String {
    format!(
        "gatehouse: channel closed: more than {limit_mib} MiB of input waited while output went unread"
    )
}

/// Too many sign-ins (device codes or links) pending from one address.
pub(crate) const SIGN_INS_PER_SOURCE: &str = "gatehouse: too many sign-ins in progress from your address; finish or cancel one, then run ssh again";

/// Too many sign-ins (device codes or links) pending gateway-wide.
pub(crate) const SIGN_INS_GLOBAL: &str =
    "gatehouse: too many sign-ins in progress; try again in a minute";

/// A line as written on a channel: on a terminal (the client asked for a
/// pty, so its terminal is raw) with `\r\n`, and with `after_output` a
/// `\r\n` first so it starts on a line of its own; on a channel without a
/// terminal (piped or logged output) with a plain `\n`, and nothing
/// before it (issue 15: no blank line, no stray `^M`).
pub(crate) fn on_channel(line: &str, terminal: bool, after_output: bool) -> String {
    match (terminal, after_output) {
        (true, true) => format!("\r\n{line}\r\n"),
        (true, false) => format!("{line}\r\n"),
        (false, _) => format!("{line}\n"),
    }
}

/// A line as it can travel in keyboard-interactive text or a disconnect
/// message: plain printable ASCII (plus newlines), readable in any client
/// locale. Non-ASCII characters are transliterated (`–` becomes `-`, `ü`
/// becomes `u`) and other control characters dropped, so nothing a policy
/// author or an IdP wrote can reach the client's terminal as an escape.
pub(crate) fn for_prompt(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c == '\n' || (' '..='~').contains(&c) {
            out.push(c);
        } else if c == '\t' {
            out.push(' ');
        } else if !c.is_control() {
            let ascii = deunicode::deunicode_char(c).unwrap_or("?");
            out.extend(ascii.chars().filter(|c| (' '..='~').contains(c)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::for_prompt;

    #[test]
    fn prompt_text_is_printable_ascii() {
        let cases = [
            (
                "gatehouse: access denied: route db: outside 15:54–16:04 UTC",
                "gatehouse: access denied: route db: outside 15:54-16:04 UTC",
            ),
            (
                "gatehouse: access denied: jürgen@exämple.com is not from an allowed domain",
                "gatehouse: access denied: jurgen@example.com is not from an allowed domain",
            ),
            ("route “prod” — Zürich\n", "route \"prod\" -- Zurich\n"),
            ("bell\u{7}\u{1b}[31mred\ttab", "bell[31mred tab"),
            ("plain line", "plain line"),
        ];
        for (input, want) in cases {
            let got = for_prompt(input);
            assert_eq!(got, want, "{input:?}");
            assert!(got.bytes().all(|b| b == b'\n' || (0x20..0x7f).contains(&b)));
        }
    }
}
