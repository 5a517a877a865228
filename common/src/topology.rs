//! The AMQP topology, declared in one place. What publishes and connects is in
//! [`crate::broker`].
//!
//! | entity | name | why |
//! |---|---|---|
//! | jobs queue | `{ns}.jobs` | durable, not auto-delete: a job accepted while no worker runs must survive; messages are persistent and published with confirms, so an accepted job is on disk (on a quorum of nodes, for a quorum queue) before the api answers |
//! | cancel exchange | `{ns}.cancel` (direct) | durable; a cancel is routed by worker id to the one worker that runs the operation (Redis says which), so a cancel costs one delivery whatever the number of workers |
//! | dead-letter queue | `{ns}.dead` | durable, the jobs queue's type: job messages no worker can act on (undecodable, or of a kind no worker runs), kept for inspection with the reason in the `x-lro-reason` header |
//! | per-worker cancel queue | `{ns}.cancel.{worker_id}` | always classic (quorum queues cannot be auto-delete or transient); named by us (server-named queues break re-declaration after reconnect); auto-delete and non-durable: a cancel for a worker that is gone has nobody to stop, and Redis still holds the request |
//!
//! The durable queues are `quorum` queues by default (`LRO_QUEUE_TYPE`): replicated over the
//! cluster's nodes, a publish confirmed once a majority has it, a new leader elected when a node is
//! lost. `classic` is there for brokers that cannot run them. The two cannot share a name and
//! RabbitMQ cannot change a queue's type, so a mismatch is one clear error ([`AmqpError::QueueType`])
//! at start, naming what to do, never a retry loop of 406s.
//!
//! No `x-delivery-limit` on the quorum queue: a job's attempts are counted in Redis (a `start` is an
//! attempt; after the last one the operation fails), while the broker's delivery count also counts
//! redeliveries that are not attempts (a reconnect, a skipped duplicate). A limit would drop or
//! dead-letter the message of an operation Redis still holds as queued.
//!
//! Consumers of the jobs queue use manual acks and prefetch = concurrency (see the worker); cancel
//! messages are consumed without acks: they are hints, Redis is the truth.

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, ExchangeKind};

pub use crate::broker::AmqpError;

/// `LRO_QUEUE_TYPE`: the type of the durable queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum QueueType {
    // Replicated over the cluster (RabbitMQ's choice for durable, critical queues). Plain
    // comments: doc comments on variants would switch `--help` to its long layout.
    #[default]
    Quorum,
    // One node's queue; for brokers without quorum queues.
    Classic,
}

impl QueueType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Quorum => "quorum",
            Self::Classic => "classic",
        }
    }
}

/// Names of the AMQP entities of one namespace, and the type of its durable queues.
#[derive(Debug, Clone)]
pub struct Topology {
    ns: String,
    queue_type: QueueType,
}

impl Topology {
    pub fn new(namespace: &str, queue_type: QueueType) -> Self {
        Self {
            ns: namespace.to_owned(),
            queue_type,
        }
    }

    pub fn jobs_queue(&self) -> String {
        format!("{}.jobs", self.ns)
    }

    pub fn dead_queue(&self) -> String {
        format!("{}.dead", self.ns)
    }

    pub fn cancel_exchange(&self) -> String {
        format!("{}.cancel", self.ns)
    }

    pub fn cancel_queue(&self, worker_id: &str) -> String {
        format!("{}.cancel.{worker_id}", self.ns)
    }

    pub fn queue_type(&self) -> QueueType {
        self.queue_type
    }

    /// Declares the shared entities (idempotent). Every process calls this at start and after it
    /// reconnected (to whichever node of the cluster it reached).
    pub async fn declare(&self, channel: &Channel) -> Result<(), AmqpError> {
        for queue in [self.jobs_queue(), self.dead_queue()] {
            channel
                .queue_declare(
                    queue.as_str().into(),
                    QueueDeclareOptions {
                        durable: true,
                        ..QueueDeclareOptions::default()
                    },
                    queue_args(self.queue_type),
                )
                .await
                .map_err(|e| self.explain(&queue, e))?;
        }
        channel
            .exchange_declare(
                self.cancel_exchange().as_str().into(),
                ExchangeKind::Direct,
                ExchangeDeclareOptions {
                    durable: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        Ok(())
    }

    /// Declares a worker's own cancel queue, bound by its id.
    pub async fn declare_worker(
        &self,
        channel: &Channel,
        worker_id: &str,
    ) -> Result<String, AmqpError> {
        let queue = self.cancel_queue(worker_id);
        channel
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions {
                    auto_delete: true,
                    ..QueueDeclareOptions::default()
                },
                // Explicit, so that a vhost whose default type is quorum cannot refuse it.
                queue_args(QueueType::Classic),
            )
            .await?;
        channel
            .queue_bind(
                queue.as_str().into(),
                self.cancel_exchange().as_str().into(),
                worker_id.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok(queue)
    }

    /// A declaration refused because the queue exists with other arguments (406) is a queue of the
    /// other type: say so, and what to do.
    fn explain(&self, queue: &str, e: lapin::Error) -> AmqpError {
        let refused = match e.kind() {
            lapin::ErrorKind::ProtocolError(amqp) => {
                amqp.get_id() == 406 && amqp.get_message().as_str().contains("x-queue-type")
            }
            _ => false,
        };
        if !refused {
            return e.into();
        }
        let wanted = self.queue_type.as_str();
        let other = match self.queue_type {
            QueueType::Quorum => QueueType::Classic,
            QueueType::Classic => QueueType::Quorum,
        };
        AmqpError::QueueType(format!(
            "queue {queue} exists as a {} queue but LRO_QUEUE_TYPE is {wanted}: set \
             LRO_QUEUE_TYPE={} to keep using it, or drain and delete it to change its type",
            other.as_str(),
            other.as_str(),
        ))
    }
}

fn queue_args(queue_type: QueueType) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(queue_type.as_str().into()),
    );
    args
}
