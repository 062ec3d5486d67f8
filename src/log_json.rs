//! The JSON log line, written straight into the line buffer.
//!
//! `tracing-subscriber`'s JSON formatter (with `flatten_event(true)` and no span list, the shape
//! the server logs) serialises every field through a `serde_json` serializer over an adaptor
//! that checks each chunk for UTF-8, and for the current span parses that span's stored fields
//! back from JSON into a map and serialises them again, on every line. The access-log line of
//! every request and the engine's `task ended` line of every task paid that: about a third of
//! a `GET /healthz`'s instructions. [`JsonLine`] writes the same bytes (a test holds it to the
//! stock formatter's output) without the detours: fields escaped as they are written, the
//! span's stored fields (already a JSON object, written by [`SpanFields`]) spliced in. A span's
//! fields are written once, when it is made: `SpanFields` writes the object the stock
//! `JsonFields` writes (keys sorted, a later value of a key replacing an earlier one) without
//! building a map of `serde_json::Value`s first.
//! Events bridged from the `log` crate keep the stock formatter, which normalises their
//! metadata.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::{Format, Json, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// The server's JSON line format: `{"timestamp","level",<event fields>,"target","span"}`.
pub struct JsonLine {
    stock: Format<Json, SystemTime>,
}

impl Default for JsonLine {
    fn default() -> Self {
        JsonLine { stock: tracing_subscriber::fmt::format().json().flatten_event(true).with_span_list(false) }
    }
}

impl<S> FormatEvent<S, SpanFields> for JsonLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, SpanFields>, mut w: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let meta = event.metadata();
        // A record of the `log` crate: its level and target are in its fields.
        if meta.fields().field("log.target").is_some() {
            return self.stock.format_event(ctx, w, event);
        }
        let span = event.parent().and_then(|id| ctx.span(id)).or_else(|| ctx.lookup_current());
        let span_fields = match &span {
            Some(span) => {
                let ext = span.extensions();
                let Some(inner) = ext
                    .get::<FormattedFields<SpanFields>>()
                    .and_then(|f| f.fields.strip_prefix('{')?.strip_suffix('}').map(str::to_owned))
                else {
                    drop(ext);
                    return self.stock.format_event(ctx, w, event);
                };
                Some(inner)
            }
            None => None,
        };
        w.write_str("{\"timestamp\":\"")?;
        SystemTime.format_time(&mut w)?;
        w.write_str("\",\"level\":\"")?;
        w.write_str(meta.level().as_str())?;
        w.write_char('"')?;
        let mut fields = Fields { w: &mut w, result: Ok(()) };
        event.record(&mut fields);
        fields.result?;
        w.write_str(",\"target\":")?;
        escaped(&mut w, meta.target())?;
        if let (Some(span), Some(inner)) = (&span, span_fields) {
            w.write_str(",\"span\":{")?;
            if !inner.is_empty() {
                w.write_str(&inner)?;
                w.write_char(',')?;
            }
            w.write_str("\"name\":")?;
            escaped(&mut w, span.metadata().name())?;
            w.write_char('}')?;
        }
        w.write_str("}\n")
    }
}

/// A span's fields as one JSON object, the way `tracing-subscriber`'s `JsonFields` writes them.
#[derive(Debug, Default)]
pub struct SpanFields;

impl<'w> FormatFields<'w> for SpanFields {
    fn format_fields<R: RecordFields>(&self, mut w: Writer<'w>, fields: R) -> fmt::Result {
        let mut values = Values::default();
        fields.record(&mut values);
        values.write(&mut w)
    }

    /// Fields recorded on a span after it was made join the object.
    fn add_fields(&self, current: &'w mut FormattedFields<Self>, fields: &tracing::span::Record<'_>) -> fmt::Result {
        let mut values = Values::default();
        if !current.fields.is_empty() {
            let old: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(&current.fields).map_err(|_| fmt::Error)?;
            for (k, v) in old {
                values.0.push((k, v.to_string()));
            }
        }
        fields.record(&mut values);
        current.fields.clear();
        values.write(&mut current.as_writer())
    }
}

