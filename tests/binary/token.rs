//! The real binary: `serve` refuses to start without a JWT key (naming how to set one), starts
//! with `--insecure-no-auth` and warns, and `token` mints tokens the server accepts.
//!
//! No supervisor runs in this test process, so waiting for the binary with `Command` is safe.

use crate::common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, Validation};

const BIN: &str = env!("CARGO_BIN_EXE_state-manager");
const KEY_VARS: [&str; 4] = [
    "STATE_MANAGER_JWT_SECRET",
    "STATE_MANAGER_JWT_SECRET_FILE",
    "STATE_MANAGER_JWT_PUBLIC_KEY_FILE",
    "STATE_MANAGER_INSECURE_NO_AUTH",
];

fn cmd() -> Command {
    let mut c = Command::new(BIN);
    for v in KEY_VARS {
        c.env_remove(v);
    }
    c.env_remove("STATE_MANAGER_JWT_AUDIENCE")
        .env_remove("STATE_MANAGER_JWT_ISSUER")
        .env_remove("STATE_MANAGER_CONFIG")
        .env_remove("STATE_MANAGER_DATA_DIR");
    c
}

#[test]
fn serve_without_a_key_refuses_and_says_how_to_set_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = cmd()
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for hint in &KEY_VARS[..3] {
        assert!(err.contains(hint), "{err}");
    }
    assert!(err.contains("--insecure-no-auth"), "{err}");
}

#[test]
fn token_needs_the_shared_secret() {
    let out = cmd().args(["token"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("STATE_MANAGER_JWT_SECRET"));
    let public = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/jwt-ed25519.pub"
    );
    let out = cmd()
        .env("STATE_MANAGER_JWT_PUBLIC_KEY_FILE", public)
        .args(["token"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs the shared secret"), "{err}");
}

#[test]
fn token_mints_the_asked_scope_subject_and_lifetime() {
    let secret = "cli-secret-0123456789abcdef0123456789";
    let out = cmd()
        .env("STATE_MANAGER_JWT_SECRET", secret)
        .args(["token", "--scope", "admin", "--ttl", "2h", "--sub", "ci"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap();
    let mut v = Validation::new(Algorithm::HS256);
    v.set_required_spec_claims(&["exp"]);
    let claims = jsonwebtoken::decode::<serde_json::Value>(
        token.trim(),
        &DecodingKey::from_secret(secret.as_bytes()),
        &v,
    )
    .unwrap()
    .claims;
    assert_eq!(claims["scope"], "admin");
    assert_eq!(claims["sub"], "ci");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let ttl = claims["exp"].as_u64().unwrap() - now;
    assert!((7100..=7200).contains(&ttl), "{ttl}");
    assert!(claims.get("aud").is_none() && claims.get("iss").is_none());
}

#[test]
fn token_carries_the_configured_audience_and_issuer() {
    let secret = "cli-secret-0123456789abcdef0123456789";
    let out = cmd()
        .env("STATE_MANAGER_JWT_SECRET", secret)
        .env("STATE_MANAGER_JWT_AUDIENCE", "state-manager, other")
        .env("STATE_MANAGER_JWT_ISSUER", "https://idp.example")
        .args(["token"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap();
    let mut v = Validation::new(Algorithm::HS256);
    v.set_required_spec_claims(&["exp", "aud", "iss"]);
    v.set_audience(&["state-manager"]);
    v.set_issuer(&["https://idp.example"]);
    let claims = jsonwebtoken::decode::<serde_json::Value>(
        token.trim(),
        &DecodingKey::from_secret(secret.as_bytes()),
        &v,
    )
    .unwrap()
    .claims;
    assert_eq!(claims["aud"], "state-manager");
    assert_eq!(claims["iss"], "https://idp.example");
}

/// The binary serving on an ephemeral port; its address read from its JSON logs.
struct Running {
    child: Child,
    addr: String,
    /// Log lines up to "listening".
    startup: Vec<String>,
}

fn serve(envs: &[(&str, &str)], extra: &[&str], dir: &std::path::Path) -> Running {
    let mut c = cmd();
    c.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--log-format",
        "json",
        "--data-dir",
    ])
    .arg(dir)
    .args(extra)
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    for (k, v) in envs {
        c.env(k, v);
    }
    let mut child = c.spawn().unwrap();
    let (tx, log) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    let addr = loop {
        let line = log
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("no listening address; log so far: {seen:#?}"));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if v["message"] == "HTTP API listening" {
            break v["addr"].as_str().unwrap().to_string();
        }
        seen.push(line);
    };
    Running {
        child,
        addr,
        startup: seen,
    }
}

impl Running {
    fn get(&self, path: &str, token: Option<&str>) -> (u16, serde_json::Value) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut req = reqwest::Client::new().get(format!("http://{}{path}", self.addr));
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.json().await.unwrap())
        })
    }

    /// SIGTERM, then the exit code.
    fn terminate(mut self) -> Option<i32> {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let status = common::wait_for("the server to exit", Duration::from_secs(60), || {
            self.child.try_wait().ok().flatten()
        });
        status.code()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn insecure_mode_serves_without_tokens_and_warns() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(&[("STATE_MANAGER_INSECURE_NO_AUTH", "1")], &[], dir.path());
    let (code, body) = s.get("/", None);
    assert_eq!(code, 200);
    assert!(
        body["warnings"][0]
            .as_str()
            .unwrap()
            .contains("authentication is disabled")
    );
    let warned = s.startup.iter().any(|l| {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_default();
        v["level"] == "WARN"
            && v["message"]
                .as_str()
                .unwrap_or("")
                .contains("authentication is disabled")
    });
    assert!(warned, "{:#?}", s.startup);
    assert_eq!(s.terminate(), Some(143));
}

#[test]
fn a_secret_file_verifies_the_tokens_minted_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jwt.secret");
    std::fs::write(&file, "file-secret-0123456789abcdef0123456789\n").unwrap();
    let file = file.to_str().unwrap();
    let data = dir.path().join("data");
    let s = serve(&[("STATE_MANAGER_JWT_SECRET_FILE", file)], &[], &data);
    let out = cmd()
        .env("STATE_MANAGER_JWT_SECRET_FILE", file)
        .args(["token", "--scope", "read"])
        .output()
        .unwrap();
    let token = String::from_utf8(out.stdout).unwrap();
    let (code, body) = s.get("/", Some(token.trim()));
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["configured"], false);
    assert_eq!(body["warnings"], serde_json::json!([]));
    let (code, _) = s.get("/", None);
    assert_eq!(code, 401);
    assert_eq!(s.terminate(), Some(143));
}
