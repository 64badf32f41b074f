//! The signed-in profile this cache belongs to: one row.

use airtext_api::{AccountId, DeviceId};
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use super::{parse_uuid, CacheError, Migration};

pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "profile",
    sql: "CREATE TABLE profile (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        gateway_url TEXT NOT NULL,
        account_id TEXT NOT NULL,
        username TEXT NOT NULL,
        device_id TEXT NOT NULL,
        number TEXT
    );",
}];

/// Who this device is signed in as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    pub gateway_url: String,
    pub account_id: AccountId,
    pub username: String,
    pub device_id: DeviceId,
    /// The account's own number (DID), once claimed.
    pub number: Option<String>,
}

impl Profile {
    /// How this account appears as the sender of its own texts.
    pub fn own_address(&self) -> String {
        self.number
            .clone()
            .unwrap_or_else(|| format!("@{}", self.username))
    }
}

pub fn load(conn: &Connection) -> Result<Option<Profile>, CacheError> {
    Ok(super::one(
        conn,
        "SELECT gateway_url, account_id, username, device_id, number FROM profile WHERE id = 1",
        [],
        |row| {
            Ok(Profile {
                gateway_url: row.get(0)?,
                account_id: parse_uuid(&row.get::<_, String>(1)?)?,
                username: row.get(2)?,
                device_id: parse_uuid(&row.get::<_, String>(3)?)?,
                number: row.get(4)?,
            })
        },
    )
    .optional()?)
}

pub fn save(conn: &Connection, profile: &Profile) -> Result<(), CacheError> {
    super::exec(
        conn,
        "INSERT INTO profile (id, gateway_url, account_id, username, device_id, number)
         VALUES (1, ?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (id) DO UPDATE SET gateway_url = excluded.gateway_url,
            account_id = excluded.account_id, username = excluded.username,
            device_id = excluded.device_id, number = excluded.number",
        params![
            profile.gateway_url,
            profile.account_id.to_string(),
            profile.username,
            profile.device_id.to_string(),
            profile.number
        ],
    )?;
    Ok(())
}
