//! What the CLI prints for people: aligned tables, local times with relative ages, statuses in
//! colour only on a terminal (never when piped, never with `NO_COLOR`); and what keeps the
//! server's words from acting on that terminal.
//!
//! Everything the server sends is data, and some of it was written by other users (an
//! instance's description, a task's params) or by whoever answers on the endpoint. Before it
//! reaches a terminal, every character a terminal would act on ([`acts_on_terminal`]) is
//! written as a visible escape by [`escape`]: always, not only on a terminal, since a pipe or a
//! file may end on one (`| less -R`, `cat log`). The places that print for people apply it:
//! answers are rendered from [`for_people`], their copy with every string escaped; sentences
//! and error lines are escaped whole; `-o json` keeps the answer exact ([`json_text`]).

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::IsTerminal;

use chrono::{DateTime, Local, Utc};
use serde_json::Value;

/// Whether a terminal may act on `c` rather than show it: the C0 controls (ESC starts escape
/// sequences: cursor moves, window titles, OSC 52 clipboard writes; CR rewrites a line), DEL,
/// the C1 controls (U+009B is CSI to some terminals), and the bidirectional overrides, isolates
/// and marks that reorder what is shown.
pub fn acts_on_terminal(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `s` with every character a terminal would act on written visibly: `\n`, `\r`, `\t`,
/// `\x1b` (C0 and DEL), `\u{9b}` (C1 and bidi controls). Everything else is left as it is.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(acts_on_terminal) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_ascii_control() => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c if acts_on_terminal(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// The API's answer as people see it: every string, and every object key, [`escape`]d.
pub fn for_people(v: &Value) -> Value {
    match v {
        Value::String(s) => Value::String(escape(s).into_owned()),
        Value::Array(items) => Value::Array(items.iter().map(for_people).collect()),
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (escape(k).into_owned(), for_people(v))).collect()),
        other => other.clone(),
    }
}

/// The API's answer as `-o json` prints it: pretty, and once parsed exactly the answer, with
/// nothing a terminal acts on ([`inert_json`]).
pub fn json_text(v: &Value) -> String {
    inert_json(serde_json::to_string_pretty(v).unwrap_or_default())
}

/// JSON text as serde_json writes it, with DEL, the C1 controls and the bidi controls written
/// as `\uXXXX` escapes: serde_json escapes only the C0 controls. Parsed, it is the same value:
/// such characters can only occur inside strings, where `\uXXXX` means the same character.
pub fn inert_json(text: String) -> String {
    let raw = |c: char| c > '\u{7e}' && acts_on_terminal(c);
    if !text.chars().any(raw) {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if raw(c) {
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether stdout gets colours: a terminal, and `NO_COLOR` unset or empty.
pub fn colour_stdout() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// The ANSI colour of a task or instance status.
fn status_colour(status: &str) -> Option<&'static str> {
    match status {
        "SUCCESS" | "RUNNING" | "COMPLETED" => Some("32"),
        "FAILED" | "ERROR" | "CREATEFAILED" => Some("31"),
        "EXECUTING" | "IN_PROGRESS" | "CREATING" | "RESTARTING" | "EXTENDING" | "UPGRADING" | "DELETING" => Some("33"),
        "CANCELLED" | "DELETED" => Some("90"),
        "CREATED" | "WAITING" => Some("36"),
        _ => None,
    }
}

/// A table cell: its text and, for statuses, a colour.
pub struct Cell {
    text: String,
    colour: Option<&'static str>,
}

impl From<String> for Cell {
    fn from(text: String) -> Self {
        Cell { text, colour: None }
    }
}

impl From<&str> for Cell {
    fn from(text: &str) -> Self {
        Cell { text: text.to_owned(), colour: None }
    }
}

pub fn status(s: &str) -> Cell {
    Cell { text: s.to_owned(), colour: status_colour(s) }
}

/// A status, coloured when `colour`.
pub fn paint_status(s: &str, colour: bool) -> String {
    match status_colour(s) {
        Some(c) if colour => format!("\x1b[{c}m{s}\x1b[0m"),
        _ => s.to_owned(),
    }
}

/// Columns padded to their widest cell (in characters), two spaces apart.
pub fn table(headers: &[&str], rows: Vec<Vec<Cell>>, colour: bool) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (i, c) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.text.chars().count());
            }
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<(String, Option<&str>)>, out: &mut String| {
        let last = cells.len().saturating_sub(1);
        for (i, (text, col)) in cells.into_iter().enumerate() {
            let width = widths.get(i).copied().unwrap_or(0);
            let pad = if i == last { 0 } else { width.saturating_sub(text.chars().count()) + 2 };
            match col {
                Some(c) if colour => out.push_str(&format!("\x1b[{c}m{text}\x1b[0m")),
                _ => out.push_str(&text),
            }
            out.push_str(&" ".repeat(pad));
        }
        out.push('\n');
    };
    line(headers.iter().map(|h| (h.to_string(), None)).collect(), &mut out);
    for row in rows {
        line(row.into_iter().map(|c| (c.text, c.colour)).collect(), &mut out);
    }
    out
}

