//! Each operation is registered once. A module lists its operations as
//! `op(routes!(handler))`: `utoipa_axum::routes!` reads the method and path from the handler's
//! `#[utoipa::path]`, so the router's route and the document's path are one declaration. The
//! same registration says what the audit records the operation as ([`Op::audit`]) and which
//! other paths serve it as a copy ([`Op::alias`]). The router ([`Group::router`]), the
//! document's paths ([`Group::doc`]), the audit's action ([`lookup`]) and fault injection's
//! operation ids all derive from these lists.

use std::collections::HashMap;
use std::sync::LazyLock;

use axum::Router;
use axum::http::Method;
use utoipa::openapi::OpenApi;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter};

use super::AppState;
use crate::domain::Action;

/// What the audit records a request to an operation as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audit {
    /// A read: the gateway audits nothing, and the request's action is named `METHOD template`.
    Read,
    /// A change, audited under this action.
    Action(Action),
    /// The batch action: `restart` or `delete` as its body says, one event per instance it names.
    Batch,
}

/// One operation as its module registers it: the handler with its document, what it is
/// audited as, and the paths that serve it as a copy.
pub struct Op {
    route: UtoipaMethodRouter<AppState>,
    audit: Audit,
    aliases: Vec<&'static str>,
}

/// An operation that changes nothing (until [`Op::audit`] or [`Op::batch`] says otherwise).
pub fn op(route: UtoipaMethodRouter<AppState>) -> Op {
    Op { route, audit: Audit::Read, aliases: Vec::new() }
}

impl Op {
    /// The action the audit records a request to this operation as.
    pub fn audit(mut self, action: Action) -> Self {
        self.audit = Audit::Action(action);
        self
    }

    /// Audited by the action its body names, per instance (the batch action).
    pub fn batch(mut self) -> Self {
        self.audit = Audit::Batch;
        self
    }

    /// Another path this handler serves; it is documented as a copy whose operation id ends
    /// in `Alias`.
    pub fn alias(mut self, path: &'static str) -> Self {
        self.aliases.push(path);
        self
    }
}

/// One `(method, path)` the router serves, as the registry knows it (aliases included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    pub method: Method,
    /// The route template, as `MatchedPath` gives it.
    pub path: String,
    /// For an alias: the path it copies.
    pub alias_of: Option<String>,
    /// The operation's id (an alias has its primary's).
    pub operation_id: String,
    pub audit: Audit,
}

/// A set of operations registered together: their routes, their part of the document, and
/// what the registry knows of each `(method, path)`.
pub struct Group {
    pub router: Router<AppState>,
    pub doc: OpenApi,
    pub registered: Vec<Registered>,
}

/// The methods of a path item, with their operations.
pub fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = (Method, &mut Operation)> {
    [
        (Method::GET, &mut item.get),
        (Method::PUT, &mut item.put),
        (Method::POST, &mut item.post),
        (Method::DELETE, &mut item.delete),
        (Method::PATCH, &mut item.patch),
        (Method::HEAD, &mut item.head),
    ]
    .into_iter()
    .filter_map(|(method, op)| op.as_mut().map(|op| (method, op)))
}

/// Registers `ops`: each on its path and its aliases, documented under both.
pub fn group(ops: Vec<Op>) -> Group {
    let mut router = OpenApiRouter::new();
    let mut registered = Vec::new();
    let mut copies = Vec::new();
    for Op { route: (schemas, paths, method_router), audit, aliases } in ops {
        for (path, item) in &paths.paths {
            let mut item = item.clone();
            for (method, operation) in operations_mut(&mut item) {
                let operation_id = operation.operation_id.clone().unwrap_or_default();
                registered.push(Registered {
                    method: method.clone(),
                    path: path.clone(),
                    alias_of: None,
                    operation_id: operation_id.clone(),
                    audit,
                });
                for alias in &aliases {
                    registered.push(Registered {
                        method: method.clone(),
                        path: (*alias).to_owned(),
                        alias_of: Some(path.clone()),
                        operation_id: operation_id.clone(),
                        audit,
                    });
                }
                operation.operation_id = Some(format!("{operation_id}Alias"));
            }
            for alias in &aliases {
                copies.push(((*alias).to_owned(), item.clone()));
            }
        }
        for alias in &aliases {
            router = router.route(alias, method_router.clone());
        }
        router = router.routes((schemas, paths, method_router));
    }
    let (router, mut doc) = router.split_for_parts();
    for (alias, item) in copies {
        match doc.paths.paths.get_mut(&alias) {
            Some(existing) => existing.merge_operations(item),
            None => {
                doc.paths.paths.insert(alias, item);
            }
        }
    }
    Group { router, doc, registered }
}

