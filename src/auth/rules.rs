//! What a token must satisfy beyond its signature: the algorithms its key's kind allows, `exp`
//! (required), `nbf` and `iat` (when present), each with [`LEEWAY_SECS`], and `aud` / `iss`
//! when the operator names them ([`ENV_AUDIENCE`], [`ENV_ISSUER`]).
//!
//! Invariants: the accepted algorithms come from the key, never from the token (so `alg: none`
//! and an HS256 token keyed with a public key's bytes never verify); with an audience or issuer
//! configured, a token without that claim is refused, not waved through; every refusal names
//! the claim that failed.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::{Error, ErrorKind};
use jsonwebtoken::{Algorithm, Validation};

use super::InvalidToken;

/// Environment variable: the audiences this service accepts (comma-separated); a token's `aud`
/// must name one of them. Unset: `aud` is not looked at.
pub const ENV_AUDIENCE: &str = "STATE_MANAGER_JWT_AUDIENCE";
/// Environment variable: the issuers this service trusts (comma-separated); a token's `iss`
/// must be one of them. Unset: `iss` is not looked at.
pub const ENV_ISSUER: &str = "STATE_MANAGER_JWT_ISSUER";

/// Seconds of clock difference allowed between the minting machine and this one, for `exp`,
/// `nbf` and `iat` alike.
pub const LEEWAY_SECS: u64 = 5;

/// Every RSA algorithm: an RSA public key verifies PKCS#1 v1.5 and PSS signatures.
pub const RSA_ALGS: [Algorithm; 6] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

/// The audience and issuer a token must carry, when configured.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expect {
    /// Accepted `aud` values; empty: not checked.
    pub audience: Vec<String>,
    /// Accepted `iss` values; empty: not checked.
    pub issuer: Vec<String>,
}

fn list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(String::from)
        .collect()
}

impl Expect {
    /// From [`ENV_AUDIENCE`] and [`ENV_ISSUER`] (comma-separated lists; blank entries ignored).
    pub fn from_env() -> Expect {
        let get = |v: &str| std::env::var(v).map(|s| list(&s)).unwrap_or_default();
        Expect {
            audience: get(ENV_AUDIENCE),
            issuer: get(ENV_ISSUER),
        }
    }

    /// The validation for a key that accepts `algorithms` (the first is the key's own).
    pub(super) fn validation(&self, algorithms: &[Algorithm]) -> Validation {
        let mut v = Validation::new(algorithms[0]);
        v.algorithms = algorithms.to_vec();
        let mut required = vec!["exp"];
        v.leeway = LEEWAY_SECS;
        v.validate_exp = true;
        v.validate_nbf = true;
        v.validate_aud = !self.audience.is_empty();
        if v.validate_aud {
            v.set_audience(&self.audience);
            required.push("aud");
        }
        if !self.issuer.is_empty() {
            v.set_issuer(&self.issuer);
            required.push("iss");
        }
        v.set_required_spec_claims(&required);
        v
    }
}

pub(super) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// Why a token the library refused is no good, in words for the 401's `detail`.
pub(super) fn refusal(e: &Error) -> InvalidToken {
    InvalidToken(match e.kind() {
        ErrorKind::ExpiredSignature => "the token has expired; mint a new one",
        ErrorKind::InvalidSignature => "the token's signature does not match our key",
        ErrorKind::InvalidAlgorithm => "the token's algorithm is not accepted here",
        ErrorKind::MissingRequiredClaim(c) if c == "aud" => {
            "the token has no `aud` claim, and this service requires its audience"
        }
        ErrorKind::MissingRequiredClaim(c) if c == "iss" => {
            "the token has no `iss` claim, and this service requires a trusted issuer"
        }
        ErrorKind::MissingRequiredClaim(_) => "the token has no `exp` claim",
        ErrorKind::InvalidAudience => "the token's `aud` does not name this service",
        ErrorKind::InvalidIssuer => "the token's `iss` is not a trusted issuer",
        ErrorKind::ImmatureSignature => "the token is not valid yet (`nbf`)",
        _ => "the token is malformed",
    })
}

/// jsonwebtoken does not look at `iat`; a token issued in the future is as suspect as one not
/// valid yet.
pub(super) fn check_iat(iat: Option<u64>) -> Result<(), InvalidToken> {
    if iat.is_some_and(|iat| iat > now_secs() + LEEWAY_SECS) {
        return Err(InvalidToken(
            "the token was issued in the future (`iat`); check the clocks of both machines",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_comma_separated_and_blanks_are_dropped() {
        assert_eq!(list(" a, b ,,c "), ["a", "b", "c"]);
        assert!(list(" , ").is_empty());
    }

    #[test]
    fn aud_and_iss_are_required_only_when_configured() {
        let none = Expect::default().validation(&[Algorithm::HS256]);
        assert!(!none.validate_aud && none.iss.is_none());
        assert_eq!(none.required_spec_claims.len(), 1);
        let both = Expect {
            audience: vec!["sm".into()],
            issuer: vec!["idp".into()],
        }
        .validation(&[Algorithm::HS256]);
        assert!(both.validate_aud);
        for c in ["exp", "aud", "iss"] {
            assert!(both.required_spec_claims.contains(c), "{c}");
        }
    }
}
