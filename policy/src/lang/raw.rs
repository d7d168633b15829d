//! Raw policy types: exactly what the YAML says, with source positions.
//!
//! These types are the boundary between a configuration file and the
//! compiled policy. The gateway's config parser embeds them in its own raw
//! config (`policies:` at the top level, `policy:` in each route), and
//! [`compile`](super::compile) turns them into a
//! [`PolicySet`](super::PolicySet), reporting every problem with its line
//! and column.
//!
//! Fixed-shape mappings are structs with `deny_unknown_fields`, so a typo in
//! a key is a parse error that points at the key. Conditions (`when:`) are
//! kept as a positioned YAML tree ([`Node`]) because their keys are open
//! (`claim.<name>`); the compiler checks every key and reports an unknown
//! criterion at its own line and column.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
pub use serde_saphyr::{Location, Spanned};

/// A YAML value with the position it was written at.
///
/// Used for conditions, whose keys are open, and for values whose shape
/// decides their meaning (a bare scalar, a list, or a mapping of matchers).
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// The value itself.
    pub value: NodeValue,
    /// Where the value was written (for an alias, where it was used).
    pub at: Location,
}

/// The shape of a [`Node`].
#[derive(Debug, Clone, PartialEq)]
pub enum NodeValue {
    /// `~`, `null` or an empty value.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// A string (quoted or plain).
    Str(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in the order written. Keys are nodes so that an unknown
    /// key can be reported where it stands.
    Map(Vec<(Node, Node)>),
}

impl NodeValue {
    /// A short name of the shape, for messages such as "expected a list,
    /// found a mapping".
    pub fn kind(&self) -> &'static str {
        match self {
            NodeValue::Null => "nothing",
            NodeValue::Bool(_) => "a boolean",
            NodeValue::Int(_) | NodeValue::Float(_) => "a number",
            NodeValue::Str(_) => "a string",
            NodeValue::Seq(_) => "a list",
            NodeValue::Map(_) => "a mapping",
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<NodeValue>::deserialize(deserializer)?;
        Ok(Node {
            value: spanned.value,
            at: spanned.referenced,
        })
    }
}

impl<'de> Deserialize<'de> for NodeValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = NodeValue;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a YAML value")
    }
    fn visit_unit<E>(self) -> Result<NodeValue, E> {
        Ok(NodeValue::Null)
    }
    fn visit_none<E>(self) -> Result<NodeValue, E> {
        Ok(NodeValue::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<NodeValue, D::Error> {
        NodeValue::deserialize(d)
    }
    fn visit_bool<E>(self, v: bool) -> Result<NodeValue, E> {
        Ok(NodeValue::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<NodeValue, E> {
        Ok(NodeValue::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<NodeValue, E> {
        i64::try_from(v)
            .map(NodeValue::Int)
            .map_err(|_| E::custom("integer too large"))
    }
    fn visit_f64<E>(self, v: f64) -> Result<NodeValue, E> {
        Ok(NodeValue::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<NodeValue, E> {
        Ok(NodeValue::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<NodeValue, E> {
        Ok(NodeValue::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NodeValue, A::Error> {
        let mut out = Vec::new();
        while let Some(node) = seq.next_element::<Node>()? {
            out.push(node);
        }
        Ok(NodeValue::Seq(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NodeValue, A::Error> {
        let mut out = Vec::new();
        while let Some(key) = map.next_key::<Node>()? {
            let value = map.next_value::<Node>()?;
            out.push((key, value));
        }
        Ok(NodeValue::Map(out))
    }
}

/// A mapping from names to values that keeps the order written and the
/// position of each name, so that duplicates and unknown references can be
/// reported where they stand.
///
/// YAML itself forbids duplicate keys in one mapping; the compiler still
/// checks, because an alias or merge can produce them.
#[derive(Debug, Clone)]
pub struct Named<T>(pub Vec<(Spanned<String>, T)>);

impl<T> Default for Named<T> {
    fn default() -> Self {
        Named(Vec::new())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Named<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NamedVisitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for NamedVisitor<T> {
            type Value = Named<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping of names")
            }
            fn visit_unit<E>(self) -> Result<Named<T>, E> {
                Ok(Named(Vec::new()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Named<T>, A::Error> {
                let mut out = Vec::new();
                while let Some(key) = map.next_key::<Spanned<String>>()? {
                    let value = map.next_value::<T>()?;
                    out.push((key, value));
                }
                Ok(Named(out))
            }
        }
        deserializer.deserialize_map(NamedVisitor(std::marker::PhantomData))
    }
}

/// The top level of a standalone policy file, as read by
/// [`parse_and_compile`](super::parse_and_compile) and `gatehouse policy
/// test`:
///
/// ```yaml
/// policies:            # shared policies, referenced by name
///   staff: { rules: [...] }
/// routes:              # route name -> that route's policy
///   prod-db: staff
///   staging: { include: [staff], rules: [...] }
/// ```
///
/// In `gatehouse.yaml` the same `policies:` mapping sits at the top level
/// and each route carries its own `policy:`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Document {
    /// Named, shared policies.
    #[serde(default)]
    pub policies: Named<PolicyDoc>,
    /// Each route's policy, by route name.
    #[serde(default)]
    pub routes: Named<Spanned<RoutePolicy>>,
}

/// A named, shared policy (an entry under the top-level `policies:`).
///
/// A route uses it whole (`policy: NAME`) or includes its rules
/// (`policy: {include: [NAME], ...}`).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyDoc {
    /// Free text for people reading the file; not used by Gatehouse.
    pub description: Option<String>,
    /// What a session may do on a route using this policy.
    pub capabilities: Option<Spanned<Capabilities>>,
    /// What the gateway must do for a session on a route using this policy.
    pub obligations: Option<Spanned<Obligations>>,
    /// The rules, in order.
    #[serde(default)]
    pub rules: Vec<Spanned<Rule>>,
}

/// A route's `policy:`: either the name of a shared policy, or a policy
/// written in place that may include the rules of shared ones.
///
/// ```yaml
/// policy: business-hours            # by reference
/// policy:                           # in place
///   include: [business-hours]
///   capabilities: { sftp: false }
///   rules:
///     - allow: dba
///       when: { groups: dba }
/// ```
///
/// Embed it as `Spanned<RoutePolicy>`: the span locates errors about the
/// reference itself (an unknown policy name).
#[derive(Debug, Clone)]
pub enum RoutePolicy {
    /// `policy: NAME`: the named policy, its capabilities, obligations and
    /// rules, unchanged.
    Reference(String),
    /// A policy written in the route.
    Inline(Box<InlinePolicy>),
}

/// A policy written in a route.
///
/// Rules are the included policies' rules, in the order of `include`, then
/// the route's own. Each capability and obligation is the route's own when
/// it states it, else that of the first included policy that states it,
/// else the default.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InlinePolicy {
    /// Shared policies whose rules (and unstated capabilities and
    /// obligations) this route takes.
    #[serde(default)]
    pub include: Vec<Spanned<String>>,
    /// What a session may do on this route.
    pub capabilities: Option<Spanned<Capabilities>>,
    /// What the gateway must do for a session on this route.
    pub obligations: Option<Spanned<Obligations>>,
    /// The route's own rules, after the included ones.
    #[serde(default)]
    pub rules: Vec<Spanned<Rule>>,
}

impl<'de> Deserialize<'de> for RoutePolicy {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RouteVisitor;
        impl<'de> Visitor<'de> for RouteVisitor {
            type Value = RoutePolicy;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("the name of a policy, or a policy mapping")
            }
            fn visit_str<E>(self, v: &str) -> Result<RoutePolicy, E> {
                Ok(RoutePolicy::Reference(v.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RoutePolicy, A::Error> {
                InlinePolicy::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(|p| RoutePolicy::Inline(Box::new(p)))
            }
        }
        deserializer.deserialize_any(RouteVisitor)
    }
}

/// One rule. Exactly one of `allow`, `deny` or `restrict` names it and says
/// what it does when its condition holds:
///
/// - `allow: NAME`: the request is allowed (unless a deny rule matches);
///   the first matching allow rule decides, and its own `capabilities` and
///   `obligations` narrow the route's.
/// - `deny: NAME`: the request is denied; any matching deny rule wins.
/// - `restrict: NAME`: allows nothing and denies nothing; its
///   `capabilities` and `obligations` narrow every allowed request it
///   matches, whichever allow rule decided ("contractors get no sftp").
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Names an allow rule.
    pub allow: Option<Spanned<String>>,
    /// Names a deny rule.
    pub deny: Option<Spanned<String>>,
    /// Names a restrict rule.
    pub restrict: Option<Spanned<String>>,
    /// The human reason given when this rule decides. Defaults to one
    /// derived from the condition.
    pub reason: Option<Spanned<String>>,
    /// The condition. Required: a rule for everyone says so with
    /// `when: {all: []}`.
    pub when: Option<Node>,
    /// Narrows the route's capabilities (allow and restrict rules only).
    pub capabilities: Option<Spanned<Capabilities>>,
    /// Tightens the route's obligations (allow and restrict rules only).
    pub obligations: Option<Spanned<Obligations>>,
}

/// Capabilities as written. Every field is optional: on a route an unstated
/// field takes its default, on a rule it leaves the route's value alone.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capabilities {
    /// Allocate a pseudo-terminal. Default on.
    pub pty: Option<Spanned<bool>>,
    /// Start a login shell. Default on.
    pub shell: Option<Spanned<bool>>,
    /// Run commands: `true`, `false`, or `{only: "COMMAND"}`. Default on.
    pub exec: Option<Spanned<Exec>>,
    /// The sftp subsystem. Default on.
    pub sftp: Option<Spanned<bool>>,
    /// `ssh -L` and `-W`: `true`, `false`, or a list of `host:port`
    /// patterns. Default off.
    pub port_forward_local: Option<Spanned<Forward>>,
    /// `ssh -R`: `true`, `false`, or a list of `host:port` patterns for the
    /// listening address on the target. Default off.
    pub port_forward_remote: Option<Spanned<Forward>>,
    /// Agent forwarding. Default off.
    pub agent: Option<Spanned<bool>>,
    /// X11 forwarding. Default off.
    pub x11: Option<Spanned<bool>>,
}

/// `exec:` as written.
#[derive(Debug, Clone)]
pub enum Exec {
    /// `true` or `false`.
    Allowed(bool),
    /// `{only: "COMMAND"}`: the one command a session may run.
    Only(Spanned<String>),
}

impl<'de> Deserialize<'de> for Exec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Only {
            only: Spanned<String>,
        }
        struct ExecVisitor;
        impl<'de> Visitor<'de> for ExecVisitor {
            type Value = Exec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("true, false, or {only: COMMAND}")
            }
            fn visit_bool<E>(self, v: bool) -> Result<Exec, E> {
                Ok(Exec::Allowed(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Exec, A::Error> {
                Only::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(|o| Exec::Only(o.only))
            }
        }
        deserializer.deserialize_any(ExecVisitor)
    }
}

/// A port-forwarding capability as written.
#[derive(Debug, Clone)]
pub enum Forward {
    /// `true` (any destination) or `false`.
    Allowed(bool),
    /// Only these `host:port` patterns.
    Only(Vec<Spanned<String>>),
}

impl<'de> Deserialize<'de> for Forward {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ForwardVisitor;
        impl<'de> Visitor<'de> for ForwardVisitor {
            type Value = Forward;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("true, false, or a list of host:port patterns")
            }
            fn visit_bool<E>(self, v: bool) -> Result<Forward, E> {
                Ok(Forward::Allowed(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Forward, A::Error> {
                let mut out = Vec::new();
                while let Some(p) = seq.next_element::<Spanned<String>>()? {
                    out.push(p);
                }
                Ok(Forward::Only(out))
            }
        }
        deserializer.deserialize_any(ForwardVisitor)
    }
}

/// Obligations as written. Durations use humantime syntax (`90s`, `15m`,
/// `8h`, `1h 30m`).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Obligations {
    /// `strict`, `best_effort` or `off`. Default `best_effort`.
    pub record: Option<Spanned<RecordMode>>,
    /// Record keystrokes too. Default off, because keystrokes contain
    /// passwords.
    pub record_input: Option<Spanned<bool>>,
    /// The longest a session may last. Default unlimited.
    pub max_session: Option<Spanned<String>>,
    /// How often the identity must be re-confirmed with the IdP. Default
    /// never.
    pub reauth_every: Option<Spanned<String>>,
    /// Lifetime of the certificate minted for the target. Default `5m`.
    pub cert_ttl: Option<Spanned<String>>,
}

/// `record:` as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordMode {
    /// Output is recorded before it reaches the user; a session whose
    /// recording cannot be kept is refused or ended.
    Strict,
    /// Recorded when storage works; sessions go on when it does not.
    BestEffort,
    /// Not recorded.
    Off,
}

/// `web.access` as written: what signed-in viewers may do with recorded
/// sessions, compiled by [`compile_access`](super::compile_access).
///
/// ```yaml
/// access:
///   rules:
///     - allow: own-sessions
///       when: { own: true }
///       capabilities: [list, play]
/// ```
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessPolicy {
    /// The rules; their order matters only for which rule is named.
    #[serde(default)]
    pub rules: Vec<Spanned<AccessRule>>,
}

/// One rule of `web.access`. Exactly one of `allow` or `deny` names it:
///
/// - `allow: NAME` grants its `capabilities` (required) to a viewer the
///   condition holds for;
/// - `deny: NAME` removes its `capabilities` (every capability when it
///   lists none), whatever allows them.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessRule {
    /// Names an allow rule.
    pub allow: Option<Spanned<String>>,
    /// Names a deny rule.
    pub deny: Option<Spanned<String>>,
    /// The human reason given when this rule decides. Defaults to one
    /// derived from the condition.
    pub reason: Option<Spanned<String>>,
    /// The condition, as in route policies plus `route`, `recorded_user`
    /// and `own`. Required: `when: {all: []}` matches every viewer.
    pub when: Option<Node>,
    /// `all`, or a list of `list`, `play`, `search`, `download`,
    /// `watch_live`, `end_session`. Kept as a [`Node`] so that an unknown
    /// name is reported where it stands, together with every other problem.
    pub capabilities: Option<Node>,
    /// What a viewer must do to use what this rule grants (allow rules
    /// only).
    pub obligations: Option<Spanned<AccessObligations>>,
}

/// The obligations of an access allow rule.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessObligations {
    /// The viewer must give a reason (break-glass), unless another
    /// matching allow rule grants the same capability without one.
    /// Default `false`.
    pub require_reason: Option<Spanned<bool>>,
}

/// The `policy:` of an HTTP route (`http_routes:`): who may make which
/// requests to a web app behind the proxy, compiled by
/// [`compile_http`](super::compile_http).
///
/// ```yaml
/// policy:
///   rules:
///     - allow: sre
///       when: { groups: sre }
///     - deny: no-admin-for-contractors
///       when: { all: [ { groups: contractors }, { path: { starts_with: /admin/ } } ] }
/// ```
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpPolicy {
    /// The rules; their order matters only for which rule is named.
    #[serde(default)]
    pub rules: Vec<Spanned<HttpRule>>,
}

/// One rule of an HTTP route's policy. Exactly one of `allow` or `deny`
/// names it:
///
/// - `allow: NAME` allows a request the condition holds for, unless a
///   deny rule matches it too;
/// - `deny: NAME` denies a request the condition holds for, whatever
///   allows it.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpRule {
    /// Names an allow rule.
    pub allow: Option<Spanned<String>>,
    /// Names a deny rule.
    pub deny: Option<Spanned<String>>,
    /// The human reason given when this rule decides. Defaults to one
    /// derived from the condition.
    pub reason: Option<Spanned<String>>,
    /// The condition, as in route policies (without `login` and
    /// `login_matches`) plus `method`, `path` and `header.<name>`. Optional:
    /// a rule without one matches every request.
    pub when: Option<Node>,
}

/// `direct_access:` as written: which signed-in users get a short-lived
/// certificate for their own key, for which `LOGIN@ROUTE` principals, how
/// long, and with which extensions; compiled by
/// [`compile_direct`](super::compile_direct).
///
/// ```yaml
/// direct_access:
///   max_ttl: 8h
///   rules:
///     - allow: dba-direct
///       when: { groups: dba }
///       routes: [prod-db]
///       logins: [postgres]
///       ttl: 1h
///       extensions: [permit-pty, permit-port-forwarding]
///     - deny: outside-vpn
///       when: { not: { source_ip: 10.0.0.0/8 } }
/// ```
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectAccess {
    /// The longest lifetime any rule may grant; default `8h`, at most
    /// `24h`. A direct certificate cannot be revoked before it expires, so
    /// this is the longest a revoked user can still reach a target.
    pub max_ttl: Option<Spanned<String>>,
    /// The rules; their order matters only for which rule is named.
    #[serde(default)]
    pub rules: Vec<Spanned<DirectRule>>,
}

/// One rule of `direct_access`. Exactly one of `allow` or `deny` names it:
///
/// - `allow: NAME` grants `LOGIN@ROUTE` for every login in `logins` on
///   every route in `routes`, for `ttl`, with `extensions`, to an identity
///   the condition holds for; the grants of every matching allow rule add
///   up into one certificate;
/// - `deny: NAME` refuses the certificate to an identity the condition
///   holds for, whatever allows it.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectRule {
    /// Names an allow rule.
    pub allow: Option<Spanned<String>>,
    /// Names a deny rule.
    pub deny: Option<Spanned<String>>,
    /// The human reason given when this rule decides. Defaults to one
    /// derived from the condition.
    pub reason: Option<Spanned<String>>,
    /// The condition, as in route policies without `login` and
    /// `login_matches` (the logins are what the rule grants). Required:
    /// `when: {all: []}` matches everyone.
    pub when: Option<Node>,
    /// The routes (names under `routes:`) the certificate reaches (allow
    /// rules only): a name or a list.
    pub routes: Option<Node>,
    /// The logins it names on each of them (allow rules only): a login or
    /// a list. Each must be one of a route's `logins:` when it has them.
    pub logins: Option<Node>,
    /// The certificate's lifetime (allow rules only); default `1h` (or
    /// `max_ttl` when shorter), at most `max_ttl`, and never past the end
    /// of the user's sign-in.
    pub ttl: Option<Spanned<String>>,
    /// The certificate's extensions (allow rules only): `permit-pty`,
    /// `permit-port-forwarding`, `permit-agent-forwarding`,
    /// `permit-X11-forwarding`, `permit-user-rc`. Default `[permit-pty]`;
    /// `[]` for none.
    pub extensions: Option<Node>,
}
