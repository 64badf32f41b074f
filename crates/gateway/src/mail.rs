//! E-mail the gateway sends (verification codes), behind one [`Mailer`] trait.
//!
//! Which mailer runs is decided once, at start ([`mailer_from_config`]):
//! - `smtp_url` set → [`SmtpMailer`]: a real SMTP server through `lettre`
//!   (`smtp://host:port`, plain, or with `?tls=required` for STARTTLS; `smtps://host` for
//!   implicit TLS; credentials as the URL's `user:password@`);
//! - otherwise, with the simulator carrier running → [`SimulatorMailer`]: the mail lands in
//!   the simulator's outbox (`GET /v1/simulator/outbox?to=…`), so demos and tests need no
//!   mail server;
//! - otherwise → [`NoMailer`], which refuses with a message naming the missing setting rather
//!   than silently dropping a code the user is waiting for.
//!
//! The From address is checked at start, so a typo in `mail_from` stops the gateway instead of
//! failing each send.

use std::fmt;
use std::sync::Arc;

use airtext_api::AccountId;
use async_trait::async_trait;
use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::carriers::simulator::Simulator;
use crate::config::Config;

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// This gateway has no way to send e-mail.
    #[error("e-mail verification needs smtp_url (an SMTP server) in the gateway's configuration")]
    NotConfigured,
    /// The recipient address cannot be used in a mail header.
    #[error("{0:?} cannot receive e-mail: check the address")]
    BadRecipient(String),
    /// The SMTP server refused the message or could not be reached.
    #[error("the mail server did not take the message: {0}")]
    Transport(String),
}

#[async_trait]
pub trait Mailer: Send + Sync + fmt::Debug {
    /// Sends one plain-text message for `account` (the account that asked for it; only the
    /// simulator's outbox uses it, to show the mail to that account alone).
    async fn send(
        &self,
        account: AccountId,
        to: &str,
        subject: &str,
        body: &str,
    ) -> Result<(), MailError>;
}

/// Mail through an SMTP server.
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl fmt::Debug for SmtpMailer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The transport holds the credentials from the URL: never print it.
        f.debug_struct("SmtpMailer")
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

impl SmtpMailer {
    pub fn new(smtp_url: &str, from: Mailbox) -> anyhow::Result<Self> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(smtp_url)
            .map_err(|e| anyhow::anyhow!("smtp_url: {e}"))?
            .build();
        Ok(SmtpMailer { transport, from })
    }
}

#[async_trait]
impl Mailer for SmtpMailer {
    async fn send(
        &self,
        _account: AccountId,
        to: &str,
        subject: &str,
        body: &str,
    ) -> Result<(), MailError> {
        let recipient: Mailbox = to
            .parse()
            .map_err(|_| MailError::BadRecipient(to.to_owned()))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(recipient)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body.to_owned())
            .map_err(|e| MailError::Transport(e.to_string()))?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| MailError::Transport(e.to_string()))
    }
}

/// Mail into the simulator's outbox (channel `email`), subject first as a mailbox shows it.
#[derive(Debug)]
pub struct SimulatorMailer {
    simulator: Arc<Simulator>,
    from: String,
}

#[async_trait]
impl Mailer for SimulatorMailer {
    async fn send(
        &self,
        account: AccountId,
        to: &str,
        subject: &str,
        body: &str,
    ) -> Result<(), MailError> {
        self.simulator
            .record_email(account, to, &self.from, &format!("{subject}\n\n{body}"));
        Ok(())
    }
}

/// No SMTP server and no simulator: every send is refused with what to configure.
#[derive(Debug)]
pub struct NoMailer;

#[async_trait]
impl Mailer for NoMailer {
    async fn send(
        &self,
        _account: AccountId,
        _to: &str,
        _subject: &str,
        _body: &str,
    ) -> Result<(), MailError> {
        Err(MailError::NotConfigured)
    }
}

