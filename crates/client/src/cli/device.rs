//! The commands that use an Airtext account: sign-up and sign-in, texting, sync, reading,
//! search, read markers, deleting, watching, contacts (the account's own things, numbers,
//! identities and devices, are in [`super::account`]). Each is a thin call into
//! [`crate::Client`]; this file only parses, prompts and prints.
//!
//! Fresh by default: a command that reads this device's copy (conversations, messages,
//! search, outbox, contact list) first pulls what is new, bounded by [`FRESH_WITHIN`]; with
//! `--offline`, or when the gateway cannot be reached, it answers from the copy as it is and
//! says on standard error how old it is.
//!
//! Passwords come from `AIRTEXT_PASSWORD` or one line of standard input
//! (`--password-stdin`), never from the command line (other users can read argv).
//! With `--json`, listings print one JSON array using the API's field names, and `watch` one
//! JSON object per line.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::Duration;

use airtext_api::contacts::PathChoice;
use airtext_api::conversations::{muted_always, PatchConversation};
use airtext_api::identities::IdentityKind;
use airtext_api::SendStatus;
use anyhow::{bail, Context};
use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::cache::messages::CachedMessage;
use crate::cellular::at_modem::{AtModem, AtModemConfig};
use crate::cli::visible::visible;
use crate::cli::{account, exit};
use crate::cloud::ProxyUrl;
use crate::events::ClientEvent;
use crate::{Client, ClientOptions};

/// Options every account command takes (before or after the command name).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Globals {
    /// The gateway, e.g. https://sms.example.org (remembered after login).
    #[arg(long, global = true, env = "AIRTEXT_GATEWAY", value_name = "URL")]
    pub gateway: Option<String>,
    /// This device's directory (one directory = one device) [default: the platform data
    /// directory].
    #[arg(long, global = true, env = "AIRTEXT_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Send all traffic through this proxy: socks5h://HOST:PORT (names resolved by the
    /// proxy, e.g. Tor), socks5://HOST:PORT or http://HOST:PORT. Never falls back to a direct
    /// connection.
    #[arg(long, global = true, env = "AIRTEXT_PROXY", value_name = "URL")]
    pub proxy: Option<String>,
    /// Print JSON (listings as arrays with the API's field names; `watch` one object per line).
    #[arg(long, global = true)]
    pub json: bool,
    /// Answer from this device's copy alone, without asking the gateway first (reading
    /// commands say how old the copy is).
    #[arg(long, global = true)]
    pub offline: bool,
    /// An AT-command modem on this serial port gives the device a cellular path (the SIM
    /// PIN, if asked for, comes from AIRTEXT_SIM_PIN).
    #[arg(long, global = true, env = "AIRTEXT_MODEM", value_name = "PATH")]
    pub modem: Option<String>,
}

/// `airtext conversation …`
#[derive(Debug, clap::Subcommand)]
pub enum Conversation {
    /// Delete the conversation with PEER and every message in it, on every device of the
    /// account (PEER keeps their copy; the contact stays). This cannot be undone.
    #[command(after_help = "Example:\n  airtext conversation delete @bob --yes")]
    Delete {
        peer: String,
        /// Confirm that every message of the conversation is to be deleted.
        #[arg(long)]
        yes: bool,
    },
    /// Hide the conversation with PEER from `airtext conversations` on every device (a new
    /// text from PEER brings it back).
    #[command(after_help = "Example:\n  airtext conversation archive @bob")]
    Archive { peer: String },
    /// List the conversation with PEER again.
    #[command(after_help = "Example:\n  airtext conversation unarchive @bob")]
    Unarchive { peer: String },
    /// Silence notifications of the conversation with PEER on every device.
    #[command(after_help = "Example:\n  airtext conversation mute @bob --for day")]
    Mute {
        peer: String,
        /// For an hour, a day, or until unmuted.
        #[arg(long = "for", value_enum)]
        duration: MuteFor,
    },
    /// Notify again for the conversation with PEER.
    #[command(after_help = "Example:\n  airtext conversation unmute @bob")]
    Unmute { peer: String },
    /// Name the conversation with PEER on every device (an empty NAME clears it).
    #[command(after_help = "Example:\n  airtext conversation name @bob 'Bob from work'")]
    Name { peer: String, name: String },
}

