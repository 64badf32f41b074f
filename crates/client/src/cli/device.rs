//! The commands that use an Airtext account: sign-up and sign-in, numbers, verification,
//! texting, sync, reading, search, watching, contact settings. Each is a thin call into
//! [`crate::Client`]; this file only parses, prompts and prints.
//!
//! Passwords come from `AIRTEXT_PASSWORD` or one line of standard input
//! (`--password-stdin`), never from the command line (other users can read argv).
//! With `--json`, listings print one JSON array using the API's field names, and `watch` one
//! JSON object per line.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use airtext_api::contacts::PathChoice;
use airtext_api::identities::IdentityKind;
use anyhow::{bail, Context};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::cache::messages::CachedMessage;
use crate::cellular::at_modem::{AtModem, AtModemConfig};
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
    /// An AT-command modem on this serial port gives the device a cellular path (the SIM
    /// PIN, if asked for, comes from AIRTEXT_SIM_PIN).
    #[arg(long, global = true, env = "AIRTEXT_MODEM", value_name = "PATH")]
    pub modem: Option<String>,
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
    /// Sign this device in.
    Login {
        username: String,
        #[arg(long, default_value = "airtext CLI")]
        device_name: String,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Sign this device out (its token stops working; its local cache is deleted).
    Logout,
    /// Find and claim a phone number of your own.
    #[command(subcommand)]
    Numbers(Numbers),
    /// Prove you own a phone number or e-mail address (a code is sent to it).
    Verify {
        kind: Kind,
        value: String,
        /// The code you received; without it, a code is sent and asked for.
        #[arg(long)]
        code: Option<String>,
    },
    /// Send a text (written locally first; sent now, or queued and retried).
    Send {
        /// A phone number, @username or e-mail address.
        to: String,
        text: String,
        /// Which path: auto (the contact's setting decides), cloud or cellular.
        #[arg(long)]
        via: Option<Via>,
    },
    /// Pull everything new from the gateway (and send anything queued).
    Sync,
    /// List conversations, most recent first.
    Conversations {
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Show the latest messages with one peer.
    Messages {
        peer: String,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Search message texts and peers.
    Search {
        query: String,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Stay connected and print each new message as it arrives (Ctrl-C to stop).
    Watch,
    /// Texts waiting to be sent.
    Outbox,
    /// Contact settings.
    #[command(subcommand)]
    Contact(Contact),
}

#[derive(Debug, clap::Subcommand)]
pub enum Numbers {
    /// Numbers you can claim.
    Search {
        #[arg(long)]
        area_code: String,
        #[arg(long, default_value = "US")]
        country: String,
        #[arg(long)]
        limit: Option<u32>,
    },
    /// Claim a number as this account's own.
    Claim { number: String },
}

#[derive(Debug, clap::Subcommand)]
pub enum Contact {
    /// How to text a peer: auto, cloud or cellular (synced to your other devices).
    SetPath {
        peer: String,
        path: Via,
        /// Whether a failure on that path may use the other one without asking.
        #[arg(long)]
        fallback: Option<bool>,
    },
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

fn json_line(out: &mut dyn Write, value: &impl Serialize) -> anyhow::Result<()> {
    serde_json::to_writer(&mut *out, value)?;
    writeln!(out)?;
    Ok(())
}

fn message_line(m: &CachedMessage) -> String {
    let arrow = match m.direction {
        airtext_api::messages::Direction::Outbound => "→",
        airtext_api::messages::Direction::Inbound => "←",
    };
    let path = m.path.map(|p| p.as_str()).unwrap_or("-");
    format!(
        "{} {arrow} {}  [{} via {path}]  {}",
        m.created_at.format("%Y-%m-%d %H:%M"),
        m.peer,
        m.status.as_str(),
        m.body
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
                    signed.profile.username
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
                writeln!(out, "signed in as @{}", signed.profile.username)?;
            }
        }
        Command::Logout => {
            client.sign_out().await?;
            if !json {
                writeln!(out, "signed out")?;
            }
        }
        Command::Numbers(Numbers::Search {
            area_code,
            country,
            limit,
        }) => {
            let numbers = client
                .search_numbers(Some(country), Some(area_code), *limit)
                .await?;
            if json {
                json_line(out, &numbers)?;
            } else {
                for number in numbers {
                    writeln!(out, "{number}")?;
                }
            }
        }
        Command::Numbers(Numbers::Claim { number }) => {
            let number = client.claim_number(number).await?;
            if json {
                json_line(out, &serde_json::json!({ "number": number }))?;
            } else {
                writeln!(out, "your number is {number}")?;
            }
        }
        Command::Verify { kind, value, code } => {
            let kind = match kind {
                Kind::Phone => IdentityKind::Phone,
                Kind::Email => IdentityKind::Email,
            };
            let (identity, code) = match code {
                Some(code) => (client.pending_identity(kind, value).await?, code.clone()),
                None => {
                    let pending = client.start_verification(kind, value).await?;
                    eprint!("a code was sent to {value}; type it: ");
                    let mut line = String::new();
                    std::io::stdin().lock().read_line(&mut line)?;
                    (pending.identity_id, line.trim().to_owned())
                }
            };
            let status = client.verify(identity, &code).await?;
            if json {
                json_line(out, &serde_json::json!({ "status": status }))?;
            } else {
                writeln!(out, "{value} is {}", status.as_str())?;
            }
        }
        Command::Send { to, text, via } => {
            let message = client.send(to, text, via.map(PathChoice::from)).await?;
            if json {
                json_line(out, &message)?;
            } else {
                writeln!(out, "{}", message_line(&message))?;
            }
            if message.status == airtext_api::SendStatus::Queued {
                let session = client.session().await?;
                if let Some(waiting) = session
                    .outbox()
                    .await?
                    .into_iter()
                    .find(|e| e.message == message.local_id)
                {
                    if let Some(error) = waiting.last_error {
                        eprintln!("airtext: queued, not sent yet: {error}");
                    }
                }
            }
        }
        Command::Sync => {
            let report = client.sync().await?;
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
        Command::Conversations { limit } => {
            let conversations = client.conversations(*limit).await?;
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
                        .name
                        .as_deref()
                        .map(|n| format!(" ({n})"))
                        .unwrap_or_default();
                    writeln!(out, "{}{name}  unread {}  {last}", c.peer, c.unread)?;
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
                        e.peer,
                        e.stage.as_str(),
                        e.attempts,
                        e.next_attempt_at.format("%H:%M:%S"),
                        e.last_error.unwrap_or_default()
                    )?;
                }
            }
        }
        Command::Watch => watch(&client, json, out).await?,
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
                writeln!(
                    out,
                    "{}: path {}, fallback {}",
                    contact.address,
                    contact.path.as_str(),
                    if contact.fallback { "on" } else { "off" }
                )?;
            }
        }
    }
    out.flush()?;
    Ok(())
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
                Ok(ClientEvent::ConnectionChanged { online, error }) if !json => {
                    match (online, error) {
                        (true, _) => eprintln!("airtext: connected"),
                        (false, Some(error)) => eprintln!("airtext: disconnected: {error}"),
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