/// SMTP when `smtp_url` is set, else the simulator's outbox, else [`NoMailer`].
pub fn mailer_from_config(
    config: &Config,
    simulator: Option<Arc<Simulator>>,
) -> anyhow::Result<Arc<dyn Mailer>> {
    let from: Mailbox = config.mail_from.parse().map_err(|e| {
        anyhow::anyhow!(
            "mail_from {:?} is not a mail address ({e}): use e.g. \"Airtext <no-reply@example.org>\"",
            config.mail_from
        )
    })?;
    if let Some(url) = &config.smtp_url {
        return Ok(Arc::new(SmtpMailer::new(url, from)?));
    }
    match simulator {
        Some(simulator) => Ok(Arc::new(SimulatorMailer {
            simulator,
            from: from.email.to_string(),
        })),
        None => Ok(Arc::new(NoMailer)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn without_smtp_or_simulator_the_error_names_the_setting() {
        let mailer = mailer_from_config(&Config::default(), None).unwrap();
        let error = mailer
            .send(AccountId::new(), "a@example.org", "s", "b")
            .await
            .unwrap_err();
        assert!(error.to_string().contains("smtp_url"), "{error}");
    }

    #[tokio::test]
    async fn with_the_simulator_mail_lands_in_its_outbox() {
        let (tx, _rx) = crate::carriers::reports::report_channel(1);
        let simulator = Arc::new(Simulator::new(Default::default(), tx));
        let mailer = mailer_from_config(&Config::default(), Some(simulator.clone())).unwrap();
        let account = AccountId::new();
        mailer
            .send(account, "Ann@Example.org", "Your code", "123456")
            .await
            .unwrap();
        assert!(simulator.outbox(AccountId::new(), None).is_empty());
        let outbox = simulator.outbox(account, Some("ann@example.org"));
        assert_eq!(outbox.len(), 1);
        assert!(outbox[0].body.contains("123456"));
        assert_eq!(outbox[0].channel, "email");
        assert_eq!(outbox[0].from, "no-reply@airtext.invalid");
    }

    #[test]
    fn a_bad_from_address_stops_the_start() {
        let config = Config {
            mail_from: "not an address".into(),
            ..Config::default()
        };
        let error = mailer_from_config(&config, None).err().unwrap();
        assert!(error.to_string().contains("mail_from"), "{error}");
    }

    /// A minimal SMTP server: accepts one message and returns its DATA.
    async fn fake_smtp() -> (u16, tokio::task::JoinHandle<String>) {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            let (read, mut write) = socket.into_split();
            let mut lines = BufReader::new(read).lines();
            write.write_all(b"220 fake ESMTP\r\n").await.unwrap();
            let mut data = String::new();
            let mut in_data = false;
            while let Some(line) = lines.next_line().await.unwrap() {
                if in_data {
                    if line == "." {
                        in_data = false;
                        write.write_all(b"250 queued\r\n").await.unwrap();
                    } else {
                        data.push_str(&line);
                        data.push('\n');
                    }
                    continue;
                }
                let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
                let reply: &[u8] = match verb.as_str() {
                    "EHLO" | "HELO" => b"250 fake\r\n",
                    "DATA" => {
                        in_data = true;
                        b"354 go ahead\r\n"
                    }
                    "QUIT" => {
                        write.write_all(b"221 bye\r\n").await.unwrap();
                        break;
                    }
                    _ => b"250 ok\r\n",
                };
                write.write_all(reply).await.unwrap();
            }
            data
        });
        (port, task)
    }

    #[tokio::test]
    async fn smtp_delivers_subject_from_and_body() {
        let (port, server) = fake_smtp().await;
        let config = Config {
            smtp_url: Some(format!("smtp://127.0.0.1:{port}")),
            mail_from: "Airtext <codes@airtext.test>".into(),
            ..Config::default()
        };
        let mailer = mailer_from_config(&config, None).unwrap();
        mailer
            .send(
                AccountId::new(),
                "ann@example.org",
                "Your code",
                "Your Airtext code is 123456.",
            )
            .await
            .unwrap();
        drop(mailer); // closes the pooled connection, so the server sees QUIT or EOF
        let data = tokio::time::timeout(std::time::Duration::from_secs(10), server)
            .await
            .unwrap()
            .unwrap();
        assert!(
            data.contains("From: Airtext <codes@airtext.test>"),
            "{data}"
        );
        assert!(data.contains("To: ann@example.org"), "{data}");
        assert!(data.contains("Subject: Your code"), "{data}");
        assert!(data.contains("Your Airtext code is 123456."), "{data}");
    }

    #[tokio::test]
    async fn an_unreachable_smtp_server_is_a_transport_error() {
        let config = Config {
            smtp_url: Some("smtp://127.0.0.1:1".into()),
            ..Config::default()
        };
        let mailer = mailer_from_config(&config, None).unwrap();
        let error = mailer
            .send(AccountId::new(), "ann@example.org", "s", "b")
            .await
            .unwrap_err();
        assert!(matches!(error, MailError::Transport(_)), "{error}");
    }

    #[test]
    fn an_smtp_url_makes_an_smtp_mailer() {
        let config = Config {
            smtp_url: Some("smtp://user:secret@127.0.0.1:2525".into()),
            ..Config::default()
        };
        let mailer = mailer_from_config(&config, None).unwrap();
        let shown = format!("{mailer:?}");
        assert!(shown.starts_with("SmtpMailer"), "{shown}");
        assert!(!shown.contains("secret"), "{shown}");
    }
}
