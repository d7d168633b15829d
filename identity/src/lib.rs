//! OIDC for Gatehouse: discovery, the device flow, ID-token verification, refresh.
