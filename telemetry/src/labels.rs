//! The label values of every metric family, as closed enums.
//!
//! A label value is never a user name, a session id, an address or free
//! text: each family's labels come from one of these enums (or, for HTTP
//! routes, from the names in the configuration), so the number of series
//! is bounded by the code, not by the traffic.

/// A closed set of label values: the label's key, every value, and each
/// value's text.
pub trait Label: Copy + 'static {
    /// The label's name in the exposition.
    const KEY: &'static str;
    /// Every value, in a fixed order; `index` is the position here.
    const ALL: &'static [Self];
    /// The value as it appears in the exposition.
    fn as_str(self) -> &'static str;
    /// The position of `self` in [`Label::ALL`].
    fn index(self) -> usize;
}

/// Declares a label enum with its key and values.
macro_rules! label {
    (
        $(#[$meta:meta])*
        $name:ident = $key:literal {
            $( $(#[$vmeta:meta])* $variant:ident => $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl Label for $name {
            const KEY: &'static str = $key;
            const ALL: &'static [Self] = &[ $( $name::$variant, )+ ];
            fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $text, )+
                }
            }
            fn index(self) -> usize {
                self as usize
            }
        }
    };
}

label! {
    /// How a client connection ended up.
    ConnectionResult = "result" {
        /// The client authenticated.
        Authenticated => "authenticated",
        /// The connection was served but ended before authenticating.
        Unauthenticated => "unauthenticated",
        /// Refused at accept (a cap or a penalty); never served.
        Refused => "refused",
    }
}

label! {
    /// How the SSH version and key exchange ended.
    HandshakeResult = "result" {
        /// Key exchange done: the client reached authentication.
        Completed => "completed",
        /// The exchange failed (a protocol error, the client left).
        Failed => "failed",
        /// No key exchange within `handshake_timeout`.
        Timeout => "timeout",
    }
}

label! {
    /// The SSH authentication method of an attempt.
    AuthMethod = "method" {
        /// `none`, which OpenSSH sends first.
        None => "none",
        /// A public key offered without a signature (a query).
        PublickeyQuery => "publickey_query",
        /// A public key with its signature.
        Publickey => "publickey",
        /// A keyboard-interactive round (sign-in, or a refusal shown).
        KeyboardInteractive => "keyboard_interactive",
    }
}

label! {
    /// What the gateway answered to an authentication attempt.
    AuthResult = "result" {
        /// Authentication succeeded (or the key may sign, for a query).
        Accepted => "accepted",
        /// Partial success: the key is proven, a sign-in comes next.
        Partial => "partial",
        /// A keyboard-interactive round was sent (sign-in or a line).
        Prompted => "prompted",
        /// Rejected.
        Rejected => "rejected",
    }
}

label! {
    /// Why an unauthenticated connection was refused or dropped.
    PreauthReason = "reason" {
        /// `limits.max_connections` reached.
        MaxConnections => "max_connections",
        /// `limits.max_unauthenticated_per_source` reached for the netblock.
        PerSource => "per_source",
        /// The source netblock is penalized.
        Penalty => "penalty",
        /// Shed to make room for a newcomer.
        Shed => "shed",
        /// No key exchange within `handshake_timeout`.
        HandshakeTimeout => "handshake_timeout",
        /// More than `max_preauth_bytes` sent before authenticating.
        PreauthBytes => "preauth_bytes",
        /// Not authenticated within `auth_timeout`.
        AuthTimeout => "auth_timeout",
    }
}

label! {
    /// How a sign-in (device code or link) went.
    SignInResult = "result" {
        /// A device code or link was shown.
        Started => "started",
        /// The user signed in.
        Completed => "completed",
        /// It failed: the IdP, expiry, a rejected token, the client left.
        Failed => "failed",
        /// Refused by the limits on sign-ins in flight.
        Refused => "refused",
    }
}

label! {
    /// When the route policy was asked.
    PolicyPhase = "phase" {
        /// At login.
        Login => "login",
        /// Re-evaluating a live session.
        Reevaluate => "reevaluate",
    }
}

