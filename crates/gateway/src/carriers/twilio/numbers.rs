//! Numbers bought from Twilio, for a carrier with `provision = true`.
//!
//! - **Search**: `GET {base_url}/2010-04-01/Accounts/{AccountSid}/AvailablePhoneNumbers/{Country}/Local.json`
//!   with `SmsEnabled=true`, `PageSize` and the caller's area code: as `AreaCode` in North
//!   America (calling code 1, where Twilio takes it), elsewhere as `Contains` with the E.164
//!   prefix (`+4420`: a leading `+` anchors Twilio's pattern at the number's start). Only
//!   answers starting with that prefix are kept, whatever Twilio's matching did.
//! - **Buy**: `POST …/IncomingPhoneNumbers.json` with `PhoneNumber`, `SmsUrl` (the carrier's
//!   inbound webhook), `StatusCallback` (its status webhook) and `POST` for both methods. The
//!   reply's `sid` (`PN…`) is stored with the number: it is what giving it back needs.
//! - **Give back**: `DELETE …/IncomingPhoneNumbers/{Sid}.json` once a released number's
//!   quarantine ends ([`give_back_due`]); 404 means Twilio no longer has it, which is done too.
//!
//! Invariants: a number is bought only for an account that holds none; a bought number is in
//! the inventory (with its sid) before it is claimed, so whatever fails after the purchase
//! leaves an unowned number that is given back, never one paid for and forgotten; while it is
//! being given back it is held out of every search and claim ([`HOLD`]), so nobody gets a
//! number Twilio is taking away, and a node that dies mid-way leaves it to the next pass.
//!
//! Failures ([`NumberProviderError`]): a number Twilio cannot sell (400 with 21421/21422) is
//! `NotForSale`; no answer, a timeout, 429 or 5xx is `Unavailable` (try later); any other
//! refusal (401/403/404, other 400s) is `Refused` and logged as an error, since only the
//! operator can fix it.

use std::time::Duration;

use serde::Deserialize;

use super::{ErrorReply, TwilioCarrier};
use crate::carriers::Carrier;
use crate::store::{InventoryNumber, SharedStore, StoreResult};

/// Twilio's 400 codes for a number it cannot sell: invalid, or not available (any more).
const NOT_FOR_SALE_CODES: &[u32] = &[21421, 21422];

/// How long a number is held out of reach while it is given back; a pass that dies leaves it
/// to the pass after this.
pub const HOLD: Duration = Duration::from_secs(3600);

/// How often released numbers are looked at for giving back.
pub const GIVE_BACK_EVERY: Duration = Duration::from_secs(300);

/// Numbers given back per store round trip.
const GIVE_BACK_BATCH: u32 = 50;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NumberProviderError {
    /// Twilio cannot sell that number (taken by someone else meanwhile, or never offered).
    #[error("Twilio cannot sell {number}: {detail}")]
    NotForSale { number: String, detail: String },
    /// Twilio did not answer in time, or failed; worth trying again later.
    #[error("Twilio is unavailable: {0}")]
    Unavailable(String),
    /// Twilio refused this gateway (credentials, account, a setting): the operator must act.
    #[error("Twilio refused the request: {0}")]
    Refused(String),
}

/// A number Twilio sold us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurchasedNumber {
    pub number: String,
    /// Twilio's `PN…` id of the number.
    pub sid: String,
}

#[derive(Debug, Deserialize)]
struct AvailablePage {
    #[serde(default)]
    available_phone_numbers: Vec<AvailableNumber>,
}

#[derive(Debug, Deserialize)]
struct AvailableNumber {
    phone_number: Option<String>,
}

#[derive(Debug, Deserialize)]
struct IncomingNumber {
    sid: Option<String>,
    phone_number: Option<String>,
}

impl TwilioCarrier {
    /// Whether this carrier sells numbers (`provision = true`).
    pub fn provisions(&self) -> bool {
        self.config.provision
    }

    fn account_url(&self) -> String {
        format!(
            "{}/2010-04-01/Accounts/{}",
            self.config.base_url.trim_end_matches('/'),
            self.config.account_sid
        )
    }

    /// Local numbers Twilio would sell in `country` (ISO 3166 alpha-2) that start with
    /// `prefix` (E.164, e.g. `+1415`), `area_code` being the national digits after the calling
    /// code; at most `limit`.
    pub async fn search_numbers(
        &self,
        country: &str,
        calling_code: u16,
        area_code: Option<&str>,
        limit: u32,
    ) -> Result<Vec<String>, NumberProviderError> {
        let url = format!(
            "{}/AvailablePhoneNumbers/{country}/Local.json",
            self.account_url()
        );
        let mut query: Vec<(&str, String)> = vec![
            ("SmsEnabled", "true".to_owned()),
            ("PageSize", limit.to_string()),
        ];
        if let Some(area) = area_code {
            if calling_code == 1 {
                query.push(("AreaCode", area.to_owned()));
            } else {
                query.push(("Contains", format!("+{calling_code}{area}")));
            }
        }
        let request = self.http.get(&url).query(&query);
        let text = self.call(request, Purpose::Search).await?;
        let page: AvailablePage = serde_json::from_str(&text).map_err(|e| {
            NumberProviderError::Unavailable(format!(
                "Twilio's number search could not be read: {e}"
            ))
        })?;
        let prefix = format!("+{calling_code}{}", area_code.unwrap_or_default());
        Ok(page
            .available_phone_numbers
            .into_iter()
            .filter_map(|n| n.phone_number)
            .filter(|n| n.starts_with(&prefix))
            .take(usize::try_from(limit).unwrap_or(usize::MAX))
            .collect())
    }

