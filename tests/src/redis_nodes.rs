//! The Redis side of the tests' bookkeeping, on a standalone Redis or a Redis Cluster alike:
//! the masters a URL list reaches, and removing a namespace's keys from all of them.
//!
//! On a cluster a `SCAN` sees only the keys of the node it is sent to, and a multi-key `UNLINK`
//! must stay in one slot, so both go to each master by its own connection, one key per command.

use lro_common::tls::ClientTls;

/// A client for every master behind `url`: the one Redis a single URL names, or each master of
/// the cluster a comma-separated seed list names (read from the first seed that answers
/// `CLUSTER NODES`).
pub async fn masters(url: &str, tls: &ClientTls) -> anyhow::Result<Vec<redis::Client>> {
    let seeds: Vec<&str> = url
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if seeds.len() <= 1 {
        return Ok(vec![tls.redis_client(url)?]);
    }
    let mut last = None;
    for seed in &seeds {
        let nodes: Result<String, redis::RedisError> = async {
            let mut conn = tls
                .redis_client(seed)?
                .get_multiplexed_async_connection()
                .await?;
            redis::cmd("CLUSTER")
                .arg("NODES")
                .query_async(&mut conn)
                .await
        }
        .await;
        match nodes {
            Ok(nodes) => {
                let scheme = seed.split("://").next().unwrap_or("redis");
                return master_addrs(&nodes)
                    .iter()
                    .map(|addr| Ok(tls.redis_client(&format!("{scheme}://{addr}"))?))
                    .collect();
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.map_or_else(|| anyhow::anyhow!("no redis seed"), anyhow::Error::from))
}

/// `host:port` of every master that holds slots and is not failed, from `CLUSTER NODES`.
fn master_addrs(nodes: &str) -> Vec<String> {
    nodes
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let flags = fields.get(2)?;
            let holds_slots = fields.len() > 8;
            (flags.split(',').any(|f| f == "master") && !flags.contains("fail") && holds_slots)
                .then(|| fields[1].split('@').next().unwrap_or(fields[1]).to_owned())
        })
        .collect()
}

/// Every key matching `pattern` on one node.
pub async fn scan(client: &redis::Client, pattern: &str) -> anyhow::Result<Vec<String>> {
    let mut conn = client.get_multiplexed_async_connection().await?;
    let mut all = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(10_000)
            .query_async(&mut conn)
            .await?;
        all.extend(keys);
        if next == 0 {
            return Ok(all);
        }
        cursor = next;
    }
}

/// Unlinks every key of namespace `ns` on every master behind `url`.
pub async fn remove_keys(url: &str, tls: &ClientTls, ns: &str) -> anyhow::Result<()> {
    for client in masters(url, tls).await? {
        let keys = scan(&client, &format!("{ns}:*")).await?;
        if keys.is_empty() {
            continue;
        }
        let mut conn = client.get_multiplexed_async_connection().await?;
        for chunk in keys.chunks(1000) {
            let mut pipe = redis::pipe();
            for key in chunk {
                pipe.cmd("UNLINK").arg(key).ignore();
            }
            let () = pipe.query_async(&mut conn).await?;
        }
    }
    Ok(())
}
