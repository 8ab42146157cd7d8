//! Three nodes racing for the lease, release after release: never two owners at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use state_manager::lease::{LeaseError, LeaseEvent, LeaseEventKind};

use super::{Backend, Node, PREFIX, lease_config, node, stored};

/// One node's tenure as its events tell it.
#[derive(Debug, Clone)]
struct Span {
    node: String,
    epoch: u64,
    start: LeaseEvent,
    end: LeaseEvent,
}

pub async fn three_nodes_racing_never_own_at_once(b: &Backend) {
    const ROUNDS: usize = 200;
    let cfg = lease_config(6000, 500, 50);
    let rounds = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for id in ["node-a", "node-b", "node-c"] {
        let n = node(b, id, &cfg).await;
        let rounds = Arc::clone(&rounds);
        tasks.push(tokio::spawn(churn(n, rounds, ROUNDS)));
    }
    let mut spans = Vec::new();
    for t in tasks {
        spans.extend(
            tokio::time::timeout(Duration::from_secs(300), t)
                .await
                .unwrap()
                .unwrap(),
        );
    }
    assert!(spans.len() >= ROUNDS, "only {} tenures", spans.len());
    spans.sort_by_key(|s| s.start.mono);
    let skew = time::Duration::milliseconds(500);
    for w in spans.windows(2) {
        let (p, n) = (&w[0], &w[1]);
        assert!(
            n.epoch > p.epoch,
            "epochs must grow with time: {p:?} then {n:?}"
        );
        // Same process, same monotonic clock: the next tenure starts after the previous ended.
        assert!(p.end.mono < n.start.mono, "overlap: {p:?} and {n:?}");
        assert!(
            p.end.at < n.start.at + skew,
            "overlap in wall time: {p:?} and {n:?}"
        );
    }
    let mut epochs: Vec<u64> = spans.iter().map(|s| s.epoch).collect();
    epochs.dedup();
    assert_eq!(epochs.len(), spans.len(), "an epoch was owned twice");
    let (r, _) = stored(&b.store(PREFIX).await).await.unwrap();
    assert_eq!(r.epoch, spans.last().unwrap().epoch);
    let owners: std::collections::BTreeSet<_> = spans.iter().map(|s| s.node.clone()).collect();
    assert_eq!(
        owners.len(),
        3,
        "every node should have owned at least once"
    );
}

/// Acquire, hold briefly (the fence must say yes throughout), release; until `total` rounds.
/// Returns this node's tenures.
async fn churn(mut n: Node, rounds: Arc<AtomicUsize>, total: usize) -> Vec<Span> {
    while rounds.load(Ordering::SeqCst) < total {
        let epoch = match n.handle.role().owned_epoch() {
            Some(e) => e,
            None => match n.handle.acquire().await {
                Ok(t) => t.epoch,
                Err(LeaseError::Held { .. }) => {
                    tokio::time::sleep(Duration::from_millis(rand::random_range(1..8))).await;
                    continue;
                }
                Err(e) => panic!("{}: {e}", n.handle.node_id()),
            },
        };
        assert_eq!(n.handle.fence().check(), Ok(epoch));
        tokio::time::sleep(Duration::from_millis(rand::random_range(0..5))).await;
        assert_eq!(n.handle.fence().check(), Ok(epoch));
        n.handle.release().await.unwrap();
        rounds.fetch_add(1, Ordering::SeqCst);
    }
    n.handle.stop(true).await.unwrap();
    let mut spans = Vec::new();
    let mut open: Option<LeaseEvent> = None;
    while let Ok(e) = n.events.try_recv() {
        match (&e.kind, open.take()) {
            (LeaseEventKind::Acquired { .. }, None) => open = Some(e),
            (_, Some(start)) if start.epoch == e.epoch => spans.push(Span {
                node: n.handle.node_id().to_string(),
                epoch: e.epoch,
                start,
                end: e,
            }),
            (_, start) => panic!("events out of order: {start:?} then {e:?}"),
        }
    }
    assert!(open.is_none(), "a tenure never ended: {open:?}");
    spans
}
