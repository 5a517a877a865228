//! The AMQP topology, declared in one place, and the publisher both processes use.
//!
//! | entity | name | why |
//! |---|---|---|
//! | jobs queue | `{ns}.jobs` | durable, not auto-delete: a job accepted while no worker runs must survive; messages are persistent and published with confirms, so an accepted job is on disk before the api answers |
//! | cancel exchange | `{ns}.cancel` (direct) | durable; a cancel is routed by worker id to the one worker that runs the operation (Redis says which), so a cancel costs one delivery whatever the number of workers |
//! | dead-letter queue | `{ns}.dead` | durable: job messages no worker can act on (undecodable, or of a kind no worker runs), kept for inspection with the reason in the `x-lro-reason` header |
//! | per-worker cancel queue | `{ns}.cancel.{worker_id}` | named by us (server-named queues break re-declaration after reconnect); auto-delete and non-durable: a cancel for a worker that is gone has nobody to stop, and Redis still holds the request |
//!
//! Consumers of the jobs queue use manual acks and prefetch = concurrency (see the worker); cancel
//! messages are consumed without acks: they are hints, Redis is the truth.
//!
//! [`Broker`] is the publisher processes hold: it reconnects on its own after the broker or the
//! network failed, and answers an error at once while it cannot (the api turns that into 503).
//!

use std::sync::Arc;
use std::time::{Duration, Instant};

use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};

