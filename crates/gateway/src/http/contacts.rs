//! Contact settings: `PUT /v1/contacts/{address}`, `DELETE /v1/contacts/{address}` and
//! `GET /v1/contacts`.
//!
//! A contact is keyed by the normalised address, so `(415) 555-0100` and `+14155550100` are
//! one contact. Every change appends a `contact.updated` (or `contact.deleted`) event, which
//! is how the account's other devices learn of it. A blocked contact's texts reach no device
//! of the account and are not stored; the sender is not told (see `store::rules::blocked_by`).

use airtext_api::contacts::{Contact, PutContact};
use airtext_api::ErrorBody;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{not_found_as, ApiError, ApiResult};
use crate::http::extract::{ApiJson, ApiPath, AuthDevice};
use crate::http::AppState;
use crate::routing;

/// Longest contact name, in characters.
pub const MAX_NAME_CHARS: usize = 100;

/// `GET /v1/contacts`
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ContactList {
    pub contacts: Vec<Contact>,
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(put_contact, delete_contact))
        .routes(routes!(list_contacts))
}

/// Sets how to text one address (path, fallback), its display name, and whether it is blocked
/// (`blocked` absent: unchanged).
#[utoipa::path(
    put,
    path = "/v1/contacts/{address}",
    tag = "contacts",
    operation_id = "put_contact",
    security(("device_token" = [])),
    params(("address" = String, Path, description = "A phone number, @username or e-mail address (URL-encoded)")),
    request_body = PutContact,
    responses(
        (status = 200, description = "Saved; a `contact.updated` event tells the other devices", body = Contact),
        (status = 400, description = "`bad_request`, `invalid_address`, or `invalid_field` (a name over 100 characters)", body = ErrorBody),
        (status = 401, description = "`unauthorized`: no valid device token", body = ErrorBody),
    )
)]
async fn put_contact(
    State(state): State<AppState>,
    auth: AuthDevice,
    ApiPath(address): ApiPath<String>,
    ApiJson(request): ApiJson<PutContact>,
) -> ApiResult<Json<Contact>> {
    let address = routing::parse_address(&state, &address)?;
    let name = request
        .name
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty());
    if let Some(name) = &name {
        // Control characters were refused at the edge (`http::fields`).
        let chars = name.chars().count();
        if chars > MAX_NAME_CHARS {
            return Err(ApiError::invalid_field(format!(
                "name must be at most {MAX_NAME_CHARS} characters; this one has {chars}"
            )));
        }
    }
    let blocked = match request.blocked {
        Some(blocked) => blocked,
        None => state
            .store
            .contacts(auth.account_id)
            .await?
            .into_iter()
            .any(|c| c.address == address.as_str() && c.blocked),
    };
    let contact = Contact {
        address: address.as_str().to_owned(),
        path: request.path,
        fallback: request.fallback,
        name,
        blocked,
        updated_at: chrono::Utc::now(),
    };
    state
        .store
        .put_contact(auth.account_id, contact.clone())
        .await?;
    Ok(Json(contact))
}

/// Deletes the setting for one address (its name, path, block); the conversation stays.
#[utoipa::path(
    delete,
    path = "/v1/contacts/{address}",
    tag = "contacts",
    operation_id = "delete_contact",
    security(("device_token" = [])),
    params(("address" = String, Path, description = "A phone number, @username or e-mail address (URL-encoded)")),
    responses(
        (status = 204, description = "Deleted; a `contact.deleted` event tells the other devices"),
        (status = 400, description = "`invalid_address`", body = ErrorBody),
        (status = 401, description = "`unauthorized`: no valid device token", body = ErrorBody),
        (status = 404, description = "`not_found`: no contact setting for this address", body = ErrorBody),
    )
)]
async fn delete_contact(
    State(state): State<AppState>,
    auth: AuthDevice,
    ApiPath(address): ApiPath<String>,
) -> ApiResult<StatusCode> {
    let address = routing::parse_address(&state, &address)?;
    state
        .store
        .delete_contact(auth.account_id, address.as_str(), chrono::Utc::now())
        .await
        .map_err(not_found_as("contact"))?;
    Ok(StatusCode::NO_CONTENT)
}

/// Every contact setting of this account.
#[utoipa::path(
    get,
    path = "/v1/contacts",
    tag = "contacts",
    operation_id = "list_contacts",
    security(("device_token" = [])),
    responses(
        (status = 200, description = "The account's contact settings", body = ContactList),
        (status = 401, description = "`unauthorized`: no valid device token", body = ErrorBody),
    )
)]
async fn list_contacts(
    State(state): State<AppState>,
    auth: AuthDevice,
) -> ApiResult<Json<ContactList>> {
    let contacts = state.store.contacts(auth.account_id).await?;
    Ok(Json(ContactList { contacts }))
}