/// How long `airtext conversation mute` silences a conversation.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum MuteFor {
    Hour,
    Day,
    Always,
}

impl MuteFor {
    /// The `muted_until` the gateway stores for a mute starting `now`.
    fn until(self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            MuteFor::Hour => now + chrono::Duration::hours(1),
            MuteFor::Day => now + chrono::Duration::days(1),
            MuteFor::Always => muted_always(),
        }
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct PasswordArgs {
    /// Read the password from the first line of standard input (else AIRTEXT_PASSWORD).
    #[arg(long)]
    pub password_stdin: bool,
}

/// The account commands (flattened into the top-level command list).
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create an account and sign this device in to it.
    #[command(
        after_help = "Example:\n  AIRTEXT_PASSWORD=… airtext --gateway https://sms.example.org signup alice"
    )]
    Signup {
        username: String,
        #[arg(long)]
        email: Option<String>,
        /// How this device is listed among the account's devices.
        #[arg(long, default_value = "airtext CLI")]
        device_name: String,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Sign this device in (and pull the account's history).
    #[command(
        after_help = "Example:\n  echo \"$PASSWORD\" | airtext --gateway https://sms.example.org login alice --password-stdin"
    )]
    Login {
        username: String,
        #[arg(long, default_value = "airtext CLI")]
        device_name: String,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Sign this device out (its token stops working; its local cache is deleted).
    #[command(after_help = "Example:\n  airtext logout")]
    Logout,
    /// The account at the gateway.
    #[command(subcommand, after_help = "Example:\n  airtext account show")]
    Account(account::Account),
    /// Find, claim and release a phone number of your own.
    #[command(
        subcommand,
        after_help = "Example:\n  airtext numbers search --area-code 415 --limit 5"
    )]
    Numbers(account::Numbers),
    /// The account's phone numbers and e-mail addresses.
    #[command(subcommand, after_help = "Example:\n  airtext identities list")]
    Identities(account::Identities),
    /// The devices signed in to the account.
    #[command(subcommand, after_help = "Example:\n  airtext devices list")]
    Devices(account::Devices),
    /// One conversation as a whole.
    #[command(
        subcommand,
        after_help = "Example:\n  airtext conversation delete @bob --yes"
    )]
    Conversation(Conversation),
    /// Prove you own a phone number or e-mail address (a code is sent to it and asked for).
    #[command(after_help = "Examples:\n  airtext verify email alice@example.org\n  \
                            airtext verify phone +14155550100 --code 123456")]
    Verify {
        kind: Kind,
        value: String,
        /// The code you received; without it, a code is sent and asked for.
        #[arg(long)]
        code: Option<String>,
    },
    /// Send a text (written locally first; sent now, or queued and retried: exit code 3).
    #[command(after_help = "Examples:\n  airtext send @bob 'see you at 6'\n  \
                            airtext send +14155550123 'on my way' --via cellular")]
    Send {
        /// A phone number, @username or e-mail address.
        to: String,
        text: String,
        /// Which path: auto (the contact's setting decides), cloud or cellular.
        #[arg(long)]
        via: Option<Via>,
    },
    /// Pull everything new from the gateway and send everything queued now.
    #[command(after_help = "Example:\n  airtext sync --json")]
    Sync,
    /// List conversations, most recent first (archived ones only with --archived).
    #[command(after_help = "Example:\n  airtext conversations --limit 10")]
    Conversations {
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Include archived conversations.
        #[arg(long)]
        archived: bool,
    },
    /// Show the latest messages with one peer (each with the end of its id).
    #[command(after_help = "Example:\n  airtext messages @bob --limit 20")]
    Messages {
        peer: String,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Search message texts and peers.
    #[command(after_help = "Example:\n  airtext search 'station'")]
    Search {
        query: String,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Mark the thread with a peer read, on every device of the account.
    #[command(after_help = "Example:\n  airtext read @bob")]
    Read { peer: String },
    /// Delete a message on every device of the account.
    #[command(after_help = "Example:\n  airtext delete 9c41d2e7")]
    Delete {
        /// The message's id, or its last characters (as `airtext messages` shows them).
        message_id: String,
    },
    /// Stay connected and print each new message as it arrives (Ctrl-C to stop).
    #[command(after_help = "Example:\n  airtext watch --json | while read -r line; do …; done")]
    Watch,
    /// Texts waiting to be sent.
    #[command(after_help = "Example:\n  airtext outbox")]
    Outbox,
    /// Contacts: their names and how to text them.
    #[command(subcommand, after_help = "Example:\n  airtext contact list")]
    Contact(Contact),
}

impl Command {
    /// Whether the command answers from this device's copy (and so first pulls what is new,
    /// unless `--offline`).
    fn reads_the_cache(&self) -> bool {
        matches!(
            self,
            Command::Conversations { .. }
                | Command::Messages { .. }
                | Command::Search { .. }
                | Command::Outbox
                | Command::Contact(Contact::List)
        )
    }
}

#[derive(Debug, clap::Subcommand)]
pub enum Contact {
    /// Contacts with a name or a path setting.
    #[command(after_help = "Example:\n  airtext contact list --json")]
    List,
    /// How to text a peer: auto, cloud or cellular (synced to your other devices).
    #[command(
        after_help = "Example:\n  airtext contact set-path +14155550123 cellular --fallback true"
    )]
    SetPath {
        peer: String,
        path: Via,
        /// Whether a failure on that path may use the other one without asking.
        #[arg(long)]
        fallback: Option<bool>,
    },
    /// Name a contact (synced to your other devices); without NAME the name is removed.
    #[command(
        after_help = "Examples:\n  airtext contact set-name +14155550123 'Ann Example'\n  \
                            airtext contact set-name +14155550123"
    )]
    SetName { peer: String, name: Option<String> },
    /// Block a peer: their texts reach none of your devices and are not kept; they are not told.
    #[command(after_help = "Example:\n  airtext contact block +14155550123")]
    Block { peer: String },
    /// Unblock a peer: their next texts arrive again.
    #[command(after_help = "Example:\n  airtext contact unblock +14155550123")]
    Unblock { peer: String },
    /// Delete a contact's name, path and block (the conversation stays).
    #[command(after_help = "Example:\n  airtext contact delete +14155550123")]
    Delete { peer: String },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Kind {
    Phone,
    Email,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Via {
    Auto,
    Cloud,
    Cellular,
}

impl From<Kind> for IdentityKind {
    fn from(kind: Kind) -> Self {
        match kind {
            Kind::Phone => IdentityKind::Phone,
            Kind::Email => IdentityKind::Email,
        }
    }
}

impl From<Via> for PathChoice {
    fn from(via: Via) -> Self {
        match via {
            Via::Auto => PathChoice::Auto,
            Via::Cloud => PathChoice::Cloud,
            Via::Cellular => PathChoice::Cellular,
        }
    }
}

fn password(args: &PasswordArgs) -> anyhow::Result<String> {
    if args.password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from standard input")?;
        let password = line.trim_end_matches(['\n', '\r']).to_owned();
        if password.is_empty() {
            bail!("standard input gave an empty password");
        }
        return Ok(password);
    }
    match std::env::var("AIRTEXT_PASSWORD") {
        Ok(password) if !password.is_empty() => Ok(password),
        _ => bail!("no password: set AIRTEXT_PASSWORD or pass --password-stdin"),
    }
}

