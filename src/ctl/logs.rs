//! `ctl logs NAME [--tail N] [--follow]`: a process's recent output, then (with `--follow`)
//! every new line from the server-sent event stream until interrupted or the server closes it.
//!
//! Human form: `<time> <stream> <line>`; `--json`: the API's array as is, or with `--follow` one
//! JSON object per line (JSON lines). A `lagged` event (the reader fell behind) is reported on
//! stderr, never mixed into the lines. A stream silent for [`IDLE`] (the server sends a
//! keep-alive every 15 s) is taken as a dead connection.

use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;

use super::answer::{timed_out, transport};
use super::client::Client;
use super::error::CtlError;
use super::output;
use super::sse::{SseEvent, SseParser};

/// Longest silence accepted from a followed stream.
pub const IDLE: Duration = Duration::from_secs(45);

pub async fn logs(
    client: &Client,
    name: &str,
    tail: Option<usize>,
    follow: bool,
) -> Result<(), CtlError> {
    let mut req = client.get(&["processes", name, "logs"]);
    if let Some(n) = tail {
        req = req.query("tail", &n.to_string());
    }
    if !follow {
        let answer = req.send().await?;
        let text = match client.json {
            true => answer.text,
            false => lines(&answer.value),
        };
        output::emit(&text);
        return Ok(());
    }
    let req = req.query("follow", "true");
    let url = req.url().clone();
    let mut body = req.open().await?.bytes_stream();
    let mut parser = SseParser::default();
    loop {
        let chunk = match tokio::time::timeout(IDLE, body.next()).await {
            Err(_) => return Err(timed_out(&url, IDLE)),
            Ok(None) => return Ok(()),
            Ok(Some(Err(e))) => return Err(transport(&e, &url, IDLE)),
            Ok(Some(Ok(chunk))) => chunk,
        };
        for event in parser.push(&chunk) {
            if !show(client.json, &event) {
                return Ok(());
            }
        }
    }
}

/// Print one event; `false` once stdout is closed.
fn show(json: bool, event: &SseEvent) -> bool {
    let value: Value = serde_json::from_str(&event.data).unwrap_or(Value::Null);
    match event.event.as_str() {
        "log" if json => output::emit(&event.data),
        "log" => output::emit(&line(&value)),
        "lagged" => {
            let missed = output::count(&value["missed"]);
            eprintln!("state-manager: missed {missed} lines (this reader fell behind)");
            true
        }
        _ => true,
    }
}

/// One log line: `2026-11-23T20:18:46.614Z stdout web 1 tick`.
pub fn line(v: &Value) -> String {
    format!(
        "{} {} {}",
        output::log_time(&v["at"]),
        output::text(&v["stream"]),
        v["line"].as_str().unwrap_or_default()
    )
}

/// The lines of a `GET …/logs` answer, one per line.
pub fn lines(v: &Value) -> String {
    let list = v.as_array().map(Vec::as_slice).unwrap_or(&[]);
    list.iter().map(|l| line(l) + "\n").collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn lines_show_time_stream_and_text() {
        let v = json!([
            {"at": "2026-11-23T20:18:46.614297565Z", "stream": "stdout", "line": "web 1 tick"},
            {"at": "2026-11-23T20:18:47Z", "stream": "stderr", "line": ""}
        ]);
        assert_eq!(
            lines(&v),
            "2026-11-23T20:18:46.614Z stdout web 1 tick\n2026-11-23T20:18:47.000Z stderr \n"
        );
        assert_eq!(lines(&json!([])), "");
    }
}
