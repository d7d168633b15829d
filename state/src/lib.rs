//! The state database of Gatehouse: login bindings, revocations, admin requests, the recording index.
