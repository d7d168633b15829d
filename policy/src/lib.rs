//! Access policy for Gatehouse: who may use a route, as which login,
//! when, from where, and with which capabilities; what a web viewer may
//! do with a recorded session; and which requests a signed-in user may
//! make to a web app behind the HTTP proxy.
//!
//! **Invariant:** this crate is pure. It does no IO, uses no async, reads no
//! clock and knows nothing about SSH or HTTP: an HTTP request reaches it as
//! plain strings, not a library's types. The gateway compiles the
//! configuration's policies with [`lang::compile`], builds a
//! [`lang::Request`] (with the current time), calls [`lang::evaluate`], and
//! enforces the [`lang::Decision`] it gets back, again whenever the
//! decision's next-check time comes.
//!
//! The web app asks the same language what a viewer may do with a recorded
//! session: [`lang::compile_access`] compiles `web.access`, and
//! [`lang::evaluate_access`] answers an [`lang::AccessRequest`] with an
//! [`lang::AccessDecision`], capability by capability.
//!
//! The identity-aware HTTP proxy asks it who may make which request to a
//! web app: [`lang::compile_http`] compiles the `policy:` of each HTTP
//! route, and [`lang::evaluate_http`] answers an [`lang::HttpRequest`]
//! (method, path, the headers the policy reads) with an
//! [`lang::HttpDecision`]. The policy says which headers it reads
//! ([`lang::CompiledHttpPolicy::header_names`]), so the proxy passes only
//! those.
//!
//! The language, its criteria, matchers, capabilities and obligations are
//! described in [`lang`], the access policy in [`lang::access`], and the
//! HTTP route policy in [`lang::http`].

pub mod lang;