async fn options(globals: &Globals) -> anyhow::Result<ClientOptions> {
    let data_dir = match &globals.data_dir {
        Some(dir) => dir.clone(),
        None => ClientOptions::default_data_dir()?,
    };
    let mut options = ClientOptions::new(data_dir)?;
    options.gateway = globals.gateway.clone();
    options.proxy = globals
        .proxy
        .as_deref()
        .filter(|p| !p.is_empty())
        .map(str::parse::<ProxyUrl>)
        .transpose()?;
    if let Some(path) = globals.modem.as_deref().filter(|p| !p.is_empty()) {
        let mut config = AtModemConfig::new(path);
        config.pin = std::env::var("AIRTEXT_SIM_PIN")
            .ok()
            .filter(|p| !p.is_empty());
        let modem = AtModem::open(config)
            .await
            .with_context(|| format!("the modem on {path}"))?;
        options.cellular = std::sync::Arc::new(modem);
    }
    Ok(options)
}

pub(crate) fn json_line(out: &mut dyn Write, value: &impl Serialize) -> anyhow::Result<()> {
    serde_json::to_writer(&mut *out, value)?;
    writeln!(out)?;
    Ok(())
}

/// The end of an id, as listings show it: server ids are UUIDv7, whose first characters are
/// a timestamp nearby ids share and whose last ones are random.
pub(crate) fn short_id(id: &str) -> &str {
    id.get(id.len().saturating_sub(8)..).unwrap_or(id)
}

