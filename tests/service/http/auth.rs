//! The auth matrix on every route: no header, Basic, malformed, wrong key, expired, `alg: none`,
//! a scope that is neither read nor admin, read vs admin on every mutating route; public keys.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Method, StatusCode};
use serde_json::json;
use state_manager::auth::{Auth, Keys, Scope};

use super::support::{SLEEPERS, Server, assert_problem};

/// `{"alg":"none"}` with admin claims and no signature.
const ALG_NONE: &str = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJtYWxsb3J5IiwiZXhwIjo0MTAyNDQ0ODAwLCJzY29wZSI6ImFkbWluIn0.";

/// Every route, with whether it changes state (needs `admin`). Paths are chosen so that an
/// authorised request has no side effect (a pattern matching nothing, a body that is not JSON).
const ROUTES: &[(&str, &str, bool)] = &[
    ("GET", "/", false),
    ("GET", "/config", false),
    ("POST", "/config", true),
    ("GET", "/processes", false),
    ("GET", "/processes/web-1", false),
    ("POST", "/processes/nothing-matches/start", true),
    ("POST", "/processes/nothing-matches/stop", true),
    ("POST", "/processes/nothing-matches/restart", true),
    ("GET", "/processes/web-1/logs", false),
    ("GET", "/events", false),
    ("GET", "/metrics", false),
    ("GET", "/whoami", false),
];

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn hs256(secret: &[u8], claims: serde_json::Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap()
}

