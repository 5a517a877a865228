//! The `reads` and `auth` scenarios: `GET`s of operations at a fixed concurrency beside raw Redis
//! `HGET`s of the same records, and the same `GET`s with a JWT on every request.

use super::*;

/// `GET /v1/{name}` of done operations from `clients` clients for `read_secs`, vs `HGET` of the
/// same records at the same concurrency.
pub(crate) async fn reads(args: &Args) -> anyhow::Result<Vec<Row>> {
    let procs = Procs::start("bench", 1, 64).await?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.clients)
        .build()?;
    warm_up(&http, &procs).await?;
    let mut names = Vec::new();
    for _ in 0..200 {
        names.push(submit(&http, &procs.url("jobs"), "noop").await?);
    }
    let names = Arc::new(names);
    let window = Duration::from_secs(args.read_secs);

    let http_count = get_loop(procs.addr, &names, args.clients, window, None).await?;

    let keys = lro_common::store::Keys::new(&procs.namespace);
    let client = redis::Client::open("redis://127.0.0.1:6379")?;
    let op_keys: Arc<Vec<String>> = Arc::new(
        names
            .iter()
            .map(|n| lro_common::name::OperationName::parse(n).map(|n| keys.op(&n)))
            .collect::<Result<_, _>>()?,
    );
    // The baseline at the same concurrency: each of the `clients` loops on its own connection,
    // waiting for each answer, as each HTTP client does on its own keep-alive connection.
    let mut conns = Vec::new();
    for _ in 0..args.clients {
        conns.push(client.get_multiplexed_async_connection().await?);
    }
    let hget = |conn: &redis::aio::MultiplexedConnection, i: usize| {
        let mut conn = conn.clone();
        let key = op_keys[i % op_keys.len()].clone();
        async move {
            let _: Option<Vec<u8>> = redis::cmd("HGET")
                .arg(&key)
                .arg("r")
                .query_async(&mut conn)
                .await?;
            anyhow::Ok(())
        }
    };
    let redis_count = closed_loop(args.clients, window, |c, i| hget(&conns[c], i)).await?;
    // For scale: the same loops sharing one connection, which pipelines their commands.
    let pipelined_count = closed_loop(args.clients, window, |_, i| hget(&conns[0], i)).await?;
    procs.stop().await;

    let secs = window.as_secs_f64();
    let (api, raw) = (http_count as f64 / secs, redis_count as f64 / secs);
    Ok(vec![
        Row::value(
            "reads",
            "redis HGET/s of the records, a connection per client (baseline)",
            "req/s",
            redis_count,
            raw,
        ),
        Row::value(
            "reads",
            "redis HGET/s, the same clients on one pipelined connection",
            "req/s",
            pipelined_count,
            pipelined_count as f64 / secs,
        ),
        Row::value("reads", "GET /v1/{name}", "req/s", http_count, api)
            .compared(api / raw, ">= 0.5"),
    ])
}

