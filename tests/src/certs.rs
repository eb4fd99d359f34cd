//! Certificates for the TLS tests, made fresh for each test with rcgen: a CA, a server
//! certificate for 127.0.0.1 and localhost, and a client certificate, written as PEM files.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use std::path::{Path, PathBuf};

/// One CA's files, and the server and client certificates it signed.
pub struct Pki {
    /// The CA certificate (`--tls_ca`).
    pub ca: PathBuf,
    /// The server's certificate and key.
    pub server_cert: PathBuf,
    /// The server's key.
    pub server_key: PathBuf,
    /// A client certificate (an engine's, for mutual TLS) and its key.
    pub client_cert: PathBuf,
    /// The client certificate's key.
    pub client_key: PathBuf,
}

fn write(dir: &Path, name: &str, pem: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, pem).expect("write a PEM file");
    path
}

impl Pki {
    /// Makes a CA named `name` and its certificates, under `dir` (file names start with
    /// `name`, so two CAs can share a directory).
    pub fn new(dir: &Path, name: &str) -> Pki {
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().expect("CA key"))
            .expect("self-signed CA");
        let leaf = |names: Vec<String>, purposes: Vec<ExtendedKeyUsagePurpose>| {
            let key = KeyPair::generate().expect("key");
            let mut params = CertificateParams::new(names).expect("params");
            params.extended_key_usages = purposes;
            let cert = params.signed_by(&key, &ca).expect("signed");
            (cert.pem(), key.serialize_pem())
        };
        // As scripts/certs.sh makes them: the server's also shows itself to Redis as a client.
        let (server_cert, server_key) = leaf(
            vec!["127.0.0.1".into(), "localhost".into()],
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        );
        let (client_cert, client_key) = leaf(
            vec!["engine.test".into()],
            vec![ExtendedKeyUsagePurpose::ClientAuth],
        );
        Pki {
            ca: write(dir, &format!("{name}-ca.pem"), &ca.pem()),
            server_cert: write(dir, &format!("{name}-server.pem"), &server_cert),
            server_key: write(dir, &format!("{name}-server.key"), &server_key),
            client_cert: write(dir, &format!("{name}-client.pem"), &client_cert),
            client_key: write(dir, &format!("{name}-client.key"), &client_key),
        }
    }

    /// A server's flags: its certificate, and with `mutual` the CA its clients must be
    /// signed by.
    pub fn server_args(&self, mutual: bool) -> Vec<String> {
        let mut args = vec![
            format!("--tls_cert={}", self.server_cert.display()),
            format!("--tls_key={}", self.server_key.display()),
        ];
        if mutual {
            args.push(format!("--tls_ca={}", self.ca.display()));
        }
        args
    }

    /// An engine's flags: the CA it trusts, and with `client_cert` its own certificate.
    pub fn engine_args(&self, client_cert: bool) -> Vec<String> {
        let mut args = vec![format!("--tls_ca={}", self.ca.display())];
        if client_cert {
            args.push(format!("--tls_cert={}", self.client_cert.display()));
            args.push(format!("--tls_key={}", self.client_key.display()));
        }
        args
    }
}
