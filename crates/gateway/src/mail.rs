//! PLACEHOLDER: being written (e-mail for verification codes).

use std::sync::Arc;

use crate::carriers::simulator::Simulator;
use crate::config::Config;

pub trait Mailer: Send + Sync + std::fmt::Debug {}

#[derive(Debug)]
struct NoMail;

impl Mailer for NoMail {}

pub fn mailer_from_config(
    _config: &Config,
    _simulator: Option<Arc<Simulator>>,
) -> anyhow::Result<Arc<dyn Mailer>> {
    Ok(Arc::new(NoMail))
}
