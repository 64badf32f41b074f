//! `GET /v1/me`: the signed-in account as its devices see it — username, e-mail, number,
//! identities (pending and verified) and signed-in devices, with the asking device flagged.
//!
//! Everything is read for the authenticated account only; nothing here takes an id.

use airtext_api::accounts::{Device, Me};
use airtext_api::identities::Identity;
use airtext_api::ErrorBody;
use axum::extract::State;
use axum::Json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ApiResult};
use crate::http::extract::AuthDevice;
use crate::http::AppState;
use crate::store::IdentityRecord;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(me))
}

/// The signed-in account, its identities and its devices.
#[utoipa::path(
    get,
    path = "/v1/me",
    tag = "accounts",
    operation_id = "me",
    security(("device_token" = [])),
    responses(
        (status = 200, description = "The account", body = Me),
        (status = 401, description = "`unauthorized`: no valid device token", body = ErrorBody),
    )
)]
async fn me(State(state): State<AppState>, auth: AuthDevice) -> ApiResult<Json<Me>> {
    let store = &state.store;
    // The account first: the other two reads wait until whatever they (and so it) could
    // have seen is durable, which the account lookup alone does not.
    let account = store.account(auth.account_id).await?;
    let (identities, devices) = tokio::try_join!(
        store.identities(auth.account_id),
        store.devices(auth.account_id),
    )?;
    // A live token whose account is gone: treat it as signed out.
    let account = account.ok_or_else(|| {
        ApiError::unauthorized("this device's account no longer exists: sign up again")
    })?;
    let mut devices: Vec<Device> = devices
        .into_iter()
        .map(|d| Device {
            current: d.id == auth.device_id,
            id: d.id,
            name: d.name,
            has_cellular: d.has_cellular,
            created_at: d.created_at,
            last_seen_at: d.last_seen_at,
        })
        .collect();
    devices.sort_by_key(|d| d.created_at);
    Ok(Json(Me {
        account_id: account.id,
        username: account.username,
        email: account.email,
        number: account.number,
        identities: identities.into_iter().map(identity_dto).collect(),
        devices,
    }))
}

/// The wire form of a stored identity (never its code hash).
pub fn identity_dto(record: IdentityRecord) -> Identity {
    Identity {
        id: record.id,
        kind: record.kind,
        value: record.value,
        status: record.status,
        created_at: record.created_at,
        verified_at: record.verified_at,
    }
}
