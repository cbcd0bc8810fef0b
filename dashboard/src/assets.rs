//! The page's static files, compiled into the binary (clusters are often offline: no
//! CDN, nothing fetched at run time). The charts are drawn by `chart.js`, a small
//! hand-written SVG renderer (about 150 lines) rather than a vendored charting
//! library: it is a fraction of the size of any of them, needs no build step, and
//! draws exactly what this page needs (lines with a shaded 95% band) from points it
//! is handed, so a live update redraws one small SVG.
//!
//! Every answer carries a Content-Security-Policy that allows only these files'
//! scripts and styles: even a string that escaped `textContent` could not run.

use axum::http::header;
use axum::response::{IntoResponse, Response};

pub const LOGIN_HTML: &str = include_str!("../assets/login.html");
const INDEX_HTML: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const CHART_JS: &str = include_str!("../assets/chart.js");
const STYLE_CSS: &str = include_str!("../assets/style.css");

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

fn file(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

pub(crate) async fn index() -> Response {
    file("text/html; charset=utf-8", INDEX_HTML)
}

pub(crate) async fn app_js() -> Response {
    file("text/javascript; charset=utf-8", APP_JS)
}

pub(crate) async fn chart_js() -> Response {
    file("text/javascript; charset=utf-8", CHART_JS)
}

pub(crate) async fn style_css() -> Response {
    file("text/css; charset=utf-8", STYLE_CSS)
}
