//! QR codes of a tournament's join link, as SVG or PNG.

use crate::context;
use crate::error::ApiError;
use crate::extract::CiQuery;
use crate::openapi::responses::{v1, v2};
use crate::v2::problem::Problem;
use crate::v2::tournaments::PathOf;
use crate::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use qrcode::{Color, QrCode};
use uuid::Uuid;

/// The image formats of the QR code.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum QrFormat {
    Svg,
    Png,
}

/// A QR code image: the body is the image itself.
pub struct QrImage;

impl utoipa::PartialSchema for QrImage {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some("The image in the format asked for (SVG text or PNG bytes)"))
            .into()
    }
}

impl utoipa::ToSchema for QrImage {}

/// Pixels per module of the PNG and modules of quiet zone around the code.
const PNG_SCALE: usize = 8;
const QUIET_ZONE: usize = 4;

/// The QR code of `{public URL}/player/register/{id}`.
#[utoipa::path(get, path = "/api/Tournament/qr", tag = "Tournament", operation_id = "v1TournamentQr",
    params(("tournamentId" = Uuid, Query, description = "The tournament id"),
           ("format" = Option<QrFormat>, Query, description = "svg (the default) or png"),
           crate::v1::ApiVersionHeader),
    responses(
        (status = 200, description = "The QR code", content(
            (QrImage = "image/svg+xml"),
            (QrImage = "image/png"))),
        (status = 400, response = v1::BadRequest),
        (status = 404, response = v1::NotFound),
        (status = 503, response = v1::Unavailable)))]
pub async fn tournament_qr(State(state): State<AppState>, query: CiQuery) -> Result<Response, ApiError> {
    let id = query.uuid("tournamentid", "tournamentId")?;
    render(&state, id, query.get("format")).await
}

/// The same QR code under the v2 API (the web client's), served whatever `LCT_V1` says.
#[utoipa::path(get, path = "/api/v2/tournaments/{id}/qr", tag = "v2", operation_id = "v2TournamentQr",
    params(crate::v2::tournaments::TournamentPath,
           ("format" = Option<QrFormat>, Query, description = "svg (the default) or png")),
    responses(
        (status = 200, description = "The QR code of the join link", content(
            (QrImage = "image/svg+xml"),
            (QrImage = "image/png"))),
        (status = 400, response = v2::BadRequest),
        (status = 404, response = v2::NotFound),
        (status = 503, response = v2::Unavailable)))]
pub async fn tournament_qr_v2(
    State(state): State<AppState>,
    PathOf(id): PathOf<String>,
    query: CiQuery,
) -> Result<Response, Problem> {
    let id = crate::extract::parse_uuid(&id, "The tournament id")?;
    Ok(render(&state, id, query.get("format")).await?)
}

async fn render(state: &AppState, id: Uuid, format: Option<&str>) -> Result<Response, ApiError> {
    context::set_tournament(id);
    let format = format.unwrap_or("svg").to_ascii_lowercase();
    if format != "svg" && format != "png" {
        return Err(ApiError::bad_request("format must be svg or png."));
    }
    state.service.get(id).await?;
    let link = join_link(&state.public_url, id);
    let code = QrCode::new(link.as_bytes())
        .map_err(|e| ApiError::bad_request(format!("The join link cannot be encoded: {e}.")))?;
    Ok(if format == "png" {
        ([(header::CONTENT_TYPE, "image/png")], render_png(&code)).into_response()
    } else {
        let svg = code.render::<qrcode::render::svg::Color>().min_dimensions(256, 256).build();
        ([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response()
    })
}

/// The link a player's phone opens to join.
pub fn join_link(public_url: &str, id: uuid::Uuid) -> String {
    format!("{}/player/register/{id}", public_url.trim_end_matches('/'))
}

/// A greyscale PNG of the code with a quiet zone.
pub fn render_png(code: &QrCode) -> Vec<u8> {
    let modules = code.width();
    let colors = code.to_colors();
    let side = (modules + 2 * QUIET_ZONE) * PNG_SCALE;
    let mut pixels = vec![255u8; side * side];
    for (i, color) in colors.iter().enumerate() {
        if *color == Color::Dark {
            let (mx, my) = (i % modules + QUIET_ZONE, i / modules + QUIET_ZONE);
            for y in my * PNG_SCALE..(my + 1) * PNG_SCALE {
                pixels[y * side + mx * PNG_SCALE..y * side + (mx + 1) * PNG_SCALE].fill(0);
            }
        }
    }
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, side as u32, side as u32);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    // Writing into a Vec cannot fail for a well-formed image of the declared size.
    if let Ok(mut writer) = encoder.write_header() {
        let _ = writer.write_image_data(&pixels);
    }
    out
}
