//! The account's own things, read from and changed at the gateway: `account show`,
//! `numbers search|claim|release`, `identities list|add|verify`, `devices list|revoke`.
//!
//! With `--json`, each prints what the API answers (`Me`, `[Identity]`, `IdentityPending`,
//! `IdentityVerified`, `[Device]`), or, for calls the API answers with no body, the one field
//! that names what was done (`{"number"}`, `{"id"}`).

use std::io::Write;

use airtext_api::accounts::Device;
use airtext_api::identities::{Identity, IdentityKind};
use airtext_api::{DeviceId, IdentityId};
use anyhow::bail;

use super::device::{json_line, short_id};
use super::visible::visible;
use crate::Client;

/// `airtext account …`
#[derive(Debug, clap::Subcommand)]
pub enum Account {
    /// The account: username, e-mail, number, identities and signed-in devices.
    #[command(after_help = "Example:\n  airtext account show --json | jq .number")]
    Show,
}

/// `airtext numbers …`
#[derive(Debug, clap::Subcommand)]
pub enum Numbers {
    /// Numbers you can claim.
    #[command(after_help = "Example:\n  airtext numbers search --area-code 415 --limit 5")]
    Search {
        #[arg(long)]
        area_code: String,
        #[arg(long, default_value = "US")]
        country: String,
        #[arg(long)]
        limit: Option<u32>,
    },
    /// Claim a number as this account's own.
    #[command(after_help = "Example:\n  airtext numbers claim +14155550100")]
    Claim { number: String },
    /// Give the account's number back (nobody can claim it for a quarantine period).
    #[command(after_help = "Example:\n  airtext numbers release")]
    Release {
        /// The number [default: the account's own].
        number: Option<String>,
    },
}

/// `airtext identities …`
#[derive(Debug, clap::Subcommand)]
pub enum Identities {
    /// Phone numbers and e-mail addresses of the account, pending or verified.
    #[command(after_help = "Example:\n  airtext identities list")]
    List,
    /// Add a phone number or e-mail address: the gateway sends a code to it.
    #[command(after_help = "Example:\n  airtext identities add email alice@example.org")]
    Add {
        kind: super::device::Kind,
        value: String,
    },
    /// Finish a verification with the code that was sent.
    #[command(after_help = "Example:\n  airtext identities verify alice@example.org 123456")]
    Verify {
        /// The identity's id (from `identities list`), or its phone number or e-mail address.
        identity: String,
        code: String,
    },
}

/// `airtext devices …`
#[derive(Debug, clap::Subcommand)]
pub enum Devices {
    /// The devices signed in to the account (this one is marked).
    #[command(after_help = "Example:\n  airtext devices list")]
    List,
    /// Sign another device out: its token stops working at once.
    #[command(after_help = "Example:\n  airtext devices revoke 3f2a9c1e")]
    Revoke {
        /// The device's id, or its last characters (as `devices list` shows them).
        device: String,
    },
}

pub async fn account(
    command: &Account,
    client: &Client,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match command {
        Account::Show => {
            let me = client.me().await?;
            if json {
                return json_line(out, &me);
            }
            writeln!(out, "username: @{}", visible(&me.username))?;
            writeln!(out, "account: {}", me.account_id)?;
            let none = || "none".to_owned();
            let email = me.email.as_deref().map(|e| visible(e).into_owned());
            writeln!(out, "e-mail: {}", email.unwrap_or_else(none))?;
            let number = me.number.as_deref().map(|n| visible(n).into_owned());
            writeln!(out, "number: {}", number.unwrap_or_else(none))?;
            writeln!(out, "identities:")?;
            for identity in &me.identities {
                writeln!(out, "  {}", identity_line(identity))?;
            }
            writeln!(out, "devices:")?;
            for device in &me.devices {
                writeln!(out, "  {}", device_line(device))?;
            }
        }
    }
    Ok(())
}

