//! The dashboard: a page for operators at `GET /` and its assets under `/ui/`, every byte compiled
//! into the binary (`api/assets/`), so the api needs no files at run time and the page loads
//! nothing from another host.
//!
//! It deliberately serves no data: these routes are public, and the page reads and cancels
//! through the REST surface (`/v1/...`) from the browser, with the caller's own credentials. A
//! strict `Content-Security-Policy` keeps every script, style, image and connection on this
//! origin.

use axum::http::{HeaderValue, Method, Uri, header};
use axum::response::{IntoResponse, Response};

use crate::route::no_route;

/// Same origin only: no inline script or style, no frames, no plugins, no other hosts.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
    connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
    frame-ancestors 'none'";

/// The embedded files: path under `/ui/`, content type, bytes.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/app.css"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_bytes!("../assets/favicon.svg"),
    ),
];

const INDEX_HTML: &[u8] = include_bytes!("../assets/index.html");

/// `GET /`: the page.
pub async fn page(method: Method, uri: Uri) -> Response {
    if !readable(&method) {
        return no_route(&method, uri.path()).into_response();
    }
    file("text/html; charset=utf-8", INDEX_HTML)
}

/// `GET /ui/{file}`: one embedded asset; any other path under `/ui/` is the usual 404 envelope.
pub async fn asset(method: Method, uri: Uri) -> Response {
    let wanted = uri.path().strip_prefix("/ui/").unwrap_or_default();
    match ASSETS.iter().find(|(path, _, _)| *path == wanted) {
        Some((_, content_type, bytes)) if readable(&method) => file(content_type, bytes),
        _ => no_route(&method, uri.path()).into_response(),
    }
}

fn readable(method: &Method) -> bool {
    method == Method::GET || method == Method::HEAD
}

fn file(content_type: &'static str, bytes: &'static [u8]) -> Response {
    let mut resp = bytes.into_response();
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // The files change with the binary, not on their own: revalidate rather than cache blindly.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}
