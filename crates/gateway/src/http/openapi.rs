//! The OpenAPI 3 document, generated from the handlers' annotations and the `airtext-api`
//! types (served at `/v1/openapi.json`).

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Airtext API",
        version = "1",
        description = "Texting from devices without cellular service. Every error is {\"code\", \"message\"}."
    ),
    modifiers(&BearerAuth),
    components(schemas(airtext_api::ErrorBody, airtext_api::sync::StreamHint))
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "device_token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document's fixed parts; the routes add their paths.
pub fn base() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
