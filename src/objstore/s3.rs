//! The S3 backend (aws-sdk-s3): AWS S3 and S3-compatible servers (MinIO, R2, moto…).
//!
//! Invariants:
//! - Keys are stored as `<key_prefix>/<key>`; listing strips the prefix and never returns an
//!   object of another prefix (`env-1/` does not match `env-10/…`).
//! - Outcomes are read from the HTTP status of the raw response, never from error text:
//!   404 → [`StorageError::NotFound`], 409/412 → [`StorageError::PreconditionFailed`] (and 404 on
//!   `put_if_match`, since a missing object does not match).
//! - Every request is bounded: 2 s to connect, 10 s per attempt and 30 s in all for small
//!   requests (longer for bulk data), at most 4 attempts with jittered backoff on 5xx,
//!   throttling and timeouts. An unreachable endpoint fails within seconds.
//! - Credentials come from the config or the standard AWS chain and are never logged;
//!   [`S3Store::describe`] strips any user info from the endpoint.
//!
//! A conditional write retried after a lost response may report `PreconditionFailed` although
//! its first attempt landed; callers that must know (the lease) read the object back.

mod classify;
mod config;
mod list;
mod multipart;

use std::ops::Range;
use std::path::Path;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::get_object::GetObjectOutput;
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use tokio::io::AsyncWriteExt;

use self::classify::{Target, classify};
use self::config::{
    config_error, credentials_source, data_timeouts, describe, shared_config, shown_endpoint,
};
use super::atomic::{self, TempFile};
use super::{
    ETag, FailureKind, Object, ObjectMeta, ObjectStore, Result, StorageError, validate_key,
    validate_prefix,
};
use crate::config::StorageConfig;

/// `put_file` above this size uploads in parts.
pub const MULTIPART_THRESHOLD: u64 = 16 * 1024 * 1024;
/// `put` bodies above this size get the bulk-data timeouts.
const LARGE_BODY: usize = 1024 * 1024;

/// Objects in one bucket under the key prefix. Cheap to clone.
#[derive(Clone)]
pub struct S3Store {
    client: Client,
    bucket: String,
    /// `""` or `"<key_prefix>/"`.
    prefix: String,
    describe: String,
    /// What failure sentences name.
    target: Target,
}

/// What a write requires of the current object.
#[derive(Clone, Copy)]
enum Cond<'a> {
    None,
    Absent,
    Match(&'a ETag),
}

impl S3Store {
    /// A client for the bucket of `cfg`. Makes no request: an unreachable endpoint shows up
    /// on the first operation.
    pub async fn connect(cfg: &StorageConfig) -> Result<S3Store> {
        let bucket = cfg
            .bucket
            .clone()
            .filter(|b| !b.is_empty())
            .ok_or_else(|| {
                config_error(
                    "no bucket is configured for S3 storage".into(),
                    "set storage.bucket in the config",
                )
            })?;
        let prefix = match cfg.key_prefix.as_deref().filter(|p| !p.is_empty()) {
            Some(p) => {
                validate_key(p)?;
                format!("{p}/")
            }
            None => String::new(),
        };
        let shared = shared_config(cfg).await;
        let mut conf = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(cfg.force_path_style.unwrap_or(cfg.endpoint.is_some()))
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if let Some(endpoint) = &cfg.endpoint {
            conf = conf.endpoint_url(endpoint);
        }
        let describe = describe(&bucket, &prefix, cfg.endpoint.as_deref());
        let region = shared
            .region()
            .map_or("us-east-1", |r| r.as_ref())
            .to_string();
        let endpoint = match cfg.endpoint.as_deref() {
            Some(ep) => shown_endpoint(ep),
            None => format!("AWS S3 in {region}"),
        };
        let target = Target {
            bucket: bucket.clone(),
            prefix: prefix.clone(),
            endpoint,
            region,
            credentials: credentials_source(cfg).await,
        };
        Ok(S3Store {
            client: Client::from_conf(conf.build()),
            bucket,
            prefix,
            describe,
            target,
        })
    }

    fn full(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// Map an SDK error by HTTP status (see the module header), else to the failure it means.
    fn err<E>(&self, op: &'static str, key: &str, err: SdkError<E, HttpResponse>) -> StorageError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let no_bucket = err.code() == Some("NoSuchBucket");
        match status(&err) {
            Some(404) if !no_bucket => StorageError::NotFound { key: key.into() },
            Some(409 | 412) => StorageError::PreconditionFailed { key: key.into() },
            _ => StorageError::Backend {
                op,
                key: key.into(),
                failure: classify(&self.target, &err),
            },
        }
    }

    async fn put_object(&self, key: &str, body: Bytes, cond: Cond<'_>) -> Result<ETag> {
        let large = body.len() > LARGE_BODY;
        let mut req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(self.full(key))
            .body(ByteStream::from(body));
        req = match cond {
            Cond::None => req,
            Cond::Absent => req.if_none_match("*"),
            Cond::Match(etag) => req.if_match(&etag.0),
        };
        let sent = if large {
            req.customize()
                .config_override(data_timeouts())
                .send()
                .await
        } else {
            req.send().await
        };
        match sent.map_err(|e| self.err("put", key, e)) {
            Ok(out) => etag_of(out.e_tag(), "put", key),
            Err(StorageError::NotFound { key }) if matches!(cond, Cond::Match(_)) => {
                Err(StorageError::PreconditionFailed { key })
            }
            Err(e) => Err(e),
        }
    }

    /// A whole object's response; the body streams on. The small-request timeouts apply (an
    /// attempt ends with the response headers); a body that stops flowing is cut by the SDK's
    /// stalled-stream protection.
    async fn get_object(&self, op: &'static str, key: &str) -> Result<GetObjectOutput> {
        self.client
            .get_object()
            .bucket(&self.bucket)
            .key(self.full(key))
            .send()
            .await
            .map_err(|e| self.err(op, key, e))
    }
}

fn status<E>(err: &SdkError<E, HttpResponse>) -> Option<u16> {
    err.raw_response().map(|r| r.status().as_u16())
}

/// A response we cannot use: no ETag, or a body that broke off.
fn backend(op: &'static str, key: &str, message: impl std::fmt::Display) -> StorageError {
    StorageError::backend(
        op,
        key,
        FailureKind::Other,
        format!("the storage server's response was unusable: {message}"),
        "retry; if it persists, check the storage server (or a proxy in between)",
    )
}

fn etag_of(etag: Option<&str>, op: &'static str, key: &str) -> Result<ETag> {
    etag.map(|e| ETag(e.to_string()))
        .ok_or_else(|| backend(op, key, "the response carries no ETag"))
}

fn io_err(key: &str) -> impl FnOnce(std::io::Error) -> StorageError + '_ {
    move |source| StorageError::Io {
        key: key.into(),
        source,
    }
}

