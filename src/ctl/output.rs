//! What `ctl` prints for people: aligned tables and key/value lists, and the humanised forms of
//! the API's values (durations, sizes, times, exit statuses).
//!
//! Every formatter takes a JSON value that may be missing, `null` or of an unexpected type and
//! then prints `-`: a field the server added, renamed or left out never breaks the output.
//! Printing to a closed pipe (`ctl … | head`) ends quietly.

use std::io::Write;
use std::time::Duration;

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::answer::Answer;

/// Shown for a missing value.
pub const NONE: &str = "-";

/// Write `text` to stdout, adding a final newline if it has none. `false` once stdout is
/// closed (the reader went away).
pub fn emit(text: &str) -> bool {
    if text.is_empty() {
        return true;
    }
    let mut out = std::io::stdout().lock();
    let newline = if text.ends_with('\n') { "" } else { "\n" };
    write!(out, "{text}{newline}")
        .and_then(|_| out.flush())
        .is_ok()
}

/// Print an answer: as received with `--json`, else as `render` puts it.
pub fn print(json: bool, answer: Answer, render: impl FnOnce(&Value) -> String) {
    let text = match json {
        true => answer.text,
        false => render(&answer.value),
    };
    emit(&text);
}

/// A table with a header row; columns separated by two spaces, the last one not padded.
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table {
            rows: vec![header.iter().map(|h| h.to_string()).collect()],
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                let cells = self.rows.iter().filter_map(|r| r.get(c));
                cells.map(|s| s.chars().count()).max().unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                if c + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    line.push_str(&format!("{cell:<w$}  ", w = widths[c]));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `key  value` lines with the values aligned.
pub fn kv(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    pairs
        .iter()
        .map(|(k, v)| format!("{k:<width$}  {v}\n"))
        .collect()
}

/// A string or a number as text.
pub fn text(v: &Value) -> String {
    match v {
        Value::String(s) if !s.is_empty() => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => NONE.into(),
    }
}

/// A whole number as text.
pub fn count(v: &Value) -> String {
    v.as_u64().map_or_else(|| text(v), |n| n.to_string())
}

/// `yes`/`no` for a boolean.
pub fn yes_no(v: &Value) -> String {
    v.as_bool()
        .map_or_else(|| NONE.into(), |b| if b { "yes" } else { "no" }.into())
}

/// A duration in the largest two units: `850ms`, `45s`, `3m 12s`, `2h 5m`, `3d 4h`.
pub fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    let s = d.as_secs();
    match s {
        0 => format!("{ms}ms"),
        1..60 => match ms % 1000 {
            0 => format!("{s}s"),
            _ if s < 10 => format!("{:.1}s", d.as_secs_f64()),
            _ => format!("{s}s"),
        },
        60..3600 => two(s / 60, "m", s % 60, "s"),
        3600..86400 => two(s / 3600, "h", s % 3600 / 60, "m"),
        _ => two(s / 86400, "d", s % 86400 / 3600, "h"),
    }
}

fn two(a: u64, ua: &str, b: u64, ub: &str) -> String {
    match b {
        0 => format!("{a}{ua}"),
        _ => format!("{a}{ua} {b}{ub}"),
    }
}

/// A number of seconds (`uptime_s`) as a duration.
pub fn secs(v: &Value) -> String {
    match v.as_f64() {
        Some(s) if s.is_finite() && s >= 0.0 => duration(Duration::from_secs_f64(s)),
        _ => NONE.into(),
    }
}

/// A number of milliseconds (`duration_ms`) as a duration.
pub fn millis(v: &Value) -> String {
    v.as_u64()
        .map_or_else(|| NONE.into(), |ms| duration(Duration::from_millis(ms)))
}

/// A percentage: `0.3%`, `12.5%`, `180.0%` (several cores).
pub fn percent(v: &Value) -> String {
    match v.as_f64() {
        Some(p) if p.is_finite() && p >= 0.0 => format!("{p:.1}%"),
        _ => NONE.into(),
    }
}

/// A size in bytes: `512 B`, `1.2 KiB`, `3.0 MiB`.
pub fn bytes(v: &Value) -> String {
    let Some(n) = v.as_u64() else {
        return NONE.into();
    };
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut size = n as f64 / 1024.0;
    let mut unit = 0;
    while size >= 1024.0 && unit + 1 < UNITS.len() {
        size /= 1024.0;
        unit += 1;
    }
    format!("{size:.1} {}", UNITS[unit])
}

/// An RFC 3339 time from the API.
pub fn parse_time(v: &Value) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(v.as_str()?, &Rfc3339).ok()
}

