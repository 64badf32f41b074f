//! Phone numbers (DIDs) an account can claim from the carriers' inventory.

use serde::{Deserialize, Serialize};

/// `GET /v1/numbers/available`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema, utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct AvailableNumbersQuery {
    /// ISO 3166 two-letter country code; default `US`.
    #[serde(default)]
    pub country: Option<String>,
    /// National area code (for North America the 3-digit NPA, e.g. `415`).
    #[serde(default)]
    pub area_code: Option<String>,
    /// 1–100, default 20.
    #[serde(default)]
    pub limit: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct AvailableNumbers {
    pub numbers: Vec<String>,
}

/// `POST /v1/numbers`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct ClaimNumber {
    pub number: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ClaimedNumber {
    pub number: String,
}