/// Field names with their values as JSON text, as `JsonFields`' visitor keeps them.
#[derive(Default)]
struct Values(Vec<(String, String)>);

impl Values {
    fn insert(&mut self, name: &str, json: String) {
        match self.0.iter_mut().find(|(k, _)| k == name) {
            Some(entry) => entry.1 = json,
            None => self.0.push((name.to_owned(), json)),
        }
    }

    /// The object, built in one string of the right size and written at once (the span's
    /// buffer starts empty, and grew by reallocation with every small write).
    fn write(mut self, w: &mut impl fmt::Write) -> fmt::Result {
        self.0.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out = String::with_capacity(2 + self.0.iter().map(|(k, v)| k.len() + v.len() + 4).sum::<usize>());
        out.push('{');
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            escaped(&mut out, k)?;
            out.push(':');
            out.push_str(v);
        }
        out.push('}');
        w.write_str(&out)
    }
}

impl Visit for Values {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.insert(field.name(), serde_json::Value::from(value).to_string());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.insert(field.name(), value.to_string());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.insert(field.name(), value.to_string());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.insert(field.name(), value.to_string());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        let mut json = String::with_capacity(value.len() + 2);
        let _ = escaped(&mut json, value);
        self.insert(field.name(), json);
    }

    fn record_bytes(&mut self, field: &Field, value: &[u8]) {
        self.insert(field.name(), serde_json::Value::from(value).to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let name = field.name();
        // `JsonFields` leaves out the `log` crate's metadata and strips raw-identifier prefixes.
        if name.starts_with("log.") {
            return;
        }
        let name = name.strip_prefix("r#").unwrap_or(name);
        let mut json = String::with_capacity(48);
        json.push('"');
        let _ = write!(Escaping(&mut json), "{value:?}");
        json.push('"');
        self.insert(name, json);
    }
}

/// Writes each field as `,"name":value`, as `tracing-serde`'s map visitor serialises it.
struct Fields<'a, 'w> {
    w: &'a mut Writer<'w>,
    result: fmt::Result,
}

impl Fields<'_, '_> {
    fn entry(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        if self.result.is_ok() {
            self.result = (|| {
                self.w.write_char(',')?;
                escaped(self.w, field.name())?;
                self.w.write_char(':')?;
                value(self.w)
            })();
        }
    }
}

impl Visit for Fields<'_, '_> {
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.entry(field, |w| w.write_str(if value { "true" } else { "false" }));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.entry(field, |w| write!(w, "{value}"));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.entry(field, |w| write!(w, "{value}"));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // serde_json's own rendering (shortest round trip; `null` when not finite).
        self.entry(field, |w| w.write_str(&serde_json::to_string(&value).map_err(|_| fmt::Error)?));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.entry(field, |w| escaped(w, value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.entry(field, |w| {
            w.write_char('"')?;
            write!(Escaping(w), "{value:?}")?;
            w.write_char('"')
        });
    }
}

/// `s` as a JSON string, escaped as serde_json escapes it.
fn escaped(w: &mut impl fmt::Write, s: &str) -> fmt::Result {
    w.write_char('"')?;
    Escaping(w).write_str(s)?;
    w.write_char('"')
}

/// Escapes what is written through it as the inside of a JSON string: `"`, `\` and control
/// characters, with serde_json's short forms and lower-case hex.
struct Escaping<'a, W: fmt::Write + ?Sized>(&'a mut W);

