//! Capabilities (what a session may do) and obligations (what the gateway
//! must do for it), and how rules narrow them.
//!
//! **Invariant:** a rule can only narrow. The capabilities in force are the
//! route's statement intersected with every applicable rule's, and each
//! obligation is the strictest of the route's and the rules'. A rule that
//! says `agent: true` on a route without agent forwarding changes nothing.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

/// What a session may do on the target. The gateway enforces each field
/// itself, and the certificate it mints carries the matching extensions
/// ([`Capabilities::certificate_extensions`]) so the target enforces them
/// too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    /// Allocate a pseudo-terminal (`permit-pty`). Route default: on.
    pub pty: bool,
    /// Start a login shell. Route default: on.
    pub shell: bool,
    /// Run commands. Route default: any command.
    pub exec: Exec,
    /// The sftp subsystem. Route default: on.
    pub sftp: bool,
    /// `ssh -L` and `-W` (direct-tcpip). Route default: off.
    pub port_forward_local: Forwarding,
    /// `ssh -R` (tcpip-forward); destinations are the listening address on
    /// the target. Route default: off.
    pub port_forward_remote: Forwarding,
    /// Agent forwarding (`permit-agent-forwarding`). Route default: off.
    pub agent: bool,
    /// X11 forwarding (`permit-X11-forwarding`). Route default: off.
    pub x11: bool,
}

/// Which commands a session may run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exec {
    /// No exec requests.
    Denied,
    /// Any command.
    Any,
    /// Only this command, written `exec: {only: "COMMAND"}`. The certificate
    /// then carries it as `force-command`, which sshd runs instead of
    /// whatever the client asks for (shells and subsystems included), so
    /// `shell` and `sftp` are off whenever `exec` is `Only`.
    Only(Arc<str>),
}

/// Where a port forward may go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Forwarding {
    /// No forwarding.
    Denied,
    /// Any destination.
    Any,
    /// Only destinations every one of these lists allows. A route states
    /// one list; each narrowing rule adds its own.
    Only(Arc<[Arc<[DestinationPattern]>]>),
}

impl Forwarding {
    /// Whether a forward to `host:port` is allowed. `host` is what the
    /// client asked for: a name, an IPv4 address or an IPv6 address (with or
    /// without brackets). Names are compared without regard to ASCII case.
    ///
    /// This is pure: a name never matches a CIDR pattern, because resolving
    /// it would be IO. The gateway should check the name the client sent
    /// and dial exactly that.
    pub fn destination_allowed(&self, host: &str, port: u16) -> bool {
        match self {
            Forwarding::Denied => false,
            Forwarding::Any => true,
            Forwarding::Only(lists) => {
                let host = host
                    .strip_prefix('[')
                    .and_then(|h| h.strip_suffix(']'))
                    .unwrap_or(host);
                let ip = host.parse::<IpAddr>().ok().map(unmap);
                lists
                    .iter()
                    .all(|list| list.iter().any(|p| p.matches(host, ip, port)))
            }
        }
    }

    /// Whether any forward at all is allowed.
    pub fn is_allowed(&self) -> bool {
        !matches!(self, Forwarding::Denied)
    }

    fn narrow(&self, by: &Forwarding) -> Forwarding {
        match (self, by) {
            (Forwarding::Denied, _) | (_, Forwarding::Denied) => Forwarding::Denied,
            (Forwarding::Any, other) | (other, Forwarding::Any) => other.clone(),
            (Forwarding::Only(a), Forwarding::Only(b)) => {
                if Arc::ptr_eq(a, b) {
                    return self.clone();
                }
                let mut lists: Vec<Arc<[DestinationPattern]>> = a.to_vec();
                for list in b.iter() {
                    if !lists.iter().any(|l| Arc::ptr_eq(l, list)) {
                        lists.push(list.clone());
                    }
                }
                Forwarding::Only(lists.into())
            }
        }
    }
}

