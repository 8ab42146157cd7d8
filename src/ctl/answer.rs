//! Turning what came back into either the API's JSON or a [`CtlError`]: problem documents
//! (`detail`, and `problems` for a 422), bodies that are not JSON, and transport failures.
//! Pure functions of the status and body, so every case is tested without a server.

use std::time::Duration;

use reqwest::{StatusCode, Url};
use serde_json::Value;

use super::error::CtlError;

/// A successful answer: the body as received and as JSON (`null` when empty), and the revision
/// of the process set its `ETag` names (`"7"`), if any.
#[derive(Debug)]
pub struct Answer {
    pub text: String,
    pub value: Value,
    pub revision: Option<u64>,
}

/// The revision an `ETag` value names: `"7"` (or `W/"7"`) is 7; anything else is none.
pub fn revision_of(etag: &str) -> Option<u64> {
    let tag = etag.trim();
    let tag = tag.strip_prefix("W/").unwrap_or(tag);
    tag.strip_prefix('"')?.strip_suffix('"')?.parse().ok()
}

/// No (complete) answer from `url` within `after`.
pub fn timed_out(url: &Url, after: Duration) -> CtlError {
    CtlError::TimedOut {
        url: url.to_string(),
        after: humantime::format_duration(after).to_string(),
    }
}

/// A failure before a complete answer arrived.
pub fn transport(e: &reqwest::Error, url: &Url, deadline: Duration) -> CtlError {
    if e.is_timeout() {
        return timed_out(url, deadline);
    }
    let mut cause: &dyn std::error::Error = e;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    CtlError::Unreachable {
        url: url.to_string(),
        cause: cause.to_string(),
    }
}

/// The answer to `url`: its JSON on success, else the error its problem document describes.
/// `no_token`: the request went without a token, worth saying on a 401.
pub fn answer(
    url: &Url,
    status: StatusCode,
    text: String,
    no_token: bool,
) -> Result<Answer, CtlError> {
    if status.is_success() {
        let value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).map_err(|e| CtlError::BadResponse {
                url: url.to_string(),
                reason: format!("status {status} but the body is not JSON ({e})"),
            })?
        };
        return Ok(Answer {
            text,
            value,
            revision: None,
        });
    }
    Err(problem(status, text, no_token))
}

pub fn problem(status: StatusCode, body: String, no_token: bool) -> CtlError {
    let doc: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let mut detail = match doc.get("detail").and_then(Value::as_str) {
        Some(d) => d.to_string(),
        None => {
            let excerpt: String = body.trim().chars().take(200).collect();
            let reason = status.canonical_reason().unwrap_or("error");
            match excerpt.is_empty() {
                true => format!("the server answered {} {reason}", status.as_u16()),
                false => format!(
                    "the server answered {} {reason}: {excerpt}",
                    status.as_u16()
                ),
            }
        }
    };
    if status == StatusCode::UNAUTHORIZED && no_token {
        detail.push_str("; ctl sent no token: set STATE_MANAGER_TOKEN or --token-file");
    }
    let problems = doc
        .get("problems")
        .and_then(Value::as_array)
        .map(|list| list.iter().map(problem_line).collect())
        .unwrap_or_default();
    CtlError::Api {
        status: status.as_u16(),
        detail,
        problems,
        body,
    }
}

/// One entry of `problems`: `path: message`, or whatever it is, shown compactly.
fn problem_line(p: &Value) -> String {
    match (p.get("path").and_then(Value::as_str), p.get("message")) {
        (Some(path), Some(Value::String(m))) => format!("{path}: {m}"),
        _ => match p {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_etag_names_a_revision_or_none() {
        assert_eq!(revision_of("\"7\""), Some(7));
        assert_eq!(revision_of("W/\"12\""), Some(12));
        for other in ["7", "\"x\"", "\"\"", "\"-1\"", ""] {
            assert_eq!(revision_of(other), None, "{other}");
        }
    }

    #[test]
    fn problems_give_their_detail_and_each_problem() {
        let url = Url::parse("http://h/").unwrap();
        let body = r#"{"status":422,"detail":"bad config","problems":[{"path":"stacks[0]","message":"no command"}]}"#;
        let e = answer(&url, StatusCode::UNPROCESSABLE_ENTITY, body.into(), false).unwrap_err();
        let CtlError::Api {
            detail, problems, ..
        } = &e
        else {
            panic!("{e:?}")
        };
        assert_eq!(detail, "bad config");
        assert_eq!(problems, &["stacks[0]: no command"]);
        let e = answer(&url, StatusCode::BAD_GATEWAY, "<html>".into(), false).unwrap_err();
        assert_eq!(e.to_string(), "the server answered 502 Bad Gateway: <html>");
        let e = answer(&url, StatusCode::UNAUTHORIZED, "{}".into(), true).unwrap_err();
        assert!(e.to_string().contains("STATE_MANAGER_TOKEN"), "{e}");
    }

    #[test]
    fn a_success_that_is_not_json_is_a_bad_response() {
        let url = Url::parse("http://h/").unwrap();
        let e = answer(&url, StatusCode::OK, "<html>".into(), false).unwrap_err();
        assert!(matches!(e, CtlError::BadResponse { .. }), "{e:?}");
        let ok = answer(&url, StatusCode::NO_CONTENT, String::new(), false).unwrap();
        assert!(ok.value.is_null());
    }
}
