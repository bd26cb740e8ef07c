//! The v1 API of the original LetChooseTeams front end.
//!
//! v1 has no authentication (the original front end sends only names), so `LCT_V1` decides how
//! much of it is served: everything (`open`), reads only (`read-only`), or nothing (`off`). It
//! applies to the REST routes here and to the SignalR hub alike.

pub mod team;
pub mod tournament;

use crate::error::ApiError;
use crate::AppState;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;

/// How much of v1 is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum V1Mode {
    /// Reads and writes, as the original front end needs.
    #[default]
    Open,
    /// Reads only: writes and hub invocations are refused.
    ReadOnly,
    /// Nothing: the routes answer 404 and the hub refuses connections.
    Off,
}

impl V1Mode {
    /// The values `LCT_V1` takes.
    pub const NAMES: [&'static str; 3] = ["open", "read-only", "off"];

    /// Whether v1 may change anything.
    pub fn allows_writes(self) -> bool {
        self == V1Mode::Open
    }

    /// The refusal of a v1 write (or hub invocation) in this mode.
    pub fn write_refusal(self) -> ApiError {
        match self {
            V1Mode::Off => turned_off(),
            _ => ApiError::new(
                StatusCode::FORBIDDEN,
                "The v1 API is read-only on this server: changes go through the v2 API (/api/v2).",
            ),
        }
    }
}

impl std::str::FromStr for V1Mode {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "open" => Ok(V1Mode::Open),
            "read-only" => Ok(V1Mode::ReadOnly),
            "off" => Ok(V1Mode::Off),
            other => Err(format!("unknown v1 mode '{other}': use open, read-only or off")),
        }
    }
}

/// The answer of every v1 route and of the hub when v1 is off.
pub fn turned_off() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "The v1 API is turned off on this server: use the v2 API (/api/v2).")
}

/// v1 routes, in lowercase (requests are lowered before routing).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/tournament/create", post(tournament::create))
        .route("/api/tournament", get(tournament::get))
        .route("/api/tournament/assignplayer", post(tournament::assign_player))
        .route("/api/tournament/draw", get(tournament::draw).post(tournament::draw_by_post))
        .route("/api/tournament/qr", get(crate::qr::tournament_qr))
        .route("/api/team", get(team::list))
        .route("/api/team/select", post(team::select))
        .layer(axum::middleware::from_fn(crate::extract::require_api_version_1))
}

/// The optional `api-version` header every v1 operation reads.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
pub struct ApiVersionHeader {
    /// Absent, `1` or `1.0`; anything else is refused.
    #[param(rename = "api-version", value_type = Option<crate::openapi::schemas::ApiVersion>, nullable = false)]
    pub api_version: Option<String>,
}

/// Middleware of the v1 routes and the hub: everything is refused when v1 is off; commands
/// (POSTs) when it is read-only. The draw, which answers a stored draw as a read, decides in its
/// handler; the hub's negotiation, a POST that changes nothing, is how SignalR clients connect
/// to receive messages, which read-only keeps.
pub async fn access(State(state): State<AppState>, request: Request, next: Next) -> Result<Response, ApiError> {
    match state.v1 {
        V1Mode::Open => {}
        V1Mode::Off => return Err(turned_off()),
        V1Mode::ReadOnly => {
            let path = request.uri().path();
            let is_read = path == "/api/tournament/draw" || path == "/hubs/actions/negotiate";
            if request.method() == Method::POST && !is_read {
                return Err(state.v1.write_refusal());
            }
        }
    }
    Ok(next.run(request).await)
}

/// Metadata for events appended by the current request, stamped by the state's clock.
pub(crate) fn metadata(state: &AppState) -> domain::ports::EventMetadata {
    domain::ports::EventMetadata {
        request_id: Some(crate::context::request_id()),
        recorded_at_ms: state.clock.now_ms(),
    }
}