/// Treats an IPv4-mapped IPv6 address (`::ffff:10.0.0.1`) as the IPv4
/// address it carries, so that IPv4 CIDRs match clients on dual-stack
/// sockets.
pub(crate) fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// One `host:port` destination pattern.
///
/// - host: `*` (any), `*.example.com` (any name ending in `.example.com`),
///   an exact name or address, or a CIDR (`10.0.0.0/8`, `[fd00::/8]`);
///   IPv6 addresses and networks are written in brackets.
/// - port: `*`, a number, or a range `8000-8999`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationPattern {
    host: HostPattern,
    ports: (u16, u16),
    text: Box<str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Any,
    /// Lowercase name, or the textual address.
    Exact(Box<str>),
    /// Lowercase suffix including its leading dot.
    Suffix(Box<str>),
    Net(IpNet),
}

impl DestinationPattern {
    /// Parses a pattern; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (host, after) = rest
                .split_once(']')
                .ok_or_else(|| format!("`{text}` has no closing `]`"))?;
            let port = after.strip_prefix(':').ok_or_else(|| {
                format!("`{text}` needs a port: write `[{host}]:PORT` or `[{host}]:*`")
            })?;
            (host, port)
        } else {
            text.rsplit_once(':').ok_or_else(|| {
                format!("`{text}` needs a port: write `{text}:PORT` or `{text}:*`")
            })?
        };
        if host.is_empty() {
            return Err(format!("`{text}` has no host; use `*` for any host"));
        }
        let host_pattern = if host == "*" {
            HostPattern::Any
        } else if let Some(suffix) = host.strip_prefix("*.") {
            HostPattern::Suffix(format!(".{}", suffix.to_ascii_lowercase()).into())
        } else if host.contains('/') {
            let net: IpNet = host
                .parse()
                .map_err(|_| format!("`{host}` is not a valid CIDR network"))?;
            HostPattern::Net(net.trunc())
        } else if host.contains('*') {
            return Err(format!(
                "`{host}`: `*` may only stand alone or start a name as `*.`"
            ));
        } else if let Ok(ip) = host.parse::<IpAddr>() {
            HostPattern::Net(IpNet::from(unmap(ip)))
        } else {
            HostPattern::Exact(host.to_ascii_lowercase().into())
        };
        let ports = parse_ports(port).ok_or_else(|| {
            format!("`{port}` is not a port: use a number, a range like `8000-8999`, or `*`")
        })?;
        Ok(DestinationPattern {
            host: host_pattern,
            ports,
            text: text.into(),
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    fn matches(&self, host: &str, ip: Option<IpAddr>, port: u16) -> bool {
        if port < self.ports.0 || port > self.ports.1 {
            return false;
        }
        match &self.host {
            HostPattern::Any => true,
            HostPattern::Exact(name) => name.eq_ignore_ascii_case(host),
            HostPattern::Suffix(suffix) => {
                ip.is_none()
                    && host.len() > suffix.len()
                    && host
                        .get(host.len() - suffix.len()..)
                        .is_some_and(|end| end.eq_ignore_ascii_case(suffix))
            }
            HostPattern::Net(net) => ip.is_some_and(|ip| net.contains(&ip)),
        }
    }
}

fn parse_ports(text: &str) -> Option<(u16, u16)> {
    if text == "*" {
        return Some((0, u16::MAX));
    }
    if let Some((lo, hi)) = text.split_once('-') {
        let (lo, hi) = (lo.parse().ok()?, hi.parse().ok()?);
        return (lo <= hi).then_some((lo, hi));
    }
    let port = text.parse().ok()?;
    Some((port, port))
}

impl Capabilities {
    /// Nothing at all: what a denial carries.
    pub fn none() -> Self {
        Capabilities {
            pty: false,
            shell: false,
            exec: Exec::Denied,
            sftp: false,
            port_forward_local: Forwarding::Denied,
            port_forward_remote: Forwarding::Denied,
            agent: false,
            x11: false,
        }
    }

    /// The OpenSSH certificate extensions that grant exactly these
    /// capabilities, in the order `ssh-keygen -L` lists them.
    ///
    /// `permit-port-forwarding` covers both directions in OpenSSH, so it is
    /// present when either is allowed; the gateway enforces direction and
    /// destinations itself. `permit-user-rc` is never granted.
    pub fn certificate_extensions(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.x11 {
            out.push("permit-X11-forwarding");
        }
        if self.agent {
            out.push("permit-agent-forwarding");
        }
        if self.port_forward_local.is_allowed() || self.port_forward_remote.is_allowed() {
            out.push("permit-port-forwarding");
        }
        if self.pty {
            out.push("permit-pty");
        }
        out
    }

    /// The certificate's `force-command` critical option: the one command
    /// when `exec` is [`Exec::Only`].
    pub fn force_command(&self) -> Option<&str> {
        match &self.exec {
            Exec::Only(cmd) => Some(cmd),
            _ => None,
        }
    }

    /// These capabilities narrowed by a rule's mask.
    pub(crate) fn narrow(&self, mask: &CapabilityMask) -> Capabilities {
        let b = |route: bool, rule: Option<bool>| route && rule.unwrap_or(true);
        let exec = match (&self.exec, &mask.exec) {
            (e, None) => e.clone(),
            (Exec::Denied, _) | (_, Some(Exec::Denied)) => Exec::Denied,
            (Exec::Any, Some(e)) => e.clone(),
            (e, Some(Exec::Any)) => e.clone(),
            (Exec::Only(a), Some(Exec::Only(b))) if a == b => Exec::Only(a.clone()),
            (Exec::Only(_), Some(Exec::Only(_))) => Exec::Denied,
        };
        let fwd = |route: &Forwarding, rule: &Option<Forwarding>| match rule {
            None => route.clone(),
            Some(rule) => route.narrow(rule),
        };
        Capabilities {
            pty: b(self.pty, mask.pty),
            shell: b(self.shell, mask.shell),
            exec,
            sftp: b(self.sftp, mask.sftp),
            port_forward_local: fwd(&self.port_forward_local, &mask.port_forward_local),
            port_forward_remote: fwd(&self.port_forward_remote, &mask.port_forward_remote),
            agent: b(self.agent, mask.agent),
            x11: b(self.x11, mask.x11),
        }
        .normalized()
    }

    /// The intersection of two capability sets (both already narrowed from
    /// the same route).
    pub(crate) fn intersect(&self, other: &Capabilities) -> Capabilities {
        self.narrow(&CapabilityMask {
            pty: Some(other.pty),
            shell: Some(other.shell),
            exec: Some(other.exec.clone()),
            sftp: Some(other.sftp),
            port_forward_local: Some(other.port_forward_local.clone()),
            port_forward_remote: Some(other.port_forward_remote.clone()),
            agent: Some(other.agent),
            x11: Some(other.x11),
        })
    }

    /// A forced command replaces shells and subsystems in sshd, so they are
    /// off whenever `exec` is `Only`.
    fn normalized(mut self) -> Capabilities {
        if matches!(self.exec, Exec::Only(_)) {
            self.shell = false;
            self.sftp = false;
        }
        self
    }
}

/// A capability statement with every field optional: a route's (unstated
/// fields take defaults) or a rule's (unstated fields leave the route's
/// value).
#[derive(Debug, Clone, Default)]
pub(crate) struct CapabilityMask {
    pub pty: Option<bool>,
    pub shell: Option<bool>,
    pub exec: Option<Exec>,
    pub sftp: Option<bool>,
    pub port_forward_local: Option<Forwarding>,
    pub port_forward_remote: Option<Forwarding>,
    pub agent: Option<bool>,
    pub x11: Option<bool>,
}

impl CapabilityMask {
    /// Fills fields this mask leaves unstated from `other`.
    pub fn or(&mut self, other: &CapabilityMask) {
        fn fill<T: Clone>(a: &mut Option<T>, b: &Option<T>) {
            if a.is_none() {
                a.clone_from(b);
            }
        }
        fill(&mut self.pty, &other.pty);
        fill(&mut self.shell, &other.shell);
        fill(&mut self.exec, &other.exec);
        fill(&mut self.sftp, &other.sftp);
        fill(&mut self.port_forward_local, &other.port_forward_local);
        fill(&mut self.port_forward_remote, &other.port_forward_remote);
        fill(&mut self.agent, &other.agent);
        fill(&mut self.x11, &other.x11);
    }

    /// A route's capabilities: stated fields, defaults for the rest.
    pub fn route_capabilities(&self) -> Capabilities {
        Capabilities {
            pty: self.pty.unwrap_or(true),
            shell: self.shell.unwrap_or(true),
            exec: self.exec.clone().unwrap_or(Exec::Any),
            sftp: self.sftp.unwrap_or(true),
            port_forward_local: self
                .port_forward_local
                .clone()
                .unwrap_or(Forwarding::Denied),
            port_forward_remote: self
                .port_forward_remote
                .clone()
                .unwrap_or(Forwarding::Denied),
            agent: self.agent.unwrap_or(false),
            x11: self.x11.unwrap_or(false),
        }
        .normalized()
    }
}

/// How a session is recorded. Ordered from least to most strict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RecordMode {
    /// Not recorded.
    Off,
    /// Recorded when storage works; the session goes on when it does not.
    BestEffort,
    /// Output is spooled before the user sees it; a session whose
    /// recording cannot be kept is refused or ended.
    Strict,
}