/// `key: value` lines, keys aligned.
pub fn fields(pairs: &[(&str, String)]) -> String {
    let w = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    pairs.iter().map(|(k, v)| format!("{k:<w$}  {v}\n")).collect()
}

/// Epoch milliseconds of a time the API sent as text: RFC 3339 (task records, events) or epoch
/// milliseconds.
pub fn parse_api_time(s: &str) -> Option<i64> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_millis());
    }
    s.parse::<i64>().ok()
}

/// "3 min ago", "in 2 h", "just now".
pub fn relative(ms: i64, now: i64) -> String {
    let d = (now - ms) / 1000;
    let (n, unit) = match d.unsigned_abs() {
        0..=4 => return "just now".into(),
        s @ 5..=59 => (s, "s"),
        s @ 60..=3569 => ((s + 30) / 60, "min"),
        s @ 3570..=84_599 => ((s + 1800) / 3600, "h"),
        s => ((s + 43_200) / 86_400, "d"),
    };
    if d > 0 { format!("{n} {unit} ago") } else { format!("in {n} {unit}") }
}

/// The local time and its age: `2026-11-28 09:03:04 (3 min ago)`; empty for a time out of range.
pub fn when(ms: i64, now: i64) -> String {
    match DateTime::<Utc>::from_timestamp_millis(ms) {
        Some(t) => format!("{} ({})", t.with_timezone(&Local).format("%Y-%m-%d %H:%M:%S"), relative(ms, now)),
        None => String::new(),
    }
}

/// [`when`] of a time the API sent as text ([`parse_api_time`]); empty for one it cannot read.
pub fn when_text(s: &str, now: i64) -> String {
    parse_api_time(s).map(|ms| when(ms, now)).unwrap_or_default()
}

/// A duration in seconds as people say it: `45 s`, `3 min 20 s`, `1 h 5 min`.
pub fn duration(secs: u64) -> String {
    match secs {
        0..=59 => format!("{secs} s"),
        60..=3599 => format!("{} min {} s", secs / 60, secs % 60),
        _ => format!("{} h {} min", secs / 3600, (secs % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_as_people_say_them() {
        let now = 10_000_000;
        assert_eq!(relative(now - 1_000, now), "just now");
        assert_eq!(relative(now - 30_000, now), "30 s ago");
        assert_eq!(relative(now - 180_000, now), "3 min ago");
        assert_eq!(relative(now + 7_200_000, now), "in 2 h");
        assert_eq!(relative(now + 7_199_000, now), "in 2 h");
    }

    #[test]
    fn whatever_a_terminal_acts_on_is_escaped_visibly() {
        assert_eq!(escape("plain text, accents é and 表"), "plain text, accents é and 表");
        assert!(matches!(escape("plain"), Cow::Borrowed(_)));
        assert_eq!(escape("a\r\x1b[2Kb\x1b]52;c;eA==\x07"), r"a\r\x1b[2Kb\x1b]52;c;eA==\x07");
        assert_eq!(escape("\n\t\0\x7f"), r"\n\t\x00\x7f");
        assert_eq!(escape("\u{9b}31m\u{85}"), r"\u{9b}31m\u{85}");
        assert_eq!(escape("\u{202e}cod.exe\u{2066}\u{2069}\u{200f}"), r"\u{202e}cod.exe\u{2066}\u{2069}\u{200f}");
        let escaped = escape("\x1b\u{9b}\u{202e}\x7f\r");
        assert!(!escaped.chars().any(acts_on_terminal), "{escaped}");
    }

    #[test]
    fn people_read_a_copy_with_every_string_and_key_escaped() {
        let v = serde_json::json!({"a\x1b": ["\r", 1, null, {"k": "\u{85}"}], "n": 2});
        assert_eq!(for_people(&v), serde_json::json!({r"a\x1b": [r"\r", 1, null, {"k": r"\u{85}"}], "n": 2}));
    }

    #[test]
    fn json_output_is_exact_and_inert() {
        let hostile = "\r\x1b]0;t\x07\u{9b}\u{85}\x7f\u{202e}\u{2066}\\u0085\"é";
        let v = serde_json::json!({ "description": hostile, hostile: [hostile] });
        let text = json_text(&v);
        assert!(!text.chars().any(|c| c != '\n' && acts_on_terminal(c)), "{text:?}");
        assert_eq!(serde_json::from_str::<Value>(&text).ok(), Some(v));
        assert!(text.contains(r"\u009b\u0085\u007f\u202e\u2066"), "{text}");
    }

    #[test]
    fn tables_align_and_colour_only_when_asked() {
        let rows = vec![vec![Cell::from("a"), status("FAILED")], vec![Cell::from("long"), status("SUCCESS")]];
        let plain = table(&["ID", "STATUS"], rows, false);
        assert_eq!(plain, "ID    STATUS\na     FAILED\nlong  SUCCESS\n");
        let rows = vec![vec![Cell::from("a"), status("FAILED")]];
        assert!(table(&["ID", "STATUS"], rows, true).contains("\x1b[31mFAILED\x1b[0m"));
    }
}
