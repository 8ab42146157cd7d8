//! `state-manager check --config F --storage`: every step against a real S3 server passes and
//! exits 0; a dead endpoint or a missing bucket fails the first step with its sentence and fix
//! and exits 1; against s3s-fs a wrong secret is named as such.

use std::process::Output;

use crate::common::moto::MotoServer;

fn check_storage(storage: serde_json::Value) -> (Output, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.json");
    std::fs::write(&file, serde_json::json!({ "storage": storage }).to_string()).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_state-manager"))
        .args(["check", "--storage", "--config", file.to_str().unwrap()])
        .env_remove("STATE_MANAGER_CONFIG")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out, text)
}

#[test]
fn every_step_passes_against_s3_and_the_probe_is_gone() {
    let moto = MotoServer::start();
    moto.create_bucket("env");
    let (out, text) =
        check_storage(serde_json::to_value(moto.storage_config("env", "env-1")).unwrap());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for step in [
        "ok    list",
        "ok    put-if-absent\n",
        "ok    put-if-absent refuses an existing object",
        "ok    conditional overwrite\n",
        "ok    conditional overwrite refuses a stale version",
        "ok    read back",
        "ok    delete",
        "storage: ok (7 of 7 steps)",
    ] {
        assert!(text.contains(step), "missing {step:?} in:\n{text}");
    }
}

#[test]
fn a_dead_endpoint_and_a_missing_bucket_fail_with_the_fix() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let storage = serde_json::json!({"bucket": "env", "endpoint": format!("http://127.0.0.1:{port}"),
        "access_key": "testing", "secret_key": "testing", "key_prefix": "env-1"});
    let (out, text) = check_storage(storage);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!("FAIL  list: nothing accepts connections at http://127.0.0.1:{port}/ (connection refused)")),
        "{text}"
    );
    assert!(text.contains("fix: start the storage server"), "{text}");
    assert!(
        text.contains("storage: failed (0 of 7 steps passed)"),
        "{text}"
    );
    assert!(
        !text.contains("testing"),
        "no credential is printed: {text}"
    );

    let moto = MotoServer::start();
    let (out, text) =
        check_storage(serde_json::to_value(moto.storage_config("no-such", "env-1")).unwrap());
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("FAIL  list: bucket \"no-such\" does not exist"),
        "{text}"
    );
    assert!(
        text.contains("fix: create the bucket, or fix storage.bucket"),
        "{text}"
    );
}

/// Against s3s-fs, which checks signatures: the right keys pass every step; a wrong secret
/// fails the first with the sentence and names where the credentials came from.
#[test]
fn against_a_signature_checking_server_a_wrong_secret_fails_with_its_sentence() {
    let s3s = crate::common::s3s::S3sServer::start();
    s3s.create_bucket("env");
    let good = serde_json::to_value(s3s.storage_config("env", "env-1")).unwrap();
    let (out, text) = check_storage(good.clone());
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("storage: ok (7 of 7 steps)"), "{text}");

    let mut bad = good;
    bad["secret_key"] = "wrong-secret-value".into();
    let (out, text) = check_storage(bad);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(
            "FAIL  list: the server rejected the request's signature (SignatureDoesNotMatch)"
        ),
        "{text}"
    );
    assert!(
        text.contains("storage.access_key/secret_key in the config"),
        "{text}"
    );
    assert!(!text.contains("wrong-secret-value"), "{text}");
}
