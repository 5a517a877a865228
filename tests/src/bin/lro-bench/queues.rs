//! The `queues` scenario: the quorum job queue beside the classic one, in the same run, on the
//! shared broker (one node) and on a private 3-node cluster (`deploy/rabbitmq-cluster.sh`, every
//! process connected to node 0, which leads the queue and replicates to the other two). For each:
//! `noop` submit → done end to end (the real processes), and cancel → the job observing its token.
//! Rounds alternate the configurations, and each figure is the median over the rounds.

use lro_common::topology::QueueType;
use lro_tests::Summary;

use crate::script_cluster::ScriptCluster;
use crate::{Args, Row, cancel_latency_on, throughput_on};

pub async fn queues(args: &Args) -> anyhow::Result<Vec<Row>> {
    let cluster = ScriptCluster::start("rabbitmq-cluster.sh", "lro-bench-rc", "rabbitmq")?;
    let shared = lro_common::config::Connections::local("unused").amqp_url;
    let brokers = [("1 node", shared), ("3 nodes", cluster.urls.clone())];
    let types = [QueueType::Classic, QueueType::Quorum];
    // [broker][type] → per-round figures.
    let mut e2e = vec![vec![Vec::new(); 2]; 2];
    let mut token = vec![vec![Vec::new(); 2]; 2];
    for _round in 0..args.queue_rounds {
        for (b, (_, urls)) in brokers.iter().enumerate() {
            for (t, queue_type) in types.iter().enumerate() {
                let vars = [
                    ("LRO_AMQP_URL", urls.clone()),
                    ("LRO_QUEUE_TYPE", queue_type.as_str().to_owned()),
                ];
                let rows = throughput_on(args, args.queue_ops, &vars).await?;
                let rate = rows.last().map(|r| r.p50).unwrap_or_default();
                e2e[b][t].push(rate);
                let cancels = cancel_latency_on(args.queue_cancels, 1, |c| {
                    c.amqp_url = urls.clone();
                    c.queue_type = *queue_type;
                })
                .await?;
                token[b][t].push(cancels.token.p50);
            }
        }
    }
    let median = |v: &[f64]| Summary::of(v).p50;
    let mut rows = Vec::new();
    for (b, (broker, _)) in brokers.iter().enumerate() {
        let classic_rate = median(&e2e[b][0]);
        let classic_token = median(&token[b][0]);
        for (t, queue_type) in types.iter().enumerate() {
            let label = |what: &str| format!("{what}, {}, {broker}", queue_type.as_str());
            let rate = median(&e2e[b][t]);
            let p50 = median(&token[b][t]);
            let mut rate_row = Row::value(
                "queues",
                &label("noop submit -> done"),
                "ops/s",
                args.queue_ops,
                rate,
            );
            let mut token_row = Row::value(
                "queues",
                &label("cancel -> token, p50"),
                "ms",
                args.queue_cancels,
                p50,
            );
            if t == 1 {
                rate_row = rate_row.compared(rate / classic_rate, "quorum / classic, same broker");
                token_row =
                    token_row.compared(p50 / classic_token, "quorum / classic, same broker");
            }
            rows.push(rate_row);
            rows.push(token_row);
        }
    }
    Ok(rows)
}
