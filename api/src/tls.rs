//! TLS on the api's own listeners: one certificate chain and key (PEM, from `LRO_TLS_CERT_FILE`
//! and `LRO_TLS_KEY_FILE`) serve REST (ALPN `http/1.1`) and gRPC (ALPN `h2`). Handshakes run in
//! their own tasks, each bounded in time, so a slow or failing client delays and harms nobody
//! else; only finished handshakes reach axum or tonic, which serve them as they serve plain TCP
//! (graceful shutdown included). No client certificates (authentication is the bearer token's
//! job); rustls on ring, the workspace's one crypto provider. Outbound TLS (`rediss://`,
//! `amqps://`) is `lro_common::tls`.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_util::sync::CancellationToken;

/// Longest a client may take over its handshake before it is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The flags: both or neither.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TlsArgs {
    /// PEM certificate chain (leaf first) to serve REST and gRPC over TLS; needs --tls-key-file.
    #[arg(long, env = "LRO_TLS_CERT_FILE")]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key (PKCS#8, RSA or SEC1) of the certificate; needs --tls-cert-file.
    #[arg(long, env = "LRO_TLS_KEY_FILE")]
    pub tls_key_file: Option<PathBuf>,
}

impl TlsArgs {
    /// Both files, none (plain TCP), or an error when only one is given.
    pub fn files(self) -> Result<Option<TlsFiles>, TlsError> {
        match (self.tls_cert_file, self.tls_key_file) {
            (Some(cert), Some(key)) => Ok(Some(TlsFiles { cert, key })),
            (None, None) => Ok(None),
            (Some(_), None) => Err(TlsError::Half("LRO_TLS_CERT_FILE", "LRO_TLS_KEY_FILE")),
            (None, Some(_)) => Err(TlsError::Half("LRO_TLS_KEY_FILE", "LRO_TLS_CERT_FILE")),
        }
    }
}

/// Where the api's certificate chain and key are.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Why TLS could not be set up; each renders as one line.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{0} is set but {1} is not: serving TLS needs both (or neither, for plain TCP)")]
    Half(&'static str, &'static str),
    #[error("cannot read TLS {what} file {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("TLS {what} file {path} holds no PEM {what}")]
    Missing { what: &'static str, path: PathBuf },
    #[error("TLS {what} file {path} is not valid PEM: {why}")]
    BadPem {
        what: &'static str,
        path: PathBuf,
        why: String,
    },
    #[error("TLS key {key} does not fit certificate {cert}: {why}")]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        why: rustls::Error,
    },
}

/// The loaded certificate, one acceptor per listener (they differ in ALPN only).
#[derive(Clone)]
pub(crate) struct ServerTls {
    pub(crate) rest: TlsAcceptor,
    pub(crate) grpc: TlsAcceptor,
}

impl ServerTls {
    pub(crate) fn load(files: &TlsFiles) -> Result<Self, TlsError> {
        let certs = read_pem(&files.cert, "certificate", |pem| {
            CertificateDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>()
        })?;
        if certs.is_empty() {
            return Err(TlsError::Missing {
                what: "certificate",
                path: files.cert.clone(),
            });
        }
        let key = read_pem(&files.key, "key", PrivateKeyDer::from_pem_slice)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
            .map_err(|why| TlsError::Mismatch {
                cert: files.cert.clone(),
                key: files.key.clone(),
                why,
            })?;
        let with_alpn = |alpn: &[u8]| {
            let mut c = config.clone();
            c.alpn_protocols = vec![alpn.to_vec()];
            TlsAcceptor::from(Arc::new(c))
        };
        Ok(Self {
            rest: with_alpn(b"http/1.1"),
            grpc: with_alpn(b"h2"),
        })
    }
}

fn read_pem<T>(
    path: &Path,
    what: &'static str,
    parse: impl FnOnce(&[u8]) -> Result<T, pem::Error>,
) -> Result<T, TlsError> {
    let bytes = std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_owned(),
        source,
    })?;
    parse(&bytes).map_err(|e| match e {
        pem::Error::NoItemsFound => TlsError::Missing {
            what,
            path: path.to_owned(),
        },
        e => TlsError::BadPem {
            what,
            path: path.to_owned(),
            why: e.to_string(),
        },
    })
}

