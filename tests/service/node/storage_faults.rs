//! Storage faults from real servers (a clock off by hours, a bucket name the server refuses)
//! and the one fake (throttling, see `common::throttle`): each shows in `GET /` with its kind,
//! sentence and fix within moments, as an event, and clears when it passes — except a clock
//! off by hours, which the S3 client corrects.

use reqwest::StatusCode;

use super::storage::{owner_with_storage_ok, wait_health};
use super::storage_events::{storage_events, wait_storage_events, without_restarts};
use super::{Backend, config};
use crate::common::node::Node;
use crate::common::throttle::ThrottleProxy;

/// s3s-fs runs two hours ahead (libfaketime) while the node owns the environment. s3s refuses
/// the first request signed with our clock (`RequestTimeTooSkewed`, in its log), and the S3
/// client corrects it: it measures the skew from the answer's `Date` header and signs the retry
/// with the server's time (aws-runtime's clock-skew interceptor, for skews above 4 minutes).
/// Storage keeps working, with no storage event. When s3s-fs comes back on the real clock, the
/// client still signs two hours ahead and its measured skew is now below the threshold, so the
/// refusal is not retried: storage fails as `clock_skew` (an event with the sentence and fix,
/// a 503 naming it if the checkpoint is the request that meets it), and the next request,
/// signed with the skew learned from that answer, works again (an `ok` event).
pub async fn a_server_clock_hours_off_is_corrected_and_its_return_shows(b: &mut Backend) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(b, dir.path(), vec![]);
    cfg["lease"]["ttl"] = "30s".into();
    let node = owner_with_storage_ok(dir.path(), &cfg).await;

    let Backend::S3s(s3s) = b else { unreachable!() };
    s3s.restart_with_clock(Some("+2h"));
    let (code, body) = node.post("/checkpoint", None).await;
    assert_eq!(
        code,
        StatusCode::CREATED,
        "the client corrects the skew: {body}"
    );
    assert!(
        s3s.log().contains("RequestTimeTooSkewed"),
        "the server refused our clock at first:\n{}",
        s3s.log()
    );
    assert_eq!(node.get("/").await["storage_health"]["state"], "ok");
    let events = without_restarts(storage_events(&node).await);
    assert!(events.is_empty(), "{events:?}");

    s3s.restart_with_clock(None);
    let (code, body) = node.post("/checkpoint", None).await;
    if code != StatusCode::CREATED {
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        let detail = body["detail"].as_str().unwrap();
        assert!(
            detail.contains("RequestTimeTooSkewed") && detail.contains("NTP"),
            "{body}"
        );
    }
    let events = wait_storage_events(&node, 2).await;
    assert_eq!(events.len(), 2, "{events:?}");
    let failure = &events[0]["failure"];
    assert_eq!(failure["kind"], "clock_skew", "{events:?}");
    let message = failure["message"].as_str().unwrap();
    assert!(message.contains("RequestTimeTooSkewed"), "{failure}");
    assert!(
        failure["fix"].as_str().unwrap().contains("NTP"),
        "{failure}"
    );
    assert_eq!(events[1]["state"], "ok", "{events:?}");
    let (code, body) = node.post("/checkpoint", None).await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    wait_health(&node, "ok", None).await;
    node.stop().await;
}

/// With an endpoint our 3-character minimum does not apply (the server decides): s3s-fs
/// refuses `"bk"` as `InvalidBucketName`, and GET / says so with the fix; restarted with the
/// right name, the node's storage is ok and it owns the environment.
pub async fn a_bucket_name_the_server_refuses_shows_with_the_fix(b: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(b, dir.path(), vec![]);
    cfg["storage"]["bucket"] = "bk".into();
    let node = Node::start(dir.path(), &cfg).await;
    let h = wait_health(&node, "failing", Some("invalid_bucket_name")).await;
    let message = h["failure"]["message"].as_str().unwrap();
    assert!(message.contains("rejects the bucket name \"bk\""), "{h}");
    let fix = h["failure"]["fix"].as_str().unwrap();
    assert!(fix.contains("storage.bucket"), "{h}");
    assert_eq!(node.get("/").await["role"], "standby");
    node.stop().await;

    // Fixed the only way a node-only setting is: the node restarted with the right name.
    let fixed = config(b, dir.path(), vec![]);
    let node = owner_with_storage_ok(dir.path(), &fixed).await;
    node.stop().await;
}

/// moto checks bucket names only when a bucket is created: to object requests for `"bk"`
/// (which it would refuse to create) it answers `NoSuchBucket`, and GET / says that.
pub async fn moto_answers_a_bucket_it_would_refuse_as_missing(b: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(b, dir.path(), vec![]);
    cfg["storage"]["bucket"] = "bk".into();
    let node = Node::start(dir.path(), &cfg).await;
    let h = wait_health(&node, "failing", Some("no_such_bucket")).await;
    let message = h["failure"]["message"].as_str().unwrap();
    assert!(message.contains("\"bk\""), "{h}");
    node.stop().await;
}

/// The server answers `503 SlowDown` (the proxy of `common::throttle`, the one fake fault)
/// for a while: GET / says `throttled`, that requests are retrying, and it clears after.
pub async fn a_throttling_server_shows_as_throttled_while_it_lasts(b: &Backend) {
    let proxy = ThrottleProxy::start(&b.moto_server().endpoint()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(b, dir.path(), vec![]);
    cfg["lease"]["ttl"] = "30s".into();
    cfg["storage"]["endpoint"] = proxy.endpoint().into();
    let node = owner_with_storage_ok(dir.path(), &cfg).await;

    proxy.set(true);
    let h = wait_health(&node, "failing", Some("throttled")).await;
    assert!(proxy.throttled() > 0);
    let message = h["failure"]["message"].as_str().unwrap();
    assert!(message.contains("SlowDown"), "{h}");
    let fix = h["failure"]["fix"].as_str().unwrap();
    assert!(fix.contains("retrying"), "{h}");
    let events = wait_storage_events(&node, 1).await;
    assert_eq!(events[0]["failure"]["kind"], "throttled", "{events:?}");

    proxy.set(false);
    wait_health(&node, "ok", None).await;
    let events = wait_storage_events(&node, 2).await;
    assert_eq!(events[1]["state"], "ok", "{events:?}");
    node.wait_role("owner").await;
    assert_eq!(storage_events(&node).await.len(), 2);
    node.stop().await;
}