    /// Buys `number` with its texts and statuses sent to this gateway's webhooks.
    pub async fn buy_number(&self, number: &str) -> Result<PurchasedNumber, NumberProviderError> {
        let (Some(sms_url), Some(status_url)) = (self.inbound_webhook(), self.status_callback())
        else {
            // `new` refuses `provision` without a public URL; this is that promise kept.
            return Err(NumberProviderError::Refused(
                "the gateway has no public_url for the number's webhooks".to_owned(),
            ));
        };
        let form = [
            ("PhoneNumber", number.to_owned()),
            ("SmsUrl", sms_url),
            ("SmsMethod", "POST".to_owned()),
            ("StatusCallback", status_url),
            ("StatusCallbackMethod", "POST".to_owned()),
        ];
        let url = format!("{}/IncomingPhoneNumbers.json", self.account_url());
        let request = self.http.post(&url).form(&form);
        let text = self.call(request, Purpose::Buy(number)).await?;
        let bought = serde_json::from_str::<IncomingNumber>(&text).ok();
        let sid = bought
            .as_ref()
            .and_then(|b| b.sid.clone())
            .filter(|sid| is_number_sid(sid));
        let Some(sid) = sid else {
            tracing::error!(
                carrier = self.config.name,
                number,
                "Twilio answered the purchase without a number sid: check the account's \
                 numbers in Twilio's console and release {number} there if it was bought"
            );
            return Err(NumberProviderError::Refused(
                "Twilio answered the purchase without a number sid".to_owned(),
            ));
        };
        if let Some(sold) = bought.and_then(|b| b.phone_number) {
            if sold != number {
                tracing::warn!(
                    carrier = self.config.name,
                    number,
                    sold,
                    sid,
                    "Twilio sold another number than asked"
                );
            }
        }
        tracing::info!(
            carrier = self.config.name,
            number,
            sid,
            "number bought from Twilio"
        );
        Ok(PurchasedNumber {
            number: number.to_owned(),
            sid,
        })
    }

    /// Gives a bought number back to Twilio (done also when Twilio no longer has it).
    pub async fn give_back(&self, sid: &str) -> Result<(), NumberProviderError> {
        if !is_number_sid(sid) {
            return Err(NumberProviderError::Refused(format!(
                "{sid:?} is not a Twilio number sid"
            )));
        }
        let url = format!("{}/IncomingPhoneNumbers/{sid}.json", self.account_url());
        self.call(self.http.delete(&url), Purpose::GiveBack).await?;
        Ok(())
    }

    /// Sends one provisioning request with the account's credentials; the reply's text on 2xx
    /// (and on 404 when giving back: Twilio no longer has the number, which is what was asked).
    async fn call(
        &self,
        request: reqwest::RequestBuilder,
        purpose: Purpose<'_>,
    ) -> Result<String, NumberProviderError> {
        let response = request
            .basic_auth(&self.config.account_sid, Some(&self.auth_token))
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| {
                let what = if e.is_timeout() {
                    "timed out"
                } else if e.is_connect() {
                    "could not connect"
                } else {
                    "request failed"
                };
                NumberProviderError::Unavailable(format!("Twilio {what}: {e}"))
            })?;
        let status = response.status();
        let text = response.text().await.map_err(|e| {
            NumberProviderError::Unavailable(format!("Twilio's reply could not be read: {e}"))
        })?;
        if status.is_success() {
            return Ok(text);
        }
        let error = serde_json::from_str::<ErrorReply>(&text).unwrap_or_default();
        let described = error.describe(status);
        match (status.as_u16(), purpose) {
            (429 | 500..=599, _) => Err(NumberProviderError::Unavailable(described)),
            (400, Purpose::Buy(number))
                if error.code.is_some_and(|c| NOT_FOR_SALE_CODES.contains(&c)) =>
            {
                Err(NumberProviderError::NotForSale {
                    number: number.to_owned(),
                    detail: described,
                })
            }
            (404, Purpose::GiveBack) => {
                tracing::info!(
                    carrier = self.config.name,
                    "Twilio no longer had the number"
                );
                Ok(String::new())
            }
            _ => {
                self.misconfigured(&format!("managing numbers: {described}"));
                Err(NumberProviderError::Refused(described))
            }
        }
    }
}

