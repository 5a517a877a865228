//! Connections to RabbitMQ and the publisher both processes use.
//!
//! `LRO_AMQP_URL` is one node, or a comma-separated list of the nodes of one cluster ([`Nodes`]): a
//! process connects to the first that answers and, when its node goes away, to the next one
//! round-robin (so a lost node is tried last), re-declaring what it owns there. [`Broker`] is the
//! publisher processes hold: it reconnects on its own after the broker or the network failed, and
//! answers an error at once while it cannot (the api turns that into 503). What is declared is in
//! [`crate::topology`].

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};

use crate::name::OperationName;
use crate::tls::ClientTls;
use crate::topology::Topology;
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
    #[error("{0}")]
    QueueType(String),
    #[error("LRO_AMQP_URL names no node")]
    NoNodes,
}

/// Longest a connection attempt may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest a publish may wait for the broker's confirm.
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);
/// After a failed connection attempt, publishes fail at once for this long before the next one.
const RECONNECT_PAUSE: Duration = Duration::from_millis(500);

/// Opens a connection to one RabbitMQ node (`amqps://` trusting `tls`).
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

/// The nodes of one RabbitMQ cluster (`LRO_AMQP_URL`, comma-separated), and which to try first
/// next time. Shared by the connections of one owner (the api's publisher, a worker's session).
#[derive(Debug)]
pub struct Nodes {
    urls: Vec<String>,
    next: AtomicUsize,
}

impl Nodes {
    /// Splits a comma-separated list; blanks around a URL are ignored.
    pub fn parse(list: &str) -> Result<Self, AmqpError> {
        let urls: Vec<String> = list
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_owned)
            .collect();
        if urls.is_empty() {
            return Err(AmqpError::NoNodes);
        }
        Ok(Self {
            urls,
            next: AtomicUsize::new(0),
        })
    }

    /// Connects to the first node that answers, starting after the one connected to last time,
    /// so that after a node is lost the others are tried first. The error is the last node's.
    pub async fn connect(&self, tls: &ClientTls) -> Result<Connection, AmqpError> {
        let first = self.next.load(Ordering::Relaxed);
        let mut last = AmqpError::NoNodes;
        for i in 0..self.urls.len() {
            let at = (first + i) % self.urls.len();
            match connect(&self.urls[at], tls).await {
                Ok(connection) => {
                    self.next
                        .store((at + 1) % self.urls.len(), Ordering::Relaxed);
                    if self.urls.len() > 1 {
                        tracing::info!(node = at, "connected to rabbitmq");
                    }
                    return Ok(connection);
                }
                Err(e) => {
                    if self.urls.len() > 1 {
                        tracing::debug!(node = at, error = %e, "rabbitmq node does not answer");
                    }
                    last = e;
                }
            }
        }
        Err(last)
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
    nodes: Nodes,
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
    /// Connects now (to the first node of `urls` that answers), so that a process that cannot
    /// reach RabbitMQ at start says so.
    pub async fn connect(
        urls: &str,
        tls: &ClientTls,
        topology: Topology,
    ) -> Result<Self, AmqpError> {
        let broker = Self {
            inner: Arc::new(BrokerInner {
                nodes: Nodes::parse(urls)?,
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
            let connection = self.inner.nodes.connect(&self.inner.tls).await?;
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

    /// Drops the connection after an error that may mean it is broken. A nack counts: a quorum
    /// queue's client state lives in the channel, and a channel opened while the queue's leader
    /// was being elected again can go on nacking every publish after the new leader is up (seen
    /// with RabbitMQ 3.10 for over a minute); a new channel finds the new leader at once.
    async fn forget(&self, e: &AmqpError) {
        if matches!(
            e,
            AmqpError::Lapin(_) | AmqpError::Timeout(_) | AmqpError::Nacked
        ) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_list_splits_on_commas_and_ignores_blanks() {
        let nodes = Nodes::parse(" amqp://a:1/%2f ,, amqp://b:2/%2f,").expect("parses");
        assert_eq!(nodes.urls, ["amqp://a:1/%2f", "amqp://b:2/%2f"]);
        assert!(matches!(Nodes::parse(" , "), Err(AmqpError::NoNodes)));
    }
}