/// `GET /v1/{name}` of `names` in turn from `clients` loops for `window`, each with an
/// `Authorization` header when `authorization` is given; returns how many were answered.
pub(crate) async fn get_loop(
    addr: std::net::SocketAddr,
    names: &[String],
    clients: usize,
    window: Duration,
    authorization: Option<&str>,
) -> anyhow::Result<usize> {
    // A lean HTTP/1.1 client (hyper, one keep-alive connection per loop): the clients share
    // the machine's 2 cores with the api, so a heavier client would measure itself.
    let mut senders = Vec::new();
    for _ in 0..clients {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        let (sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        senders.push(tokio::sync::Mutex::new(sender));
    }
    let paths: Vec<hyper::Uri> = names
        .iter()
        .map(|n| format!("/v1/{n}").parse())
        .collect::<Result<_, _>>()?;
    closed_loop(clients, window, |c, i| {
        let (senders, path) = (&senders, paths[i % paths.len()].clone());
        async move {
            let mut sender = senders[c].lock().await;
            sender.ready().await?;
            let mut req = hyper::Request::get(path).header(hyper::header::HOST, "127.0.0.1");
            if let Some(a) = authorization {
                req = req.header(hyper::header::AUTHORIZATION, a);
            }
            let req = req.body(http_body_util::Empty::<bytes::Bytes>::new())?;
            let res = sender.send_request(req).await?;
            if !res.status().is_success() {
                bail!("GET answered {}", res.status());
            }
            http_body_util::BodyExt::collect(res.into_body()).await?;
            anyhow::Ok(())
        }
    })
    .await
}

/// `GET /v1/{name}` with a JWT on every request (HS256, verified once and cached by the api)
/// vs the same without authentication: two api processes, measured in turn `rounds` times;
/// the median of the per-round ratios.
pub(crate) async fn auth(args: &Args) -> anyhow::Result<Vec<Row>> {
    let dir = std::env::temp_dir().join(format!("lro-bench-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir)?;
    let secret = dir.join("secret");
    std::fs::write(&secret, b"bench-secret-bench-secret-bench-secret")?;
    let plain = Procs::start("bench", 0, 1).await?;
    let secured = Procs::start_with(
        "bench",
        0,
        1,
        &[("LRO_AUTH_HS256_SECRET_FILE", secret.display().to_string())],
    )
    .await?;
    let exp = jsonwebtoken::get_current_timestamp() + 3600;
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": "bench", "scope": "lro.admin", "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(b"bench-secret-bench-secret-bench-secret")?,
    )?;
    let bearer = format!("Bearer {token}");
    let http = reqwest::Client::new();
    let (mut plain_names, mut secured_names) = (Vec::new(), Vec::new());
    for _ in 0..200 {
        plain_names.push(submit(&http, &plain.url("jobs"), "noop").await?);
        let name = http
            .post(secured.url("jobs"))
            .header("authorization", &bearer)
            .json(&json!({"kind": "noop"}))
            .send()
            .await?
            .error_for_status()?
            .json::<Value>()
            .await?["name"]
            .as_str()
            .context("no name")?
            .to_owned();
        secured_names.push(name);
    }
    let window = Duration::from_secs(args.read_secs);
    let (mut without, mut with, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..3 {
        let a = get_loop(plain.addr, &plain_names, args.clients, window, None).await?;
        let b = get_loop(
            secured.addr,
            &secured_names,
            args.clients,
            window,
            Some(&bearer),
        )
        .await?;
        let secs = window.as_secs_f64();
        without.push(a as f64 / secs);
        with.push(b as f64 / secs);
        ratios.push(b as f64 / a as f64);
    }
    plain.stop().await;
    secured.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    let ratio = Summary::of(&ratios).p50;
    Ok(vec![
        Row::summary(
            "auth",
            "GET /v1/{name}, authentication off (baseline)",
            "req/s",
            Summary::of(&without),
        ),
        Row::summary(
            "auth",
            "GET /v1/{name} with a JWT on every request",
            "req/s",
            Summary::of(&with),
        )
        .compared(ratio, ">= 0.9 (median of 3 interleaved rounds)"),
    ])
}

/// Runs `clients` loops of `request(client, i)` for `window` (`i` spreads the loops over the
/// records); returns how many completed.
pub(crate) async fn closed_loop<F, Fut>(
    clients: usize,
    window: Duration,
    request: F,
) -> anyhow::Result<usize>
where
    F: Fn(usize, usize) -> Fut + Clone,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let until = Instant::now() + window;
    let loops = (0..clients).map(|c| {
        let request = request.clone();
        async move {
            let mut count = 0;
            while Instant::now() < until {
                request(c, c * 7919 + count).await?;
                count += 1;
            }
            anyhow::Ok(count)
        }
    });
    Ok(futures_util::future::try_join_all(loops)
        .await?
        .into_iter()
        .sum())
}