/// A time as `2026-11-23 20:18:46Z` (UTC, to the second).
pub fn time(v: &Value) -> String {
    let Some(t) = parse_time(v) else {
        return text(v);
    };
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// A time relative to `now`: `5m ago`, `in 25s`.
pub fn age(v: &Value, now: OffsetDateTime) -> String {
    let Some(t) = parse_time(v) else {
        return NONE.into();
    };
    let delta = now - t;
    let d = Duration::from_secs_f64(delta.abs().as_seconds_f64());
    // Rounded to the second: sub-second precision only adds noise here.
    let d = Duration::from_secs(d.as_secs());
    match delta.is_negative() {
        true => format!("in {}", duration(d)),
        false if d.is_zero() => "just now".into(),
        false => format!("{} ago", duration(d)),
    }
}

/// A log line's time: `2026-11-23T20:18:46.614Z`.
pub fn log_time(v: &Value) -> String {
    let Some(t) = parse_time(v) else {
        return text(v);
    };
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// An exit status (`{"code": 1}`, `{"signal": 15}`) as `code 1`, `signal 15 (SIGTERM)`.
pub fn exit_status(v: &Value) -> String {
    if let Some(c) = v.get("code").and_then(Value::as_i64) {
        return format!("code {c}");
    }
    if let Some(s) = v.get("signal").and_then(Value::as_i64) {
        let name = i32::try_from(s)
            .ok()
            .and_then(|n| nix::sys::signal::Signal::try_from(n).ok());
        return match name {
            Some(sig) => format!("signal {s} ({})", sig.as_str()),
            None => format!("signal {s}"),
        };
    }
    if v.is_null() {
        NONE.into()
    } else {
        v.to_string()
    }
}

/// A checkpoint given as its id or as an object with an `id`.
pub fn checkpoint_ref(v: &Value) -> String {
    match v.get("id") {
        Some(id) => text(id),
        None => text(v),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn tables_align_every_column_but_the_last() {
        let mut t = Table::new(&["NAME", "STATE", "REASON"]);
        t.row(vec!["web-1".into(), "running".into(), "ready".into()]);
        t.row(vec!["worker".into(), "-".into(), "".into()]);
        assert_eq!(
            t.render(),
            "NAME    STATE    REASON\nweb-1   running  ready\nworker  -\n"
        );
    }

    #[test]
    fn durations_read_like_a_person_would_say_them() {
        let d = |ms| duration(Duration::from_millis(ms));
        assert_eq!(d(850), "850ms");
        assert_eq!(d(3240), "3.2s");
        assert_eq!(d(45_000), "45s");
        assert_eq!(d(192_000), "3m 12s");
        assert_eq!(d(7_500_000), "2h 5m");
        assert_eq!(d(3_600_000), "1h");
        assert_eq!(d(273_600_000), "3d 4h");
        assert_eq!(secs(&json!(2.644)), "2.6s");
        assert_eq!(secs(&json!(null)), "-");
        assert_eq!(millis(&json!("x")), "-");
    }

    #[test]
    fn sizes_use_binary_units() {
        assert_eq!(bytes(&json!(512)), "512 B");
        assert_eq!(bytes(&json!(1229)), "1.2 KiB");
        assert_eq!(bytes(&json!(3 * 1024 * 1024)), "3.0 MiB");
        assert_eq!(bytes(&json!(null)), "-");
    }

    #[test]
    fn times_and_ages() {
        let now = OffsetDateTime::parse("2026-11-23T20:20:00Z", &Rfc3339).unwrap();
        let t = json!("2026-11-23T20:18:46.614297565Z");
        assert_eq!(time(&t), "2026-11-23 20:18:46Z");
        assert_eq!(log_time(&t), "2026-11-23T20:18:46.614Z");
        assert_eq!(age(&t, now), "1m 13s ago");
        assert_eq!(age(&json!("2026-11-23T20:20:25Z"), now), "in 25s");
        assert_eq!(age(&json!(3), now), "-");
        assert_eq!(time(&json!(null)), "-");
    }

    #[test]
    fn exit_statuses_and_checkpoint_refs() {
        assert_eq!(exit_status(&json!({"code": 0})), "code 0");
        assert_eq!(exit_status(&json!({"signal": 15})), "signal 15 (SIGTERM)");
        assert_eq!(exit_status(&json!(null)), "-");
        assert_eq!(checkpoint_ref(&json!({"id": "a"})), "a");
        assert_eq!(checkpoint_ref(&json!("b")), "b");
        assert_eq!(checkpoint_ref(&json!(null)), "-");
    }
}
