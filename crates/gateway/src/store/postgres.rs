//! PLACEHOLDER: being written (PostgreSQL engine).

use crate::store::StoreResult;

#[derive(Debug)]
pub struct PostgresStore;

impl PostgresStore {
    pub async fn open(_url: &str) -> StoreResult<Self> {
        Err(crate::store::StoreError::Unavailable(
            "not written yet".into(),
        ))
    }
}