/// One connection whose handshake is done.
pub(crate) struct TlsConn(tokio_rustls::server::TlsStream<TcpStream>);

/// Accepts on `listener` until `shutdown` fires (or nobody takes connections any more); each
/// handshake runs in a task of its own, and the finished ones come out of the receiver.
fn accept(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    shutdown: CancellationToken,
) -> mpsc::Receiver<(TlsConn, SocketAddr)> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = shutdown.cancelled() => return,
                () = tx.closed() => return,
                accepted = listener.accept() => accepted,
            };
            let (tcp, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin (as axum does).
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send((TlsConn(tls), peer)).await;
                    }
                    Ok(Err(e)) => tracing::debug!(%peer, "tls handshake failed: {e}"),
                    Err(_) => tracing::debug!(%peer, "tls handshake timed out"),
                }
            });
        }
    });
    rx
}

/// The REST listener over TLS, for `axum::serve`.
pub(crate) struct RestListener {
    conns: mpsc::Receiver<(TlsConn, SocketAddr)>,
    local: SocketAddr,
}

impl RestListener {
    pub(crate) fn new(
        listener: TcpListener,
        tls: &ServerTls,
        shutdown: CancellationToken,
    ) -> io::Result<Self> {
        let local = listener.local_addr()?;
        Ok(Self {
            conns: accept(listener, tls.rest.clone(), shutdown),
            local,
        })
    }
}

impl axum::serve::Listener for RestListener {
    type Io = TlsConn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.conns.recv().await {
            Some(conn) => conn,
            // Only after shutdown, which axum is watching too: nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// The gRPC listener over TLS, as the stream tonic takes.
pub(crate) fn grpc_incoming(
    listener: TcpListener,
    tls: &ServerTls,
    shutdown: CancellationToken,
) -> impl Stream<Item = io::Result<TlsConn>> {
    let conns = accept(listener, tls.grpc.clone(), shutdown);
    futures_util::stream::unfold(conns, |mut conns| async move {
        let (conn, _) = conns.recv().await?;
        Some((Ok(conn), conns))
    })
}

impl tonic::transport::server::Connected for TlsConn {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.0.get_ref().0.connect_info()
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(cert: Option<&str>, key: Option<&str>) -> TlsArgs {
        TlsArgs {
            tls_cert_file: cert.map(PathBuf::from),
            tls_key_file: key.map(PathBuf::from),
        }
    }

    #[test]
    fn both_files_or_neither() {
        assert!(args(None, None).files().expect("plain").is_none());
        assert!(args(Some("c"), Some("k")).files().expect("tls").is_some());
        let e = args(Some("c"), None).files().expect_err("half");
        assert_eq!(
            e.to_string(),
            "LRO_TLS_CERT_FILE is set but LRO_TLS_KEY_FILE is not: serving TLS needs both (or \
             neither, for plain TCP)"
        );
        let e = args(None, Some("k")).files().expect_err("half");
        assert!(
            e.to_string()
                .starts_with("LRO_TLS_KEY_FILE is set but LRO_TLS_CERT_FILE")
        );
    }

    #[test]
    fn unreadable_and_empty_files_say_which() {
        let dir = std::env::temp_dir().join(format!("lro-tls-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).expect("dir");
        let junk = dir.join("junk.pem");
        std::fs::write(&junk, "no pem here\n").expect("write");
        let missing = dir.join("missing.pem");

        let load = |cert: &Path, key: &Path| {
            let files = TlsFiles {
                cert: cert.to_owned(),
                key: key.to_owned(),
            };
            ServerTls::load(&files).err().expect("refused").to_string()
        };
        let e = load(&missing, &junk);
        assert!(e.starts_with("cannot read TLS certificate file "), "{e}");
        assert!(!e.contains('\n'), "{e}");
        let e = load(&junk, &junk);
        assert!(e.ends_with("junk.pem holds no PEM certificate"), "{e}");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