/// The DMS operations and their extensions: every route behind authentication (and fault
/// injection, with `--test-control`).
pub fn api() -> Group {
    use super::*;
    group(
        [
            tasks::operations(),
            events::operations(),
            scheduled::operations(),
            instances::operations(),
            tokens::operations(),
            executors::operations(),
            retention::operations(),
            clusters::operations(),
            zones::operations(),
        ]
        .into_iter()
        .flatten()
        .collect(),
    )
}

/// The public operations: health, readiness, metrics and the document itself.
pub fn public() -> Group {
    group([super::health::operations(), super::openapi::operations()].into_iter().flatten().collect())
}

/// Test control's operations (served with `serve --test-control` only).
pub fn control() -> Group {
    group(super::control::operations())
}

/// Every registered `(method, path)` of every group, by path.
static INDEX: LazyLock<HashMap<String, Vec<Registered>>> = LazyLock::new(|| {
    let mut index: HashMap<String, Vec<Registered>> = HashMap::new();
    for group in [api(), public(), control()] {
        for r in group.registered {
            index.entry(r.path.clone()).or_default().push(r);
        }
    }
    index
});

/// What the registry knows of `method` on the route template `route`.
pub fn lookup(method: &Method, route: &str) -> Option<&'static Registered> {
    INDEX.get(route)?.iter().find(|r| r.method == method)
}

/// Every registered `(method, path)`, aliases included, of every group.
pub fn all() -> Vec<Registered> {
    [api(), public(), control()].into_iter().flat_map(|g| g.registered).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mutating_operation_has_an_audit_action_and_every_read_none() {
        let all = all();
        assert!(all.len() >= 40, "only {} registered", all.len());
        for r in &all {
            let mutating = !matches!(r.method, Method::GET | Method::HEAD);
            assert_eq!(mutating, r.audit != Audit::Read, "{} {}: {:?}", r.method, r.path, r.audit);
        }
        let batches: Vec<_> = all.iter().filter(|r| r.audit == Audit::Batch).collect();
        assert_eq!(batches.len(), 1, "{batches:?}");
    }

    #[test]
    fn each_method_and_path_is_registered_once_and_every_alias_resolves() {
        let all = all();
        let mut seen = std::collections::HashSet::new();
        for r in &all {
            assert!(seen.insert((r.method.clone(), r.path.clone())), "{} {} registered twice", r.method, r.path);
            assert!(!r.operation_id.is_empty(), "{} {} has no operation id", r.method, r.path);
            let Some(primary) = &r.alias_of else { continue };
            let found = lookup(&r.method, primary);
            assert!(
                found.is_some_and(|p| p.alias_of.is_none() && p.operation_id == r.operation_id && p.audit == r.audit),
                "{} {} copies {primary}, which is not its registered primary: {found:?}",
                r.method,
                r.path,
            );
        }
        assert!(all.iter().any(|r| r.alias_of.is_some()), "no alias registered");
    }

    #[test]
    fn every_registered_operation_is_in_its_groups_document() {
        for group in [api(), public(), control()] {
            for r in &group.registered {
                let mut item = group.doc.paths.paths.get(&r.path).cloned().unwrap_or_else(|| {
                    panic!("{} is not documented", r.path);
                });
                let documented = operations_mut(&mut item).find(|(m, _)| *m == r.method).map(|(_, op)| op.clone());
                let id = documented.and_then(|op| op.operation_id).unwrap_or_default();
                let expected = match r.alias_of {
                    Some(_) => format!("{}Alias", r.operation_id),
                    None => r.operation_id.clone(),
                };
                assert_eq!(id, expected, "{} {}", r.method, r.path);
            }
            let documented: usize =
                group.doc.paths.paths.values().map(|item| operations_mut(&mut item.clone()).count()).sum();
            assert_eq!(documented, group.registered.len(), "the document has operations nobody registered");
        }
    }
}
