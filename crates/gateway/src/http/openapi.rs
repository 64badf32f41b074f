//! The OpenAPI 3 document, generated from the handlers' annotations and the `airtext-api`
//! types (served at `/v1/openapi.json`).
//!
//! Each handler's `#[utoipa::path]` names its path, method, body, replies (errors included,
//! each with its `code`s and the `ErrorBody` schema) and, when it needs a device token,
//! `security(("device_token" = []))`. This module adds what no handler owns: the bearer
//! scheme itself, the tags, and the document's own path. `tests/openapi.rs` holds the
//! document to DESIGN.md's API v1 table.

use utoipa::openapi::path::{HttpMethod, OperationBuilder};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, ResponseBuilder};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Airtext API",
        version = "1",
        description = "Texting from devices without cellular service.\n\n\
            Send the device token from `POST /v1/sessions` as `Authorization: Bearer <token>` on \
            every call but sign-up, sign-in and health. Every error is JSON \
            `{\"code\": \"snake_case\", \"message\": \"what to fix\"}`; clients branch on `code`. \
            A 429 carries `Retry-After` (seconds). Request bodies are at most 64 KiB and unknown \
            fields are refused. Timestamps are RFC 3339 UTC."
    ),
    modifiers(&BearerAuth, &DocumentItself),
    tags(
        (name = "accounts", description = "Sign-up and the signed-in account"),
        (name = "sessions", description = "Device tokens: sign in, sign out, revoke a device"),
        (name = "numbers", description = "The account's own phone number (DID)"),
        (name = "identities", description = "Phone numbers and e-mail addresses the account proves it owns"),
        (name = "health", description = "Liveness for load balancers"),
        (name = "meta", description = "This document"),
    ),
    components(schemas(airtext_api::ErrorBody, airtext_api::ErrorCode, airtext_api::sync::StreamHint))
)]
struct ApiDoc;

/// The name handlers use in `security((…))`.
pub const DEVICE_TOKEN: &str = "device_token";

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            DEVICE_TOKEN,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The device token from POST /v1/sessions (256-bit, base64url)",
                    ))
                    .build(),
            ),
        );
    }
}

/// `GET /v1/openapi.json` is served outside the generated routes (it serves their result), so
/// it is described here.
struct DocumentItself;

impl Modify for DocumentItself {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let operation = OperationBuilder::new()
            .operation_id(Some("openapi"))
            .tag("meta")
            .summary(Some("This OpenAPI 3 document"))
            .response(
                "200",
                ResponseBuilder::new()
                    .description("The OpenAPI document of API v1")
                    .content("application/json", ContentBuilder::new().build())
                    .build(),
            )
            .build();
        openapi
            .paths
            .add_path_operation("/v1/openapi.json", vec![HttpMethod::Get], operation);
    }
}

/// The document's fixed parts; the routes add their paths.
pub fn base() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    #[test]
    fn the_base_names_the_scheme_and_its_own_path() {
        let doc = super::base();
        let json = serde_json::to_value(&doc).unwrap_or_default();
        assert_eq!(
            json["components"]["securitySchemes"]["device_token"]["scheme"],
            "bearer"
        );
        assert!(json["paths"]["/v1/openapi.json"]["get"].is_object());
        assert!(json["components"]["schemas"]["ErrorBody"].is_object());
    }
}
