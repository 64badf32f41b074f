//! Carrier webhooks: `POST /v1/carriers/{name}/inbound` (an outside phone texted one of our
//! numbers) and `POST /v1/carriers/{name}/status` (a delivery status for a message we sent),
//! as Twilio calls them.
//!
//! No device token: a webhook is authenticated by its `X-Twilio-Signature` alone (see
//! `carriers::twilio`), checked before anything in the form is believed. The order of checks
//! is fixed so nothing is learnt without the auth token: unknown carrier → 404; not a form →
//! 415; no signature → 403; a body that is not a form → 400; a wrong signature → 403; a
//! signed form that lacks what the webhook needs → 400. Accepted webhooks are answered with
//! empty TwiML once their report is in the gateway's report channel, where the router stores
//! it like any carrier's report.

use std::sync::Arc;

use airtext_api::{ErrorBody, ErrorCode};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{OriginalUri, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::carriers::twilio::{
    InboundForm, StatusForm, TwilioCarrier, EMPTY_TWIML, SIGNATURE_HEADER,
};
use crate::error::{ApiError, ApiResult};
use crate::http::extract::ApiPath;
use crate::http::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(inbound))
        .routes(routes!(status))
}

/// Twilio's inbound-message webhook.
#[utoipa::path(
    post,
    path = "/v1/carriers/{name}/inbound",
    tag = "carriers",
    operation_id = "carrier_inbound",
    params(
        ("name" = String, Path, description = "The carrier's configured name"),
        ("X-Twilio-Signature" = String, Header, description = "base64(HMAC-SHA1(auth token, public URL + sorted form parameters))"),
    ),
    request_body(content = InboundForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Taken; empty TwiML", content_type = "text/xml", body = String),
        (status = 400, description = "`bad_request`: the body is not a form, or lacks `From`/`To`", body = ErrorBody),
        (status = 403, description = "`unauthorized`: no signature, or one that does not match", body = ErrorBody),
        (status = 404, description = "`not_found`: no Twilio carrier has that name", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: not form-encoded", body = ErrorBody),
        (status = 503, description = "`unavailable`: the gateway is shutting down; retry", body = ErrorBody),
    )
)]
async fn inbound(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let (carrier, form) = signed_form::<InboundForm>(&state, &name, &uri, &headers, body)?;
    carrier
        .report_inbound(&form)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    Ok(twiml())
}

/// Twilio's message status callback (the `StatusCallback` the gateway sends with each text).
#[utoipa::path(
    post,
    path = "/v1/carriers/{name}/status",
    tag = "carriers",
    operation_id = "carrier_status",
    params(
        ("name" = String, Path, description = "The carrier's configured name"),
        ("X-Twilio-Signature" = String, Header, description = "base64(HMAC-SHA1(auth token, public URL + sorted form parameters))"),
    ),
    request_body(content = StatusForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Taken (statuses that say nothing new are ignored); empty TwiML", content_type = "text/xml", body = String),
        (status = 400, description = "`bad_request`: the body is not a form", body = ErrorBody),
        (status = 403, description = "`unauthorized`: no signature, or one that does not match", body = ErrorBody),
        (status = 404, description = "`not_found`: no Twilio carrier has that name", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: not form-encoded", body = ErrorBody),
        (status = 503, description = "`unavailable`: the gateway is shutting down; retry", body = ErrorBody),
    )
)]
async fn status(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let (carrier, form) = signed_form::<StatusForm>(&state, &name, &uri, &headers, body)?;
    carrier
        .report_status(&form)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    Ok(twiml())
}

fn twiml() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        EMPTY_TWIML,
    )
        .into_response()
}

fn forbidden(message: &str) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, ErrorCode::Unauthorized, message)
}

/// The carrier and its webhook's form, once the signature holds (see the module's order).
fn signed_form<T: DeserializeOwned>(
    state: &AppState,
    name: &str,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(Arc<TwilioCarrier>, T)> {
    let carrier = state.twilio.get(name).cloned().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            format!("no Twilio carrier is named {name:?} on this gateway"),
        )
    })?;
    let form_typed = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| {
            v.split(';').next().is_some_and(|t| {
                t.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
        });
    if !form_typed {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::UnsupportedMediaType,
            "send the webhook form-encoded (application/x-www-form-urlencoded), as Twilio does",
        ));
    }
    let signature = headers
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| forbidden("this webhook must be signed by Twilio (X-Twilio-Signature)"))?;
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::PayloadTooLarge,
                "the request body is too large",
            )
        } else {
            ApiError::bad_request(format!(
                "cannot read the request body: {}",
                rejection.body_text()
            ))
        }
    })?;
    let params = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body)
        .map_err(|e| ApiError::bad_request(format!("the body is not a form: {e}")))?;
    let path_and_query = uri
        .path_and_query()
        .map_or_else(|| uri.path(), |pq| pq.as_str());
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let urls = carrier.webhook_urls(path_and_query, host);
    if !carrier.verify(&urls, &params, signature) {
        tracing::warn!(
            carrier = name,
            url = urls.first().map(String::as_str).unwrap_or("-"),
            "webhook refused: X-Twilio-Signature does not match"
        );
        return Err(forbidden(
            "X-Twilio-Signature does not match this request (the carrier's auth_token and the \
             gateway's public_url must be the ones Twilio uses)",
        ));
    }
    let form = serde_urlencoded::from_bytes::<T>(&body)
        .map_err(|e| ApiError::bad_request(format!("the form does not fit this webhook: {e}")))?;
    Ok((carrier, form))
}
