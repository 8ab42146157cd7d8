//! Multipart upload of a large local file: parts read with `pread` off the runtime and sent
//! with bounded parallelism; any failure aborts the upload so no parts are left billed.

use std::path::{Path, PathBuf};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use futures::{StreamExt, TryStreamExt};

use super::{S3Store, backend, blocking, data_timeouts, etag_of};
use crate::objstore::{ETag, Result};

/// Smallest part; raised for files that would need more than [`MAX_PARTS`] parts.
const PART_SIZE: u64 = 8 * 1024 * 1024;
const MAX_PARTS: u64 = 10_000;
/// Parts in flight at once (bounds memory to this many parts).
const PARALLEL_PARTS: usize = 4;

/// Upload `path` (`size` bytes) to `key` in parts.
pub(super) async fn upload(store: &S3Store, key: &str, path: &Path, size: u64) -> Result<ETag> {
    let full = store.full(key);
    let created = store
        .client
        .create_multipart_upload()
        .bucket(&store.bucket)
        .key(&full)
        .send()
        .await
        .map_err(|e| store.err("put_file", key, e))?;
    let upload_id = created
        .upload_id()
        .ok_or_else(|| backend("put_file", key, "no upload id in the response"))?
        .to_string();
    let done = match upload_parts(store, key, &upload_id, path, size).await {
        Ok(parts) => complete(store, key, &upload_id, parts).await,
        Err(e) => Err(e),
    };
    if done.is_err() {
        abort(store, key, &upload_id).await;
    }
    done
}

async fn upload_parts(
    store: &S3Store,
    key: &str,
    upload_id: &str,
    path: &Path,
    size: u64,
) -> Result<Vec<CompletedPart>> {
    let part_size = PART_SIZE.max(size.div_ceil(MAX_PARTS));
    let count = size.div_ceil(part_size);
    let mut parts: Vec<CompletedPart> = futures::stream::iter(0..count)
        .map(|i| {
            let offset = i * part_size;
            let len = part_size.min(size - offset);
            let part = Part {
                number: i as i32 + 1,
                offset,
                len,
                path: path.to_path_buf(),
            };
            upload_part(store, key, upload_id, part)
        })
        .buffer_unordered(PARALLEL_PARTS)
        .try_collect()
        .await?;
    parts.sort_by_key(|p| p.part_number());
    Ok(parts)
}

/// One part: which bytes of which file.
struct Part {
    number: i32,
    offset: u64,
    len: u64,
    path: PathBuf,
}

async fn upload_part(
    store: &S3Store,
    key: &str,
    upload_id: &str,
    part: Part,
) -> Result<CompletedPart> {
    let Part {
        number,
        offset,
        len,
        path,
    } = part;
    let data = blocking(key, move || {
        use std::os::unix::fs::FileExt;
        let mut buf = vec![0u8; len as usize];
        std::fs::File::open(&path)?.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    })
    .await?;
    let out = store
        .client
        .upload_part()
        .bucket(&store.bucket)
        .key(store.full(key))
        .upload_id(upload_id)
        .part_number(number)
        .body(ByteStream::from(data))
        .customize()
        .config_override(data_timeouts())
        .send()
        .await
        .map_err(|e| store.err("put_file", key, e))?;
    let etag = etag_of(out.e_tag(), "put_file", key)?;
    Ok(CompletedPart::builder()
        .e_tag(etag.0)
        .part_number(number)
        .build())
}

async fn complete(
    store: &S3Store,
    key: &str,
    upload_id: &str,
    parts: Vec<CompletedPart>,
) -> Result<ETag> {
    let upload = CompletedMultipartUpload::builder()
        .set_parts(Some(parts))
        .build();
    let out = store
        .client
        .complete_multipart_upload()
        .bucket(&store.bucket)
        .key(store.full(key))
        .upload_id(upload_id)
        .multipart_upload(upload)
        .send()
        .await
        .map_err(|e| store.err("put_file", key, e))?;
    etag_of(out.e_tag(), "put_file", key)
}

/// Best effort: a failed abort leaves parts the bucket's lifecycle rules must clean up.
async fn abort(store: &S3Store, key: &str, upload_id: &str) {
    let sent = store
        .client
        .abort_multipart_upload()
        .bucket(&store.bucket)
        .key(store.full(key))
        .upload_id(upload_id)
        .send()
        .await;
    if let Err(e) = sent {
        let e = store.err("abort multipart upload", key, e);
        tracing::warn!(%key, %upload_id, error = %e, "could not abort a failed multipart upload");
    }
}
