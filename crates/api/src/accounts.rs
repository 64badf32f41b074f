//! Accounts, sessions (device tokens) and `/v1/me`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::identities::Identity;
use crate::{AccountId, DeviceId};

/// `POST /v1/accounts`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct SignUp {
    /// 3–32 of `a-z 0-9 _ .`, case-insensitive.
    pub username: String,
    /// At least 8 characters.
    pub password: String,
    #[serde(default)]
    pub email: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct AccountCreated {
    pub account_id: AccountId,
    pub username: String,
}

/// `POST /v1/sessions`: signs a device in.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    pub username: String,
    pub password: String,
    pub device_name: String,
    /// Whether this device can send SMS itself (a phone, or a tablet with a modem).
    #[serde(default)]
    pub has_cellular: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Session {
    /// The device token: send it as `Authorization: Bearer …`. Shown once; the gateway keeps
    /// only its hash.
    pub token: String,
    pub device_id: DeviceId,
    pub account_id: AccountId,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Device {
    pub id: DeviceId,
    pub name: String,
    pub has_cellular: bool,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    /// Whether this is the device that made the request.
    pub current: bool,
}

/// `GET /v1/me`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Me {
    pub account_id: AccountId,
    pub username: String,
    pub email: Option<String>,
    /// The account's own phone number (DID), if it claimed one.
    pub number: Option<String>,
    pub identities: Vec<Identity>,
    pub devices: Vec<Device>,
}

/// `POST /v1/accounts/me/password`: a new password, given the current one.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct ChangePassword {
    pub current_password: String,
    /// At least 8 characters.
    pub new_password: String,
    /// Sign every other device of the account out [default: true]; the device that asks
    /// stays signed in either way.
    #[serde(default)]
    pub sign_out_other_devices: Option<bool>,
}

/// `POST /v1/password-resets`: asks for a reset code. The answer is the same whether or not
/// the account exists.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct RequestPasswordReset {
    pub username: String,
}

/// `POST /v1/password-resets/confirm`: the code that was sent, and the new password.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct ConfirmPasswordReset {
    pub username: String,
    /// The 6 digits sent to the account's verified e-mail or phone.
    pub code: String,
    /// At least 8 characters.
    pub new_password: String,
}

/// `DELETE /v1/accounts/me`: the password, to be sure it is the owner.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct DeleteAccount {
    pub password: String,
}
