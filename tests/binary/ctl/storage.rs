//! `ctl health` when storage fails: liveness still passes (exit 0, `ok`), and stderr names the
//! failure's kind and where to read the rest, until storage works again. The server is the
//! real binary; storage is s3s-fs, started with another secret than the config's.

use serde_json::Value;

use super::support::{DEADLINE, Server, ctl};
use crate::common::backend::BUCKET;
use crate::common::s3s::{S3sServer, SECRET_KEY};

#[test]
fn health_names_failing_storage_and_still_passes() {
    let mut s3s = S3sServer::start_with_secret("the-servers-other-secret");
    s3s.create_bucket(BUCKET);
    let config = serde_json::json!({
        "storage": s3s.storage_config(BUCKET, "env-1"),
        "lease": {"ttl": "4s", "poll_interval": "300ms", "clock_skew": "1s"},
    });
    let server = Server::start(&config.to_string());
    let storage_is = |state: &str| {
        crate::common::wait_for(&format!("/healthz storage {state}"), DEADLINE, || {
            let run = ctl(&server.url, None, &["health", "--json"]);
            let v: Value = serde_json::from_str(&run.stdout).ok()?;
            (v["storage"] == state).then_some(v)
        })
    };
    let v = storage_is("failing");
    assert_eq!(v["storage_failure"], "credentials", "{v}");
    let run = server.ctl(None, &["health"]);
    assert_eq!(run.code, 0, "liveness passes: {run:?}");
    assert_eq!(run.stdout, "ok\n", "{run:?}");
    assert!(
        run.stderr
            .contains("storage is failing (credentials); `state-manager ctl status`"),
        "{run:?}"
    );

    s3s.restart_with_secret(SECRET_KEY);
    storage_is("ok");
    let run = server.ctl(None, &["health"]);
    assert_eq!((run.code, run.stderr.as_str()), (0, ""), "{run:?}");
}
