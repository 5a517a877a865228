//! One connection to RabbitMQ and the worker's two consumers on it. When either consumer fails
//! (the broker restarted, the network dropped, the broker closed the channel) the worker drops the
//! session and opens a new one — on the next node of the cluster, when `LRO_AMQP_URL` lists several —
//! declaring its queues there again; its running jobs carry on meanwhile under their leases.

use lapin::options::{BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Connection, Consumer};
use lro_common::tls::ClientTls;
use std::sync::Arc;

use lro_common::broker::{AmqpError, Nodes};
use lro_common::topology::Topology;

use crate::consumer::acks::Acks;

pub(crate) struct Session {
    connection: Connection,
    pub(crate) jobs: Consumer,
    pub(crate) cancels: Consumer,
    /// The jobs channel's acks, coalesced.
    pub(crate) acks: Arc<Acks>,
}

/// What a session is opened with.
#[derive(Clone)]
pub(crate) struct SessionConfig {
    /// The cluster's nodes: a new session starts after the node of the last one.
    pub(crate) nodes: Arc<Nodes>,
    pub(crate) tls: ClientTls,
    pub(crate) topology: Topology,
    pub(crate) worker_id: String,
    pub(crate) concurrency: u16,
}

impl Session {
    /// Connects, declares the topology and the worker's cancel queue, and starts both consumers.
    pub(crate) async fn open(config: &SessionConfig) -> Result<Self, AmqpError> {
        let SessionConfig {
            nodes,
            tls,
            topology,
            worker_id: id,
            concurrency,
        } = config;
        let connection = nodes.connect(tls).await?;
        let cancel_channel = connection.create_channel().await?;
        topology.declare(&cancel_channel).await?;
        let cancel_queue = topology.declare_worker(&cancel_channel, id).await?;
        // Cancels are hints (Redis is the truth), so they are consumed without acks.
        let cancels = cancel_channel
            .basic_consume(
                cancel_queue.as_str().into(),
                id.as_str().into(),
                BasicConsumeOptions {
                    no_ack: true,
                    exclusive: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        let jobs_channel = connection.create_channel().await?;
        // Prefetch = concurrency: a delivery stays unacked while its job runs, so the broker sends
        // a job only to a worker with a free slot. Slots bound the rest (after a reconnect, jobs
        // of the old session still run).
        jobs_channel
            .basic_qos(*concurrency, BasicQosOptions::default())
            .await?;
        let jobs = jobs_channel
            .basic_consume(
                topology.jobs_queue().as_str().into(),
                id.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok(Self {
            connection,
            jobs,
            cancels,
            acks: Acks::start(),
        })
    }

    /// Sends the acks still waiting, then closes the connection.
    pub(crate) async fn close(self) {
        self.acks.close().await;
        let _ = self.connection.close(200, "worker stopped".into()).await;
    }
}
