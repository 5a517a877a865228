//! Shared by lro's processes, in layers: the pure domain ([`name`], [`status`], [`time`],
//! [`operation`], [`kinds`], [`filter`], [`trace`]) → wire formats ([`wire`]) → adapters ([`store`] for Redis,
//! [`topology`] and [`broker`] for RabbitMQ) → [`publish`] (guarded publishing: a queued operation reaches the
//! queue even if its process dies), [`reaper`] (recovery, over both) and [`cancel`] (one cancel, as
//! `:cancel` and a batch make it), [`config`], [`logging`] (with [`otel`], OTLP trace export) and [`tls`] (what outbound TLS trusts); [`admin`] and
//! [`metrics`] (health and metrics, the admin listener). The domain layer does no I/O and imports
//! no client crate; the adapters depend on it, never the reverse.

pub mod admin;
pub mod broker;
pub mod cancel;
pub mod config;
pub mod filter;
pub mod kinds;
pub mod logging;
pub mod lose;
pub mod metrics;
pub mod name;
pub mod operation;
pub mod otel;
pub mod publish;
pub mod reaper;
pub mod signal;
pub mod status;
pub mod store;
pub mod time;
pub mod tls;
pub mod topology;
pub mod trace;
pub mod wire;
