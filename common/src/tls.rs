//! TLS on the RPC connections (rustls): the flags, the configurations they build, and the
//! stream a connection is served over once encrypted.
//!
//! A server given `--tls_cert/--tls_key` speaks only TLS; given `--tls_ca` as well, it asks
//! every client for a certificate signed by that CA (mutual TLS). An engine given `--tls_ca`
//! speaks TLS to its workers and itemsavers and trusts the certificates that CA signed; its
//! own `--tls_cert/--tls_key` are then its client certificate. The token handshake
//! ([`crate::handshake`]) runs inside the encrypted stream, so the two work alone or together.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::either::Either;

/// A connection's byte stream: plain TCP, or TLS over it.
pub type MaybeTls<S> = Either<S, tokio_rustls::TlsStream<S>>;

/// The TLS flags every binary takes.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TlsArgs {
    /// PEM certificate chain this process presents: a server's certificate, or an engine's
    /// client certificate for mutual TLS (and for a Redis that asks for one).
    #[arg(
        long = "tls_cert",
        alias = "tls-cert",
        value_name = "FILE",
        env = "SPINNERET_TLS_CERT",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of `--tls_cert`.
    #[arg(
        long = "tls_key",
        alias = "tls-key",
        value_name = "FILE",
        env = "SPINNERET_TLS_KEY",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,

    /// PEM certificate of the CA the crawl's certificates are signed by. On a server: clients
    /// must present a certificate it signed for clients (mutual TLS; its extended key usage
    /// must name clientAuth, as scripts/certs.sh sets). On an engine: connect to workers,
    /// itemsavers and `rediss://` Redis over TLS, trusting the certificates it signed.
    #[arg(
        long = "tls_ca",
        alias = "tls-ca",
        value_name = "FILE",
        env = "SPINNERET_TLS_CA"
    )]
    pub tls_ca: Option<PathBuf>,
}

/// Why the TLS flags cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or holds no usable PEM section.
    #[error("{flag} {}: {what}", path.display())]
    File {
        /// The flag naming the file.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        what: String,
    },
    /// rustls refused the certificates or key (a key that does not match, say).
    #[error("TLS set-up: {0}")]
    Rustls(String),
    /// A server given `--tls_ca` without a certificate of its own to serve.
    #[error(
        "--tls_ca on a server needs --tls_cert and --tls_key: the server must present a certificate to ask for one"
    )]
    CaWithoutCert,
}

impl TlsError {
    fn file(flag: &'static str, path: &Path, what: impl std::fmt::Display) -> TlsError {
        TlsError::File {
            flag,
            path: path.to_owned(),
            what: what.to_string(),
        }
    }
}

/// The cryptography rustls uses here, chosen explicitly so no process-wide default is needed.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn read_certs(flag: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| TlsError::file(flag, path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::file(flag, path, e))?;
    if certs.is_empty() {
        return Err(TlsError::file(flag, path, "no PEM certificate in it"));
    }
    Ok(certs)
}

fn read_key(flag: &'static str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::file(flag, path, e))
}

/// A certificate chain and its key.
type Identity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// The files a server presents itself with, and the flags that named them (for messages).
#[derive(Clone, Copy, Debug)]
pub struct IdentityFiles<'a> {
    /// The PEM certificate chain and its flag.
    pub cert: (&'static str, &'a Path),
    /// The PEM private key and its flag.
    pub key: (&'static str, &'a Path),
}

impl IdentityFiles<'_> {
    fn read(&self) -> Result<Identity, TlsError> {
        Ok((
            read_certs(self.cert.0, self.cert.1)?,
            read_key(self.key.0, self.key.1)?,
        ))
    }
}

/// The configuration an HTTPS server (the engine's admin API and dashboard,
/// `--admin_tls_cert/--admin_tls_key`) accepts TLS with. Browsers present no certificate, so
/// none is asked for.
pub fn https_config(files: IdentityFiles<'_>) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    serving(files.read()?, None, &[b"h2", b"http/1.1"])
}

fn serving(
    (certs, key): Identity,
    client_ca: Option<&Path>,
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(rustls_error)?;
    let builder = match client_ca {
        Some(ca) => {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots(ca)?),
                provider(),
            )
            .build()
            .map_err(rustls_error)?;
            builder.with_client_cert_verifier(Arc::new(ClientAuthRequired(verifier)))
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key).map_err(rustls_error)?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// A client certificate verifier that, besides the CA's signature, requires the certificate
/// to be for clients: its extended key usage must name clientAuth. rustls checks the
/// purpose only of certificates that state one; a certificate with none (as
/// `scripts/certs.sh` issued before it set one) or one issued for servers only (a worker's,
/// say) cannot then pass as an engine.
#[derive(Debug)]
struct ClientAuthRequired(Arc<dyn rustls::server::danger::ClientCertVerifier>);

/// Whether the certificate `der` names clientAuth in its extended key usage.
fn for_clients(der: &[u8]) -> bool {
    x509_parser::parse_x509_certificate(der)
        .ok()
        .and_then(|(_, cert)| {
            cert.extended_key_usage()
                .ok()
                .flatten()
                .map(|eku| eku.value.client_auth)
        })
        .unwrap_or(false)
}