async fn send(s: &Server, method: &str, path: &str, auth: Option<&str>) -> reqwest::Response {
    let mut req = s
        .client
        .request(Method::from_bytes(method.as_bytes()).unwrap(), s.url(path))
        .header("content-type", "application/json")
        .body("not json");
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    req.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_rejects_bad_credentials_with_401() {
    let s = Server::start(Some(SLEEPERS)).await;
    let wrong_key = Keys::hs256(b"another-secret-0123456789abcdef-0123", "test")
        .unwrap()
        .mint("x", Scope::Admin, Duration::from_secs(600))
        .unwrap();
    let expired = hs256(
        super::support::SECRET,
        json!({"sub": "x", "scope": "admin", "exp": now() - 3600}),
    );
    let no_exp = hs256(
        super::support::SECRET,
        json!({"sub": "x", "scope": "admin"}),
    );
    let bad: Vec<(&str, Option<String>)> = vec![
        ("no header", None),
        ("Basic", Some("Basic YWRtaW46YWRtaW4=".into())),
        ("malformed", Some("Bearer not.a.jwt".into())),
        ("empty bearer", Some("Bearer ".into())),
        ("wrong key", Some(format!("Bearer {wrong_key}"))),
        ("expired", Some(format!("Bearer {expired}"))),
        ("no exp", Some(format!("Bearer {no_exp}"))),
        ("alg none", Some(format!("Bearer {ALG_NONE}"))),
    ];
    for &(method, path, _) in ROUTES {
        for (what, header) in &bad {
            let r = send(&s, method, path, header.as_deref()).await;
            assert_eq!(
                r.status(),
                StatusCode::UNAUTHORIZED,
                "{what}: {method} {path}"
            );
            let www = r
                .headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap().to_string());
            assert!(
                www.unwrap_or_default().starts_with("Bearer"),
                "{what}: {method} {path}"
            );
            assert_problem(r, StatusCode::UNAUTHORIZED).await;
        }
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_may_look_and_only_admin_may_change() {
    let s = Server::start(Some(SLEEPERS)).await;
    let read = format!("Bearer {}", s.token(Scope::Read));
    let admin = format!("Bearer {}", s.token(Scope::Admin));
    let both = format!(
        "Bearer {}",
        hs256(
            super::support::SECRET,
            json!({"scope": "read admin", "exp": now() + 600})
        )
    );
    let other = format!(
        "Bearer {}",
        hs256(
            super::support::SECRET,
            json!({"scope": "metrics", "exp": now() + 600})
        )
    );
    for &(method, path, mutating) in ROUTES {
        let r = send(&s, method, path, Some(&read)).await;
        if mutating {
            let body = assert_problem(r, StatusCode::FORBIDDEN).await;
            assert!(body["detail"].as_str().unwrap().contains("admin"), "{body}");
        } else {
            assert_eq!(r.status(), StatusCode::OK, "read: {method} {path}");
        }
        for token in [&admin, &both] {
            let r = send(&s, method, path, Some(token)).await;
            let code = r.status();
            assert!(
                code != StatusCode::UNAUTHORIZED && code != StatusCode::FORBIDDEN,
                "admin: {method} {path}: {code}"
            );
            if !mutating {
                assert_eq!(code, StatusCode::OK, "admin: {method} {path}");
            }
        }
        let r = send(&s, method, path, Some(&other)).await;
        assert_problem(r, StatusCode::FORBIDDEN).await;
    }
    // The stacks are untouched by all of that.
    let procs = s.get_json("/processes").await;
    assert!(procs.as_array().unwrap().iter().all(|p| p["restarts"] == 0));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_needs_no_token() {
    let s = Server::start(None).await;
    let r = s.client.get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap(),
        json!({"status": "ok"})
    );
    s.stop().await;
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_keys_verify_eddsa_and_es256_only_with_their_own_key() {
    for (kind, alg, private, public) in [
        (
            "ed25519",
            Algorithm::EdDSA,
            "jwt-ed25519.key",
            "jwt-ed25519.pub",
        ),
        ("p256", Algorithm::ES256, "jwt-p256.key", "jwt-p256.pub"),
    ] {
        let pem = fixture(public);
        let keys = Keys::public_pem(&pem, public).unwrap();
        let s = Server::start_in(tempfile::tempdir().unwrap(), Auth::Jwt(Box::new(keys))).await;
        let claims = json!({"sub": "ci", "scope": "read", "exp": now() + 600});
        let signing = match alg {
            Algorithm::EdDSA => EncodingKey::from_ed_pem(&fixture(private)).unwrap(),
            _ => EncodingKey::from_ec_pem(&fixture(private)).unwrap(),
        };
        let good = jsonwebtoken::encode(&Header::new(alg), &claims, &signing).unwrap();
        let r = send(&s, "GET", "/", Some(&format!("Bearer {good}"))).await;
        assert_eq!(r.status(), StatusCode::OK, "{kind}");
        // Algorithm confusion: an HS256 token keyed with the public key's bytes.
        let confused = hs256(&pem, claims.clone());
        let r = send(&s, "GET", "/", Some(&format!("Bearer {confused}"))).await;
        assert_problem(r, StatusCode::UNAUTHORIZED).await;
        // The shared-secret token of the other tests is no good here either.
        let r = send(
            &s,
            "GET",
            "/",
            Some(&format!("Bearer {}", s.token(Scope::Admin))),
        )
        .await;
        assert_problem(r, StatusCode::UNAUTHORIZED).await;
        assert!(keys_cannot_sign(&pem));
        s.stop().await;
    }
}

fn keys_cannot_sign(pem: &[u8]) -> bool {
    let k = Keys::public_pem(pem, "x").unwrap();
    k.mint("x", Scope::Read, Duration::from_secs(1)).is_err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_mode_accepts_anyone_and_says_so() {
    let s = Server::start_in(tempfile::tempdir().unwrap(), Auth::Insecure).await;
    let r = s
        .client
        .post(s.url("/processes/x/stop"))
        .send()
        .await
        .unwrap();
    assert_problem(r, StatusCode::NOT_FOUND).await;
    let r = s.client.get(s.url("/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: serde_json::Value = r.json().await.unwrap();
    let warnings = body["warnings"].as_array().unwrap();
    assert!(
        warnings[0]
            .as_str()
            .unwrap()
            .contains("authentication is disabled"),
        "{body}"
    );
    s.stop().await;
}