label! {
    /// What the route policy answered.
    PolicyResult = "result" {
        /// Allowed.
        Allow => "allow",
        /// Denied.
        Deny => "deny",
    }
}

label! {
    /// Why a live session was ended by the gateway.
    EndCause = "cause" {
        /// The policy no longer allows it.
        Policy => "policy",
        /// `reauth_every` came and the sign-in could not be renewed.
        Reauth => "reauth",
        /// Its sign-in was revoked.
        Revoked => "revoked",
        /// An administrator killed it.
        Killed => "killed",
        /// A strict route's recording failed.
        Recording => "recording",
    }
}

label! {
    /// Why dialing a target failed.
    DialFailure = "kind" {
        /// TCP connect failed (refused, no route, DNS).
        Unreachable => "unreachable",
        /// No answer within the route's `connect_timeout`.
        Timeout => "timeout",
        /// The host key is not the pinned one or not signed by the host CA.
        HostKey => "host_key",
        /// The target refused the certificate.
        Certificate => "certificate",
        /// The SSH protocol failed (key exchange, opening the channel).
        Protocol => "protocol",
        /// Anything else (minting the certificate).
        Other => "other",
    }
}

label! {
    /// What kind of channel carried proxied bytes.
    ChannelKind = "kind" {
        /// A session channel: shell, exec, sftp.
        Session => "session",
        /// A forwarded channel: port, agent, X11.
        Forward => "forward",
    }
}

label! {
    /// Which way proxied bytes went.
    Direction = "direction" {
        /// From the client to the target.
        ToTarget => "to_target",
        /// From the target to the client.
        ToClient => "to_client",
    }
}

label! {
    /// How a recording finished.
    RecordingOutcome = "status" {
        /// Sealed and signed at the session's end.
        Sealed => "sealed",
        /// Sealed from a spool an earlier process left (crash, kill).
        Interrupted => "interrupted",
        /// Could not be completed.
        Failed => "failed",
    }
}

label! {
    /// The class of an HTTP status code.
    StatusClass = "status" {
        /// 1xx.
        Informational => "1xx",
        /// 2xx.
        Success => "2xx",
        /// 3xx.
        Redirection => "3xx",
        /// 4xx.
        ClientError => "4xx",
        /// 5xx.
        ServerError => "5xx",
    }
}

impl StatusClass {
    /// The class of `status`; anything outside 100–599 counts as 5xx.
    pub fn of(status: u16) -> StatusClass {
        match status {
            100..=199 => StatusClass::Informational,
            200..=299 => StatusClass::Success,
            300..=399 => StatusClass::Redirection,
            400..=499 => StatusClass::ClientError,
            _ => StatusClass::ServerError,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn indexes_match<L: Label + std::fmt::Debug + PartialEq>() {
        for (i, value) in L::ALL.iter().enumerate() {
            assert_eq!(value.index(), i, "{value:?}");
            let text = value.as_str();
            assert!(
                text.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{text}"
            );
        }
    }

    #[test]
    fn every_label_indexes_its_own_position() {
        indexes_match::<ConnectionResult>();
        indexes_match::<HandshakeResult>();
        indexes_match::<AuthMethod>();
        indexes_match::<AuthResult>();
        indexes_match::<PreauthReason>();
        indexes_match::<SignInResult>();
        indexes_match::<PolicyPhase>();
        indexes_match::<PolicyResult>();
        indexes_match::<EndCause>();
        indexes_match::<DialFailure>();
        indexes_match::<ChannelKind>();
        indexes_match::<Direction>();
        indexes_match::<RecordingOutcome>();
        indexes_match::<StatusClass>();
    }

    #[test]
    fn status_classes() {
        assert_eq!(StatusClass::of(101), StatusClass::Informational);
        assert_eq!(StatusClass::of(204), StatusClass::Success);
        assert_eq!(StatusClass::of(302), StatusClass::Redirection);
        assert_eq!(StatusClass::of(404), StatusClass::ClientError);
        assert_eq!(StatusClass::of(502), StatusClass::ServerError);
        assert_eq!(StatusClass::of(0), StatusClass::ServerError);
    }
}
