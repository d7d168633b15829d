//! Session recording for Gatehouse. Knows no SSH types.