fn message_line(m: &CachedMessage) -> String {
    let arrow = match m.direction {
        airtext_api::messages::Direction::Outbound => "→",
        airtext_api::messages::Direction::Inbound => "←",
    };
    let path = m.path.map(|p| p.as_str()).unwrap_or("-");
    let id = m.id.map(|id| id.to_string());
    format!(
        "{} {} {arrow} {}  [{} via {path}]  {}",
        m.created_at.format("%Y-%m-%d %H:%M"),
        id.as_deref().map(short_id).unwrap_or("--------"),
        visible(&m.peer),
        m.status.as_str(),
        visible(&m.body)
    )
}

/// How long a reading command waits for the gateway before it answers from this device's
/// copy as it is.
pub const FRESH_WITHIN: Duration = Duration::from_secs(10);

/// Before a reading command answers from the cache: one incremental sync bounded by
/// [`FRESH_WITHIN`] (none with `--offline`). When the cache could not be brought up to date,
/// a note on standard error says so and how old it is; a device the gateway no longer
/// accepts is an error.
async fn freshen(client: &Client, offline: bool) -> anyhow::Result<()> {
    let why = if offline {
        "offline".to_owned()
    } else {
        match tokio::time::timeout(FRESH_WITHIN, client.sync()).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e @ (crate::Error::SignedOut | crate::Error::Api { status: 401, .. }))) => {
                return Err(e.into())
            }
            Ok(Err(e)) => format!("not up to date ({e})"),
            Err(_) => format!(
                "not up to date (the gateway did not answer within {} s)",
                FRESH_WITHIN.as_secs()
            ),
        }
    };
    let synced_at = client.synced_at().await?;
    eprintln!(
        "airtext: {}: this device's copy, {}",
        visible(&why),
        age(synced_at, chrono::Utc::now())
    );
    Ok(())
}

/// "last synced 3 min ago (2026-01-02 10:04 UTC)", or "never synced".
pub fn age(synced_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    let Some(at) = synced_at else {
        return "never synced".to_owned();
    };
    let secs = now.signed_duration_since(at).num_seconds().max(0);
    let ago = match secs {
        0..=59 => format!("{secs} s"),
        60..=3599 => format!("{} min", secs / 60),
        3600..=172_799 => format!("{} h", secs / 3600),
        _ => format!("{} days", secs / 86_400),
    };
    format!(
        "last synced {ago} ago ({} UTC)",
        at.format("%Y-%m-%d %H:%M")
    )
}

/// Runs an account command.
pub fn run(command: &Command, globals: &Globals, out: &mut dyn Write) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run_async(command, globals, out))
}

