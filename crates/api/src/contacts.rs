//! Contact settings, synced across the account's devices: which path to text a peer by, its
//! name, and whether its texts are blocked.

use serde::{Deserialize, Serialize};

use chrono::{DateTime, Utc};

/// Which path to use for a contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum PathChoice {
    /// Cloud when the peer is in-network, when the device has no cellular, or when roaming;
    /// cellular otherwise.
    #[default]
    Auto,
    Cloud,
    Cellular,
}

impl PathChoice {
    pub fn as_str(self) -> &'static str {
        match self {
            PathChoice::Auto => "auto",
            PathChoice::Cloud => "cloud",
            PathChoice::Cellular => "cellular",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "auto" => Some(PathChoice::Auto),
            "cloud" => Some(PathChoice::Cloud),
            "cellular" => Some(PathChoice::Cellular),
            _ => None,
        }
    }
}

/// `PUT /v1/contacts/{address}`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct PutContact {
    pub path: PathChoice,
    /// Whether a failure on the chosen path may use the other path without asking.
    pub fallback: bool,
    #[serde(default)]
    pub name: Option<String>,
    /// Texts from a blocked address reach no device of this account; the sender is not told.
    /// Absent: stays as it is (a client that sets only the path never unblocks anyone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub blocked: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Contact {
    /// The normalised address.
    pub address: String,
    pub path: PathChoice,
    pub fallback: bool,
    pub name: Option<String>,
    /// Texts from this address reach no device of the account (neither stored nor shown).
    #[serde(default)]
    pub blocked: bool,
    pub updated_at: DateTime<Utc>,
}
