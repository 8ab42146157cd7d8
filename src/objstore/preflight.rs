//! `state-manager check --storage`: storage tried end to end under the key prefix, step by
//! step, with each step's result and the fix.
//!
//! The steps are what the node itself needs: list (replication and checkpoints), put-if-absent
//! and its refusal of a second write (the lease, chunks), a conditional overwrite and its
//! refusal of a stale version (lease renewals), read back, delete. They work on one probe
//! object, `preflight/<random>.probe`, which the last step removes; a failed run leaves at most
//! that object behind. Nothing else under the prefix is read or written (the list is of
//! `preflight/`).

use bytes::Bytes;

use super::{DynStore, ETag, StorageError};

/// How many steps a run that passes takes.
pub const STEPS: usize = 7;

/// One step's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub name: &'static str,
    /// `None` when the step passed; otherwise what happened and what to do.
    pub problem: Option<(String, String)>,
}

impl Step {
    pub fn passed(&self) -> bool {
        self.problem.is_none()
    }
}

const NO_CONDITIONAL: &str = "the server ignores conditional writes (If-None-Match / If-Match): \
    the lease needs them; use AWS S3, MinIO, Cloudflare R2 or another server that honours them";

/// Run every step against `store`, stopping at the first that fails (the later ones need it).
/// `report` sees each step as it finishes.
pub async fn run(store: &DynStore, mut report: impl FnMut(&Step)) -> Vec<Step> {
    let key = format!("preflight/{:016x}.probe", rand::random::<u64>());
    let mut steps = Vec::new();
    let mut push = |name, problem: Option<(String, String)>| {
        let step = Step { name, problem };
        report(&step);
        let ok = step.passed();
        steps.push(step);
        ok
    };
    let failed = |e: StorageError| Some(explain(e));

    if !push(
        "list",
        store.list("preflight/").await.err().and_then(failed),
    ) {
        return steps;
    }
    let first = Bytes::from_static(b"state-manager preflight 1\n");
    let etag = match store.put_if_absent(&key, first).await {
        Ok(etag) => etag,
        Err(e) => {
            push("put-if-absent", failed(e));
            return steps;
        }
    };
    push("put-if-absent", None);
    let again = store
        .put_if_absent(&key, Bytes::from_static(b"again\n"))
        .await;
    if !push("put-if-absent refuses an existing object", refused(again)) {
        return cleanup(store, &key, steps).await;
    }
    let second = Bytes::from_static(b"state-manager preflight 2\n");
    let new_etag = match store.put_if_match(&key, second.clone(), &etag).await {
        Ok(t) => t,
        Err(e) => {
            push("conditional overwrite", failed(e));
            return cleanup(store, &key, steps).await;
        }
    };
    push("conditional overwrite", None);
    let stale = if new_etag == etag {
        Ok(ETag(String::new()))
    } else {
        store
            .put_if_match(&key, Bytes::from_static(b"stale\n"), &etag)
            .await
    };
    if !push(
        "conditional overwrite refuses a stale version",
        refused(stale),
    ) {
        return cleanup(store, &key, steps).await;
    }
    let read = match store.get(&key).await {
        Ok(o) if o.body == second => None,
        Ok(_) => Some((
            "the object read back is not the one written".to_string(),
            "check for a cache or proxy between this machine and storage".to_string(),
        )),
        Err(e) => failed(e),
    };
    push("read back", read);
    let deleted = match store.delete(&key).await {
        Ok(()) => match store.head(&key).await {
            Ok(None) => None,
            Ok(Some(_)) => Some((
                "the probe object is still there after its delete".to_string(),
                "check the server's delete handling (versioning or object lock?)".to_string(),
            )),
            Err(e) => failed(e),
        },
        Err(e) => failed(e),
    };
    push("delete", deleted);
    steps
}

/// After a failed step: remove the probe object, quietly (the failure is already reported).
async fn cleanup(store: &DynStore, key: &str, steps: Vec<Step>) -> Vec<Step> {
    let _ = store.delete(key).await;
    steps
}

/// A conditional write that must have been refused.
fn refused<T>(r: Result<T, StorageError>) -> Option<(String, String)> {
    match r {
        Err(e) if e.is_precondition_failed() => None,
        Ok(_) => Some((
            "the write was accepted although its condition did not hold".to_string(),
            NO_CONDITIONAL.to_string(),
        )),
        Err(e) => Some(explain(e)),
    }
}

/// What happened and what to do, from a storage error.
fn explain(e: StorageError) -> (String, String) {
    match e.failure() {
        Some(f) => (f.message, f.fix),
        None => (
            e.to_string(),
            "this is unexpected here; report it with the line above".to_string(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_step_passes_on_a_local_directory_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store: DynStore = std::sync::Arc::new(
            crate::objstore::local::LocalStore::open(dir.path(), Some("env-1")).unwrap(),
        );
        let mut seen = Vec::new();
        let steps = run(&store, |s| seen.push(s.name)).await;
        assert!(steps.iter().all(Step::passed), "{steps:#?}");
        assert_eq!(seen.len(), STEPS, "{seen:?}");
        assert!(store.list("").await.unwrap().is_empty());
    }
}
