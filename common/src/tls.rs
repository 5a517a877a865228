//! Trust for the outbound TLS connections: `rediss://` to Redis and `amqps://` to RabbitMQ.
//! Both trust the system's roots (`/etc/ssl/certs`, or `SSL_CERT_FILE` / `SSL_CERT_DIR` when set,
//! which replace them) and, when the deployment gives one, its own CA (`LRO_TLS_CA_FILE`, PEM)
//! besides. Plain `redis://` and `amqp://` URLs ignore all of it. Client certificates (mutual TLS)
//! are not supported; rustls runs on ring, the workspace's one crypto provider.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// Why the trust could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read TLS CA file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("TLS CA file {path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("TLS CA file {path} is not valid PEM: {why}")]
    BadPem { path: PathBuf, why: String },
}

/// What outbound TLS trusts: the system's roots, plus the deployment's CA if it gave one.
/// Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct ClientTls {
    /// The deployment's CA certificates, PEM, checked to hold at least one certificate.
    extra_ca_pem: Option<Arc<str>>,
}

impl ClientTls {
    /// The system's roots only.
    pub fn system() -> Self {
        Self::default()
    }

    /// The system's roots plus the certificates of `ca_file` (PEM), if given.
    pub fn load(ca_file: Option<&Path>) -> Result<Self, TlsError> {
        let Some(path) = ca_file else {
            return Ok(Self::system());
        };
        let pem = std::fs::read_to_string(path).map_err(|source| TlsError::Read {
            path: path.to_owned(),
            source,
        })?;
        let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::BadPem {
                path: path.to_owned(),
                why: e.to_string(),
            })?;
        if certs.is_empty() {
            return Err(TlsError::NoCertificate {
                path: path.to_owned(),
            });
        }
        Ok(Self {
            extra_ca_pem: Some(pem.into()),
        })
    }

    /// A Redis client for `url`. For `rediss://` with a CA of our own, redis-rs takes one set of
    /// roots, which then replaces the system's: so it is given both.
    pub fn redis_client(&self, url: &str) -> redis::RedisResult<redis::Client> {
        let tls = url
            .trim_start()
            .to_ascii_lowercase()
            .starts_with("rediss://");
        match &self.extra_ca_pem {
            Some(extra) if tls => {
                let mut roots = system_roots_pem();
                roots.push_str(extra);
                redis::Client::build_with_tls(
                    url,
                    redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(roots.into_bytes()),
                    },
                )
            }
            _ => redis::Client::open(url),
        }
    }

    /// A Redis Cluster client seeded with `urls` (all `redis://` or all `rediss://`), trusting the
    /// same roots as [`ClientTls::redis_client`].
    pub fn redis_cluster_client(
        &self,
        urls: &[&str],
    ) -> redis::RedisResult<redis::cluster::ClusterClientBuilder> {
        let tls: Vec<bool> = urls
            .iter()
            .map(|u| u.trim_start().to_ascii_lowercase().starts_with("rediss://"))
            .collect();
        if tls.iter().any(|&t| t) && !tls.iter().all(|&t| t) {
            return Err(redis::RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "redis cluster seed nodes mix redis:// and rediss://",
            )));
        }
        let builder = redis::cluster::ClusterClientBuilder::new(urls.to_vec());
        Ok(match &self.extra_ca_pem {
            Some(extra) if tls.iter().all(|&t| t) => {
                let mut roots = system_roots_pem();
                roots.push_str(extra);
                builder.certs(redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(roots.into_bytes()),
                })
            }
            _ => builder,
        })
    }

    /// lapin's TLS settings: it loads the system's roots itself and adds these.
    pub fn amqp(&self) -> lapin::tcp::OwnedTLSConfig {
        lapin::tcp::OwnedTLSConfig {
            identity: None,
            cert_chain: self.extra_ca_pem.as_deref().map(str::to_owned),
        }
    }
}

/// The system's roots as PEM (those that load; a broken one is skipped, as lapin does).
fn system_roots_pem() -> String {
    let loaded = rustls_native_certs::load_native_certs();
    for e in &loaded.errors {
        tracing::debug!("skipping a system root certificate: {e}");
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut pem = String::new();
    for cert in loaded.certs {
        pem.push_str("-----BEGIN CERTIFICATE-----\n");
        let body = b64.encode(cert.as_ref());
        for line in body.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).unwrap_or_default());
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
    }
    pem
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_file_means_system_roots() {
        assert!(ClientTls::load(None).expect("ok").extra_ca_pem.is_none());
    }

    #[test]
    fn unreadable_or_empty_files_are_refused() {
        let missing = Path::new("/nonexistent/lro-ca.pem");
        let e = ClientTls::load(Some(missing)).expect_err("missing");
        assert!(
            e.to_string()
                .starts_with("cannot read TLS CA file /nonexistent/lro-ca.pem")
        );

        let dir = std::env::temp_dir().join(format!("lro-tls-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).expect("dir");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").expect("write");
        let e = ClientTls::load(Some(&empty)).expect_err("empty");
        assert!(e.to_string().contains("holds no PEM certificate"), "{e}");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn system_roots_are_pem_the_redis_client_accepts() {
        let pem = system_roots_pem();
        let back = CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .expect("pem round trip");
        assert_eq!(
            back.len(),
            rustls_native_certs::load_native_certs().certs.len()
        );
    }
}