impl RecordMode {
    /// The name used in policies and audit events.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordMode::Off => "off",
            RecordMode::BestEffort => "best_effort",
            RecordMode::Strict => "strict",
        }
    }
}

/// What the gateway must do for an allowed session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Obligations {
    /// How to record. Route default: `best_effort`.
    pub record: RecordMode,
    /// Whether to record keystrokes (`i` events). Route default: off,
    /// because keystrokes contain passwords.
    pub record_input: bool,
    /// The longest a session may last, counted from its start. Route
    /// default: unlimited.
    pub max_session: Option<Duration>,
    /// How often the identity must be re-confirmed with the IdP (an ID-token
    /// refresh), counted from the last sign-in. Route default: never.
    pub reauth_every: Option<Duration>,
    /// Lifetime of the certificate minted for the target. Route default:
    /// 5 minutes.
    pub cert_ttl: Duration,
}

/// The default certificate lifetime (design §4: 5 minutes).
pub const DEFAULT_CERT_TTL: Duration = Duration::from_secs(300);

/// Obligations as stated, every field optional (see [`CapabilityMask`]).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ObligationMask {
    pub record: Option<RecordMode>,
    pub record_input: Option<bool>,
    pub max_session: Option<Duration>,
    pub reauth_every: Option<Duration>,
    pub cert_ttl: Option<Duration>,
}

