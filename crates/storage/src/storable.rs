//! Audit text as any engine can store it.

use std::borrow::Cow;

use super::{AUDIT_FIELD_MAX, AuditEvent};

/// A text field as it can be stored in any engine: NUL (which PostgreSQL's `text` cannot hold)
/// becomes U+FFFD, and the text is cut at [`AUDIT_FIELD_MAX`] bytes on a character boundary.
pub(super) fn storable_text(s: &str) -> Cow<'_, str> {
    if !s.contains('\0') && s.len() <= AUDIT_FIELD_MAX {
        return Cow::Borrowed(s);
    }
    let mut s = s.replace('\0', "\u{FFFD}");
    let mut end = s.len().min(AUDIT_FIELD_MAX);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    Cow::Owned(s)
}

/// An audit event as every engine stores it ([`AuditEvent::storable`]): each text field
/// borrowed from the event unless it had to change, the detail serialised.
#[derive(Debug)]
pub struct StorableAudit<'a> {
    pub at: i64,
    pub request_id: Cow<'a, str>,
    pub project_id: Cow<'a, str>,
    pub user_id: Cow<'a, str>,
    pub user_name: Cow<'a, str>,
    pub access_key: Option<Cow<'a, str>>,
    pub action: Cow<'a, str>,
    pub target: Cow<'a, str>,
    pub status: u16,
    pub detail: Option<String>,
}

impl AuditEvent {
    /// The event as every engine stores it: any byte a client could send in a path or header
    /// (NUL included) is written, so that an event is never lost to its own content. Storage
    /// engines call this in their one audit insert.
    pub fn storable(&self) -> StorableAudit<'_> {
        self.storable_with(self.detail.as_ref().map(|d| d.to_string()))
    }

    /// [`storable`](Self::storable) with `detail`, already serialised, in place of the event's
    /// own: a single delete writes the deleted record's text without building a JSON value of it.
    pub fn storable_with(&self, detail: Option<String>) -> StorableAudit<'_> {
        StorableAudit {
            at: self.at,
            request_id: storable_text(&self.request_id),
            project_id: storable_text(&self.project_id),
            user_id: storable_text(&self.user_id),
            user_name: storable_text(&self.user_name),
            access_key: self.access_key.as_deref().map(storable_text),
            action: storable_text(&self.action),
            target: storable_text(&self.target),
            status: self.status,
            // Serialised JSON escapes NUL (`\u0000`), so the detail needs nothing.
            detail,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_text_is_storable_whatever_the_client_sent() {
        assert_eq!(storable_text("a\0b"), "a\u{FFFD}b");
        assert_eq!(storable_text("plain"), "plain");
        let long = "é".repeat(AUDIT_FIELD_MAX);
        let cut = storable_text(&long);
        assert!(cut.len() <= AUDIT_FIELD_MAX && cut.chars().all(|c| c == 'é'));
        assert!(storable_text(&"\0".repeat(AUDIT_FIELD_MAX)).len() <= AUDIT_FIELD_MAX);
    }
}
