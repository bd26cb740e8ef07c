//! Extractors of the v1 API: JSON bodies whose property names match case-insensitively, query
//! parameters likewise, and the `api-version` header. Every rejection is an `ApiError`.

use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use serde::de::Visitor;
use serde::{Deserialize, Deserializer};
use std::collections::HashMap;
use uuid::Uuid;

/// A JSON body whose top-level property names are matched case-insensitively against the names
/// the DTO declares (`playerlimit` and `PLAYERLIMIT` both fill `playerLimit`).
pub struct CiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for CiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(request, state).await.map_err(body_error)?;
        let value: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::bad_request(format!("The request body is not valid JSON: {e}.")))?;
        let serde_json::Value::Object(object) = value else {
            return Err(ApiError::bad_request("The request body must be a JSON object."));
        };
        let fields = declared_fields::<T>();
        let canonical: serde_json::Map<_, _> = object
            .into_iter()
            .map(|(key, value)| {
                let lowered = key.to_lowercase();
                let field = fields.iter().find(|field| field.to_lowercase() == lowered);
                (field.map_or(key, |field| (*field).to_owned()), value)
            })
            .collect();
        T::deserialize(serde_json::Value::Object(canonical))
            .map(CiJson)
            .map_err(|e| ApiError::bad_request(format!("The request body is invalid: {e}.")))
    }
}

/// The property names a struct's `Deserialize` implementation declares: serde hands them to
/// `deserialize_struct`, which this probe answers by noting them and giving up. Empty for types
/// that are not structs.
fn declared_fields<T: DeserializeOwned>() -> &'static [&'static str] {
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(FieldProbe(&mut fields));
    fields
}

struct FieldProbe<'a>(&'a mut &'static [&'static str]);

impl<'de> Deserializer<'de> for FieldProbe<'_> {
    type Error = serde::de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(serde::de::Error::custom("not a struct"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = fields;
        Err(serde::de::Error::custom("fields noted"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
        unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
    }
}

/// The answer to a body that could not be read: too large (413), stopped arriving within the
/// body-read timeout (408), or broken (400).
pub fn body_error(rejection: axum::extract::rejection::BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "The request body is too large.")
    } else if timed_out(&rejection) {
        ApiError::new(StatusCode::REQUEST_TIMEOUT, "The request body did not arrive in time.")
    } else {
        ApiError::bad_request("The request body could not be read.")
    }
}

/// Whether the body-read timeout is among the causes of `error`.
fn timed_out(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if error.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        cause = error.source();
    }
    false
}

/// Query parameters with lowercase names.
pub struct CiQuery(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for CiQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        let pairs: Vec<(String, String)> = serde_urlencoded_pairs(query)?;
        Ok(CiQuery(pairs.into_iter().map(|(k, v)| (k.to_lowercase(), v)).collect()))
    }
}

fn serde_urlencoded_pairs(query: &str) -> Result<Vec<(String, String)>, ApiError> {
    axum::extract::Query::<Vec<(String, String)>>::try_from_uri(
        &format!("/?{query}").parse().map_err(|_| ApiError::bad_request("The query string is invalid."))?,
    )
    .map(|q| q.0)
    .map_err(|_| ApiError::bad_request("The query string is invalid."))
}

impl CiQuery {
    /// A required UUID parameter (`name` in lowercase).
    pub fn uuid(&self, name: &str, display: &str) -> Result<Uuid, ApiError> {
        let raw = self
            .0
            .get(name)
            .ok_or_else(|| ApiError::bad_request(format!("The query parameter {display} is required.")))?;
        parse_uuid(raw, display)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

/// Parses an id, refusing anything that is not a UUID.
pub fn parse_uuid(raw: &str, display: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw.trim()).map_err(|_| ApiError::bad_request(format!("{display} must be a UUID.")))
}

/// Deserializes a player limit given as a JSON number or a numeric string. JSON has one number
/// type, so `4.0` and `4e0` are the whole number 4, as JSON Schema's `integer` says.
pub fn number_or_numeric_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(serde_json::Number),
        Text(String),
    }
    let whole = match Raw::deserialize(deserializer)? {
        Raw::Number(n) => whole(&n),
        Raw::Text(text) => text.trim().parse().ok(),
    };
    whole.ok_or_else(|| serde::de::Error::custom("playerLimit must be a whole number"))
}

/// A JSON number that is whole: `2`, `2.0` and `2e0` are 2, as JSON Schema's `integer` says.
pub fn whole_number<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    let number = serde_json::Number::deserialize(deserializer)?;
    whole(&number).ok_or_else(|| serde::de::Error::custom("expected a whole number"))
}