impl ObligationMask {
    pub fn or(&mut self, other: &ObligationMask) {
        self.record = self.record.or(other.record);
        self.record_input = self.record_input.or(other.record_input);
        self.max_session = self.max_session.or(other.max_session);
        self.reauth_every = self.reauth_every.or(other.reauth_every);
        self.cert_ttl = self.cert_ttl.or(other.cert_ttl);
    }

    pub fn route_obligations(&self) -> Obligations {
        Obligations {
            record: self.record.unwrap_or(RecordMode::BestEffort),
            record_input: self.record_input.unwrap_or(false),
            max_session: self.max_session,
            reauth_every: self.reauth_every,
            cert_ttl: self.cert_ttl.unwrap_or(DEFAULT_CERT_TTL),
        }
    }
}

impl Obligations {
    /// These obligations made at least as strict as a rule's.
    pub(crate) fn narrow(&self, mask: &ObligationMask) -> Obligations {
        Obligations {
            record: self.record.max(mask.record.unwrap_or(RecordMode::Off)),
            record_input: self.record_input || mask.record_input.unwrap_or(false),
            max_session: min_opt(self.max_session, mask.max_session),
            reauth_every: min_opt(self.reauth_every, mask.reauth_every),
            cert_ttl: self.cert_ttl.min(mask.cert_ttl.unwrap_or(self.cert_ttl)),
        }
    }

    /// The stricter of two sets of obligations.
    pub(crate) fn strictest(&self, other: &Obligations) -> Obligations {
        self.narrow(&ObligationMask {
            record: Some(other.record),
            record_input: Some(other.record_input),
            max_session: other.max_session,
            reauth_every: other.reauth_every,
            cert_ttl: Some(other.cert_ttl),
        })
    }
}

fn min_opt(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
