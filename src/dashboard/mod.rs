//! The dashboard: one static page embedded in the binary (`GET /dashboard`),
//! its script and style, and the vendored chart library (uPlot 1.6.32 from
//! npm, MIT: `vendor/uPlot.LICENSE`; checksums below are tested). Served with
//! a strict CSP (`script-src 'self'`, nothing external, no inline code); the
//! page reads the JSON API with the caller's key from sessionStorage.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

const INDEX: &str = include_str!("index.html");
const APP_JS: &str = include_str!("app.js");
const APP_CSS: &str = include_str!("app.css");
const UPLOT_JS: &str = include_str!("vendor/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("vendor/uPlot.min.css");
const UPLOT_LICENSE: &str = include_str!("vendor/uPlot.LICENSE");

/// No external origin, no inline script or style, no framing.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
frame-ancestors 'none'";

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
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
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// `GET /dashboard`.
pub async fn page() -> Response {
    asset(INDEX, "text/html; charset=utf-8")
}

/// `GET /dashboard/{file}`.
pub async fn file(Path(name): Path<String>) -> Response {
    match name.as_str() {
        "app.js" => asset(APP_JS, "text/javascript; charset=utf-8"),
        "app.css" => asset(APP_CSS, "text/css; charset=utf-8"),
        "uPlot.iife.min.js" => asset(UPLOT_JS, "text/javascript; charset=utf-8"),
        "uPlot.min.css" => asset(UPLOT_CSS, "text/css; charset=utf-8"),
        "uPlot.LICENSE" => asset(UPLOT_LICENSE, "text/plain; charset=utf-8"),
        _ => crate::error::ProxyError::ModelNotFound(format!("no dashboard file `{name}`"))
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    use super::*;

    fn sha256(text: &str) -> String {
        hex::encode(Sha256::digest(text.as_bytes()))
    }

    /// The vendored files are byte-for-byte the npm package `uplot@1.6.32`
    /// (tarball integrity sha512-KIMVnG68zvu5XXUbC4LQEPnhwOxBuLyW1AHtpm6IKTXImkbLgkMy+jabjLgSLMasNuGGzQm/ep3tOkyTxpiQIw==).
    #[test]
    fn vendored_uplot_matches_its_checksums() {
        assert_eq!(
            sha256(UPLOT_JS),
            "19c8d4c6ad88929a79f4ae49d6f7161566dfd0ba3d15cc495e974f787eb78f1f"
        );
        assert_eq!(
            sha256(UPLOT_CSS),
            "df630c6a8d6f8eeaff264b50f73ce5b114f646ffd9a0bb74f049b0a00135fa04"
        );
        assert_eq!(
            sha256(UPLOT_LICENSE),
            "8f989229699b4fe2f1a0432d0e9edc338a8a911e250e2d1b01ecd770a5f5b1bd"
        );
        assert!(UPLOT_LICENSE.contains("MIT License"));
    }

    #[test]
    fn the_page_loads_nothing_external_and_nothing_inline() {
        for text in [INDEX, APP_JS, APP_CSS] {
            assert!(!text.contains("http://") && !text.contains("https://"));
        }
        assert!(
            !INDEX.contains("<script>") && !INDEX.contains("<style") && !INDEX.contains(" style=")
        );
        assert!(!INDEX.contains("onclick") && !INDEX.contains("onload"));
        for id in [
            "kpi-hit-rate",
            "kpi-requests",
            "kpi-saved-usd",
            "kpi-spend-usd",
            "kpi-tokens-saved",
            "kpi-latency-saved-ms",
        ] {
            assert!(INDEX.contains(&format!("data-testid=\"{id}\"")), "{id}");
        }
    }
}
