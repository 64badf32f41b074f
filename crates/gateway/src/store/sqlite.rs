//! PLACEHOLDER: being written (SQLite engine with group commit).

use crate::store::StoreResult;

#[derive(Debug)]
pub struct SqliteStore;

impl SqliteStore {
    pub async fn open(_url: &str) -> StoreResult<Self> {
        Err(crate::store::StoreError::Unavailable(
            "not written yet".into(),
        ))
    }
}