/// Run blocking file work off the runtime.
async fn blocking<T: Send + 'static>(
    key: &str,
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(io_err(key)),
        Err(e) => Err(io_err(key)(std::io::Error::other(e))),
    }
}

#[async_trait::async_trait]
impl ObjectStore for S3Store {
    async fn get(&self, key: &str) -> Result<Object> {
        validate_key(key)?;
        let out = self.get_object("get", key).await?;
        let etag = etag_of(out.e_tag(), "get", key)?;
        let body = out
            .body
            .collect()
            .await
            .map_err(|e| backend("get", key, e))?;
        Ok(Object {
            body: body.into_bytes(),
            etag,
        })
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        validate_key(key)?;
        if range.start >= range.end {
            // No HTTP range can ask for nothing: only confirm the object exists.
            return match self.head(key).await? {
                Some(_) => Ok(Bytes::new()),
                None => Err(StorageError::NotFound { key: key.into() }),
            };
        }
        let header = format!("bytes={}-{}", range.start, range.end - 1);
        let req = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.full(key))
            .range(header);
        let out = match req.send().await {
            Ok(out) => out,
            // 416: the range starts at or past the end of an existing object.
            Err(e) if status(&e) == Some(416) => return Ok(Bytes::new()),
            Err(e) => return Err(self.err("get_range", key, e)),
        };
        let body = out.body.collect().await;
        Ok(body.map_err(|e| backend("get_range", key, e))?.into_bytes())
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        validate_key(key)?;
        let req = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(self.full(key));
        let out = match req.send().await.map_err(|e| self.err("head", key, e)) {
            Ok(out) => out,
            Err(StorageError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(Some(ObjectMeta {
            key: key.to_string(),
            size: out.content_length().unwrap_or(0).max(0) as u64,
            etag: etag_of(out.e_tag(), "head", key)?,
            modified_unix: out.last_modified().map_or(0, |t| t.secs()),
        }))
    }

    async fn put(&self, key: &str, body: Bytes) -> Result<ETag> {
        validate_key(key)?;
        self.put_object(key, body, Cond::None).await
    }

    async fn put_if_absent(&self, key: &str, body: Bytes) -> Result<ETag> {
        validate_key(key)?;
        self.put_object(key, body, Cond::Absent).await
    }

    async fn put_if_match(&self, key: &str, body: Bytes, etag: &ETag) -> Result<ETag> {
        validate_key(key)?;
        self.put_object(key, body, Cond::Match(etag)).await
    }

    async fn put_file(&self, key: &str, path: &Path) -> Result<ETag> {
        validate_key(key)?;
        let size = tokio::fs::metadata(path).await.map_err(io_err(key))?.len();
        if size > MULTIPART_THRESHOLD {
            return multipart::upload(self, key, path, size).await;
        }
        let body = tokio::fs::read(path).await.map_err(io_err(key))?;
        let req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(self.full(key))
            .body(ByteStream::from(body));
        let out = req
            .customize()
            .config_override(data_timeouts())
            .send()
            .await;
        etag_of(
            out.map_err(|e| self.err("put_file", key, e))?.e_tag(),
            "put_file",
            key,
        )
    }

    async fn get_to_file(&self, key: &str, path: &Path) -> Result<u64> {
        validate_key(key)?;
        let mut body = self.get_object("get_to_file", key).await?.body;
        let dest = path.to_path_buf();
        let mut tmp = blocking(key, move || TempFile::beside(&dest)).await?;
        let std_file = tmp.file.try_clone().map_err(io_err(key))?;
        let mut file = tokio::fs::File::from_std(std_file);
        let mut written = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| backend("get_to_file", key, e))?;
            file.write_all(&chunk).await.map_err(io_err(key))?;
            written += chunk.len() as u64;
        }
        file.flush().await.map_err(io_err(key))?;
        drop(file);
        let dest = path.to_path_buf();
        blocking(key, move || {
            tmp.file.sync_data()?;
            tmp.rename_to(&dest)?;
            atomic::fsync_parent(&dest)
        })
        .await?;
        Ok(written)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        validate_prefix(prefix)?;
        self.list_all(prefix).await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        validate_key(key)?;
        let req = self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(self.full(key));
        match req.send().await.map_err(|e| self.err("delete", key, e)) {
            Ok(_) | Err(StorageError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn describe(&self) -> String {
        self.describe.clone()
    }
}
