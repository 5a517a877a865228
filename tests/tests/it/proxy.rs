//! A TCP proxy owned by one test, between the processes under test and a shared service. Cutting
//! it is, to those processes, the service going away (every connection dropped, new ones refused)
//! — without disturbing the service or any other test.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

pub struct Proxy {
    pub addr: SocketAddr,
    /// The live connections' token while up; none while cut.
    link: Arc<Mutex<Option<CancellationToken>>>,
    stop: CancellationToken,
}

impl Proxy {
    /// Listens on a free local port and forwards to `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let link = Arc::new(Mutex::new(Some(CancellationToken::new())));
        let stop = CancellationToken::new();
        let upstream = upstream.to_owned();
        let (l, s) = (link.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = s.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((mut client, _)) = accepted else {
                    continue;
                };
                // Cut: the connection is dropped at once.
                let Some(live) = l.lock().expect("lock").clone() else {
                    continue;
                };
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        () = live.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                    }
                });
            }
        });
        Self { addr, link, stop }
    }

    /// The service goes away: every connection through the proxy drops, new ones are refused.
    pub fn cut(&self) {
        if let Some(live) = self.link.lock().expect("lock").take() {
            live.cancel();
        }
    }

    /// The service is back.
    pub fn restore(&self) {
        self.link
            .lock()
            .expect("lock")
            .get_or_insert_with(CancellationToken::new);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.stop.cancel();
    }
}
