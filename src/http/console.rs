//! `GET /ui`: the operator's console, a single page served from the binary, and `GET /whoami`,
//! which tells it (and anyone) what the presented token may do.
//!
//! The page's files live in `src/http/console/` and are embedded at build time: no network, no
//! CDN and no JavaScript toolchain are needed to build or to use it. The page and its files need
//! no token; every call the page makes to the API carries the token the operator pasted, which
//! the page keeps in `sessionStorage` (never in a URL or a cookie, so it is never logged by a
//! proxy nor sent without the page asking).
//!
//! Invariants: every answer under `/ui` carries a Content-Security-Policy that allows only this
//! origin's scripts, styles and connections (no inline script or style, no framing, no form
//! posts), `X-Frame-Options: DENY`, `nosniff` and `no-referrer`; an unknown file is a
//! problem+json 404 like any other unknown path.

use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::AppState;
use super::auth::Claims;
use super::error::ApiError;
use super::extract::{Json, Path};
use crate::auth::Scope;

/// The Content-Security-Policy of the console: this origin only, nothing inline.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

/// The page and the files it loads, by name under `/ui/`.
const FILES: &[(&str, &str, &[u8])] = &[
    ("app.css", "text/css", include_bytes!("console/app.css")),
    (
        "app.js",
        "text/javascript",
        include_bytes!("console/app.js"),
    ),
    (
        "api.js",
        "text/javascript",
        include_bytes!("console/api.js"),
    ),
    (
        "dialogs.js",
        "text/javascript",
        include_bytes!("console/dialogs.js"),
    ),
    (
        "environment.js",
        "text/javascript",
        include_bytes!("console/environment.js"),
    ),
    (
        "format.js",
        "text/javascript",
        include_bytes!("console/format.js"),
    ),
    (
        "logs.js",
        "text/javascript",
        include_bytes!("console/logs.js"),
    ),
    (
        "processes.js",
        "text/javascript",
        include_bytes!("console/processes.js"),
    ),
    (
        "stacks.js",
        "text/javascript",
        include_bytes!("console/stacks.js"),
    ),
    (
        "icon.svg",
        "image/svg+xml",
        include_bytes!("console/icon.svg"),
    ),
];

const PAGE: &[u8] = include_bytes!("console/index.html");

/// Bytes the console transfers on a first visit: the page and every file it loads.
pub fn total_bytes() -> usize {
    PAGE.len() + FILES.iter().map(|f| f.2.len()).sum::<usize>()
}

/// The console.
///
/// A single page, no token needed to load it; sign in by pasting a token.
#[utoipa::path(
    get,
    path = "/ui",
    operation_id = "console",
    tag = "console",
    responses((status = 200, description = "The console's page", body = String, content_type = "text/html"))
)]
pub async fn page() -> Response {
    serve("text/html; charset=utf-8", PAGE)
}

/// A file of the console (script, style sheet, icon).
#[utoipa::path(
    get,
    path = "/ui/{file}",
    operation_id = "console_file",
    tag = "console",
    params(("file" = String, Path, description = "A file of the console, e.g. `app.js`")),
    responses(
        (status = 200, description = "The file", body = String, content_type = "text/javascript"),
        (status = 404, description = "The console has no such file"),
    )
)]
pub async fn file(Path(name): Path<String>) -> Result<Response, ApiError> {
    let (_, kind, bytes) = FILES.iter().find(|f| f.0 == name).ok_or_else(|| {
        ApiError::NotFound(format!(
            "the console has no file {name:?}; open the console at GET /ui"
        ))
    })?;
    Ok(serve(kind, bytes))
}

fn serve(kind: &'static str, bytes: &'static [u8]) -> Response {
    let mut resp = bytes.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    // Small files: always revalidate, so an upgraded binary serves its own console at once.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

/// What the presented token may do.
#[derive(Debug, Serialize, ToSchema)]
pub struct WhoAmI {
    /// Who the token is for (its `sub`).
    pub sub: Option<String>,
    /// `read` or `admin` (admin may also change state).
    #[schema(examples("admin"))]
    pub scope: &'static str,
    /// When the token stops being accepted; `null` when it never does (no authentication).
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
}

/// What the presented token may do.
///
/// Its subject, scope and expiry (never the token itself): a client shows or hides what a
/// read-only token cannot do.
#[utoipa::path(
    get,
    path = "/whoami",
    operation_id = "whoami",
    tag = "status",
    security(("bearer" = ["read"])),
    responses((status = 200, description = "The token's subject, scope and expiry", body = WhoAmI))
)]
pub async fn whoami(claims: Claims, State(_): State<AppState>) -> Json<WhoAmI> {
    let scope = if claims.has(Scope::Admin) {
        Scope::Admin
    } else {
        Scope::Read
    };
    let expires_at = i64::try_from(claims.exp)
        .ok()
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok());
    Json(WhoAmI {
        sub: claims.sub,
        scope: scope.as_str(),
        expires_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_console_stays_small_and_references_only_files_it_serves() {
        assert!(total_bytes() < 150 * 1024, "{} bytes", total_bytes());
        let page = std::str::from_utf8(PAGE).unwrap();
        for (name, _, bytes) in FILES {
            let text = std::str::from_utf8(bytes).unwrap();
            for imported in text
                .split("from \"./")
                .skip(1)
                .filter_map(|s| s.split('"').next())
            {
                assert!(
                    FILES.iter().any(|f| f.0 == imported),
                    "{name} imports {imported}, which is not served"
                );
            }
        }
        for src in page
            .split("\"/ui/")
            .skip(1)
            .filter_map(|s| s.split('"').next())
        {
            assert!(FILES.iter().any(|f| f.0 == src), "the page loads {src}");
        }
        assert!(!page.contains("<script>") && !page.contains("style="));
    }
}