pub async fn numbers(
    command: &Numbers,
    client: &Client,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match command {
        Numbers::Search {
            area_code,
            country,
            limit,
        } => {
            let numbers = client
                .search_numbers(Some(country), Some(area_code), *limit)
                .await?;
            if json {
                json_line(out, &numbers)?;
            } else {
                for number in numbers {
                    writeln!(out, "{}", visible(&number))?;
                }
            }
        }
        Numbers::Claim { number } => {
            let number = client.claim_number(number).await?;
            if json {
                json_line(out, &serde_json::json!({ "number": number }))?;
            } else {
                writeln!(out, "your number is {}", visible(&number))?;
            }
        }
        Numbers::Release { number } => {
            let number = client.release_number(number.as_deref()).await?;
            if json {
                json_line(out, &serde_json::json!({ "number": number }))?;
            } else {
                writeln!(out, "released {}", visible(&number))?;
            }
        }
    }
    Ok(())
}

pub async fn identities(
    command: &Identities,
    client: &Client,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match command {
        Identities::List => {
            let identities = client.me().await?.identities;
            if json {
                json_line(out, &identities)?;
            } else {
                for identity in &identities {
                    writeln!(out, "{}", identity_line(identity))?;
                }
            }
        }
        Identities::Add { kind, value } => {
            let pending = client
                .start_verification(IdentityKind::from(*kind), value)
                .await?;
            if json {
                json_line(out, &pending)?;
            } else {
                writeln!(
                    out,
                    "a code was sent to {0}; finish with: airtext identities verify {0} CODE",
                    visible(value)
                )?;
            }
        }
        Identities::Verify { identity, code } => {
            let id = match identity.parse::<uuid::Uuid>() {
                Ok(id) => IdentityId(id),
                Err(_) => {
                    // An e-mail address has an @ after its first character; anything else
                    // is read as a phone number.
                    let kind = if identity.find('@').is_some_and(|at| at > 0) {
                        IdentityKind::Email
                    } else {
                        IdentityKind::Phone
                    };
                    client.pending_identity(kind, identity).await?
                }
            };
            let verified = client.verify(id, code).await?;
            if json {
                json_line(out, &serde_json::json!({ "status": verified }))?;
            } else {
                writeln!(out, "{} is {}", visible(identity), verified.as_str())?;
            }
        }
    }
    Ok(())
}

pub async fn devices(
    command: &Devices,
    client: &Client,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match command {
        Devices::List => {
            let devices = client.me().await?.devices;
            if json {
                json_line(out, &devices)?;
            } else {
                for device in &devices {
                    writeln!(out, "{}", device_line(device))?;
                }
            }
        }
        Devices::Revoke { device } => {
            let devices = client.me().await?.devices;
            let wanted = device.trim().to_ascii_lowercase();
            let matching: Vec<&Device> = devices
                .iter()
                .filter(|d| !wanted.is_empty() && d.id.to_string().ends_with(&wanted))
                .collect();
            let found = match matching.as_slice() {
                [one] => *one,
                [] => bail!(
                    "no device of this account has id {device:?} (see `airtext devices list`)"
                ),
                _ => bail!("more than one device id ends with {device:?}: give more of it"),
            };
            if found.current {
                bail!(
                    "{} is this device: sign it out with `airtext logout`",
                    found.id
                );
            }
            let id: DeviceId = found.id;
            client.revoke_device(id).await?;
            if json {
                json_line(out, &serde_json::json!({ "id": id }))?;
            } else {
                writeln!(
                    out,
                    "signed out {} ({})",
                    visible(&found.name),
                    short_id(&id.to_string())
                )?;
            }
        }
    }
    Ok(())
}

fn identity_line(identity: &Identity) -> String {
    format!(
        "{}  {}  {}  {}",
        short_id(&identity.id.to_string()),
        identity.kind.as_str(),
        visible(&identity.value),
        identity.status.as_str()
    )
}

fn device_line(device: &Device) -> String {
    format!(
        "{}  {}  cellular {}  last seen {}{}",
        short_id(&device.id.to_string()),
        visible(&device.name),
        if device.has_cellular { "yes" } else { "no" },
        device.last_seen_at.format("%Y-%m-%d %H:%M"),
        if device.current {
            "  (this device)"
        } else {
            ""
        }
    )
}
