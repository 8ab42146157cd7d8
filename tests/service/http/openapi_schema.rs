//! The OpenAPI document checked by tools from PyPI: it validates as OpenAPI 3.1
//! (`openapi-spec-validator`), and real answers of `GET /` and `GET /processes` validate against
//! the schemas it documents for them (`check-jsonschema`), field for field.
//!
//! The tools come from the env var named after them (`OPENAPI_SPEC_VALIDATOR`,
//! `CHECK_JSONSCHEMA`), else `<repo>/.venv/bin/<tool>` (`make deps` installs them), else `PATH`.
//! Without one the test panics with install instructions: it never skips.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use super::support::{DEADLINE, SLEEPERS, Server, state};
use crate::common::wait_for_async;

const INSTALL: &str = "`make deps` installs it into .venv (or: `python3 -m venv .venv && \
    .venv/bin/pip install openapi-spec-validator==0.9.0 check-jsonschema==0.39.0`)";

/// The path of `tool`, found as the module header says.
fn tool(tool: &str, var: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(var) {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "{var}={} does not exist; {INSTALL}",
            p.display()
        );
        return p;
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(".venv/bin")
        .join(tool);
    if venv.is_file() {
        return venv;
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(tool))
            .find(|p| p.is_file())
    });
    on_path.unwrap_or_else(|| panic!("{tool} not found; {INSTALL}, or set {var}"))
}

/// Run `tool` with `args`: whether it succeeded, and what it printed.
///
/// The tool runs under `sh`, which waits for it and prints its exit status: the supervisor of a
/// server in a concurrent test reaps every child of this process, so our own wait may find
/// nothing (ECHILD) and its result is ignored.
fn run(tool: &Path, args: &[&Path]) -> (bool, String) {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(r#""$0" "$@" 2>&1; echo "exit status $?""#)
        .arg(tool)
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let _ = child.wait();
    let (text, code) = out
        .trim_end()
        .rsplit_once("exit status ")
        .unwrap_or((&out, ""));
    let text = format!("{} {args:?} (exit status {code}):\n{text}", tool.display());
    (code == "0", text)
}

fn write_json(dir: &Path, name: &str, v: &Value) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_vec_pretty(v).unwrap()).unwrap();
    path
}

/// Whether `instance` validates against the schema of `GET path`'s 200 in `doc`, checked as
/// JSON Schema 2020-12 (OpenAPI 3.1's dialect) with the document's components beside it, so
/// that its `$ref`s resolve.
fn validates(doc: &Value, path: &str, instance: &Value) -> (bool, String) {
    let schema =
        &doc["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"];
    assert!(schema.is_object(), "no JSON schema for GET {path}");
    let wrapper = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "allOf": [schema],
        "components": doc["components"],
    });
    let dir = tempfile::tempdir().unwrap();
    let schema = write_json(dir.path(), "schema.json", &wrapper);
    let instance = write_json(dir.path(), "instance.json", instance);
    let check = tool("check-jsonschema", "CHECK_JSONSCHEMA");
    run(&check, &[Path::new("--schemafile"), &schema, &instance])
}

/// `instance` validates as a real answer of `GET path`; the same with one field of the wrong
/// type does not (so the check is not vacuous).
fn validate_answer(doc: &Value, path: &str, instance: &Value, field: &str) {
    let (ok, out) = validates(doc, path, instance);
    assert!(ok, "{out}");
    let mut broken = instance.clone();
    let target = if broken.is_array() {
        &mut broken[0]
    } else {
        &mut broken
    };
    target[field] = json!({"not": "documented"});
    let (ok, out) = validates(doc, path, &broken);
    assert!(!ok, "a wrong {field} passed: {out}");
}

/// The properties `component` documents are exactly the fields of `object`.
fn same_fields(doc: &Value, component: &str, object: &Value) {
    let documented: BTreeSet<&String> = doc["components"]["schemas"][component]["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("{component} has no properties"))
        .keys()
        .collect();
    let real: BTreeSet<&String> = object.as_object().unwrap().keys().collect();
    assert_eq!(documented, real, "{component} vs {object}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_validates_as_openapi_3_1() {
    let s = Server::start(None).await;
    let doc = s.get_json("/openapi.json").await;
    let dir = tempfile::tempdir().unwrap();
    let file = write_json(dir.path(), "openapi.json", &doc);
    let validator = tool("openapi-spec-validator", "OPENAPI_SPEC_VALIDATOR");
    let (ok, out) = run(
        &validator,
        &[Path::new("--schema"), Path::new("3.1"), &file],
    );
    assert!(ok, "{out}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_processes_answers_match_their_documented_schemas() {
    let s = Server::start(None).await;
    let doc = s.get_json("/openapi.json").await;
    let unconfigured = s.get_json("/").await;
    assert!(unconfigured["lease"].is_null(), "{unconfigured}");
    validate_answer(&doc, "/", &unconfigured, "lease");
    same_fields(&doc, "Status", &unconfigured);
    s.stop().await;

    let s = Server::start(Some(SLEEPERS)).await;
    s.wait_process("worker", "running", |p| state(p) == "running")
        .await;
    let status = wait_for_async("the node to own the lease", DEADLINE, || async {
        let v = s.get_json("/").await;
        (v["role"] == "owner" && v["replication"].is_object()).then_some(v)
    })
    .await;
    validate_answer(&doc, "/", &status, "uptime_s");
    same_fields(&doc, "Status", &status);
    same_fields(&doc, "LeaseOverview", &status["lease"]);
    same_fields(&doc, "ReplicationStatus", &status["replication"]);

    let processes = s.get_json("/processes").await;
    assert_eq!(processes.as_array().unwrap().len(), 4, "{processes}");
    validate_answer(&doc, "/processes", &processes, "state");
    for p in processes.as_array().unwrap() {
        same_fields(&doc, "ProcessInfo", p);
    }
    s.stop().await;
}
