//! How the S3 client is built from the `storage` config: region, credentials, timeouts and
//! retries, and a description of the target that is safe to log.

use std::path::Path;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::meta::region::RegionProviderChain;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{Credentials, Region};

use crate::config::StorageConfig;
use crate::objstore::{FailureKind, StorageError};

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

pub(super) fn config_error(message: String, fix: &str) -> StorageError {
    StorageError::backend("open", "", FailureKind::Config, message, fix)
}

/// Where the credentials come from, as failure sentences name it (never a value): the
/// config's keys, else the first source of the AWS default chain that is present.
pub(super) async fn credentials_source(cfg: &StorageConfig) -> String {
    if cfg.access_key.is_some() && cfg.secret_key.is_some() {
        return "storage.access_key/secret_key in the config".into();
    }
    let env = |k: &str| std::env::var_os(k).is_some_and(|v| !v.is_empty());
    if env("AWS_ACCESS_KEY_ID") {
        return "the AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY environment variables".into();
    }
    if env("AWS_PROFILE") {
        return "the AWS profile named by AWS_PROFILE".into();
    }
    let home_file =
        |name: &str| std::env::var_os("HOME").map(|h| Path::new(&h).join(".aws").join(name));
    for file in [home_file("credentials"), home_file("config")]
        .into_iter()
        .flatten()
    {
        if tokio::fs::try_exists(&file).await.unwrap_or(false) {
            return "the default AWS profile (~/.aws)".into();
        }
    }
    if env("AWS_WEB_IDENTITY_TOKEN_FILE") {
        return "the web identity token of AWS_WEB_IDENTITY_TOKEN_FILE".into();
    }
    if env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") || env("AWS_CONTAINER_CREDENTIALS_FULL_URI") {
        return "the container's credentials endpoint (ECS)".into();
    }
    "the instance role (EC2 instance metadata), the last source of the AWS default chain".into()
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
        s.push_str(&format!(" at {}", shown_endpoint(ep)));
    }
    s
}

/// The endpoint without any user info.
pub(super) fn shown_endpoint(ep: &str) -> String {
    match reqwest::Url::parse(ep) {
        Ok(mut url) => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.to_string()
        }
        Err(_) => "an unparsable endpoint".to_string(),
    }
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
