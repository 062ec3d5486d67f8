//! The task event streams on the wire (an extension): one message of a stream, as an SSE parser
//! hands it over, and what its `data` holds. The stream sends each message through
//! [`SseEvent`], and the document's schema of a message is this type's: the two cannot drift.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use kafka_tasks_domain::events::EventData;

/// The `event:` of the message a stream resumed from an event the log no longer keeps starts
/// with; every other message is a task event ([`kafka_tasks_domain::events::EventKind`]).
pub const MISSED: &str = "missed";

/// One message of a task event stream, as an SSE parser hands it over (comment lines aside).
#[derive(Debug, Clone, PartialEq, Eq, ToSchema)]
pub struct SseEvent {
    /// JSON text (an SSE `data:` line is text): an `EventPayload`, i.e. a task event's
    /// [`EventData`], or [`MissedData`] for `missed`.
    #[schema(value_type = String, content_media_type = "application/json")]
    pub data: String,
    /// `task.created`, `step.started`, `step.finished`, `task.finished`, `task.deleted`,
    /// `task.rescheduled`, or `missed`.
    #[schema(example = "step.finished")]
    pub event: String,
    /// The event's place in the log, for `Last-Event-ID`: opaque, the project's own; absent on
    /// `missed`.
    #[schema(nullable = false, example = "3f0c9a1e7b2d4c5a8e6f1b0d2c3a4e5f")]
    pub id: Option<String>,
}

/// The `data` of `missed`: events between these two were pruned before the stream read them;
/// re-read the task lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MissedData {
    /// The id the stream was asked to resume after.
    pub after: String,
    /// The id of the oldest event kept, where the stream goes on.
    pub resumed_at: String,
}

impl SseEvent {
    /// A task event of the log: `data` is its stored [`EventData`] JSON, sent as it is.
    pub fn task(id: String, kind: String, data: String) -> Self {
        SseEvent { data, event: kind, id: Some(id) }
    }

    /// `missed`: the stream resumes at `resumed_at`, not just after `after`.
    pub fn missed(after: String, resumed_at: String) -> Self {
        // Two strings: serialising cannot fail.
        let data = serde_json::to_string(&MissedData { after, resumed_at }).unwrap_or_default();
        SseEvent { data, event: MISSED.to_owned(), id: None }
    }
}

/// What a message's `data` may be (for the document: the stream sends the JSON text).
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum EventPayload<'a> {
    Task(#[schema(inline = false)] EventData<'a>),
    Missed(MissedData),
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_tasks_domain::events::EventKind;

    /// The document names every kind of event the stream sends.
    #[test]
    fn the_document_names_every_event() {
        use utoipa::PartialSchema;
        let schema = serde_json::to_value(SseEvent::schema()).expect("schema");
        let said = schema["properties"]["event"]["description"].as_str().unwrap_or_default();
        for kind in EventKind::ALL.iter().map(|k| k.as_str()).chain([MISSED]) {
            assert!(said.contains(&format!("`{kind}`")), "{kind} is not named in {said:?}");
        }
    }

    #[test]
    fn missed_says_where_the_stream_resumes() {
        let e = SseEvent::missed("0".into(), "ab".into());
        assert_eq!(e.event, "missed");
        assert_eq!(e.id, None);
        let data: MissedData = serde_json::from_str(&e.data).expect("json");
        assert_eq!(data, MissedData { after: "0".into(), resumed_at: "ab".into() });
        assert!(crate::tests::sorted(&data));
    }
}
