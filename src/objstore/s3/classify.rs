//! What an SDK error means for an operator: each failure of a request to S3 becomes a
//! [`Failure`] with its kind, a sentence and the fix.
//!
//! Invariants:
//! - Answers are classified by the service's error code and HTTP status (HEAD answers carry no
//!   code: their status alone decides); failures before an answer by the I/O error kind in the
//!   source chain. Connection failures that std names no kind for (DNS, TLS) are told apart by
//!   the words of the connector's errors, the only place they are said; nothing else reads text.
//! - No sentence holds the SDK's debug text or a credential; credentials are named by source.

use std::error::Error as StdError;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

use crate::objstore::{Failure, FailureKind};

/// What the sentences name: the bucket, the prefix, the endpoint and where the credentials
/// come from.
#[derive(Clone, Debug)]
pub(super) struct Target {
    pub bucket: String,
    /// `""` or `"<key_prefix>/"`.
    pub prefix: String,
    /// The endpoint without user info, or the AWS regional endpoint's description.
    pub endpoint: String,
    pub region: String,
    /// E.g. "storage.access_key/secret_key in the config".
    pub credentials: String,
}

impl Target {
    /// The IAM actions the node needs, on this bucket and prefix.
    pub fn policy_hint(&self) -> String {
        let objects = format!("arn:aws:s3:::{}/{}*", self.bucket, self.prefix);
        format!(
            "allow s3:ListBucket on arn:aws:s3:::{} (prefix \"{}\") and s3:GetObject, \
             s3:PutObject, s3:DeleteObject on {objects} (docs/STORAGE.md lists the policy)",
            self.bucket, self.prefix
        )
    }
}

/// The failure `err` stands for.
pub(super) fn classify<E>(t: &Target, err: &SdkError<E, HttpResponse>) -> Failure
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
{
    match err {
        SdkError::ServiceError(_) | SdkError::ResponseError(_) => {
            let status = err.raw_response().map(|r| r.status().as_u16());
            answered(t, err.code(), status)
        }
        SdkError::TimeoutError(_) => Failure::new(
            FailureKind::Unreachable,
            format!("{} did not answer in time", t.endpoint),
            "check that the storage server is up and reachable from this machine (firewall, \
             proxy, storage.endpoint)",
        ),
        SdkError::DispatchFailure(_) => unanswered(t, err),
        _ => Failure::new(
            FailureKind::Other,
            format!(
                "the request to {} could not be built: {}",
                t.endpoint,
                chain(err)
            ),
            "check the storage section of the config",
        ),
    }
}

/// A failure the server answered with.
fn answered(t: &Target, code: Option<&str>, status: Option<u16>) -> Failure {
    use FailureKind::*;
    let creds = &t.credentials;
    let (kind, message, fix) = match (code, status) {
        (Some(c @ ("SignatureDoesNotMatch" | "InvalidSignature")), _) => (
            Credentials,
            format!("the server rejected the request's signature ({c}): the secret key is wrong"),
            format!("check the secret key of the credentials in use ({creds})"),
        ),
        (
            Some(
                c @ ("InvalidAccessKeyId"
                | "InvalidClientTokenId"
                | "UnrecognizedClientException"
                | "NotSignedUp"),
            ),
            _,
        ) => (
            Credentials,
            format!("the server does not know the access key ({c})"),
            format!("check the access key of the credentials in use ({creds})"),
        ),
        (Some(c @ ("ExpiredToken" | "InvalidToken" | "TokenRefreshRequired")), _) => (
            Credentials,
            format!("the server rejected the session token ({c})"),
            format!("renew the session token, or use credentials without one ({creds})"),
        ),
        (Some("NoSuchBucket"), _) => (
            NoSuchBucket,
            format!("bucket {:?} does not exist at {}", t.bucket, t.endpoint),
            "create the bucket, or fix storage.bucket".to_string(),
        ),
        (Some("InvalidBucketName"), _) => (
            InvalidBucketName,
            format!("the server rejects the bucket name {:?}", t.bucket),
            "use 3-63 lowercase letters, digits, '.' or '-' in storage.bucket".to_string(),
        ),
        (Some(c @ ("RequestTimeTooSkewed" | "RequestExpired")), _) => (
            ClockSkew,
            format!(
                "the server rejected the request's time ({c}): this machine's clock and the \
                 server's differ by more than it allows (15 minutes on S3)"
            ),
            "synchronise the clocks with NTP (chrony or systemd-timesyncd): this machine's, or \
             the server's if it is the one that is off"
                .to_string(),
        ),
        (
            Some(c @ ("SlowDown" | "Throttling" | "ThrottlingException" | "RequestLimitExceeded")),
            _,
        )
        | (Some(c), Some(503)) => (
            Throttled,
            format!("the server asked for fewer requests ({c})"),
            "requests are retrying with backoff: nothing to do if it passes; if it lasts, \
             spread the load (a longer replication interval, fewer checkpoints) or raise the \
             server's limits"
                .to_string(),
        ),
        (
            Some(
                c @ ("PermanentRedirect"
                | "AuthorizationHeaderMalformed"
                | "IllegalLocationConstraintException"),
            ),
            _,
        )
        | (Some(c @ "Redirect"), _) => (
            WrongRegion,
            format!(
                "bucket {:?} is not in region {:?} ({c})",
                t.bucket, t.region
            ),
            "set storage.region to the bucket's region".to_string(),
        ),
        (_, Some(301)) => (
            WrongRegion,
            format!(
                "bucket {:?} is not in region {:?} (HTTP 301)",
                t.bucket, t.region
            ),
            "set storage.region to the bucket's region".to_string(),
        ),
        (Some(c @ ("AccessDenied" | "AllAccessDisabled")), _) => (
            AccessDenied,
            format!("the credentials in use ({creds}) are not allowed this request ({c})"),
            t.policy_hint(),
        ),
        (None, Some(403)) => (
            AccessDenied,
            "the server refused the request (HTTP 403, no reason given): the credentials are \
             wrong or not allowed it"
                .to_string(),
            format!(
                "check the credentials in use ({creds}); {}",
                t.policy_hint()
            ),
        ),
        (None, Some(503)) => (
            Throttled,
            "the server is busy or unavailable (HTTP 503)".to_string(),
            "nothing to do if it passes (requests are retried); else check the server".to_string(),
        ),
        (c, s) => {
            let what = match (c, s) {
                (Some(c), Some(s)) => format!("{c}, HTTP {s}"),
                (Some(c), None) => c.to_string(),
                (None, Some(s)) => format!("HTTP {s}"),
                (None, None) => "no status".to_string(),
            };
            (
                Other,
                format!("the storage server answered with an error ({what})"),
                "check the storage server's logs; if it persists, the endpoint may not be S3"
                    .to_string(),
            )
        }
    };
    Failure::new(kind, message, fix)
}

