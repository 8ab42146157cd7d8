//! Every way a `ctl` command can fail, and the exit code each one maps to. The codes are a
//! contract with scripts (listed in `ctl --help` and docs/CLI.md); change them only with both.

use std::path::PathBuf;

/// The exit codes of `state-manager ctl`.
pub mod exit {
    pub const OK: i32 = 0;
    /// The server answered with an error other than the ones below (or `health` failed).
    pub const SERVER: i32 = 1;
    /// Bad arguments (clap's own code) or a local setting that cannot work.
    pub const USAGE: i32 = 2;
    /// No connection, or no answer in time.
    pub const UNREACHABLE: i32 = 3;
    /// 401 or 403.
    pub const AUTH: i32 = 4;
    /// 404.
    pub const NOT_FOUND: i32 = 5;
    /// 409.
    pub const CONFLICT: i32 = 6;
}

#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    #[error("cannot read the token file {}: {source}", path.display())]
    TokenFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the token from {origin} cannot be sent (it must be one line of printable ASCII); mint a new one with `state-manager token`"
    )]
    BadToken { origin: String },
    #[error("invalid argument {value:?}: {reason}")]
    BadArgument { value: String, reason: String },
    #[error("invalid --url {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error(
        "cannot reach state-manager at {url}: {cause}; is it running, and is --url (STATE_MANAGER_URL) right?"
    )]
    Unreachable { url: String, cause: String },
    #[error(
        "no answer from {url} within {after}; the server may still be working on it (raise --timeout to wait longer)"
    )]
    TimedOut { url: String, after: String },
    /// The server answered with an error status; `detail` is from its problem document.
    #[error("{detail}")]
    Api {
        status: u16,
        detail: String,
        /// `problems` of a 422, one line each.
        problems: Vec<String>,
        /// The answer as received, printed with `--json`.
        body: String,
    },
    #[error("unexpected answer from {url}: {reason}; is --url pointing at state-manager?")]
    BadResponse { url: String, reason: String },
}

impl CtlError {
    /// The exit code scripts see for this failure.
    pub fn exit_code(&self) -> i32 {
        match self {
            CtlError::TokenFile { .. }
            | CtlError::BadToken { .. }
            | CtlError::BadUrl { .. }
            | CtlError::BadArgument { .. } => exit::USAGE,
            CtlError::Unreachable { .. } | CtlError::TimedOut { .. } => exit::UNREACHABLE,
            CtlError::Api { status, .. } => match status {
                401 | 403 => exit::AUTH,
                404 => exit::NOT_FOUND,
                409 => exit::CONFLICT,
                _ => exit::SERVER,
            },
            CtlError::BadResponse { .. } => exit::SERVER,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16) -> CtlError {
        CtlError::Api {
            status,
            detail: "x".into(),
            problems: vec![],
            body: String::new(),
        }
    }

    #[test]
    fn statuses_map_to_the_documented_codes() {
        for (status, code) in [
            (400, 1),
            (401, 4),
            (403, 4),
            (404, 5),
            (409, 6),
            (422, 1),
            (500, 1),
            (503, 1),
        ] {
            assert_eq!(api(status).exit_code(), code, "{status}");
        }
        let unreachable = CtlError::Unreachable {
            url: "u".into(),
            cause: "refused".into(),
        };
        assert_eq!(unreachable.exit_code(), exit::UNREACHABLE);
        let bad_url = CtlError::BadUrl {
            url: "u".into(),
            reason: "r".into(),
        };
        assert_eq!(bad_url.exit_code(), exit::USAGE);
    }
}
