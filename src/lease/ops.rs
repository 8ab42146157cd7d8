//! One lease operation at a time against storage: read, acquire, renew, release.
//!
//! Every storage request is bounded by [`Timing::op_timeout`]. A conditional write that fails
//! its precondition is checked by reading the record back: if it is exactly the record written,
//! the write landed (a retry after a lost answer) and counts as done. A write that ended without
//! an answer (timeout, connection error) is remembered with the moment it was sent; if a later
//! read shows that it landed, it is adopted, its trust measured from that moment.

use std::time::Duration;

use bytes::Bytes;

use super::clock::DynClock;
use super::record::{LEASE_KEY, LeaseRecord};
use super::timing::{Claim, Timing};
use super::{LeaseError, LeaseView};
use crate::objstore::{DynStore, ETag};

const PENDING_MAX: usize = 4;

/// Proof of ownership: the record this node wrote, its ETag, and the monotonic instant the
/// write was sent (trust is measured from it: [`Timing::valid_until`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    pub record: LeaseRecord,
    pub etag: ETag,
    pub sent: Duration,
    /// The record an acquisition replaced (`None` when it created the object, and after a
    /// renewal): who held the lease before and until when.
    pub previous: Option<LeaseView>,
}

/// The lease operations of one node.
pub struct Lease {
    store: DynStore,
    node: String,
    /// This data directory's instance id, written into the records this node writes.
    instance: Option<String>,
    clock: DynClock,
    timing: Timing,
    /// The highest epoch seen, so that a lost lease object does not restart epochs.
    highest_epoch: u64,
    /// Writes that got no answer (newest last, at most [`PENDING_MAX`]), and when each was
    /// sent. At most one of them can have landed: they all started from a version we had read.
    pending: Vec<(LeaseRecord, Duration)>,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("store", &self.store.describe())
            .field("node", &self.node)
            .field("timing", &self.timing)
            .field("highest_epoch", &self.highest_epoch)
            .finish_non_exhaustive()
    }
}

/// What a conditional write found.
enum Outcome {
    Landed(ETag),
    /// Someone else's version is there (or nothing).
    Conflict(Option<(LeaseRecord, ETag)>),
}

impl Lease {
    pub fn new(store: DynStore, node: String, clock: DynClock, timing: Timing) -> Lease {
        Lease {
            store,
            node,
            instance: None,
            clock,
            timing,
            highest_epoch: 0,
            pending: Vec::new(),
        }
    }

    /// Name `instance` (this data directory's id) in the records written from now on.
    pub fn with_instance(mut self, instance: Option<String>) -> Lease {
        self.instance = instance;
        self
    }

    pub fn node_id(&self) -> &str {
        &self.node
    }

    pub fn instance(&self) -> Option<&str> {
        self.instance.as_deref()
    }

    pub fn timing(&self) -> &Timing {
        &self.timing
    }

    pub fn clock(&self) -> &DynClock {
        &self.clock
    }

    /// The lease object and its ETag, or `None` if there is none.
    pub async fn read(&mut self) -> Result<Option<(LeaseRecord, ETag)>, LeaseError> {
        let got = self.bounded("get", self.store.get(LEASE_KEY)).await;
        let obj = match got {
            Ok(o) => o,
            Err(LeaseError::Storage { source, .. }) if source.is_not_found() => return Ok(None),
            Err(e) => return Err(e),
        };
        let record = LeaseRecord::decode(&obj.body)?;
        self.highest_epoch = self.highest_epoch.max(record.epoch);
        Ok(Some((record, obj.etag)))
    }

    /// Take the lease if it is absent, released, expired beyond the skew allowance, or the
    /// tenure `reclaim` that this node lost; otherwise [`LeaseError::Held`].
    pub async fn acquire(&mut self, reclaim: Option<u64>) -> Result<Held, LeaseError> {
        let current = self.read().await?;
        if let Some((rec, etag)) = &current
            && let Some(held) = self.adopt(rec, etag)
        {
            return Ok(held);
        }
        let now = self.clock.now();
        let claim = self.timing.claim_as(
            now,
            current.as_ref().map(|c| &c.0),
            &self.node,
            self.instance.as_deref(),
            reclaim,
        );
        let cond = match (claim, &current) {
            (Claim::Wait { free_at }, Some((rec, _))) => {
                return Err(LeaseError::Held {
                    holder: rec.into(),
                    free_at,
                });
            }
            (_, Some((_, etag))) => Some(etag.clone()),
            (_, None) => None,
        };
        let sent = self.clock.mono();
        let epoch = self.highest_epoch + 1;
        let record = LeaseRecord::acquired(&self.node, epoch, self.clock.now(), self.timing.ttl)
            .with_instance(self.instance.as_deref());
        let previous = current.as_ref().map(|(r, _)| LeaseView::from(r));
        match self.write(&record, cond.as_ref(), sent).await? {
            Outcome::Landed(etag) => Ok(Held {
                previous,
                ..self.held(record, etag, sent)
            }),
            Outcome::Conflict(Some((rec, etag))) => match self.adopt(&rec, &etag) {
                Some(held) => Ok(held),
                None => Err(LeaseError::Held {
                    free_at: self.timing.free_at(&rec),
                    holder: (&rec).into(),
                }),
            },
            Outcome::Conflict(None) => Err(LeaseError::Superseded { current: None }),
        }
    }

