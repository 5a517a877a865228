//! The kind registry in Redis: what workers record of the kinds they run, so the api accepts
//! them. The descriptors themselves, and which kinds are built in, are [`crate::kinds`]'s.
//!
//! Registrations only accumulate: a worker that stops running a kind does not remove it.

use std::collections::HashMap;

use redis::AsyncCommands;

use super::{Store, StoreError};
use crate::kinds::KindInfo;

impl Store {
    /// Records the kinds a worker runs, so the api accepts them.
    pub async fn register_kinds(&self, kinds: &[KindInfo]) -> Result<(), StoreError> {
        if kinds.is_empty() {
            return Ok(());
        }
        let items: Vec<(String, String)> = kinds
            .iter()
            .map(|k| (k.name.clone(), serde_json::to_string(k).unwrap_or_default()))
            .collect();
        let _: () = self.conn().hset_multiple(self.keys.kinds(), &items).await?;
        Ok(())
    }

    /// Kinds registered by workers.
    pub async fn registered_kinds(&self) -> Result<HashMap<String, KindInfo>, StoreError> {
        let raw: HashMap<String, String> = self.conn().hgetall(self.keys.kinds()).await?;
        Ok(raw
            .into_values()
            .filter_map(|v| serde_json::from_str::<KindInfo>(&v).ok())
            .map(|k| (k.name.clone(), k))
            .collect())
    }
}
