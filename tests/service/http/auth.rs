//! The auth matrix on every route: no header, Basic, malformed, wrong key, expired, `alg: none`,
//! a scope that is neither read nor admin, read vs admin on every mutating route; public keys
//! (RS256, PS256, ES256, EdDSA) and the algorithm-confusion attack; a configured audience and
//! issuer.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Method, StatusCode};
use serde_json::json;
use state_manager::auth::{Auth, Expect, Keys, Scope};

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

/// The detail of a 401 answer to `GET /` with `token`.
async fn refused(s: &Server, token: &str) -> String {
    let r = send(s, "GET", "/", Some(&format!("Bearer {token}"))).await;
    let body = assert_problem(r, StatusCode::UNAUTHORIZED).await;
    body["detail"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_keys_verify_rs256_es256_and_eddsa_only_with_their_own_key() {
    for (kind, alg, private, public) in [
        ("rsa", Algorithm::RS256, "jwt-rsa.key", "jwt-rsa.pub"),
        ("rsa-pss", Algorithm::PS256, "jwt-rsa.key", "jwt-rsa.pub"),
        ("p256", Algorithm::ES256, "jwt-p256.key", "jwt-p256.pub"),
        (
            "ed25519",
            Algorithm::EdDSA,
            "jwt-ed25519.key",
            "jwt-ed25519.pub",
        ),
    ] {
        let pem = fixture(public);
        let keys = Keys::public_pem(&pem, public).unwrap();
        let s = Server::start_in(tempfile::tempdir().unwrap(), Auth::Jwt(Box::new(keys))).await;
        let claims = json!({"sub": "ci", "scope": "read", "exp": now() + 600});
        let signing = match alg {
            Algorithm::EdDSA => EncodingKey::from_ed_pem(&fixture(private)).unwrap(),
            Algorithm::ES256 => EncodingKey::from_ec_pem(&fixture(private)).unwrap(),
            _ => EncodingKey::from_rsa_pem(&fixture(private)).unwrap(),
        };
        let good = jsonwebtoken::encode(&Header::new(alg), &claims, &signing).unwrap();
        let r = send(&s, "GET", "/", Some(&format!("Bearer {good}"))).await;
        assert_eq!(r.status(), StatusCode::OK, "{kind}");
        // The right key, a claim changed after signing.
        let mut parts: Vec<String> = good.split('.').map(String::from).collect();
        parts[1] = URL_SAFE_NO_PAD
            .encode(json!({"sub": "ci", "scope": "admin", "exp": now() + 600}).to_string());
        let detail = refused(&s, &parts.join(".")).await;
        assert!(detail.contains("signature"), "{kind}: {detail}");
        // Algorithm confusion: HS256 tokens keyed with the public key's PEM bytes, its PEM
        // without the trailing newline, and its DER bytes.
        let der = pem_body(&pem);
        for secret in [&pem[..], pem.trim_ascii_end(), &der[..]] {
            let detail = refused(&s, &hs256(secret, claims.clone())).await;
            assert!(detail.contains("algorithm"), "{kind}: {detail}");
        }
        let detail = refused(&s, ALG_NONE).await;
        assert!(!detail.is_empty(), "{kind}");
        // The shared-secret token of the other tests is no good here either.
        refused(&s, &s.token(Scope::Admin)).await;
        assert!(keys_cannot_sign(&pem));
        s.stop().await;
    }
}

/// The DER bytes inside a PEM document.
fn pem_body(pem: &[u8]) -> Vec<u8> {
    let text = std::str::from_utf8(pem).unwrap();
    let b64: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_audience_and_issuer_are_required() {
    let keys = super::support::keys().expecting(Expect {
        audience: vec!["state-manager".into(), "sm-eu".into()],
        issuer: vec!["https://idp.example".into()],
    });
    let s = Server::start_in(tempfile::tempdir().unwrap(), Auth::Jwt(Box::new(keys))).await;
    let exp = now() + 600;
    let secret = super::support::SECRET;
    let good = [
        json!({"scope": "read", "exp": exp, "aud": "state-manager", "iss": "https://idp.example"}),
        json!({"scope": "read", "exp": exp, "aud": "sm-eu", "iss": "https://idp.example"}),
        json!({"scope": "read", "exp": exp, "aud": ["elsewhere", "sm-eu"], "iss": "https://idp.example"}),
    ];
    for claims in good {
        let r = send(
            &s,
            "GET",
            "/",
            Some(&format!("Bearer {}", hs256(secret, claims.clone()))),
        )
        .await;
        assert_eq!(r.status(), StatusCode::OK, "{claims}");
    }
    let bad = [
        (
            json!({"scope": "read", "exp": exp, "iss": "https://idp.example"}),
            "no `aud`",
        ),
        (
            json!({"scope": "read", "exp": exp, "aud": "elsewhere", "iss": "https://idp.example"}),
            "`aud` does not name",
        ),
        (
            json!({"scope": "read", "exp": exp, "aud": ["a", "b"], "iss": "https://idp.example"}),
            "`aud` does not name",
        ),
        (
            json!({"scope": "read", "exp": exp, "aud": "state-manager"}),
            "no `iss`",
        ),
        (
            json!({"scope": "read", "exp": exp, "aud": "state-manager", "iss": "https://evil.example"}),
            "`iss` is not",
        ),
    ];
    for (claims, why) in bad {
        let detail = refused(&s, &hs256(secret, claims.clone())).await;
        assert!(detail.contains(why), "{claims}: {detail}");
    }
    // A token minted without them, as the other tests' tokens are, is refused.
    let r = send(
        &s,
        "GET",
        "/",
        Some(&format!("Bearer {}", s.token(Scope::Read))),
    )
    .await;
    assert_problem(r, StatusCode::UNAUTHORIZED).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_configured_audience_aud_and_iss_are_not_looked_at() {
    let s = Server::start(None).await;
    let claims = json!({"scope": "read", "exp": now() + 600, "aud": "anyone", "iss": "anywhere"});
    let t = hs256(super::support::SECRET, claims);
    let r = send(&s, "GET", "/", Some(&format!("Bearer {t}"))).await;
    assert_eq!(r.status(), StatusCode::OK);
    s.stop().await;
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
