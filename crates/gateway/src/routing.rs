//! PLACEHOLDER: being written (message routing).

use crate::carriers::CarrierReport;
use crate::http::AppState;

pub async fn handle_carrier_report(
    _state: &AppState,
    _report: CarrierReport,
) -> anyhow::Result<()> {
    Ok(())
}
