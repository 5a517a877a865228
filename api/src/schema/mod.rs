//! Job kinds as the api knows them: the built-ins and those workers register, cached with their
//! compiled input schemas. The input check at the door, [`Kind::admit`], is in [`check`]: every
//! submit's input is checked against its kind's JSON Schema before anything is created.
//!
//! **The cache.** Kinds are the built-ins (compiled once, at start; they win over a registration
//! of the same name) plus those workers register in Redis. The registered ones are read with one
//! `HGETALL` into a snapshot held in memory, each schema compiled once (a kind whose schema did
//! not change keeps its validator across refreshes). A submit reads Redis only when
//! - its kind is not in the snapshot (a worker may have registered it since): the snapshot is
//!   re-read, so a kind registered before the submit began is always found; or
//! - its kind is a registered one and the snapshot is older than [`REFRESH_AFTER`], so a worker
//!   redeployed with a changed schema is obeyed within seconds (if that read fails, the cached
//!   kind is used).
//!
//! Reads are single-flight: concurrent submits that need a fresh snapshot share one read (a read
//! that began after a request began serves it), so a flood of unknown kinds costs Redis one read
//! at a time, not one per request. `GET /v1/kinds` always re-reads. Chosen over a version key
//! (a Redis round trip on every submit) and over a background refresher (a task to own and stop,
//! and still a window in which a newly registered kind is refused).

mod check;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonschema::Validator;
use lro_common::kinds::{self, KindInfo};
use lro_common::store::{Store, StoreError};
use serde_json::{Value, json};

/// How old the snapshot of registered kinds may be before a submit of a registered kind re-reads
/// it.
pub const REFRESH_AFTER: Duration = Duration::from_secs(5);

/// The kinds, cached (see the module's documentation).
pub struct KindCache {
    snapshot: RwLock<Arc<Snapshot>>,
    /// Held while Redis is read, so that concurrent refreshes are one.
    reading: tokio::sync::Mutex<()>,
}

struct Snapshot {
    kinds: BTreeMap<String, Arc<Kind>>,
    /// When the read of the registered kinds began; `None` before the first.
    read_at: Option<Instant>,
}

/// One kind, with its compiled input schema.
pub struct Kind {
    pub info: KindInfo,
    builtin: bool,
    /// Why the schema could not be compiled, if it could not.
    validator: Result<Validator, String>,
}

impl Default for KindCache {
    fn default() -> Self {
        let kinds = kinds::builtin()
            .into_iter()
            .map(|info| (info.name.clone(), Arc::new(Kind::new(info, true))))
            .collect();
        Self {
            snapshot: RwLock::new(Arc::new(Snapshot {
                kinds,
                read_at: None,
            })),
            reading: tokio::sync::Mutex::new(()),
        }
    }
}

impl KindCache {
    /// The kind called `name`, if there is one.
    pub async fn get(&self, store: &Store, name: &str) -> Result<Option<Arc<Kind>>, StoreError> {
        let asked = Instant::now();
        let snapshot = self.current();
        match snapshot.kinds.get(name) {
            Some(k) if k.builtin || !snapshot.stale(asked) => Ok(Some(k.clone())),
            Some(k) => match self.refresh(store, asked).await {
                Ok(fresh) => Ok(fresh.kinds.get(name).cloned()),
                Err(e) => {
                    tracing::debug!(error = %e, kind = name, "kinds not re-read; using the cached one");
                    Ok(Some(k.clone()))
                }
            },
            None => Ok(self.refresh(store, asked).await?.kinds.get(name).cloned()),
        }
    }

    /// Every kind, sorted by name, read afresh.
    pub async fn all(&self, store: &Store) -> Result<Vec<KindInfo>, StoreError> {
        let snapshot = self.refresh(store, Instant::now()).await?;
        Ok(snapshot.kinds.values().map(|k| k.info.clone()).collect())
    }

    /// The names of the kinds in the snapshot, sorted.
    pub fn names(&self) -> Vec<String> {
        self.current().kinds.keys().cloned().collect()
    }

    fn current(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// A snapshot read from Redis no earlier than `asked`.
    async fn refresh(&self, store: &Store, asked: Instant) -> Result<Arc<Snapshot>, StoreError> {
        let _reading = self.reading.lock().await;
        let old = self.current();
        if old.read_at.is_some_and(|at| at >= asked) {
            return Ok(old);
        }
        let read_at = Instant::now();
        let registered = store.registered_kinds().await?;
        let mut kinds: BTreeMap<String, Arc<Kind>> = old
            .kinds
            .iter()
            .filter(|(_, k)| k.builtin)
            .map(|(n, k)| (n.clone(), k.clone()))
            .collect();
        for (name, info) in registered {
            if kinds.get(&name).is_some_and(|k| k.builtin) {
                continue;
            }
            // Compiled once: an unchanged registration keeps its validator.
            let kind = match old.kinds.get(&name) {
                Some(k) if k.info == info => k.clone(),
                _ => Arc::new(Kind::new(info, false)),
            };
            kinds.insert(name, kind);
        }
        let fresh = Arc::new(Snapshot {
            kinds,
            read_at: Some(read_at),
        });
        *self
            .snapshot
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = fresh.clone();
        Ok(fresh)
    }
}

impl Snapshot {
    fn stale(&self, now: Instant) -> bool {
        self.read_at
            .is_none_or(|at| now.saturating_duration_since(at) > REFRESH_AFTER)
    }
}

impl Kind {
    fn new(mut info: KindInfo, builtin: bool) -> Self {
        let validator = check::compile(&info.input_schema);
        if let Err(e) = &validator {
            tracing::warn!(kind = %info.name, error = %e, "kind's input schema does not compile; its submits are refused");
        }
        // Published as a google.protobuf.Struct: boolean schemas become their object forms.
        info.input_schema = match info.input_schema {
            Value::Bool(true) => json!({}),
            Value::Object(o) => Value::Object(o),
            _ => json!({ "not": {} }),
        };
        Self {
            info,
            builtin,
            validator,
        }
    }
}
