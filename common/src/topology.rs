//! The AMQP topology, declared in one place, and the publisher both processes use.
//!
//! | entity | name | why |
//! |---|---|---|
//! | jobs queue | `{ns}.jobs` | durable, not auto-delete: a job accepted while no worker runs must survive; messages are persistent and published with confirms, so an accepted job is on disk before the api answers |
//! | cancel exchange | `{ns}.cancel` (direct) | durable; a cancel is routed by worker id to the one worker that runs the operation (Redis says which), so a cancel costs one delivery whatever the number of workers |
//! | per-worker cancel queue | `{ns}.cancel.{worker_id}` | named by us (server-named queues break re-declaration after reconnect); auto-delete and non-durable: a cancel for a worker that is gone has nobody to stop, and Redis still holds the request |
//!
//! Consumers of the jobs queue use manual acks and prefetch = concurrency (see the worker); cancel
//! messages are consumed without acks: they are hints, Redis is the truth.
//!
//! Not here (later work): dead-lettering of poison messages, lease-based recovery, and the
//! handling of jobs longer than RabbitMQ's `consumer_timeout`.

use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};

use crate::name::OperationName;
use crate::wire::{self, CancelMessage, JobMessage};

/// Errors callers branch on.
#[derive(Debug, thiserror::Error)]
pub enum AmqpError {
    #[error("rabbitmq: {0}")]
    Lapin(#[from] lapin::Error),
    #[error("rabbitmq refused the message (nack)")]
    Nacked,
    #[error("rabbitmq could not route the message to {0}")]
    Unroutable(String),
}

/// Names of the AMQP entities of one namespace.
#[derive(Debug, Clone)]
pub struct Topology {
    ns: String,
}

impl Topology {
    pub fn new(namespace: &str) -> Self {
        Self {
            ns: namespace.to_owned(),
        }
    }

    pub fn jobs_queue(&self) -> String {
        format!("{}.jobs", self.ns)
    }

    pub fn cancel_exchange(&self) -> String {
        format!("{}.cancel", self.ns)
    }

    pub fn cancel_queue(&self, worker_id: &str) -> String {
        format!("{}.cancel.{worker_id}", self.ns)
    }

    /// Declares the shared entities (idempotent). Every process calls this at start.
    pub async fn declare(&self, channel: &Channel) -> Result<(), AmqpError> {
        channel
            .queue_declare(
                self.jobs_queue().as_str().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
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
                FieldTable::default(),
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
}

/// Opens a connection to RabbitMQ.
pub async fn connect(url: &str) -> Result<Connection, AmqpError> {
    Ok(Connection::connect(url, ConnectionProperties::default()).await?)
}

/// Publishes jobs and cancels on one channel with publisher confirms. Cheap to clone.
#[derive(Clone)]
pub struct Publisher {
    channel: Channel,
    topology: Topology,
}

impl Publisher {
    /// Opens a confirming channel and declares the shared topology.
    pub async fn open(connection: &Connection, topology: Topology) -> Result<Self, AmqpError> {
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        topology.declare(&channel).await?;
        Ok(Self { channel, topology })
    }

    /// Publishes a job persistently and waits for the broker's confirm.
    pub async fn publish_job(&self, name: &OperationName) -> Result<(), AmqpError> {
        let body = wire::encode(&JobMessage::V1 { name: name.clone() });
        let queue = self.topology.jobs_queue();
        self.publish("", &queue, &body, true).await
    }

    /// Routes a cancel to the worker running the operation. A worker that is gone has no queue
    /// and the message is dropped: that is not an error, Redis holds the request.
    pub async fn publish_cancel(
        &self,
        worker_id: &str,
        name: &OperationName,
        attempt: u32,
    ) -> Result<(), AmqpError> {
        let body = wire::encode(&CancelMessage::V1 {
            name: name.clone(),
            attempt,
        });
        let exchange = self.topology.cancel_exchange();
        match self.publish(&exchange, worker_id, &body, false).await {
            Err(AmqpError::Unroutable(_)) => Ok(()),
            other => other,
        }
    }

    async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        persistent: bool,
    ) -> Result<(), AmqpError> {
        let properties = BasicProperties::default()
            .with_delivery_mode(if persistent { 2 } else { 1 })
            .with_content_type("application/json".into());
        let confirm = self
            .channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                body,
                properties,
            )
            .await?
            .await?;
        match confirm {
            lapin::Confirmation::Ack(None) => Ok(()),
            lapin::Confirmation::Ack(Some(_)) => Err(AmqpError::Unroutable(routing_key.to_owned())),
            lapin::Confirmation::Nack(_) => Err(AmqpError::Nacked),
            lapin::Confirmation::NotRequested => Ok(()),
        }
    }
}
