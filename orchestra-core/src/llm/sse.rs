//! A Server-Sent Events parser fed with raw body chunks.
//!
//! Chunks arrive split anywhere (even inside a line), so the parser keeps
//! the unfinished line and the unfinished event between calls. An event
//! still open when the body ends is incomplete and is dropped, as the SSE
//! specification says; callers notice a cut stream by the missing end marker.
//!
//! ```ignore
//! let mut p = SseParser::default();
//! assert!(p.push(b"data: {\"a\"").is_empty());
//! let events = p.push(b":1}\n\n");
//! assert_eq!(events[0].data, "{\"a\":1}");
//! ```

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SseEvent {
    /// The `event:` field, empty for the default "message".
    pub event: String,
    /// The `data:` lines joined with newlines.
    pub data: String,
}

#[derive(Debug, Default)]
pub(crate) struct SseParser {
    line: Vec<u8>,
    event: String,
    data: String,
    has_data: bool,
}

impl SseParser {
    /// Feeds bytes; returns the events completed by them, in order.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        let mut out = Vec::new();
        for &b in chunk {
            if b == b'\n' {
                let mut line = std::mem::take(&mut self.line);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                // Splitting on '\n' never cuts a UTF-8 sequence.
                let line = String::from_utf8_lossy(&line);
                self.line(&line, &mut out);
            } else {
                self.line.push(b);
            }
        }
        out
    }

    fn line(&mut self, line: &str, out: &mut Vec<SseEvent>) {
        if line.is_empty() {
            if self.has_data {
                out.push(SseEvent {
                    event: std::mem::take(&mut self.event),
                    data: std::mem::take(&mut self.data),
                });
            }
            self.event.clear();
            self.has_data = false;
            return;
        }
        if line.starts_with(':') {
            return; // a comment (keep-alive)
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "event" => self.event = value.to_owned(),
            _ => {} // id, retry: not needed by these clients
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_chunks_are_reassembled() {
        let mut p = SseParser::default();
        assert!(p.push(b"data: {\"a\"").is_empty());
        let ev = p.push(b":1}\r\n\r\nevent: x\ndata: one\ndata: two\n\n: ping\n\n");
        assert_eq!(
            ev,
            vec![
                SseEvent {
                    event: String::new(),
                    data: "{\"a\":1}".into()
                },
                SseEvent {
                    event: "x".into(),
                    data: "one\ntwo".into()
                },
            ]
        );
    }

    #[test]
    fn an_unterminated_event_is_not_dispatched() {
        let mut p = SseParser::default();
        assert!(p.push(b"data: partial\n").is_empty());
    }

    #[test]
    fn multibyte_text_split_mid_character_survives() {
        let mut p = SseParser::default();
        let bytes = "data: héllo\n\n".as_bytes();
        let (a, b) = bytes.split_at(8); // inside 'é'
        assert!(p.push(a).is_empty());
        assert_eq!(p.push(b)[0].data, "héllo");
    }
}
