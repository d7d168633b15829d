//! Access policy for Gatehouse: who may use a route, as which login,
//! when, from where, and with which capabilities; and what a web viewer may
//! do with a recorded session.
//!
//! **Invariant:** this crate is pure. It does no IO, uses no async, reads no
//! clock and knows nothing about SSH or HTTP. The gateway compiles the
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
//! The language, its criteria, matchers, capabilities and obligations are
//! described in [`lang`], and the access policy in [`lang::access`].

pub mod lang;
