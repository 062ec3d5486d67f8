//! Audit text as any engine can store it.

use super::{AUDIT_FIELD_MAX, AuditEvent};

/// A text field as it can be stored in any engine: NUL (which PostgreSQL's `text` cannot hold)
/// becomes U+FFFD, and the text is cut at [`AUDIT_FIELD_MAX`] bytes on a character boundary.
pub(super) fn storable_text(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains('\0') && s.len() <= AUDIT_FIELD_MAX {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut s = s.replace('\0', "\u{FFFD}");
    let mut end = s.len().min(AUDIT_FIELD_MAX);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    std::borrow::Cow::Owned(s)
}

impl AuditEvent {
    /// The event as every engine stores it: any byte a client could send in a path or header
    /// (NUL included) is written, so that an event is never lost to its own content. Storage
    /// engines call this in their one audit insert.
    pub fn storable(&self) -> AuditEvent {
        let t = |s: &str| storable_text(s).into_owned();
        AuditEvent {
            at: self.at,
            request_id: t(&self.request_id),
            project_id: t(&self.project_id),
            user_id: t(&self.user_id),
            user_name: t(&self.user_name),
            access_key: self.access_key.as_deref().map(t),
            action: t(&self.action),
            target: t(&self.target),
            status: self.status,
            // Serialised JSON escapes NUL (`\u0000`), so the detail needs nothing.
            detail: self.detail.clone(),
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
