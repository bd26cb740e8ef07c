//! QR codes of a tournament's join link, as SVG or PNG.

use crate::context;
use crate::error::{ApiError, ErrorBody};
use crate::extract::CiQuery;
use crate::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use qrcode::{Color, QrCode};

/// Pixels per module of the PNG and modules of quiet zone around the code.
const PNG_SCALE: usize = 8;
const QUIET_ZONE: usize = 4;

/// The QR code of `{public URL}/player/register/{id}`.
#[utoipa::path(get, path = "/api/Tournament/qr", tag = "Tournament",
    params(("tournamentId" = String, Query, description = "Tournament id (UUID)"),
           ("format" = Option<String>, Query, description = "svg (default) or png")),
    responses(
        (status = 200, description = "The QR code", content_type = "image/svg+xml"),
        (status = 400, description = "Missing or non-UUID id, unknown format", body = ErrorBody),
        (status = 404, description = "Unknown tournament", body = ErrorBody)))]
pub async fn tournament_qr(State(state): State<AppState>, query: CiQuery) -> Result<Response, ApiError> {
    let id = query.uuid("tournamentid", "tournamentId")?;
    context::set_tournament(id);
    let format = query.get("format").unwrap_or("svg").to_ascii_lowercase();
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
