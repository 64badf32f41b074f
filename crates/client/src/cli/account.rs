//! The account's own things, read from and changed at the gateway:
//! `account show|password|delete`, `numbers search|claim|release`, `identities list|add|verify`,
//! `devices list|revoke`.
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
    /// Change the account's password. The current one comes from AIRTEXT_PASSWORD and the new
    /// one from AIRTEXT_NEW_PASSWORD, or, with --password-stdin, from the first two lines of
    /// standard input. This device stays signed in; the others are signed out.
    #[command(
        after_help = "Example:\n  printf '%s\\n%s\\n' \"$OLD\" \"$NEW\" | airtext account password --password-stdin"
    )]
    Password {
        /// Keep the account's other devices signed in.
        #[arg(long)]
        keep_other_devices: bool,
        /// Read the current and the new password from the first two lines of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Delete the account: every message, conversation, contact, identity and device of it,
    /// on every device; its number is released. This cannot be undone. The password comes from
    /// AIRTEXT_PASSWORD or, with --password-stdin, the first line of standard input.
    #[command(after_help = "Example:\n  AIRTEXT_PASSWORD=… airtext account delete --yes")]
    Delete {
        /// Confirm that everything of the account is to be deleted.
        #[arg(long)]
        yes: bool,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
}

/// One secret per variable named: from the first lines of standard input when asked, else from
/// the variables themselves. Never from the command line, where other users could read them.
fn secrets(from_stdin: bool, variables: &[&str]) -> anyhow::Result<Vec<String>> {
    let mut found = Vec::with_capacity(variables.len());
    if from_stdin {
        let stdin = std::io::stdin();
        for (n, _) in variables.iter().enumerate() {
            let mut line = String::new();
            std::io::BufRead::read_line(&mut stdin.lock(), &mut line)?;
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                bail!(
                    "line {} of standard input is empty: give one password per line",
                    n + 1
                );
            }
            found.push(line.to_owned());
        }
        return Ok(found);
    }
    for variable in variables {
        match std::env::var(variable) {
            Ok(value) if !value.is_empty() => found.push(value),
            _ => bail!("no password in {variable}: set it, or pass --password-stdin"),
        }
    }
    Ok(found)
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
    /// Remove a phone number or e-mail address from the account (verified or not); another
    /// account may verify it then.
    #[command(after_help = "Example:\n  airtext identities remove alice@example.org")]
    Remove {
        /// The identity's id (from `identities list`), or its phone number or e-mail address.
        identity: String,
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
        Account::Password {
            keep_other_devices,
            password_stdin,
        } => {
            let [current, new] = <[String; 2]>::try_from(secrets(
                *password_stdin,
                &["AIRTEXT_PASSWORD", "AIRTEXT_NEW_PASSWORD"],
            )?)
            .map_err(|_| anyhow::anyhow!("two passwords are needed: the current and the new"))?;
            client
                .change_password(&current, &new, !keep_other_devices)
                .await?;
            if json {
                return json_line(out, &serde_json::json!({ "changed": "password" }));
            }
            let others = if *keep_other_devices {
                "other devices stay signed in"
            } else {
                "other devices are signed out"
            };
            writeln!(
                out,
                "password changed; this device stays signed in, {others}"
            )?;
        }
        Account::Delete {
            yes,
            password_stdin,
        } => {
            if !yes {
                bail!(
                    "this deletes the account, every message, conversation, contact and \
                     identity of it on every device, and releases its number; it cannot be \
                     undone. Run again with --yes to delete it"
                );
            }
            let password = secrets(*password_stdin, &["AIRTEXT_PASSWORD"])?
                .pop()
                .unwrap_or_default();
            let me = client.me().await?;
            client.delete_account(&password).await?;
            if json {
                return json_line(out, &serde_json::json!({ "deleted": me.account_id }));
            }
            writeln!(
                out,
                "deleted the account @{} and signed this device out",
                visible(&me.username)
            )?;
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
        Identities::Remove { identity } => {
            let removed = client.remove_identity(identity).await?;
            if json {
                json_line(out, &removed)?;
            } else {
                writeln!(out, "removed {}", identity_line(&removed))?;
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
