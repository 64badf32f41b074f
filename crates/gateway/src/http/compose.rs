//! `POST /v1/messages/plan`: the composer's live preview (encoding, segments, characters
//! left), decided by `airtext-sms` so web clients never carry their own copy of the GSM tables.

use airtext_api::compose::{PlanText, TextPlan};
use airtext_api::messages::Encoding;
use airtext_sms::plan::Encoding as SmsEncoding;
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
    Ok(Json(text_plan(&request.text)))
}

/// The wire form of `airtext_sms::plan`.
pub fn text_plan(text: &str) -> TextPlan {
    let plan = airtext_sms::plan(text);
    let mut ucs2_characters: Vec<String> = Vec::new();
    if plan.encoding == SmsEncoding::Ucs2 {
        for c in text.chars() {
            let forcing = SmsEncoding::Gsm7.units_of(c).is_none();
            let name = c.to_string();
            if forcing && !ucs2_characters.contains(&name) {
                ucs2_characters.push(name);
            }
        }
    }
    TextPlan {
        encoding: match plan.encoding {
            SmsEncoding::Gsm7 => Encoding::Gsm7,
            SmsEncoding::Ucs2 => Encoding::Ucs2,
        },
        segments: u32::try_from(plan.segment_count()).unwrap_or(u32::MAX),
        chars_left: u32::try_from(plan.chars_left).unwrap_or(u32::MAX),
        parts: plan.segments,
        ucs2_characters,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_characters_that_force_ucs2() {
        let plan = text_plan("Hello 😀 and ü and 😀");
        assert_eq!(plan.encoding, Encoding::Ucs2);
        // ü is in the GSM default alphabet; only the emoji forces UCS-2.
        assert_eq!(plan.ucs2_characters, vec!["😀".to_owned()]);
        let plan = text_plan("Plain text");
        assert_eq!(plan.encoding, Encoding::Gsm7);
        assert!(plan.ucs2_characters.is_empty());
        assert_eq!(plan.segments, 1);
        assert_eq!(plan.chars_left, 150);
    }
}
