//! Access policy for Gatehouse routes: who may use a route, as which login,
//! when, from where, and with which capabilities.
//!
//! **Invariant:** this crate is pure. It does no IO, uses no async, reads no
//! clock and knows nothing about SSH or HTTP. The gateway compiles the
//! configuration's policies with [`lang::compile`], builds a
//! [`lang::Request`] (with the current time), calls [`lang::evaluate`], and
//! enforces the [`lang::Decision`] it gets back, again whenever the
//! decision's next-check time comes.
//!
//! The language, its criteria, matchers, capabilities and obligations are
//! described in [`lang`].

pub mod lang;
