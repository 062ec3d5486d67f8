//! The web console: a page, its script and its style sheet, all compiled into the binary (no CDN,
//! works offline). The script signs requests in the browser (`SDK-HMAC-SHA256` with WebCrypto) or
//! sends a token, and calls the same public API as every other client; the server gives the
//! console no privilege of its own.

use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use std::sync::OnceLock;

use serde_json::{Value, json};

use super::AppState;
use crate::client::hints::HINTS;

const PAGE: &str = include_str!("console/index.html");

/// The mark a server with `--test-control` puts in the page it serves: the page then shows
/// everyone a "test server" notice, and offers an admin the test control panel. Served with the
/// page, the page learns it without a request (a probe of a control route would answer 404 on
/// every ordinary server).
const TEST_CONTROL_MARK: &str = "<meta name=\"kt-test-control\" content=\"on\">\n";

/// The page of a server with test control on: [`PAGE`] with [`TEST_CONTROL_MARK`] in its head.
fn test_control_page() -> &'static str {
    static MARKED: OnceLock<String> = OnceLock::new();
    MARKED.get_or_init(|| {
        PAGE.replacen("<meta charset=\"utf-8\">\n", &format!("<meta charset=\"utf-8\">\n{TEST_CONTROL_MARK}"), 1)
    })
}

/// The files the page loads: path, content type, body.
const ASSETS: &[(&str, &str, &str)] = &[
    ("/console/app.js", "text/javascript; charset=utf-8", include_str!("console/app.js")),
    ("/console/app.css", "text/css; charset=utf-8", include_str!("console/app.css")),
    ("/console/favicon.svg", "image/svg+xml", include_str!("console/favicon.svg")),
];

/// Only this origin's own files run and style the page (no inline script or style, so an injected
/// string cannot run), it talks only to this origin, it cannot be framed, and a form can never be
/// submitted (the sign-in form is handled by the script; without it, the secret key would otherwise
/// land in a URL).
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                       img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The CLI's hint table ([`HINTS`]) as the page reads it: one table, so that the console says
/// under an error what the CLI says. Built once; it holds only the table's own constants.
fn hints_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        let table: Vec<_> = HINTS
            .iter()
            .map(|h| json!({ "code": h.code, "message": h.message, "op": h.op.as_str(), "text": h.text }))
            .collect();
        Value::Array(table).to_string()
    })
}

/// `test_control`: the server runs with `--test-control` (the page is marked so).
pub fn router(test_control: bool) -> Router<AppState> {
    let page = if test_control { test_control_page() } else { PAGE };
    let mut router = Router::new()
        .route("/", get(|| async { Redirect::to("/console") }))
        .route("/console", get(move || async move { asset("text/html; charset=utf-8", page) }))
        .route("/console/hints.json", get(|| async { asset("application/json", hints_json()) }));
    for &(path, content_type, body) in ASSETS {
        router = router.route(path, get(move || async move { asset(content_type, body) }));
    }
    router
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP)),
            (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
            (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
            (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
            // The files change with the binary; revalidating costs little on loopback or a LAN.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (HeaderName::from_static("cross-origin-opener-policy"), HeaderValue::from_static("same-origin")),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CSP allows no inline script or style: the page must carry none, and every file it
    /// names must be served.
    #[test]
    fn the_page_has_nothing_inline_and_every_file_it_loads_is_served() {
        assert!(!PAGE.contains("<style"), "inline <style>");
        assert!(!PAGE.contains(" style="), "inline style attribute");
        for (i, _) in PAGE.match_indices(" on") {
            let name: String = PAGE[i + 1..].chars().take_while(|c| c.is_ascii_lowercase()).collect();
            assert!(!PAGE[i + 1 + name.len()..].starts_with('='), "inline handler {name}");
        }
        for (i, _) in PAGE.match_indices("<script") {
            assert!(PAGE[i..].starts_with("<script src="), "inline <script> at {i}");
        }
        for attr in ["src=\"", "href=\""] {
            for (i, _) in PAGE.match_indices(attr) {
                let rest = &PAGE[i + attr.len()..];
                let url = &rest[..rest.find('"').unwrap_or(rest.len())];
                if url.starts_with('#') {
                    continue;
                }
                assert!(ASSETS.iter().any(|(p, _, _)| *p == url), "{url} is not served");
            }
        }
        assert!(!CSP.contains("unsafe"), "{CSP}");
    }

    /// Test control's page is the page with the mark, once, in its head; the ordinary page has none.
    #[test]
    fn only_the_test_control_page_is_marked() {
        assert!(!PAGE.contains("kt-test-control"));
        let marked = test_control_page();
        assert_eq!(marked.matches(TEST_CONTROL_MARK).count(), 1);
        let head_end = marked.find("</head>").unwrap_or(0);
        assert!(marked.find(TEST_CONTROL_MARK).is_some_and(|i| i < head_end));
        assert_eq!(marked.replacen(TEST_CONTROL_MARK, "", 1), PAGE);
    }

    /// The page's copy of the hint table is the CLI's table, entry for entry.
    #[test]
    fn the_served_hints_are_the_cli_s_table() {
        let served: Vec<Value> = serde_json::from_str(hints_json()).unwrap_or_default();
        assert_eq!(served.len(), HINTS.len());
        for (s, h) in served.iter().zip(HINTS) {
            assert_eq!(s["code"], h.code);
            assert_eq!(s["message"], h.message);
            assert_eq!(s["op"], h.op.as_str());
            assert_eq!(s["text"], h.text);
        }
    }
}
