//! `POST /v1/messages/plan`: the composer's live preview (encoding, segments, characters
//! left), decided by `airtext-sms` so web clients never carry their own copy of the GSM tables.

use airtext_api::compose::{PlanText, TextPlan};
use axum::Json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiResult;
use crate::http::extract::{ApiJson, AuthDevice};
use crate::http::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(plan_text))
}

/// How a text would be sent: encoding, segments and what is left in the current one.
#[utoipa::path(
    post,
    path = "/v1/messages/plan",
    tag = "messages",
    request_body = PlanText,
    responses(
        (status = 200, description = "How the text would be sent", body = TextPlan),
        (status = 400, description = "The body is not JSON of this shape", body = airtext_api::ErrorBody),
        (status = 401, description = "No valid device token", body = airtext_api::ErrorBody),
    ),
    security(("device_token" = []))
)]
pub async fn plan_text(
    _device: AuthDevice,
    ApiJson(request): ApiJson<PlanText>,
) -> ApiResult<Json<TextPlan>> {
    Ok(Json(TextPlan::of(&request.text)))
}
