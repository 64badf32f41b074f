//! Id newtypes. Server-made ids are UUIDv7, so they sort by creation time (message history pages
//! by id); a `ClientId` is any UUID a sending device picks to make its send idempotent.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(value_type = String, format = Uuid))]
        #[cfg_attr(feature = "ts", derive(ts_rs::TS))]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new time-ordered id (UUIDv7).
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            pub fn as_uuid(&self) -> &Uuid {
                &self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }

        impl From<Uuid> for $name {
            fn from(value: Uuid) -> Self {
                Self(value)
            }
        }
    };
}

id_type!(
    /// An account: one person, one username, at most one phone number.
    AccountId
);
id_type!(
    /// A signed-in device of an account (one device token).
    DeviceId
);
id_type!(
    /// One account's copy of a message.
    MessageId
);
id_type!(
    /// One account's thread with one peer address.
    ConversationId
);
id_type!(
    /// A phone number or e-mail address an account claims, pending or verified.
    IdentityId
);
id_type!(
    /// Chosen by the sending device; `(account, client_id)` is unique, so a retried send
    /// returns the first result instead of making a second message.
    ClientId
);