impl rustls::server::danger::ClientCertVerifier for ClientAuthRequired {
    fn offer_client_auth(&self) -> bool {
        self.0.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.0.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.0.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        intermediates: &[rustls::pki_types::CertificateDer<'_>],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        let verified = self.0.verify_client_cert(end_entity, intermediates, now)?;
        if !for_clients(end_entity) {
            tracing::debug!(
                "refused a client certificate without clientAuth in its extended key usage"
            );
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::InvalidPurpose,
            ));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

fn roots(path: &Path) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in read_certs("--tls_ca", path)? {
        roots
            .add(cert)
            .map_err(|e| TlsError::file("--tls_ca", path, e))?;
    }
    Ok(roots)
}

fn rustls_error(e: impl std::fmt::Display) -> TlsError {
    TlsError::Rustls(e.to_string())
}

impl TlsArgs {
    /// The certificate and key, when both are given.
    fn identity(&self) -> Result<Option<Identity>, TlsError> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => IdentityFiles {
                cert: ("--tls_cert", cert),
                key: ("--tls_key", key),
            }
            .read()
            .map(Some),
            _ => Ok(None),
        }
    }

    /// Whether clients must present a certificate (`--tls_ca` on a server).
    pub fn mutual(&self) -> bool {
        self.tls_ca.is_some()
    }

    /// The configuration an RPC server accepts TLS with, when `--tls_cert/--tls_key` are
    /// given; with `--tls_ca` its clients must present certificates.
    pub fn server_config(&self) -> Result<Option<Arc<rustls::ServerConfig>>, TlsError> {
        match self.identity()? {
            Some(identity) => serving(identity, self.tls_ca.as_deref(), &[]).map(Some),
            None if self.tls_ca.is_some() => Err(TlsError::CaWithoutCert),
            None => Ok(None),
        }
    }

    /// The configuration a client (an engine) connects with TLS, when `--tls_ca` is given;
    /// with `--tls_cert/--tls_key` it presents them as its client certificate.
    pub fn client_config(&self) -> Result<Option<Arc<rustls::ClientConfig>>, TlsError> {
        let Some(ca) = &self.tls_ca else {
            return Ok(None);
        };
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(rustls_error)?
            .with_root_certificates(roots(ca)?);
        let config = match self.identity()? {
            Some((certs, key)) => builder
                .with_client_auth_cert(certs, key)
                .map_err(rustls_error)?,
            None => builder.with_no_client_auth(),
        };
        Ok(Some(Arc::new(config)))
    }
}

impl TlsArgs {
    /// TLS for a `rediss://` Redis: `--tls_ca` is trusted instead of the system's roots, and
    /// `--tls_cert/--tls_key` are presented to a Redis that asks for a client certificate.
    pub fn redis_tls(&self) -> Result<crate::redis_conn::RedisTls, TlsError> {
        let read = |flag: &'static str, path: &Path| {
            std::fs::read(path).map_err(|e| TlsError::file(flag, path, e))
        };
        Ok(crate::redis_conn::RedisTls {
            ca: self
                .tls_ca
                .as_deref()
                .map(|p| read("--tls_ca", p))
                .transpose()?,
            client: match (&self.tls_cert, &self.tls_key) {
                (Some(cert), Some(key)) => {
                    Some((read("--tls_cert", cert)?, read("--tls_key", key)?))
                }
                _ => None,
            },
        })
    }
}

/// The name a server's certificate must carry when dialled at `addr` (`host:port`, an IP
/// address or a DNS name; IPv6 in brackets).
pub fn server_name(addr: &str) -> Result<ServerName<'static>, std::io::Error> {
    let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let host = if host.is_empty() { "127.0.0.1" } else { host };
    ServerName::try_from(host.to_owned()).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{addr} is not a name a certificate can carry: {e}"),
        )
    })
}

/// Encrypts a connected stream as the client, verifying the server's certificate for `addr`.
pub async fn connect<S>(
    stream: S,
    config: &Arc<rustls::ClientConfig>,
    addr: &str,
) -> std::io::Result<MaybeTls<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let name = server_name(addr)?;
    let tls = tokio_rustls::TlsConnector::from(config.clone())
        .connect(name, stream)
        .await?;
    Ok(Either::Right(tokio_rustls::TlsStream::Client(tls)))
}

/// Encrypts an accepted stream as the server.
pub async fn accept<S>(
    stream: S,
    config: &Arc<rustls::ServerConfig>,
) -> std::io::Result<MaybeTls<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let tls = tokio_rustls::TlsAcceptor::from(config.clone())
        .accept(stream)
        .await?;
    Ok(Either::Right(tokio_rustls::TlsStream::Server(tls)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_come_from_the_dialled_host() {
        assert!(matches!(
            server_name("127.0.0.1:9000").expect("ip"),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            server_name("[::1]:9000").expect("ipv6"),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            server_name("w1.example:9000").expect("dns"),
            ServerName::DnsName(_)
        ));
    }

    #[test]
    fn a_ca_without_a_certificate_is_refused_on_a_server() {
        let args = TlsArgs {
            tls_ca: Some("/nonexistent/ca.pem".into()),
            ..TlsArgs::default()
        };
        assert!(matches!(args.server_config(), Err(TlsError::CaWithoutCert)));
        let err = args.client_config().expect_err("a missing CA file");
        assert!(
            err.to_string().contains("--tls_ca /nonexistent/ca.pem"),
            "{err}"
        );
    }
}