    /// Extend `held` by a TTL from now. [`LeaseError::Superseded`] if another tenure replaced
    /// it; other errors are transient (try again while trust lasts).
    pub async fn renew(&mut self, held: &Held) -> Result<Held, LeaseError> {
        let mut base = (held.record.clone(), held.etag.clone());
        loop {
            let sent = self.clock.mono();
            let record = base.0.renewed(self.clock.now(), self.timing.ttl);
            match self.write(&record, Some(&base.1), sent).await? {
                Outcome::Landed(etag) => return Ok(self.held(record, etag, sent)),
                Outcome::Conflict(Some((rec, etag)))
                    if rec.same_tenure(&held.record) && !rec.released =>
                {
                    if let Some(h) = self.adopt(&rec, &etag) {
                        return Ok(h);
                    }
                    // An earlier write of ours landed late: renew on top of it. Each round needs
                    // a strictly newer record, so this ends.
                    if rec.renew_count <= base.0.renew_count {
                        return Err(superseded(Some(&rec)));
                    }
                    base = (rec, etag);
                }
                Outcome::Conflict(current) => {
                    return Err(superseded(current.map(|c| c.0).as_ref()));
                }
            }
        }
    }

    /// Mark `held` released so that anyone may take it at once. The caller has already
    /// stopped trusting it (closed its fence).
    pub async fn release(&mut self, held: &Held) -> Result<LeaseRecord, LeaseError> {
        let mut base = (held.record.clone(), held.etag.clone());
        loop {
            let sent = self.clock.mono();
            let record = base.0.released(self.clock.now());
            match self.write(&record, Some(&base.1), sent).await? {
                Outcome::Landed(_) => return Ok(record),
                Outcome::Conflict(Some((rec, _)))
                    if rec.same_tenure(&held.record) && rec.released =>
                {
                    return Ok(rec);
                }
                Outcome::Conflict(Some((rec, etag)))
                    if rec.same_tenure(&held.record) && rec.renew_count > base.0.renew_count =>
                {
                    base = (rec, etag);
                }
                Outcome::Conflict(current) => {
                    return Err(superseded(current.map(|c| c.0).as_ref()));
                }
            }
        }
    }

    /// Forget unanswered writes: the tenure they belong to is over for this node, and a
    /// record they left is to be taken over, not adopted.
    pub fn forget_pending(&mut self) {
        self.pending.clear();
    }

    fn held(&mut self, record: LeaseRecord, etag: ETag, sent: Duration) -> Held {
        self.pending.clear();
        self.highest_epoch = self.highest_epoch.max(record.epoch);
        Held {
            record,
            etag,
            sent,
            previous: None,
        }
    }

    /// The remembered unanswered write, if `current` shows that it landed.
    fn adopt(&mut self, current: &LeaseRecord, etag: &ETag) -> Option<Held> {
        let i = self.pending.iter().position(|(rec, _)| rec == current)?;
        let (rec, sent) = self.pending.swap_remove(i);
        Some(self.held(rec, etag.clone(), sent))
    }

    fn remember(&mut self, record: &LeaseRecord, sent: Duration) {
        if self.pending.len() == PENDING_MAX {
            self.pending.remove(0);
        }
        self.pending.push((record.clone(), sent));
    }

    /// A conditional write (`cond` = `None`: put-if-absent), checked by reading back on a
    /// failed precondition.
    async fn write(
        &mut self,
        record: &LeaseRecord,
        cond: Option<&ETag>,
        sent: Duration,
    ) -> Result<Outcome, LeaseError> {
        let body: Bytes = record.encode();
        let res = match cond {
            None => {
                self.bounded("put-if-absent", self.store.put_if_absent(LEASE_KEY, body))
                    .await
            }
            Some(e) => {
                self.bounded("put-if-match", self.store.put_if_match(LEASE_KEY, body, e))
                    .await
            }
        };
        match res {
            Ok(etag) => Ok(Outcome::Landed(etag)),
            Err(LeaseError::Storage { source, .. }) if source.is_precondition_failed() => {
                // A retried request reports this although its first attempt landed: look.
                match self.read().await {
                    Ok(Some((cur, etag))) if cur == *record => Ok(Outcome::Landed(etag)),
                    Ok(other) => Ok(Outcome::Conflict(other)),
                    Err(e) => {
                        self.remember(record, sent);
                        Err(e)
                    }
                }
            }
            Err(e) => {
                self.remember(record, sent);
                Err(e)
            }
        }
    }

    async fn bounded<T>(
        &self,
        op: &'static str,
        fut: impl Future<Output = crate::objstore::Result<T>>,
    ) -> Result<T, LeaseError> {
        let after = self.timing.op_timeout;
        match tokio::time::timeout(after, fut).await {
            Ok(r) => r.map_err(|source| LeaseError::Storage { op, source }),
            Err(_) => Err(LeaseError::Timeout { op, after }),
        }
    }
}

fn superseded(current: Option<&LeaseRecord>) -> LeaseError {
    LeaseError::Superseded {
        current: current.map(LeaseView::from),
    }
}
