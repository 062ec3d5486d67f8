//! Audit by rule. Every authenticated mutating request leaves its events from exactly one of
//! two places, decided by the response, never by a call a handler must remember:
//!
//! - an accepted change's event is written by the store in the change's own transaction; the
//!   handler gets a [`Receipt`] with the event and must put it on its answer (it is
//!   `#[must_use]`, so forgetting it does not compile under `-D warnings`);
//! - everything else (refusals at any stage after authentication, and successes the store did
//!   not record, such as a token request) is written by the gateway after the handler, from
//!   the action of the route ([`route_action`], declared where the route is registered) and
//!   the path's target.
//!
//! A batch action names its instances in the body; it leaves one event per named instance,
//! whether the whole request is refused ([`batch_targets`]) or each instance is decided on its
//! own ([`BatchAudit`]).

use axum::http::Method;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::routes::Audit;
use crate::domain::Action;

/// The most instances one batch action may name (more is refused as a whole).
pub const MAX_BATCH: usize = 50;

/// How the audit records requests to `route` (its template), as the route's registration says
/// ([`super::routes`]); an unregistered route changes nothing.
pub fn route_audit(method: &Method, route: &str) -> Audit {
    super::routes::lookup(method, route).map_or(Audit::Read, |r| r.audit)
}

/// The action the audit records for a request whose route is audited as `audit`, or `None` for
/// a route that changes nothing. The batch action's is named by its body.
pub fn action_of(audit: Audit, body: &[u8]) -> Option<Action> {
    match audit {
        Audit::Read => None,
        Audit::Action(action) => Some(action),
        Audit::Batch => batch_action(body).map(|(action, _)| action),
    }
}

/// [`action_of`] the route's audit: what the audit records for a request on `route`.
pub fn route_action(method: &Method, route: &str, body: &[u8]) -> Option<Action> {
    action_of(route_audit(method, route), body)
}

/// What a batch body asks for: `restart` is a modification, `delete` a deletion.
pub fn batch_action(body: &[u8]) -> Option<(Action, &'static str)> {
    let v: Value = serde_json::from_slice(body).ok()?;
    match v.get("action").and_then(Value::as_str)? {
        "restart" => Some((Action::ModifyInstance, "restart")),
        "delete" => Some((Action::DeleteInstance, "delete")),
        _ => None,
    }
}

/// How a batch entry is named in its audit event: the id as sent, or the JSON of an entry that
/// is not a string; at most [`MAX_BATCH_NAME`] bytes (an instance id is 36), so that a batch
/// of huge entries cannot write 50 KiB of audit per request.
pub fn batch_name(entry: &Value) -> String {
    let mut name = entry.as_str().map_or_else(|| entry.to_string(), str::to_owned);
    if name.len() > MAX_BATCH_NAME {
        let mut end = MAX_BATCH_NAME;
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        name.truncate(end);
        name.push('…');
    }
    name
}

/// The longest batch entry name kept in an audit event.
pub const MAX_BATCH_NAME: usize = 64;

/// The instances a batch body names, when it names between 1 and [`MAX_BATCH`]; else `None`
/// (the refusal is then one event for the project, so that a huge body cannot write thousands).
pub fn batch_targets(body: &[u8]) -> Option<Vec<String>> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let entries = v.get("instances")?.as_array()?;
    (1..=MAX_BATCH).contains(&entries.len()).then(|| entries.iter().map(batch_name).collect())
}

/// Proof that the store wrote the request's event with its change. Put it on the answer.
#[must_use = "put the receipt on the response, or the gateway audits the request a second time"]
#[derive(Debug)]
pub struct Receipt(());

/// On a response: the store wrote this request's event(s); the gateway writes none.
#[derive(Debug, Clone, Copy)]
pub struct StoredEvent;

impl Receipt {
    /// Only [`super::extract::Caller::audit`] makes one, with the event it goes with.
    pub(super) fn new() -> Self {
        Receipt(())
    }

    /// `answer`, marked as audited by the store.
    pub fn respond(self, answer: impl IntoResponse) -> Response {
        let mut res = answer.into_response();
        res.extensions_mut().insert(StoredEvent);
        res
    }
}

/// On a batch response: the instances refused one by one (name and status), whose events the
/// gateway writes; the accepted ones were stored with their tasks.
#[derive(Debug, Clone, Default)]
pub struct BatchRefusals(pub Vec<(String, u16)>);

/// The per-instance outcomes of a batch action, collected as it runs.
#[derive(Debug, Default)]
pub struct BatchAudit {
    refused: Vec<(String, u16)>,
}

impl BatchAudit {
    /// An instance whose task (and event) the store wrote.
    pub fn accepted(&mut self, receipt: Receipt) {
        let Receipt(()) = receipt;
    }

    pub fn refused(&mut self, name: String, status: u16) {
        self.refused.push((name, status));
    }

    /// `answer`, with the refusals for the gateway to audit.
    pub fn respond(self, answer: impl IntoResponse) -> Response {
        let mut res = answer.into_response();
        res.extensions_mut().insert(BatchRefusals(self.refused));
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_audited_by_the_action_its_body_names() {
        let batch = super::super::routes::all().into_iter().find(|r| r.audit == Audit::Batch);
        let batch = batch.map(|r| r.path).unwrap_or_default();
        let batch = batch.as_str();
        assert_eq!(route_audit(&Method::POST, batch), Audit::Batch);
        assert_ne!(route_audit(&Method::POST, "/v2/{project_id}/instances"), Audit::Batch);
        assert_eq!(route_action(&Method::POST, batch, br#"{"action":"restart"}"#), Some(Action::ModifyInstance));
        assert_eq!(route_action(&Method::POST, batch, br#"{"action":"delete"}"#), Some(Action::DeleteInstance));
        assert_eq!(route_action(&Method::POST, batch, br#"{"action":"x"}"#), None);
        assert_eq!(batch_targets(br#"{"instances":["a",7]}"#), Some(vec!["a".to_owned(), "7".to_owned()]));
        assert_eq!(batch_targets(br#"{"instances":[]}"#), None);
        let huge = format!(r#"{{"instances":["{}"]}}"#, "é".repeat(5_000));
        let named = batch_targets(huge.as_bytes()).unwrap_or_default();
        assert!(named.len() == 1 && named[0].len() <= MAX_BATCH_NAME + '…'.len_utf8(), "{named:?}");
        let many = serde_json::json!({ "instances": vec!["a"; MAX_BATCH + 1] }).to_string();
        assert_eq!(batch_targets(many.as_bytes()), None);
    }
}