use crate::name::OperationName;
use crate::tls::ClientTls;
use crate::trace::TraceContext;
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
    #[error("rabbitmq did not answer within {0:?}")]
    Timeout(Duration),
    #[error("rabbitmq is unreachable (last attempt {0:?} ago: {1})")]
    Unreachable(Duration, String),
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

    pub fn dead_queue(&self) -> String {
        format!("{}.dead", self.ns)
    }

    pub fn cancel_exchange(&self) -> String {
        format!("{}.cancel", self.ns)
    }

    pub fn cancel_queue(&self, worker_id: &str) -> String {
        format!("{}.cancel.{worker_id}", self.ns)
    }

    /// Declares the shared entities (idempotent). Every process calls this at start.
    pub async fn declare(&self, channel: &Channel) -> Result<(), AmqpError> {
        for queue in [self.jobs_queue(), self.dead_queue()] {
            channel
                .queue_declare(
                    queue.as_str().into(),
                    QueueDeclareOptions {
                        durable: true,
                        ..QueueDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await?;
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

/// Longest a connection attempt may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest a publish may wait for the broker's confirm.
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);
/// After a failed connection attempt, publishes fail at once for this long before the next one.
const RECONNECT_PAUSE: Duration = Duration::from_millis(500);

/// Opens a connection to RabbitMQ (`amqps://` trusting `tls`).
pub async fn connect(url: &str, tls: &ClientTls) -> Result<Connection, AmqpError> {
    let connecting = async {
        let runtime = lapin::runtime::default_runtime()?;
        Connection::connect_with_config(url, ConnectionProperties::default(), tls.amqp(), runtime)
            .await
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
        Ok(connection) => Ok(connection?),
        Err(_) => Err(AmqpError::Timeout(CONNECT_TIMEOUT)),
    }
}

/// A confirming publisher that survives broker restarts: it keeps one connection, notices when it
/// is gone, and reconnects on the next publish (at most every half second while the broker is
/// down; meanwhile publishes fail at once). Cheap to clone.
#[derive(Clone)]
pub struct Broker {
    inner: Arc<BrokerInner>,
}

struct BrokerInner {
    url: String,
    tls: ClientTls,
    topology: Topology,
    state: tokio::sync::Mutex<BrokerState>,
}

#[derive(Default)]
struct BrokerState {
    session: Option<(Connection, Publisher)>,
    failed: Option<(Instant, String)>,
}

impl Broker {
    /// Connects now, so that a process that cannot reach RabbitMQ at start says so.
    pub async fn connect(
        url: &str,
        tls: &ClientTls,
        topology: Topology,
    ) -> Result<Self, AmqpError> {
        let broker = Self {
            inner: Arc::new(BrokerInner {
                url: url.to_owned(),
                tls: tls.clone(),
                topology,
                state: tokio::sync::Mutex::default(),
            }),
        };
        broker.publisher().await?;
        Ok(broker)
    }

    async fn publisher(&self) -> Result<Publisher, AmqpError> {
        let mut state = self.inner.state.lock().await;
        if let Some((connection, publisher)) = &state.session {
            if connection.status().connected() && publisher.channel.status().connected() {
                return Ok(publisher.clone());
            }
            tracing::warn!("rabbitmq connection lost; reconnecting");
            state.session = None;
        }
        if let Some((at, why)) = &state.failed
            && at.elapsed() < RECONNECT_PAUSE
        {
            return Err(AmqpError::Unreachable(at.elapsed(), why.clone()));
        }
        let opened = async {
            let connection = connect(&self.inner.url, &self.inner.tls).await?;
            let publisher = Publisher::open(&connection, self.inner.topology.clone()).await?;
            Ok::<_, AmqpError>((connection, publisher))
        }
        .await;
        match opened {
            Ok((connection, publisher)) => {
                if state.failed.take().is_some() {
                    tracing::info!("rabbitmq reconnected");
                }
                state.session = Some((connection, publisher.clone()));
                Ok(publisher)
            }
            Err(e) => {
                state.failed = Some((Instant::now(), e.to_string()));
                Err(e)
            }
        }
    }

    /// Whether the broker answers: the connection is up, or could be opened again now (at most
    /// every half second while the broker is down, as for a publish). For readiness probes.
    pub async fn ready(&self) -> bool {
        self.publisher().await.is_ok()
    }

    /// Drops the connection after an error that may mean it is broken.
    async fn forget(&self, e: &AmqpError) {
        if matches!(e, AmqpError::Lapin(_) | AmqpError::Timeout(_)) {
            let mut state = self.inner.state.lock().await;
            if let Some((connection, _)) = state.session.take() {
                let _ = connection.close(200, "reconnecting".into()).await;
            }
        }
    }

    async fn with_publisher<F, Fut>(&self, f: F) -> Result<(), AmqpError>
    where
        F: FnOnce(Publisher) -> Fut,
        Fut: std::future::Future<Output = Result<(), AmqpError>>,
    {
        let publisher = self.publisher().await?;
        let result = match tokio::time::timeout(PUBLISH_TIMEOUT, f(publisher)).await {
            Ok(result) => result,
            Err(_) => Err(AmqpError::Timeout(PUBLISH_TIMEOUT)),
        };
        if let Err(e) = &result {
            self.forget(e).await;
        }
        result
    }

    /// As [`Publisher::publish_job`].
    pub async fn publish_job(
        &self,
        name: &OperationName,
        trace: Option<&TraceContext>,
    ) -> Result<(), AmqpError> {
        self.with_publisher(|p| async move { p.publish_job(name, trace).await })
            .await
    }

    /// As [`Publisher::publish_dead`].
    pub async fn publish_dead(&self, body: &[u8], reason: &str) -> Result<(), AmqpError> {
        self.with_publisher(|p| async move { p.publish_dead(body, reason).await })
            .await
    }

    /// As [`Publisher::publish_cancel`].
    pub async fn publish_cancel(
        &self,
        worker_id: &str,
        name: &OperationName,
        attempt: u32,
        trace: Option<&TraceContext>,
    ) -> Result<(), AmqpError> {
        self.with_publisher(
            |p| async move { p.publish_cancel(worker_id, name, attempt, trace).await },
        )
        .await
    }
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

    /// Publishes a job persistently and waits for the broker's confirm; `trace` goes in the
    /// `traceparent` / `tracestate` headers.
    pub async fn publish_job(
        &self,
        name: &OperationName,
        trace: Option<&TraceContext>,
    ) -> Result<(), AmqpError> {
        let body = wire::encode(&JobMessage::V1 { name: name.clone() });
        let queue = self.topology.jobs_queue();
        self.publish("", &queue, &body, true, trace).await
    }

    /// Puts a job message no worker can act on in the dead-letter queue, with the reason.
    pub async fn publish_dead(&self, body: &[u8], reason: &str) -> Result<(), AmqpError> {
        let mut headers = FieldTable::default();
        headers.insert("x-lro-reason".into(), AMQPValue::LongString(reason.into()));
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_headers(headers);
        let queue = self.topology.dead_queue();
        self.publish_with("", &queue, body, properties).await
    }

    /// Routes a cancel to the worker running the operation. A worker that is gone has no queue
    /// and the message is dropped: that is not an error, Redis holds the request.
    pub async fn publish_cancel(
        &self,
        worker_id: &str,
        name: &OperationName,
        attempt: u32,
        trace: Option<&TraceContext>,
    ) -> Result<(), AmqpError> {
        let body = wire::encode(&CancelMessage::V1 {
            name: name.clone(),
            attempt,
        });
        let exchange = self.topology.cancel_exchange();
        match self
            .publish(&exchange, worker_id, &body, false, trace)
            .await
        {
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
        trace: Option<&TraceContext>,
    ) -> Result<(), AmqpError> {
        let mut properties = BasicProperties::default()
            .with_delivery_mode(if persistent { 2 } else { 1 })
            .with_content_type("application/json".into());
        if let Some(trace) = trace {
            properties = properties.with_headers(trace_headers(trace));
        }
        self.publish_with(exchange, routing_key, body, properties)
            .await
    }

    async fn publish_with(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<(), AmqpError> {
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

/// The W3C headers of `trace`, as AMQP message headers (the names HTTP uses, as the W3C draft for
/// AMQP suggests for application properties).
fn trace_headers(trace: &TraceContext) -> FieldTable {
    let mut headers = FieldTable::default();
    headers.insert(
        "traceparent".into(),
        AMQPValue::LongString(trace.traceparent().into()),
    );
    if let Some(state) = trace.state() {
        headers.insert("tracestate".into(), AMQPValue::LongString(state.into()));
    }
    headers
}

/// The trace a delivery carries in its `traceparent` / `tracestate` headers; `None` when it has
/// none or they do not parse (never an error).
pub fn trace_of(properties: &BasicProperties) -> Option<TraceContext> {
    let headers = properties.headers().as_ref()?.inner();
    let text = |key: &str| match headers.get(key)? {
        AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok(),
        _ => None,
    };
    TraceContext::from_headers(text("traceparent"), text("tracestate"))
}