impl<W: fmt::Write + ?Sized> fmt::Write for Escaping<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let bytes = s.as_bytes();
        let mut start = 0;
        for (i, &b) in bytes.iter().enumerate() {
            let short = match b {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0x08 => "\\b",
                0x0c => "\\f",
                0..=0x1f => "",
                _ => continue,
            };
            // Every escaped byte is ASCII, so `i` is a character boundary.
            self.0.write_str(&s[start..i])?;
            if short.is_empty() {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                self.0.write_str("\\u00")?;
                self.0.write_char(HEX[(b >> 4) as usize] as char)?;
                self.0.write_char(HEX[(b & 0xf) as usize] as char)?;
            } else {
                self.0.write_str(short)?;
            }
            start = i + 1;
        }
        self.0.write_str(&s[start..])
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().map_err(|_| std::io::Error::other("poisoned"))?.extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Buffer {
        fn lines(&self) -> Vec<String> {
            let bytes = self.0.lock().map(|b| b.clone()).unwrap_or_default();
            String::from_utf8_lossy(&bytes).lines().map(str::to_owned).collect()
        }
    }

    #[derive(Debug)]
    struct Odd;

    impl std::fmt::Display for Odd {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("dis\"play\u{1}\\")
        }
    }

    /// The same events, with and without a span, with every kind of field value and strings
    /// that need escaping.
    fn emit() {
        let err = std::io::Error::other("e\"rr\n");
        tracing::info!(status = 200u16, latency_us = 17u64, "handled");
        tracing::warn!(n = -3i64, f = 1.5f64, nan = f64::NAN, yes = true, big = 1u128 << 100, "odd \u{7f} é \u{1f}");
        let span = tracing::info_span!("request", request_id = "abc", method = %"GET", path = "/v2/\"x\"\t/y");
        span.in_scope(|| {
            tracing::info!(status = 204, %Odd, ?Odd, error = &err as &dyn std::error::Error, "handled");
            tracing::error!(target: "security", reason = "bad_signature", "refused");
        });
        let empty = tracing::info_span!("task");
        empty.in_scope(|| tracing::info!(status = "SUCCESS", "task ended"));
        let nested = tracing::info_span!(parent: &span, "inner", k = 1, r#type = ?"t", zz = 2.5, b = true, neg = -1, later = tracing::field::Empty);
        nested.record("later", "set after");
        nested.record("k", 7);
        nested.in_scope(|| tracing::debug!("deep"));
        tracing::info!(parent: &span, "explicit parent");
    }

    fn lines_of(ours: bool) -> Vec<String> {
        let buf = Buffer::default();
        let writer = buf.clone();
        let builder = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(move || writer.clone())
            .json()
            .flatten_event(true)
            .with_span_list(false);
        if ours {
            let subscriber = builder.fmt_fields(SpanFields).event_format(JsonLine::default()).finish();
            tracing::subscriber::with_default(subscriber, emit);
        } else {
            tracing::subscriber::with_default(builder.finish(), emit);
        }
        // The timestamps differ between the runs: compare what follows them.
        buf.lines()
            .iter()
            .map(|l| l.split_once("\",\"level\"").map_or(l.clone(), |(_, rest)| rest.to_owned()))
            .collect()
    }

    #[test]
    fn lines_are_byte_for_byte_the_stock_json_formatters() {
        let (ours, stock) = (lines_of(true), lines_of(false));
        assert_eq!(ours.len(), 7, "{ours:#?}");
        assert_eq!(ours, stock);
        for line in &ours {
            let full = format!("{{\"timestamp\":\"t\",\"level\"{line}");
            assert!(serde_json::from_str::<serde_json::Value>(&full).is_ok(), "{full}");
        }
    }

    #[test]
    fn the_timestamp_is_the_stock_one() {
        let buf = Buffer::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .json()
            .flatten_event(true)
            .with_span_list(false)
            .fmt_fields(SpanFields)
            .event_format(JsonLine::default())
            .finish();
        tracing::subscriber::with_default(subscriber, || tracing::info!("x"));
        let lines = buf.lines();
        let v: serde_json::Value = serde_json::from_str(&lines[0]).unwrap_or_default();
        let ts = v["timestamp"].as_str().unwrap_or_default();
        assert!(chrono::DateTime::parse_from_rfc3339(ts).is_ok(), "{ts}");
    }
}
