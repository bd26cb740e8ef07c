//! The HTTP surface of lct: the v1 REST API of the original front end, the v2 API, the
//! WebSocket transports of the delivery engine, health, Prometheus metrics, OpenAPI and
//! Swagger UI. Handlers are thin: they parse DTOs into domain values, call
//! the application service and shape the answer.
#![forbid(unsafe_code)]

pub mod client_ip;
pub mod cluster;
pub mod context;
pub mod error;
pub mod extract;
pub mod health;
pub mod live;
pub mod metered;
pub mod metrics;
pub mod openapi;
pub mod qr;
pub mod ratelimit;
pub mod server;
pub mod upgrade_guard;
pub mod v1;
pub mod v2;
pub mod web;

use ::live::clock::Clock;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, Uri};
use axum::routing::get;
use axum::Router;
use domain::service::TournamentService;
use std::sync::Arc;
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};

/// Largest accepted request body; the biggest legitimate v1 body is a few hundred bytes.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// What every handler may use.
#[derive(Clone)]
pub struct AppState {
    pub service: TournamentService,
    /// Base of the join links in QR codes, without a trailing slash.
    pub public_url: Arc<str>,
    pub live: live::LiveState,
    pub metrics: metrics::Metrics,
    /// Issues and checks the organiser and player tokens of the v2 API.
    pub tokens: v2::tokens::TokenKeys,
    /// Responses of requests sent with an `Idempotency-Key`.
    pub idempotency: Arc<dyn ::live::ports::IdempotencyStore>,
    /// This pod's membership of the cluster (`GET /cluster`).
    pub cluster: live::Cluster,
    /// The time of event metadata.
    pub clock: Arc<dyn Clock>,
    /// How much of the v1 API (REST and hub) is served.
    pub v1: v1::V1Mode,
}

/// Options of the HTTP surface that come from configuration.
#[derive(Clone, Default)]
pub struct HttpOptions {
    /// Origins allowed by CORS and for WebSocket upgrades; empty means any origin.
    pub cors_origins: Vec<String>,
    /// Per-client-IP limits on commands and new WebSocket connections.
    pub rate_limits: ratelimit::RateLimits,
    /// Where the client address of a request comes from (the peer, or a trusted proxy's header).
    pub client_ip: client_ip::ClientIpSource,
    /// Timeouts and connection caps.
    pub server: server::ServerOptions,
}

/// The whole application as one service, paths matched case-insensitively. `limits` counts
/// live connections per client behind proxies.
pub fn app(state: AppState, options: &HttpOptions, limits: server::ConnectionLimits) -> LowercasePaths {
    let limiter = ratelimit::RateLimiter::new(options.rate_limits, options.client_ip.clone());
    let guard =
        upgrade_guard::UpgradeGuard::new(&options.cors_origins, &state.public_url, limits, options.client_ip.clone());
    let v1_and_hub = v1::routes()
        .route("/hubs/actions", get(live::signalr::connect))
        .route("/hubs/actions/negotiate", axum::routing::post(live::signalr::negotiate))
        .layer(axum::middleware::from_fn_with_state(state.clone(), v1::access));
    let router = Router::new()
        .merge(v1_and_hub)
        .merge(v2::routes())
        .merge(web::routes())
        .route("/liveness", get(health::liveness))
        .merge(
            Router::new()
                .route("/readiness", get(health::readiness))
                .route("/metrics", get(metrics::metrics))
                .route("/cluster", get(cluster::cluster))
                .route_layer(axum::middleware::from_fn_with_state(options.client_ip.clone(), error::operators_only)),
        )
        .merge(openapi::swagger())
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(guard, upgrade_guard::guard))
        .layer(axum::middleware::from_fn_with_state(limiter, ratelimit::limit))
        .layer(axum::middleware::from_fn_with_state(options.server.request_timeout, error::time_limit))
        .layer(axum::middleware::from_fn_with_state(state.metrics.clone(), context::request_context))
        .layer(cors(options))
        .with_state(state);
    lowercase_paths(router)
}

/// The operators' endpoints alone, for a listener of their own (`LCT_ADMIN_LISTEN`): probes and
/// scrapes there never meet the connection caps or rate limits of the public listener. Its
/// requests are not logged or counted (probes would fill the logs).
pub fn admin_app(state: AppState, request_timeout: std::time::Duration) -> LowercasePaths {
    let router = Router::new()
        .route("/liveness", get(health::liveness))
        .route("/readiness", get(health::readiness))
        .route("/metrics", get(metrics::metrics))
        .route("/cluster", get(cluster::cluster))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(request_timeout, error::time_limit))
        .with_state(state);
    lowercase_paths(router)
}

/// Serves [`admin_app`] on `listener` until `shutdown` resolves, with the timeouts of `options`
/// and no connection caps.
pub async fn serve_admin(
    listener: tokio::net::TcpListener,
    state: AppState,
    options: &HttpOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let server = server::ServerOptions { max_connections: 0, max_connections_per_client: 0, ..options.server.clone() };
    let limits = server::ConnectionLimits::new(&server, &options.client_ip);
    server::serve(listener, admin_app(state, server.request_timeout), &server, limits, shutdown).await
}

/// The router behind path lowercasing.
pub type LowercasePaths = tower::util::MapRequest<Router, fn(Request) -> Request>;

fn lowercase_paths(router: Router) -> LowercasePaths {
    tower::ServiceExt::<Request>::map_request(router, lowercase_path as fn(Request) -> Request)
}

/// Routes are registered in lowercase; the path (not the query) of each request is lowered.
fn lowercase_path(mut request: Request) -> Request {
    let uri = request.uri();
    if uri.path().bytes().any(|b| b.is_ascii_uppercase()) {
        let lowered = match uri.query() {
            Some(query) => format!("{}?{query}", uri.path().to_ascii_lowercase()),
            None => uri.path().to_ascii_lowercase(),
        };
        let mut parts = uri.clone().into_parts();
        if let Ok(path_and_query) = lowered.parse() {
            parts.path_and_query = Some(path_and_query);
            if let Ok(uri) = Uri::from_parts(parts) {
                *request.uri_mut() = uri;
            }
        }
    }
    request
}

fn cors(options: &HttpOptions) -> CorsLayer {
    let origins = if options.cors_origins.is_empty() {
        AllowOrigin::mirror_request()
    } else {
        AllowOrigin::list(options.cors_origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    CorsLayer::new()
        .allow_origin(origins)
        .allow_credentials(true)
        .allow_headers(AllowHeaders::mirror_request())
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE, Method::OPTIONS])
        .expose_headers([context::REQUEST_ID_HEADER.clone()])
}

/// Serves the application on `listener` until `shutdown` resolves, then finishes in-flight
/// requests; connections are held to the timeouts and caps of `options.server`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    options: &HttpOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = server::ConnectionLimits::new(&options.server, &options.client_ip);
    let refused = limits.clone();
    state.metrics.register_counters(
        "lct_connections_refused",
        "Connections refused at the connection caps, by cap: the pod's (full) or the client address's (client_full)",
        "reason",
        move || refused.refusals(),
    );
    let app = app(state, options, limits.clone());
    server::serve(listener, app, &options.server, limits, shutdown).await
}