/// [`whole_number`], or null or absent (with `#[serde(default)]`).
pub fn optional_whole_number<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    match Option::<serde_json::Number>::deserialize(deserializer)? {
        Some(number) => whole(&number).map(Some).ok_or_else(|| serde::de::Error::custom("expected a whole number")),
        None => Ok(None),
    }
}

fn whole(number: &serde_json::Number) -> Option<i64> {
    /// Beyond 2^53 a float no longer tells whole numbers apart.
    const EXACT: f64 = 9_007_199_254_740_992.0;
    number.as_i64().or_else(|| number.as_f64().filter(|f| f.fract() == 0.0 && f.abs() <= EXACT).map(|f| f as i64))
}

/// Refuses an `api-version` header other than `1` or `1.0`.
pub async fn require_api_version_1(
    request: Request,
    next: axum::middleware::Next,
) -> Result<axum::response::Response, ApiError> {
    if let Some(version) = request.headers().get("api-version") {
        let ok = matches!(version.to_str().map(str::trim), Ok("1" | "1.0"));
        if !ok {
            return Err(ApiError::bad_request("The api-version header must be 1 or 1.0."));
        }
    }
    Ok(next.run(request).await)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use serde_json::json;

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Limit {
        #[serde(deserialize_with = "number_or_numeric_string")]
        player_limit: i64,
    }

    fn limit(value: serde_json::Value) -> Option<i64> {
        serde_json::from_value::<Limit>(json!({"playerLimit": value})).ok().map(|l| l.player_limit)
    }

    /// JSON has one number type: `4.0` and `4e0` are the integer 4, as JSON Schema's `integer`
    /// says; fractions and strings that are not whole numbers are not.
    #[test]
    fn a_player_limit_is_any_whole_json_number_or_a_numeric_string() {
        assert_eq!(limit(json!(4)), Some(4));
        assert_eq!(limit(serde_json::from_str("4.0").unwrap()), Some(4));
        assert_eq!(limit(serde_json::from_str("1e1").unwrap()), Some(10));
        assert_eq!(limit(serde_json::from_str("-3.0").unwrap()), Some(-3));
        assert_eq!(limit(json!(" 7 ")), Some(7));
        assert_eq!(limit(json!(4.5)), None);
        assert_eq!(limit(serde_json::from_str("1e300").unwrap()), None);
        assert_eq!(limit(json!("4.0")), None);
        assert_eq!(limit(json!(null)), None);
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Goals {
        #[serde(deserialize_with = "whole_number")]
        home_goals: i64,
        #[serde(default, deserialize_with = "optional_whole_number")]
        legs: Option<i64>,
    }

    fn goals(home: serde_json::Value, legs: Option<serde_json::Value>) -> Option<(i64, Option<i64>)> {
        let mut body = json!({"homeGoals": home});
        if let Some(legs) = legs {
            body["legs"] = legs;
        }
        serde_json::from_value::<Goals>(body).ok().map(|g| (g.home_goals, g.legs))
    }

    /// Goals and legs are whole JSON numbers too, but never strings.
    #[test]
    fn goals_and_legs_are_any_whole_json_number() {
        assert_eq!(goals(json!(2), None), Some((2, None)));
        assert_eq!(goals(serde_json::from_str("15.0").unwrap(), Some(json!(null))), Some((15, None)));
        assert_eq!(goals(json!(0), Some(serde_json::from_str("2e0").unwrap())), Some((0, Some(2))));
        assert_eq!(goals(json!(2.5), None), None);
        assert_eq!(goals(json!("2"), None), None);
        assert_eq!(goals(json!(1), Some(json!(1.5))), None);
        assert_eq!(goals(json!(1), Some(json!("2"))), None);
    }

    async fn ci_json<T: DeserializeOwned>(body: serde_json::Value) -> Result<T, ApiError> {
        let request = Request::new(Body::from(body.to_string()));
        CiJson::<T>::from_request(request, &()).await.map(|CiJson(value)| value)
    }

    #[tokio::test]
    async fn body_property_names_match_the_declared_names_in_any_case() {
        for body in [json!({"playerLimit": 3}), json!({"playerlimit": 3}), json!({"PLAYERLIMIT": 3, "other": 1})] {
            assert_eq!(ci_json::<Limit>(body).await.unwrap().player_limit, 3);
        }
        assert_eq!(ci_json::<Limit>(json!({"player_limit": 3})).await.unwrap_err().status, StatusCode::BAD_REQUEST);
    }
}
