//! Opening the state database with replication: restore it first when it is missing or belongs
//! to another storage location, decide whether the stored generation can be continued, then
//! start the replication task.
//!
//! Decisions, in order:
//! - no local database: restore the latest stored state, or start empty if storage holds none;
//!   storage unreachable is an error (starting empty would hide the real state);
//! - the local database records another location (node fact [`LOCATION_FACT`]): if this
//!   location holds a database, move the local one aside (`<db>.moved-<ms>`) and restore;
//!   otherwise keep it and replicate it here;
//! - a clean shutdown's record proves the database is where the stored generation ends: continue
//!   it, unless storage has a newer generation (another node moved on: move aside and restore);
//! - anything else: a new generation from a fresh snapshot.

use std::path::Path;

use time::OffsetDateTime;

use super::shipper::Continuation;
use super::sidecar::{self, Sidecar};
use super::{ReplicationError, Replicator, files, layout, restore};
use crate::config::ReplicationConfig;
use crate::lease::Fence;
use crate::objstore::DynStore;
use crate::store::{Checkpoints, Store, StoreOptions};

/// The node fact holding `ObjectStore::describe()` of where this database is replicated.
pub const LOCATION_FACT: &str = "replication.location";

/// Open the state database at `path`, replicated to `objects` per `cfg`. With replication
/// disabled the store checkpoints itself and no replicator is returned.
pub async fn open(
    path: &Path,
    objects: DynStore,
    cfg: &ReplicationConfig,
    fence: Option<Fence>,
) -> Result<(Store, Option<Replicator>), ReplicationError> {
    if !cfg.enabled {
        let options = StoreOptions {
            checkpoints: Checkpoints::Auto,
        };
        return Ok((Store::open_with(path, options).await?, None));
    }
    let location = objects.describe();
    let db = path.to_path_buf();
    let record = tokio::task::spawn_blocking(move || {
        if let Err(e) = files::remove_stale_snapshots(&db) {
            tracing::warn!(error = %e, "cannot remove leftover snapshot files");
        }
        sidecar::take(&db)
    })
    .await
    .map_err(|_| ReplicationError::Stopped)?;
    let (store, continuation) = prepare(path, &objects, &location, record).await?;
    if store.fact_get(LOCATION_FACT).await?.as_deref() != Some(location.as_str()) {
        store.fact_set(LOCATION_FACT, &location).await?;
    }
    let replicator = Replicator::start(store.clone(), objects, cfg, fence, continuation);
    Ok((store, Some(replicator)))
}

async fn prepare(
    path: &Path,
    objects: &DynStore,
    location: &str,
    record: Option<Sidecar>,
) -> Result<(Store, Option<Continuation>), ReplicationError> {
    if !path.exists() {
        if latest_generation(objects).await?.is_some() {
            restore_fresh(path, objects).await?;
        }
        return Ok((Store::open(path).await?, None));
    }
    let proof = match record {
        Some(r) => check_record(path, r, location).await?,
        None => None,
    };
    let store = Store::open(path).await?;
    let recorded = store.fact_get(LOCATION_FACT).await?;
    if let Some(other) = recorded.filter(|l| l != location) {
        if latest_generation(objects).await?.is_none() {
            tracing::warn!(from = %other, to = %location,
                "the state database was replicated elsewhere; this location is empty, replicating it here");
            return Ok((store, None));
        }
        tracing::warn!(from = %other, to = %location,
            "the state database belongs to another location; restoring this location's");
        return replace_local(store, path, objects).await;
    }
    let Some(record) = proof else {
        return Ok((store, None));
    };
    match latest_generation(objects).await {
        Ok(Some(latest)) if latest == record.generation => {
            let continuation = Continuation {
                generation: record.generation,
                next_index: record.next_index,
            };
            Ok((store, Some(continuation)))
        }
        Ok(Some(latest)) if latest > record.generation => {
            tracing::warn!(local = %record.generation, stored = %latest,
                "storage holds a newer generation than the local database; restoring it");
            replace_local(store, path, objects).await
        }
        Ok(_) => Ok((store, None)),
        Err(e) => {
            tracing::warn!(error = %e, "cannot check the stored generation; starting a new one");
            Ok((store, None))
        }
    }
}

/// Keep the record only if the local files still match it (hashing is blocking).
async fn check_record(
    path: &Path,
    record: Sidecar,
    location: &str,
) -> Result<Option<Sidecar>, ReplicationError> {
    let (path, location) = (path.to_path_buf(), location.to_string());
    tokio::task::spawn_blocking(move || {
        sidecar::matches(&path, &record, &location).then_some(record)
    })
    .await
    .map_err(|_| ReplicationError::Stopped)
}

/// The newest generation that has a snapshot (so can be restored).
async fn latest_generation(objects: &DynStore) -> Result<Option<String>, ReplicationError> {
    let listing = objects.list(layout::ROOT).await?;
    Ok(layout::generations(&listing)
        .into_iter()
        .rev()
        .find(|g| g.snapshot.is_some())
        .map(|g| g.name))
}

async fn restore_fresh(path: &Path, objects: &DynStore) -> Result<(), ReplicationError> {
    let db = path.to_path_buf();
    tokio::task::spawn_blocking(move || files::remove_wal_files(&db))
        .await
        .map_err(|_| ReplicationError::Stopped)?
        .map_err(|source| ReplicationError::Io {
            what: "removing stale WAL files of",
            path: path.to_path_buf(),
            source,
        })?;
    restore::restore_into(objects, path, None).await?;
    Ok(())
}

/// Close the local database, move it aside and restore the stored one in its place.
async fn replace_local(
    store: Store,
    path: &Path,
    objects: &DynStore,
) -> Result<(Store, Option<Continuation>), ReplicationError> {
    store.close().await?;
    let tag = format!("moved-{}", layout::unix_ms(OffsetDateTime::now_utc()));
    let db = path.to_path_buf();
    let moved = tokio::task::spawn_blocking(move || files::move_aside(&db, &tag))
        .await
        .map_err(|_| ReplicationError::Stopped)?
        .map_err(|source| ReplicationError::Io {
            what: "moving aside",
            path: path.to_path_buf(),
            source,
        })?;
    tracing::warn!(moved_to = %moved.display(), "kept the replaced state database");
    restore_fresh(path, objects).await?;
    Ok((Store::open(path).await?, None))
}
