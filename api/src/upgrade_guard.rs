//! Checks of every WebSocket upgrade (the hub and the v2 live socket) before its handler runs:
//!
//! - **Origin.** Browsers send cookies and reach private networks on behalf of any page, and
//!   WebSockets are not covered by CORS: with `LCT_CORS_ORIGINS` set, an upgrade whose `Origin`
//!   is neither listed there, nor the public URL's, nor the server's own (same host) is refused
//!   with 403. Clients that are not browsers send no `Origin` and are let through; without
//!   `LCT_CORS_ORIGINS` any origin may connect, as the original allowed.
//! - **Connections per client behind proxies.** The per-client cap cannot count a proxy's
//!   sockets, so each upgrade takes a place of its forwarded client address, held by the live
//!   session for its lifetime ([`LiveSlot`]); over the cap the upgrade gets 503.

use crate::client_ip::ClientIpSource;
use crate::error::ApiError;
use crate::server::{ConnectionLimits, Slot};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;
use std::sync::Arc;

/// The place of a live connection under its client's cap; the session keeps a clone.
#[derive(Clone)]
pub struct LiveSlot {
    _slot: Arc<Slot>,
}

/// What the guard checks against.
#[derive(Clone)]
pub struct UpgradeGuard {
    /// Allowed origins (`scheme://host[:port]`, lowercase); empty means any.
    origins: Arc<[String]>,
    limits: ConnectionLimits,
    client_ip: ClientIpSource,
}

impl UpgradeGuard {
    /// With `cors_origins` set, upgrades are allowed from them, from `public_url`'s origin and
    /// from the server's own host.
    pub fn new(cors_origins: &[String], public_url: &str, limits: ConnectionLimits, client_ip: ClientIpSource) -> Self {
        let mut origins: Vec<String> = cors_origins.iter().map(|o| normalise(o)).collect();
        if !origins.is_empty() {
            origins.push(normalise(&origin_of(public_url)));
        }
        Self { origins: origins.into(), limits, client_ip }
    }

    fn origin_allowed(&self, headers: &HeaderMap) -> bool {
        if self.origins.is_empty() {
            return true;
        }
        let Some(origin) = headers.get(header::ORIGIN) else { return true };
        let Ok(origin) = origin.to_str().map(normalise) else { return false };
        if self.origins.contains(&origin) {
            return true;
        }
        // Same origin: the page was served by this host (the web client).
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).map(str::to_ascii_lowercase);
        let authority = origin.split_once("://").map(|(_, authority)| authority);
        host.is_some() && authority == host.as_deref()
    }
}

/// `scheme://host[:port]` of a URL.
fn origin_of(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => format!("{scheme}://{}", rest.split('/').next().unwrap_or_default()),
        None => url.to_owned(),
    }
}

fn normalise(origin: &str) -> String {
    origin.trim().trim_end_matches('/').to_ascii_lowercase()
}

/// Whether a request asks for a WebSocket upgrade.
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.get(header::UPGRADE).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"))
}

/// Middleware: refuses upgrades from other sites and, behind proxies, over the client's cap.
pub async fn guard(State(guard): State<UpgradeGuard>, mut request: Request, next: Next) -> Response {
    if !is_upgrade(request.headers()) {
        return next.run(request).await;
    }
    let v2 = request.uri().path().starts_with("/api/v2/");
    if !guard.origin_allowed(request.headers()) {
        let message = "WebSocket connections from this origin are not allowed (LCT_CORS_ORIGINS).";
        return refusal(v2, StatusCode::FORBIDDEN, "forbidden-origin", message);
    }
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    if let Some(client) = guard.client_ip.client_ip(request.headers(), peer) {
        match guard.limits.admit_client(client) {
            None => {}
            Some(Ok(slot)) => {
                request.extensions_mut().insert(LiveSlot { _slot: Arc::new(slot) });
            }
            Some(Err(refused)) => {
                return refusal(v2, StatusCode::SERVICE_UNAVAILABLE, "too-many-connections", refused.message())
            }
        }
    }
    next.run(request).await
}

fn refusal(v2: bool, status: StatusCode, kind: &'static str, message: &str) -> Response {
    if v2 {
        crate::v2::problem::Problem::new(status, kind, message).into_response()
    } else {
        ApiError::new(status, message).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::ServerOptions;

    fn guard(origins: &[&str]) -> UpgradeGuard {
        let origins: Vec<String> = origins.iter().map(|o| o.to_string()).collect();
        let client_ip = ClientIpSource::default();
        let limits = ConnectionLimits::new(&ServerOptions::default(), &client_ip);
        UpgradeGuard::new(&origins, "https://lct.example.com/", limits, client_ip)
    }

    fn headers(origin: Option<&str>, host: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, host.parse().unwrap());
        if let Some(origin) = origin {
            headers.insert(header::ORIGIN, origin.parse().unwrap());
        }
        headers
    }

    #[test]
    fn listed_public_and_own_origins_pass_others_do_not() {
        let guard = guard(&["https://front.example", "http://localhost:3000/"]);
        let host = "lct.internal:8080";
        assert!(guard.origin_allowed(&headers(Some("https://front.example"), host)));
        assert!(guard.origin_allowed(&headers(Some("HTTP://LOCALHOST:3000"), host)));
        assert!(guard.origin_allowed(&headers(Some("https://lct.example.com"), host)), "the public URL");
        assert!(guard.origin_allowed(&headers(Some("http://lct.internal:8080"), host)), "same host");
        assert!(guard.origin_allowed(&headers(None, host)), "not a browser");
        assert!(!guard.origin_allowed(&headers(Some("https://evil.example"), host)));
        assert!(!guard.origin_allowed(&headers(Some("null"), host)));
        assert!(!guard.origin_allowed(&headers(Some("https://front.example.evil.example"), host)));
        assert!(!guard.origin_allowed(&headers(Some("http://lct.internal:8081"), host)));
    }

    #[test]
    fn without_listed_origins_any_origin_passes() {
        assert!(guard(&[]).origin_allowed(&headers(Some("https://evil.example"), "lct:8080")));
    }
}