/// What a provisioning request is for: it decides what some refusals mean.
#[derive(Debug, Clone, Copy)]
enum Purpose<'a> {
    Search,
    /// Buying this number: a 400 may mean it is not for sale.
    Buy(&'a str),
    /// Giving a number back: a 404 means it is gone already.
    GiveBack,
}

/// `PN` and 32 hex digits, as Twilio's paths require.
fn is_number_sid(sid: &str) -> bool {
    sid.len() == 34 && sid.starts_with("PN") && sid.bytes().skip(2).all(|b| b.is_ascii_hexdigit())
}

/// Buys `number` from the first of `carriers` that sells it and puts it in the inventory,
/// unowned, with its sid. `NotForSale` when none does.
pub async fn buy_into_inventory(
    carriers: &[&TwilioCarrier],
    store: &SharedStore,
    number: &str,
) -> Result<InventoryNumber, BuyError> {
    let mut not_for_sale = None;
    for carrier in carriers {
        let bought = match carrier.buy_number(number).await {
            Ok(bought) => bought,
            Err(e @ NumberProviderError::NotForSale { .. }) => {
                not_for_sale = Some(e);
                continue;
            }
            Err(other) => return Err(BuyError::Provider(other)),
        };
        let inventory = InventoryNumber {
            number: number.to_owned(),
            carrier: carrier.name().to_owned(),
            country: super::country_of(number),
        };
        if let Err(stored) = store.add_bought_number(&inventory, &bought.sid).await {
            // Not in the inventory, so nothing would ever give it back: do it now.
            if let Err(back) = carrier.give_back(&bought.sid).await {
                tracing::error!(
                    carrier = carrier.name(),
                    number,
                    sid = bought.sid,
                    error = %back,
                    "a number bought from Twilio could be neither stored nor given back: \
                     release it in Twilio's console"
                );
            }
            return Err(BuyError::Store(stored));
        }
        return Ok(inventory);
    }
    Err(BuyError::Provider(not_for_sale.unwrap_or_else(|| {
        NumberProviderError::NotForSale {
            number: number.to_owned(),
            detail: "no carrier sells numbers".to_owned(),
        }
    })))
}

/// Why a purchase did not end in the inventory.
#[derive(Debug, thiserror::Error)]
pub enum BuyError {
    #[error(transparent)]
    Provider(NumberProviderError),
    #[error(transparent)]
    Store(crate::store::StoreError),
}

/// Gives back to Twilio every number of `carrier` that nobody owns and whose quarantine ended
/// by `now`; returns how many went back. A number Twilio does not take back now stays held
/// until `now + HOLD`, then the next pass tries again.
pub async fn give_back_due(
    carrier: &TwilioCarrier,
    store: &SharedStore,
    now: chrono::DateTime<chrono::Utc>,
) -> StoreResult<usize> {
    let hold_until = now + chrono::Duration::from_std(HOLD).unwrap_or_default();
    let mut given_back = 0;
    loop {
        let due = store
            .hold_numbers_to_give_back(carrier.name(), now, hold_until, GIVE_BACK_BATCH)
            .await?;
        let full_batch = due.len() >= GIVE_BACK_BATCH as usize;
        let mut failed = false;
        for number in due {
            match carrier.give_back(&number.carrier_sid).await {
                Ok(()) => {
                    store
                        .forget_given_back_number(&number.number, &number.carrier_sid)
                        .await?;
                    tracing::info!(
                        carrier = carrier.name(),
                        number = number.number,
                        "number given back to Twilio"
                    );
                    given_back += 1;
                }
                Err(e) => {
                    tracing::warn!(
                        carrier = carrier.name(),
                        number = number.number,
                        error = %e,
                        "Twilio did not take the number back; trying again later"
                    );
                    failed = true;
                }
            }
        }
        if !full_batch || failed {
            return Ok(given_back);
        }
    }
}

/// Gives released numbers back to Twilio every [`GIVE_BACK_EVERY`], for each carrier that
/// provisions, until `shutdown`.
pub async fn run_give_backs(
    carriers: Vec<std::sync::Arc<TwilioCarrier>>,
    store: SharedStore,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let carriers: Vec<_> = carriers.into_iter().filter(|c| c.provisions()).collect();
    if carriers.is_empty() {
        return;
    }
    let mut tick = tokio::time::interval(GIVE_BACK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let pass = async {
            for carrier in &carriers {
                if let Err(e) = give_back_due(carrier, &store, chrono::Utc::now()).await {
                    tracing::warn!(carrier = carrier.name(), error = %e, "cannot look for numbers to give back");
                }
            }
        };
        // Stopping mid-pass is safe: a number being given back stays held until its hold
        // lapses, then a later pass (on any node) tries it again.
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = pass => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_sids_are_checked_before_they_go_in_a_path() {
        assert!(is_number_sid("PNaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
        assert!(!is_number_sid("PN../../Messages"));
        assert!(!is_number_sid("SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
    }
}
