//! Listing under the key prefix: every page of `ListObjectsV2`, sorted by key.
//!
//! Invariants:
//! - No object under our prefix is left out for what a server leaves out of its listing. S3
//!   lists each object with its ETag, and so do MinIO and moto; s3s-fs 0.14.1 lists key, size
//!   and time only (its `ListObjectsV2` sets no `ETag` on any entry). An object listed without
//!   an ETag gets one `HEAD` (a few at once), so `list` and `head` agree on every server. Dropping such objects instead made every listing on s3s-fs come back empty: to
//!   replication and checkpoints that is "nothing stored", the most dangerous answer there is.
//! - An object gone between the listing and its `HEAD` is left out, as a listing a moment
//!   later would leave it out.
//! - Keys we could not have written (not valid keys under our prefix) are skipped.

use futures::{StreamExt, TryStreamExt};

use super::S3Store;
use crate::objstore::{ETag, ObjectMeta, ObjectStore, Result, validate_key};

/// `HEAD` requests in flight at once for objects listed without an ETag.
const HEADS_AT_ONCE: usize = 8;

/// One entry of a listing page.
enum Listed {
    Whole(ObjectMeta),
    /// Ours, but listed without its ETag: the key relative to the prefix.
    WithoutETag(String),
    NotOurs,
}

impl S3Store {
    /// Every object whose key (relative to the key prefix) starts with `prefix`, sorted.
    pub(super) async fn list_all(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let mut out = Vec::new();
        let mut without_etag = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(self.full(prefix))
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| self.err("list", prefix, e))?;
            for o in page.contents() {
                match self.listed(o) {
                    Listed::Whole(meta) => out.push(meta),
                    Listed::WithoutETag(key) => without_etag.push(key),
                    Listed::NotOurs => {}
                }
            }
            match page.next_continuation_token() {
                Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_string()),
                _ => break,
            }
        }
        if !without_etag.is_empty() {
            let headed: Vec<Option<ObjectMeta>> = futures::stream::iter(without_etag)
                .map(|key| async move { self.head(&key).await })
                .buffer_unordered(HEADS_AT_ONCE)
                .try_collect()
                .await?;
            out.extend(headed.into_iter().flatten());
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn listed(&self, o: &aws_sdk_s3::types::Object) -> Listed {
        let Some(key) = o.key().and_then(|k| k.strip_prefix(&self.prefix)) else {
            return Listed::NotOurs;
        };
        if validate_key(key).is_err() {
            return Listed::NotOurs;
        }
        match o.e_tag() {
            Some(etag) => Listed::Whole(ObjectMeta {
                key: key.to_string(),
                size: o.size().unwrap_or(0).max(0) as u64,
                etag: ETag(etag.to_string()),
                modified_unix: o.last_modified().map_or(0, |t| t.secs()),
            }),
            None => Listed::WithoutETag(key.to_string()),
        }
    }
}
