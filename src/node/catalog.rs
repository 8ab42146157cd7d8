//! The checkpoint catalog in the state database: its entries, and making it agree with storage
//! when the database opens (storage's manifests are the truth; the catalog is a fast index).

use super::{Node, NodeError};
use crate::checkpoint::{CheckpointSummary, Manifest};
use crate::store::{CatalogEntry, Store};

/// A catalog entry for a checkpoint known only from its manifest.
pub(super) fn entry_of(manifest: &Manifest) -> CatalogEntry {
    CatalogEntry {
        summary: manifest.summary(),
        epoch: manifest.epoch,
    }
}

/// Make the catalog agree with storage; returns the newest checkpoint.
pub(super) async fn reconcile(
    node: &Node,
    store: &Store,
) -> Result<Option<CheckpointSummary>, NodeError> {
    let stored = node.engine.list().await?;
    let missing = store
        .catalog_reconcile(stored.iter().map(|c| c.id.to_string()).collect())
        .await?;
    for id in missing {
        let manifest = node.engine.load_manifest(&id).await?;
        store.catalog_insert(entry_of(&manifest)).await?;
    }
    Ok(store
        .catalog_list(1)
        .await?
        .into_iter()
        .next()
        .map(|e| e.summary))
}
