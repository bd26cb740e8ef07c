//! The built-in web client: the static pages and assets of `web/`, compiled into the binary so
//! that a single `lct` serves the organiser's TV screen and the players' phones with nothing
//! fetched from elsewhere.
//!
//! - `/`: create a tournament;
//! - `/t/{id}`: the organiser's screen (QR code, players, live clicks, draw, then the night's
//!   matches, results and table);
//! - `/player/register/{id}`: the join link in the QR code;
//! - `/p/{id}`: a player's phone;
//! - `/assets/{file}`: the stylesheet, the JavaScript modules and the icon.
//!
//! File names are not fingerprinted, so every response is `Cache-Control: no-cache` with a
//! strong `ETag`: browsers keep their copy and revalidate it with a cheap 304, and a new
//! binary is picked up at the next load.

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use uuid::Uuid;

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const SVG: &str = "image/svg+xml";

/// Scripts, styles and images from this server only; the live socket and the API on it too.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self' ws: wss:; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

/// One embedded file.
struct Asset {
    name: &'static str,
    body: &'static [u8],
    content_type: &'static str,
    /// FNV-1a of the body, computed at compile time.
    hash: u64,
}

macro_rules! embed {
    ($name:literal, $content_type:expr) => {{
        const BODY: &[u8] = include_bytes!(concat!("../../web/", $name));
        Asset { name: $name, body: BODY, content_type: $content_type, hash: fnv1a(BODY) }
    }};
}

const HOME: Asset = embed!("index.html", HTML);
const BOARD: Asset = embed!("tournament.html", HTML);
const REGISTER: Asset = embed!("register.html", HTML);
const PLAYER: Asset = embed!("player.html", HTML);

/// What `/assets/{file}` serves; names are lowercase because request paths are lowered.
const ASSETS: &[Asset] = &[
    embed!("app.css", CSS),
    embed!("app.js", JS),
    embed!("api.js", JS),
    embed!("live.js", JS),
    embed!("model.js", JS),
    embed!("ui.js", JS),
    embed!("night.js", JS),
    embed!("home.js", JS),
    embed!("board.js", JS),
    embed!("register.js", JS),
    embed!("player.js", JS),
    embed!("icon.svg", SVG),
];

const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    hash
}

/// The web client's routes, in lowercase. They need no state.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|headers: HeaderMap| async move { serve(&HOME, &headers, StatusCode::OK) }))
        .route("/t/{id}", get(|id: Path<String>, headers: HeaderMap| async move { page(&BOARD, &id, &headers) }))
        .route(
            "/player/register/{id}",
            get(|id: Path<String>, headers: HeaderMap| async move { page(&REGISTER, &id, &headers) }),
        )
        .route("/p/{id}", get(|id: Path<String>, headers: HeaderMap| async move { page(&PLAYER, &id, &headers) }))
        .route("/assets/{file}", get(asset))
}

/// A page of one tournament. A path that names no tournament still gets the page, which says
/// so, but with a 404.
fn page(asset: &Asset, id: &str, headers: &HeaderMap) -> Response {
    let status = if Uuid::parse_str(id).is_ok() { StatusCode::OK } else { StatusCode::NOT_FOUND };
    serve(asset, headers, status)
}

async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    match ASSETS.iter().find(|a| a.name == file) {
        Some(asset) => serve(asset, &headers, StatusCode::OK),
        None => crate::error::no_such_route().into_response(),
    }
}

fn serve(asset: &Asset, headers: &HeaderMap, status: StatusCode) -> Response {
    let etag = format!("\"{:016x}\"", asset.hash);
    let mut response = if status == StatusCode::OK && matches_etag(headers, &etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut response = (status, asset.body).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
        response
    };
    let out = response.headers_mut();
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    out.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if let Ok(value) = HeaderValue::from_str(&etag) {
        out.insert(header::ETAG, value);
    }
    if asset.content_type == HTML {
        out.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
        out.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    }
    response
}

/// `If-None-Match` lists `etag` (weak comparison, as RFC 9110 asks for this header) or is `*`.
fn matches_etag(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|list| list.split(',').map(str::trim).any(|tag| tag == "*" || tag.trim_start_matches("W/") == etag))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn get(path: &str, if_none_match: Option<&str>) -> Response {
        let mut request = Request::get(path);
        if let Some(tag) = if_none_match {
            request = request.header(header::IF_NONE_MATCH, tag);
        }
        routes::<()>().oneshot(request.body(Body::empty()).unwrap()).await.unwrap()
    }

    fn header_of(response: &Response, name: header::HeaderName) -> &str {
        response.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
    }

    #[tokio::test]
    async fn each_page_is_html_revalidated_on_every_load() {
        let id = Uuid::new_v4();
        for path in ["/".to_owned(), format!("/t/{id}"), format!("/player/register/{id}"), format!("/p/{id}")] {
            let response = get(&path, None).await;
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            assert_eq!(header_of(&response, header::CONTENT_TYPE), HTML, "{path}");
            assert_eq!(header_of(&response, header::CACHE_CONTROL), "no-cache", "{path}");
            assert!(header_of(&response, header::CONTENT_SECURITY_POLICY).contains("default-src 'self'"));
        }
    }

    #[tokio::test]
    async fn a_page_of_no_tournament_is_not_found() {
        assert_eq!(get("/t/not-a-uuid", None).await.status(), StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn assets_have_their_content_types_and_unknown_ones_are_not_found() {
        assert_eq!(header_of(&get("/assets/app.js", None).await, header::CONTENT_TYPE), JS);
        assert_eq!(header_of(&get("/assets/app.css", None).await, header::CONTENT_TYPE), CSS);
        assert_eq!(header_of(&get("/assets/icon.svg", None).await, header::CONTENT_TYPE), SVG);
        assert_eq!(get("/assets/missing.js", None).await.status(), StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn a_cached_copy_is_confirmed_with_not_modified() {
        let first = get("/assets/app.css", None).await;
        let etag = header_of(&first, header::ETAG).to_owned();
        let again = get("/assets/app.css", Some(&etag)).await;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(header_of(&again, header::ETAG), etag);
        let changed = get("/assets/app.css", Some("\"0000000000000000\"")).await;
        assert_eq!(changed.status(), StatusCode::OK);
    }

    /// Every `/assets/…` a page links and every module a script imports is embedded.
    #[test]
    fn every_referenced_file_is_embedded() {
        let served = |name: &str| ASSETS.iter().any(|a| a.name == name);
        for page in [&HOME, &BOARD, &REGISTER, &PLAYER] {
            let html = std::str::from_utf8(page.body).unwrap();
            for reference in html.split("/assets/").skip(1) {
                let name: String = reference.chars().take_while(|c| !matches!(c, '"' | '\'' | '?')).collect();
                assert!(served(&name), "{} links /assets/{name}, which is not embedded", page.name);
            }
        }
        for script in ASSETS.iter().filter(|a| a.content_type == JS) {
            let source = std::str::from_utf8(script.body).unwrap();
            for reference in source.split("from './").skip(1) {
                let name: String = reference.chars().take_while(|c| *c != '\'').collect();
                assert!(served(&name), "{} imports ./{name}, which is not embedded", script.name);
                assert_eq!(name, name.to_lowercase(), "request paths are lowered, so names must be lowercase");
            }
        }
    }
}