/// A request that got no answer: no connection, no name, no TLS, or no credentials to sign.
fn unanswered(t: &Target, err: &(dyn StdError + 'static)) -> Failure {
    let ep = &t.endpoint;
    let text = chain(err).to_lowercase();
    let io = io_kind(err);
    let (kind, message, fix) = if io == Some(std::io::ErrorKind::ConnectionRefused) {
        (
            FailureKind::Unreachable,
            format!("nothing accepts connections at {ep} (connection refused)"),
            "start the storage server, or fix the host and port of storage.endpoint".to_string(),
        )
    } else if text.contains("dns error") || text.contains("failed to lookup address") {
        (
            FailureKind::Unreachable,
            format!("the host name of {ep} does not resolve (DNS)"),
            "fix the host in storage.endpoint, or this machine's DNS".to_string(),
        )
    } else if text.contains("certificate")
        || text.contains("tls")
        || text.contains("corrupt message")
    {
        (
            FailureKind::Unreachable,
            format!("the TLS handshake with {ep} failed (untrusted certificate, or no TLS there)"),
            "use http:// for a server without TLS, or trust its certificate authority".to_string(),
        )
    } else if text.contains("credential") || text.contains("identity") {
        (
            FailureKind::Credentials,
            format!("no credentials were found ({})", t.credentials),
            "set storage.access_key and storage.secret_key, or provide credentials to the AWS \
             chain (environment, profile, instance role)"
                .to_string(),
        )
    } else if matches!(io, Some(std::io::ErrorKind::TimedOut)) || text.contains("timed out") {
        (
            FailureKind::Unreachable,
            format!("connecting to {ep} timed out"),
            "check that the storage server is up and reachable from this machine (firewall, \
             proxy, storage.endpoint)"
                .to_string(),
        )
    } else {
        let why = io.map_or_else(|| "no answer".to_string(), |k| k.to_string());
        (
            FailureKind::Unreachable,
            format!("the connection to {ep} failed ({why})"),
            "check that the storage server is up and reachable from this machine".to_string(),
        )
    };
    Failure::new(kind, message, fix)
}

/// The first I/O error kind in the source chain.
fn io_kind(err: &(dyn StdError + 'static)) -> Option<std::io::ErrorKind> {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        cur = e.source();
    }
    None
}

/// Every error's Display in the chain, joined (the words, never a `Debug`).
fn chain(err: &(dyn StdError + 'static)) -> String {
    let mut parts = Vec::new();
    let mut cur = Some(err);
    while let Some(e) = cur {
        parts.push(e.to_string());
        cur = e.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target {
            bucket: "bk-1".into(),
            prefix: "env-1/".into(),
            endpoint: "http://127.0.0.1:9/".into(),
            region: "us-east-1".into(),
            credentials: "storage.access_key/secret_key in the config".into(),
        }
    }

    #[test]
    fn answers_are_classified_by_code_then_status() {
        let t = target();
        let cases = [
            (
                Some("SignatureDoesNotMatch"),
                Some(403),
                FailureKind::Credentials,
            ),
            (
                Some("InvalidAccessKeyId"),
                Some(403),
                FailureKind::Credentials,
            ),
            (Some("AccessDenied"), Some(403), FailureKind::AccessDenied),
            (None, Some(403), FailureKind::AccessDenied),
            (Some("NoSuchBucket"), Some(404), FailureKind::NoSuchBucket),
            (
                Some("InvalidBucketName"),
                Some(400),
                FailureKind::InvalidBucketName,
            ),
            (
                Some("RequestTimeTooSkewed"),
                Some(403),
                FailureKind::ClockSkew,
            ),
            (Some("SlowDown"), Some(503), FailureKind::Throttled),
            (None, Some(301), FailureKind::WrongRegion),
            (Some("InternalError"), Some(500), FailureKind::Other),
        ];
        for (code, status, want) in cases {
            let f = answered(&t, code, status);
            assert_eq!(f.kind, want, "{code:?} {status:?}: {f}");
        }
        let f = answered(&t, Some("AccessDenied"), Some(403));
        assert!(
            f.fix
                .contains("s3:DeleteObject on arn:aws:s3:::bk-1/env-1/*"),
            "{f}"
        );
        assert!(f.message.contains("in the config"), "{f}");
    }

    #[test]
    fn a_refused_connection_is_unreachable() {
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let f = unanswered(&target(), &io);
        assert_eq!(f.kind, FailureKind::Unreachable);
        assert!(f.message.contains("connection refused"), "{f}");
    }
}
