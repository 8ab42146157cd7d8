//! A reader of server-sent events (the `text/event-stream` the API uses for `logs --follow`):
//! bytes in, whole events out. Only `event:` and `data:` fields matter here; comments (the
//! server's keep-alives) and other fields are skipped, per the WHATWG rules.

/// One event: its name (`message` when the server gave none) and its data lines joined by `\n`.
#[derive(Debug, PartialEq, Eq)]
pub struct SseEvent {
    pub event: String,
    pub data: String,
}

/// Accumulates bytes, which may split lines and UTF-8 sequences anywhere.
#[derive(Debug, Default)]
pub struct SseParser {
    pending: Vec<u8>,
    event: Option<String>,
    data: Vec<String>,
}

impl SseParser {
    /// Feed `bytes`; returns the events they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        self.pending.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
            let raw: Vec<u8> = self.pending.drain(..=end).collect();
            let line = String::from_utf8_lossy(&raw[..end]);
            let line = line.strip_suffix('\r').unwrap_or(&line);
            if let Some(event) = self.line(line) {
                out.push(event);
            }
        }
        out
    }

    fn line(&mut self, line: &str) -> Option<SseEvent> {
        if line.is_empty() {
            return self.dispatch();
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => self.event = Some(value.to_string()),
            "data" => self.data.push(value.to_string()),
            _ => {}
        }
        None
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        let event = self.event.take();
        if self.data.is_empty() {
            return None;
        }
        Some(SseEvent {
            event: event.unwrap_or_else(|| "message".into()),
            data: std::mem::take(&mut self.data).join("\n"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_anywhere_come_out_whole() {
        let stream = "event: log\ndata: {\"line\":\"héllo\"}\n\n: keep-alive\n\nevent: lagged\r\ndata: {\"missed\":3}\r\n\r\ndata: a\ndata: b\n\n";
        let bytes = stream.as_bytes();
        for split in 1..bytes.len() {
            let mut p = SseParser::default();
            let mut got = p.push(&bytes[..split]);
            got.extend(p.push(&bytes[split..]));
            assert_eq!(
                got,
                [
                    SseEvent {
                        event: "log".into(),
                        data: "{\"line\":\"héllo\"}".into()
                    },
                    SseEvent {
                        event: "lagged".into(),
                        data: "{\"missed\":3}".into()
                    },
                    SseEvent {
                        event: "message".into(),
                        data: "a\nb".into()
                    },
                ],
                "split at {split}"
            );
        }
    }

    #[test]
    fn an_unfinished_event_waits_for_its_blank_line() {
        let mut p = SseParser::default();
        assert!(p.push(b"event: log\ndata: x\n").is_empty());
        assert_eq!(p.push(b"\n").len(), 1);
    }
}
