//! How the S3 client is built from the `storage` config: region, credentials, timeouts and
//! retries, and a description of the target that is safe to log.

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::meta::region::RegionProviderChain;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{Credentials, Region};

use crate::config::StorageConfig;
use crate::objstore::StorageError;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const MAX_ATTEMPTS: u32 = 4;

/// Timeouts for small requests: fail fast when storage is away.
pub(super) fn small_timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(Duration::from_secs(10))
        .operation_timeout(Duration::from_secs(30))
        .build()
}

/// Timeouts for requests that carry up to a part or a whole file of data.
pub(super) fn data_timeouts() -> aws_sdk_s3::config::Builder {
    let t = TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(Duration::from_secs(300))
        .operation_timeout(Duration::from_secs(900))
        .build();
    aws_sdk_s3::config::Builder::default().timeout_config(t)
}

pub(super) fn config_error(message: String) -> StorageError {
    StorageError::Backend {
        op: "open",
        key: String::new(),
        message,
    }
}

/// The retry policy: standard mode (5xx, throttling, timeouts, connection errors).
pub(super) fn retry_config() -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(MAX_ATTEMPTS)
        .with_initial_backoff(Duration::from_millis(200))
        .with_max_backoff(Duration::from_secs(2))
}

/// Region, credentials, timeouts and retries. The region is the config's, else (for AWS
/// itself) the standard chain's, else `us-east-1`.
pub(super) async fn shared_config(cfg: &StorageConfig) -> aws_config::SdkConfig {
    let region = match (&cfg.region, &cfg.endpoint) {
        (Some(r), _) => RegionProviderChain::first_try(Region::new(r.clone())),
        (None, Some(_)) => RegionProviderChain::first_try(Region::new("us-east-1")),
        (None, None) => RegionProviderChain::default_provider().or_else("us-east-1"),
    };
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(region)
        .timeout_config(small_timeouts())
        .retry_config(retry_config());
    if let (Some(access), Some(secret)) = (&cfg.access_key, &cfg.secret_key) {
        let creds = Credentials::new(
            access,
            secret,
            cfg.session_token.clone(),
            None,
            "state-manager-config",
        );
        loader = loader.credentials_provider(creds);
    }
    loader.load().await
}

/// `s3://bucket/prefix`, plus the endpoint without any user info.
pub(super) fn describe(bucket: &str, prefix: &str, endpoint: Option<&str>) -> String {
    let mut s = format!("s3://{bucket}/{}", prefix.trim_end_matches('/'));
    if let Some(ep) = endpoint {
        let shown = match reqwest::Url::parse(ep) {
            Ok(mut url) => {
                let _ = url.set_username("");
                let _ = url.set_password(None);
                url.to_string()
            }
            Err(_) => "an unparsable endpoint".to_string(),
        };
        s.push_str(&format!(" at {shown}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn description_names_the_target_without_user_info() {
        let d = describe("b", "env-1/", Some("http://user:secret@minio:9000"));
        assert_eq!(d, "s3://b/env-1 at http://minio:9000/");
        assert_eq!(describe("b", "", None), "s3://b/");
    }
}
