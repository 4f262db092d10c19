//! The last few hundred log lines of this process, kept in memory for the
//! dashboard's Logs page.
//!
//! A `tracing` layer beside the one that writes to stderr: the same events,
//! formatted once into a bounded ring (oldest lines dropped first, each line
//! bounded), each with a sequence number so a reader polls for what is new.
//! What goes in is what the log already says: request lines carry no bodies
//! and no keys (see `gateway`), so neither does the buffer.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, OnceLock};

use serde::Serialize;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;

/// How many lines are kept.
pub const CAPACITY: usize = 500;
/// How many warnings and errors are kept apart, so that a burst of
/// ordinary lines does not push them out.
pub const PROBLEMS: usize = 100;
/// Bytes of one line beyond which it is cut.
const LINE_BYTES: usize = 2_000;

#[derive(Debug, Clone, Serialize)]
pub struct LogLine {
    /// Increases by one per line, from 1.
    pub seq: u64,
    /// RFC 3339, UTC.
    pub time: String,
    /// `ERROR`, `WARN`, `INFO`, `DEBUG` or `TRACE`.
    pub level: &'static str,
    pub target: String,
    /// The message, then the other fields as `name=value`.
    pub text: String,
}

#[derive(Default)]
pub struct LogBuffer {
    lines: Mutex<Ring>,
}

#[derive(Default)]
struct Ring {
    next_seq: u64,
    lines: VecDeque<LogLine>,
    problems: VecDeque<LogLine>,
}

impl LogBuffer {
    /// Lines after `after` (a `seq` seen before; 0 for all) at `min_level`
    /// or more severe, oldest first, at most `limit` of the newest.
    pub fn since(&self, after: u64, min_level: Level, limit: usize) -> Vec<LogLine> {
        let ring = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        let matching: Vec<&LogLine> = ring
            .lines
            .iter()
            .filter(|line| line.seq > after && level_of(line.level) <= min_level)
            .collect();
        let skip = matching.len().saturating_sub(limit);
        matching.into_iter().skip(skip).cloned().collect()
    }

    /// The last `limit` warnings and errors, oldest first.
    pub fn problems(&self, limit: usize) -> Vec<LogLine> {
        let ring = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        let skip = ring.problems.len().saturating_sub(limit);
        ring.problems.iter().skip(skip).cloned().collect()
    }

    fn push(&self, level: &'static str, target: &str, text: String) {
        let mut ring = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        ring.next_seq += 1;
        let seq = ring.next_seq;
        if ring.lines.len() == CAPACITY {
            ring.lines.pop_front();
        }
        let line = LogLine {
            seq,
            time: crate::clock::now_rfc3339(),
            level,
            target: target.to_owned(),
            text: crate::untrusted_text::sanitize(&text, LINE_BYTES, false),
        };
        if level_of(level) <= Level::WARN {
            if ring.problems.len() == PROBLEMS {
                ring.problems.pop_front();
            }
            ring.problems.push_back(line.clone());
        }
        ring.lines.push_back(line);
    }
}

fn level_of(name: &str) -> Level {
    match name {
        "ERROR" => Level::ERROR,
        "WARN" => Level::WARN,
        "INFO" => Level::INFO,
        "DEBUG" => Level::DEBUG,
        _ => Level::TRACE,
    }
}

/// Parse `error`, `warn`, `info`, `debug` or `trace` (any case).
pub fn parse_level(name: &str) -> Option<Level> {
    name.parse().ok()
}

static GLOBAL: OnceLock<Arc<LogBuffer>> = OnceLock::new();

/// The process's buffer, once [`layer`] was installed.
pub fn global() -> Option<&'static Arc<LogBuffer>> {
    GLOBAL.get()
}

/// The layer that fills the process's buffer (installed by the entry point
/// that serves the dashboard).
pub fn layer() -> BufferLayer {
    BufferLayer {
        buffer: Arc::clone(GLOBAL.get_or_init(Default::default)),
    }
}

pub struct BufferLayer {
    buffer: Arc<LogBuffer>,
}

impl<S: Subscriber> tracing_subscriber::Layer<S> for BufferLayer {
    fn on_event(&self, event: &Event<'_>, _context: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut text = fields.message;
        if !fields.rest.is_empty() {
            if !text.is_empty() {
                text.push(' ');
            }
            text.push_str(&fields.rest);
        }
        let metadata = event.metadata();
        self.buffer
            .push(metadata.level().as_str(), metadata.target(), text);
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    rest: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.field(field, format_args!("{value}"));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            self.field(field, format_args!("{value:?}"));
        }
    }
}

impl Fields {
    fn field(&mut self, field: &Field, value: std::fmt::Arguments<'_>) {
        if !self.rest.is_empty() {
            self.rest.push(' ');
        }
        let _ = write!(self.rest, "{}={value}", field.name());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_lines_and_filters_by_level() {
        let buffer = LogBuffer::default();
        for index in 0..CAPACITY + 10 {
            let level = if index % 2 == 0 { "INFO" } else { "WARN" };
            buffer.push(level, "talaria", format!("line {index}"));
        }
        let all = buffer.since(0, Level::TRACE, usize::MAX);
        assert_eq!(all.len(), CAPACITY);
        assert_eq!(all[0].text, "line 10");
        assert_eq!(all.last().map(|l| l.seq), Some((CAPACITY + 10) as u64));

        let warnings = buffer.since(0, Level::WARN, usize::MAX);
        assert!(warnings.iter().all(|line| line.level == "WARN"));
        assert_eq!(warnings.len(), CAPACITY / 2);

        let newest = buffer.since(0, Level::TRACE, 3);
        assert_eq!(
            newest.iter().map(|l| l.text.as_str()).collect::<Vec<_>>(),
            [
                format!("line {}", CAPACITY + 7),
                format!("line {}", CAPACITY + 8),
                format!("line {}", CAPACITY + 9)
            ]
        );
        let after = newest[1].seq;
        assert_eq!(buffer.since(after, Level::TRACE, 100).len(), 1);
    }

    #[test]
    fn problems_outlive_a_flood_of_ordinary_lines() {
        let buffer = LogBuffer::default();
        buffer.push("ERROR", "talaria", "the disk is full".into());
        for index in 0..CAPACITY * 3 {
            buffer.push("INFO", "talaria", format!("request {index}"));
        }
        assert!(buffer.since(0, Level::WARN, 10).is_empty());
        let problems = buffer.problems(10);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].text, "the disk is full");
    }

    #[test]
    fn lines_are_bounded_and_lose_control_characters() {
        let buffer = LogBuffer::default();
        buffer.push("INFO", "t", format!("a\u{1b}[31mb{}", "x".repeat(10_000)));
        let line = &buffer.since(0, Level::TRACE, 1)[0];
        assert!(!line.text.contains('\u{1b}'));
        assert!(line.text.len() <= LINE_BYTES + 20, "{}", line.text.len());
        assert!(line.text.ends_with("truncated]"));
    }

    #[test]
    fn levels_parse_in_any_case() {
        assert_eq!(parse_level("warn"), Some(Level::WARN));
        assert_eq!(parse_level("ERROR"), Some(Level::ERROR));
        assert_eq!(parse_level("loud"), None);
    }
}