async fn run_async(
    command: &Command,
    globals: &Globals,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let client = Client::open(options(globals).await?).await?;
    let json = globals.json;
    if command.reads_the_cache() {
        freshen(&client, globals.offline).await?;
    } else if globals.offline {
        bail!(
            "--offline only applies to commands that read this device's copy \
             (conversations, messages, search, outbox, contact list)"
        );
    }
    match command {
        Command::Signup {
            username,
            email,
            device_name,
            password: p,
        } => {
            let signed = client
                .sign_up(username, &password(p)?, email.as_deref(), device_name)
                .await?;
            if json {
                json_line(out, &signed.profile)?;
            } else {
                writeln!(
                    out,
                    "signed up and signed in as @{}",
                    visible(&signed.profile.username)
                )?;
            }
        }
        Command::Login {
            username,
            device_name,
            password: p,
        } => {
            let signed = client.sign_in(username, &password(p)?, device_name).await?;
            client.sync().await?;
            if json {
                json_line(out, &signed.profile)?;
            } else {
                writeln!(out, "signed in as @{}", visible(&signed.profile.username))?;
            }
        }
        Command::Logout => {
            client.sign_out().await?;
            if !json {
                writeln!(out, "signed out")?;
            }
        }
        Command::Account(command) => account::account(command, &client, json, out).await?,
        Command::Numbers(command) => account::numbers(command, &client, json, out).await?,
        Command::Identities(command) => {
            account::identities(command, &client, json, out).await?;
        }
        Command::Devices(command) => account::devices(command, &client, json, out).await?,
        Command::Conversation(Conversation::Delete { peer, yes }) => {
            if !yes {
                bail!(
                    "this deletes the conversation with {} and every message in it on every \
                     device of the account (they keep their copy); it cannot be undone. Run \
                     again with --yes to delete it",
                    visible(peer)
                );
            }
            let id = client.delete_conversation(peer).await?;
            if json {
                json_line(out, &serde_json::json!({ "deleted": id }))?;
            } else {
                writeln!(out, "deleted the conversation with {}", visible(peer))?;
            }
        }
        Command::Conversation(change) => {
            if let Some((peer, patch, done)) = conversation_patch(change) {
                let updated = client.update_conversation(peer, patch).await?;
                if json {
                    json_line(out, &updated)?;
                } else {
                    writeln!(out, "{done} the conversation with {}", visible(peer))?;
                }
            }
        }
        Command::Verify { kind, value, code } => {
            let kind = IdentityKind::from(*kind);
            let (identity, code) = match code {
                Some(code) => (client.pending_identity(kind, value).await?, code.clone()),
                None => {
                    let pending = client.start_verification(kind, value).await?;
                    eprint!("a code was sent to {}; type it: ", visible(value));
                    let mut line = String::new();
                    std::io::stdin().lock().read_line(&mut line)?;
                    (pending.identity_id, line.trim().to_owned())
                }
            };
            let status = client.verify(identity, &code).await?;
            if json {
                json_line(out, &serde_json::json!({ "status": status }))?;
            } else {
                writeln!(out, "{} is {}", visible(value), status.as_str())?;
            }
        }
        Command::Send { to, text, via } => {
            let message = client.send(to, text, via.map(PathChoice::from)).await?;
            if json {
                json_line(out, &message)?;
            } else {
                writeln!(out, "{}", message_line(&message))?;
            }
            out.flush()?;
            match message.status {
                // `queued` is also what the gateway answers for a text it accepted and holds for
                // a carrier: only a text still in this device's outbox is "queued for later".
                SendStatus::Queued => {
                    let session = client.session().await?;
                    let id = message.local_id;
                    let not_yet = || "it has not reached the gateway yet".to_owned();
                    match session.outbox().await {
                        // Accepted by the gateway, which holds it for a carrier.
                        Ok(waiting) if !waiting.iter().any(|e| e.message == id) => {}
                        Ok(waiting) => {
                            let why = waiting
                                .into_iter()
                                .find(|e| e.message == id)
                                .and_then(|e| e.last_error)
                                .unwrap_or_else(not_yet);
                            return Err(exit::Queued(why).into());
                        }
                        // Unreadable now: "queued" is the safe answer (never "send again").
                        Err(_) => return Err(exit::Queued(not_yet()).into()),
                    }
                }
                SendStatus::Failed => bail!(
                    "the text was not sent: {}",
                    message
                        .failure_reason
                        .as_deref()
                        .unwrap_or("no reason given")
                ),
                _ => {}
            }
        }
        Command::Sync => {
            let report = client.sync().await?;
            // Asked for by hand: everything waiting goes now, whatever its back-off said.
            client.session().await?.wake_outbox().await?;
            let outbox = client.flush_outbox().await?;
            if json {
                json_line(
                    out,
                    &serde_json::json!({ "sync": report, "outbox": outbox }),
                )?;
            } else {
                writeln!(
                    out,
                    "applied {} events (cursor {}); outbox: {} sent, {} failed, {} waiting",
                    report.applied, report.cursor, outbox.sent, outbox.failed, outbox.waiting
                )?;
            }
        }
        Command::Conversations { limit, archived } => {
            let mut conversations = client.conversations(*limit).await?;
            if !archived {
                conversations.retain(|c| !c.archived);
            }
            if json {
                json_line(out, &conversations)?;
            } else {
                for c in conversations {
                    let last = c
                        .last_message
                        .as_ref()
                        .map(|m| m.body.as_str())
                        .unwrap_or("");
                    let name = c
                        .conversation_name
                        .as_deref()
                        .or(c.name.as_deref())
                        .map(|n| format!(" ({})", visible(n)))
                        .unwrap_or_default();
                    let archived = if c.archived { "  archived" } else { "" };
                    let muted = match c.muted_until {
                        Some(until) if until >= muted_always() => "  muted".to_owned(),
                        Some(until) if until > Utc::now() => {
                            format!("  muted until {}", until.format("%Y-%m-%d %H:%M UTC"))
                        }
                        _ => String::new(),
                    };
                    writeln!(
                        out,
                        "{}{name}  unread {}{archived}{muted}  {}",
                        visible(&c.peer),
                        c.unread,
                        visible(last)
                    )?;
                }
            }
        }
        Command::Messages { peer, limit } => {
            let messages = client.messages(peer, *limit).await?;
            if json {
                json_line(out, &messages)?;
            } else {
                for m in messages.iter().rev() {
                    writeln!(out, "{}", message_line(m))?;
                }
            }
        }
        Command::Search { query, limit } => {
            let messages = client.search(query, *limit).await?;
            if json {
                json_line(out, &messages)?;
            } else {
                for m in &messages {
                    writeln!(out, "{}", message_line(m))?;
                }
            }
        }
        Command::Read { peer } => {
            let newest = client.read_thread(peer).await?;
            if json {
                json_line(
                    out,
                    &serde_json::json!({
                        "conversation_id": newest.as_ref().and_then(|m| m.conversation_id),
                        "up_to": newest.as_ref().and_then(|m| m.id),
                    }),
                )?;
            } else {
                match newest {
                    Some(m) => writeln!(out, "{} read", visible(&m.peer))?,
                    None => writeln!(out, "nothing to mark read with {}", visible(peer))?,
                }
            }
        }
        Command::Delete { message_id } => {
            let message = client.message_by_id(message_id).await?;
            client.delete_message(message.local_id).await?;
            if json {
                json_line(out, &serde_json::json!({ "id": message.id }))?;
            } else {
                writeln!(out, "deleted {}", message_line(&message))?;
            }
        }
        Command::Outbox => {
            let session = client.session().await?;
            let waiting = session.outbox().await?;
            if json {
                let list: Vec<_> = waiting
                    .iter()
                    .map(|e| {
                        serde_json::json!({
                            "local_id": e.message, "client_id": e.client_id, "peer": e.peer,
                            "body": e.body, "stage": e.stage.as_str(), "attempts": e.attempts,
                            "next_attempt_at": e.next_attempt_at, "last_error": e.last_error,
                        })
                    })
                    .collect();
                json_line(out, &list)?;
            } else {
                for e in waiting {
                    writeln!(
                        out,
                        "{} → {}  {} (attempts {}, next {})  {}",
                        e.client_id,
                        visible(&e.peer),
                        e.stage.as_str(),
                        e.attempts,
                        e.next_attempt_at.format("%H:%M:%S"),
                        visible(e.last_error.as_deref().unwrap_or_default())
                    )?;
                }
            }
        }
        Command::Watch => watch(&client, json, out).await?,
        Command::Contact(Contact::List) => {
            let contacts = client.contacts().await?;
            if json {
                json_line(out, &contacts)?;
            } else {
                for contact in &contacts {
                    writeln!(out, "{}", contact_line(contact))?;
                }
            }
        }
        Command::Contact(Contact::SetPath {
            peer,
            path,
            fallback,
        }) => {
            let contact = client
                .set_path(peer, PathChoice::from(*path), *fallback, None)
                .await?;
            if json {
                json_line(out, &contact)?;
            } else {
                writeln!(out, "{}", contact_line(&contact))?;
            }
        }
        Command::Contact(Contact::Block { peer } | Contact::Unblock { peer }) => {
            let blocked = matches!(command, Command::Contact(Contact::Block { .. }));
            let contact = client.block_contact(peer, blocked).await?;
            if json {
                json_line(out, &contact)?;
            } else {
                writeln!(out, "{}", contact_line(&contact))?;
            }
        }
        Command::Contact(Contact::Delete { peer }) => {
            let address = client.delete_contact(peer).await?;
            if json {
                json_line(out, &serde_json::json!({ "address": address }))?;
            } else {
                writeln!(out, "deleted contact {}", visible(&address))?;
            }
        }
        Command::Contact(Contact::SetName { peer, name }) => {
            let name = name.clone().filter(|n| !n.trim().is_empty());
            let contact = client.name_contact(peer, name).await?;
            if json {
                json_line(out, &contact)?;
            } else {
                writeln!(out, "{}", contact_line(&contact))?;
            }
        }
    }
    out.flush()?;
    Ok(())
}

