//! Who may use the API: the JWT keys ([`Keys`], read once from the environment at start), the
//! claims a token carries ([`Claims`]), the scopes it grants ([`Scope`]) and whether requests are
//! authenticated at all ([`Auth`]); what a token must carry besides its signature ([`Expect`]:
//! times with a leeway, audience, issuer). `serve` verifies tokens with it (through the extractors of
//! `http::auth`), `state-manager token` mints them.
//!
//! Invariants: keys never come from the network and are never logged (only where they came
//! from); `admin` implies `read`; nothing here knows about HTTP.

mod keys;
mod rules;

use serde::{Deserialize, Serialize};

pub use keys::{AuthError, ENV_PUBLIC_KEY_FILE, ENV_SECRET, ENV_SECRET_FILE, Keys};
pub use rules::{ENV_AUDIENCE, ENV_ISSUER, Expect, LEEWAY_SECS};

/// What a token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Look: every GET.
    Read,
    /// Look and change.
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Admin => "admin",
        }
    }
}

/// How requests are authenticated.
#[derive(Clone)]
pub enum Auth {
    /// Verify bearer JWTs with this key.
    Jwt(Box<Keys>),
    /// Accept every request as admin (`--insecure-no-auth`).
    Insecure,
}

impl Auth {
    /// The key from the environment; [`AuthError::NoKey`] when none is set and `insecure` is false.
    pub fn from_env(insecure: bool) -> Result<Auth, AuthError> {
        match Keys::from_env()? {
            Some(keys) => Ok(Auth::Jwt(Box::new(keys))),
            None if insecure => Ok(Auth::Insecure),
            None => Err(AuthError::NoKey),
        }
    }
}

/// A bearer token that does not verify; the text says why (expired, bad signature, …).
#[derive(Debug, thiserror::Error)]
#[error("invalid bearer token: {0}")]
pub struct InvalidToken(pub &'static str);

/// The claims of a verified token: any token with the `read` or `admin` scope.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Claims {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Space-separated scopes: `read`, `admin`.
    #[serde(default)]
    pub scope: String,
}

impl Claims {
    /// What every request is under `--insecure-no-auth`: an admin that never expires.
    pub fn insecure() -> Claims {
        Claims {
            sub: Some("insecure-no-auth".into()),
            exp: u64::MAX,
            iat: None,
            scope: "admin".into(),
        }
    }

    pub fn has(&self, scope: Scope) -> bool {
        self.scope
            .split_ascii_whitespace()
            .any(|s| s == scope.as_str() || (scope == Scope::Read && s == Scope::Admin.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(scope: &str) -> Claims {
        Claims {
            sub: None,
            exp: 0,
            iat: None,
            scope: scope.into(),
        }
    }

    #[test]
    fn admin_implies_read_and_scopes_are_a_space_separated_list() {
        assert!(claims("admin").has(Scope::Read));
        assert!(claims("read admin").has(Scope::Admin));
        assert!(!claims("read").has(Scope::Admin));
        assert!(!claims("readadmin").has(Scope::Read));
        assert!(!claims("").has(Scope::Read));
    }
}