fn contact_line(contact: &airtext_api::contacts::Contact) -> String {
    let name = contact
        .name
        .as_deref()
        .map(|n| format!(" ({})", visible(n)))
        .unwrap_or_default();
    format!(
        "{}{name}: path {}, fallback {}{}",
        visible(&contact.address),
        contact.path.as_str(),
        if contact.fallback { "on" } else { "off" },
        if contact.blocked { ", blocked" } else { "" }
    )
}

/// Prints each new message until Ctrl-C (or the gateway signs this device out).
async fn watch(client: &Client, json: bool, out: &mut dyn Write) -> anyhow::Result<()> {
    let mut events = client.subscribe();
    let shutdown = CancellationToken::new();
    let runner = {
        let client = client.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move { client.run(shutdown).await })
    };
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut runner = runner;
    loop {
        tokio::select! {
            _ = &mut ctrl_c => {
                shutdown.cancel();
                break;
            }
            result = &mut runner => {
                return match result {
                    Ok(result) => result.map_err(Into::into),
                    Err(e) => Err(e.into()),
                };
            }
            event = events.recv() => match event {
                Ok(ClientEvent::MessageAdded { message }) => {
                    if json {
                        json_line(out, &message)?;
                    } else {
                        writeln!(out, "{}", message_line(&message))?;
                    }
                    out.flush()?;
                }
                // Standard error in both modes: the JSON stream on standard output stays
                // one message per line.
                Ok(ClientEvent::ConnectionChanged { online, error }) => {
                    match (online, error) {
                        (true, _) => eprintln!("airtext: connected"),
                        (false, Some(error)) => {
                            eprintln!("airtext: disconnected: {}", visible(&error));
                        }
                        (false, None) => eprintln!("airtext: disconnected"),
                    }
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    eprintln!("airtext: missed {n} notifications (the cache has them)");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
        }
    }
    let _ = runner.await;
    Ok(())
}

/// The patch a `conversation` subcommand asks for, and what it did (`None` for delete,
/// which is no patch).
fn conversation_patch(change: &Conversation) -> Option<(&str, PatchConversation, &'static str)> {
    let mut patch = PatchConversation::default();
    let (peer, done) = match change {
        Conversation::Archive { peer } => {
            patch.archived = Some(true);
            (peer, "archived")
        }
        Conversation::Unarchive { peer } => {
            patch.archived = Some(false);
            (peer, "unarchived")
        }
        Conversation::Mute { peer, duration } => {
            patch.muted_until = Some(Some(duration.until(Utc::now())));
            (peer, "muted")
        }
        Conversation::Unmute { peer } => {
            patch.muted_until = Some(None);
            (peer, "unmuted")
        }
        Conversation::Name { peer, name } => {
            let name = name.trim();
            patch.name = Some((!name.is_empty()).then(|| name.to_owned()));
            (peer, if name.is_empty() { "unnamed" } else { "named" })
        }
        Conversation::Delete { .. } => return None,
    };
    Some((peer.as_str(), patch, done))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_age_of_the_copy_reads_at_a_glance() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default();
        let ago = |secs: i64| age(Some(now - chrono::Duration::seconds(secs)), now);
        assert_eq!(age(None, now), "never synced");
        assert!(ago(5).starts_with("last synced 5 s ago ("), "{}", ago(5));
        assert!(
            ago(185).starts_with("last synced 3 min ago"),
            "{}",
            ago(185)
        );
        assert!(
            ago(7300).starts_with("last synced 2 h ago"),
            "{}",
            ago(7300)
        );
        assert!(ago(3 * 86_400).starts_with("last synced 3 days ago"));
        // A clock that went back shows no negative age.
        assert!(ago(-30).starts_with("last synced 0 s ago"));
        assert!(ago(0).ends_with(" UTC)"));
    }

    #[test]
    fn a_short_id_is_the_random_end_of_the_id() {
        assert_eq!(short_id("0190f5a2-7c3e-7d41-9a1b-3f2a9c1e44d0"), "9c1e44d0");
        assert_eq!(short_id("abc"), "abc");
    }
}
