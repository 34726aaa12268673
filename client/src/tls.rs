//! TLS on links: what a client trusts a replica by ([`ClientTls`]), the
//! PEM files it is made from, and a link that is plain TCP or TLS, split in
//! the halves the framing reads and writes ([`LinkRead`], [`LinkWrite`]).
//!
//! A replica's certificate names its address: an IP SAN (`127.0.0.1`) for a
//! replica reached by IP, a DNS SAN for one reached by name. A client checks
//! the host of the address it dials against it, unless
//! [`ClientTls::with_server_name`] names another.

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
pub use tokio_rustls::rustls;
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{AlertDescription, CertificateError, RootCertStore};

/// A TLS setting that cannot be used: a file that cannot be read or holds
/// nothing usable, or certificates and key that do not go together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsError(pub String);

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsError {}

/// The crypto provider every TLS config here uses: ring, which builds with a
/// C compiler alone.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate in a PEM file (a chain: the leaf first).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            TlsError(format!(
                "cannot read certificates from {}: {e}",
                path.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(TlsError(format!(
            "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        )));
    }
    Ok(certs)
}

/// The private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| {
        TlsError(format!(
            "cannot read a private key from {}: {e}",
            path.display()
        ))
    })
}

/// The CA certificates in a PEM file, as trust anchors.
pub fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots.add(cert).map_err(|e| {
            TlsError(format!(
                "{}: not a usable CA certificate: {e}",
                path.display()
            ))
        })?;
    }
    Ok(roots)
}

/// What a client trusts a replica by, and the certificate it presents when
/// the replica asks for one. Cheap to clone.
#[derive(Clone)]
pub struct ClientTls {
    config: Arc<rustls::ClientConfig>,
    server_name: Option<ServerName<'static>>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("server_name", &self.server_name)
            .field(
                "client_cert",
                &self.config.client_auth_cert_resolver.has_certs(),
            )
            .finish()
    }
}

impl ClientTls {
    /// Trusts replicas whose certificate the CA in `ca_file` signed;
    /// presents `client_cert` (certificate chain file, key file) when a
    /// replica asks for one (`concoord replica --tls-client-auth`).
    pub fn from_files(
        ca_file: &Path,
        client_cert: Option<(&Path, &Path)>,
    ) -> Result<Self, TlsError> {
        let roots = load_roots(ca_file)?;
        let builder = rustls::ClientConfig::builder_with_provider(crypto_provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError(e.to_string()))?
            .with_root_certificates(roots);
        let config = match client_cert {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => builder
                .with_client_auth_cert(load_certs(cert)?, load_key(key)?)
                .map_err(|e| {
                    TlsError(format!(
                        "{} and {} do not make a client certificate: {e}",
                        cert.display(),
                        key.display()
                    ))
                })?,
        };
        Ok(ClientTls::from_config(Arc::new(config)))
    }

    /// A ready rustls config (for settings the files above do not cover).
    pub fn from_config(config: Arc<rustls::ClientConfig>) -> Self {
        ClientTls {
            config,
            server_name: None,
        }
    }

    /// Checks every replica's certificate against `name` (a DNS name or an
    /// IP address) instead of the host of the address dialled.
    pub fn with_server_name(mut self, name: &str) -> Result<Self, TlsError> {
        let name = ServerName::try_from(name.to_string())
            .map_err(|e| TlsError(format!("{name:?} is not a DNS name or IP address: {e}")))?;
        self.server_name = Some(name);
        Ok(self)
    }

    fn server_name_for(&self, addr: &str) -> Result<ServerName<'static>, String> {
        if let Some(name) = &self.server_name {
            return Ok(name.clone());
        }
        let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        ServerName::try_from(host.to_string())
            .map_err(|e| format!("{host:?} cannot name a TLS server: {e}"))
    }
}

/// The read half of a link, plain or TLS.
pub enum LinkRead {
    Plain(OwnedReadHalf),
    Tls(tokio::io::ReadHalf<tokio_rustls::TlsStream<TcpStream>>),
}

/// The write half of a link, plain or TLS.
pub enum LinkWrite {
    Plain(OwnedWriteHalf),
    Tls(tokio::io::WriteHalf<tokio_rustls::TlsStream<TcpStream>>),
}

/// Splits a plain TCP link.
pub fn split_plain(stream: TcpStream) -> (LinkRead, LinkWrite) {
    let (read, write) = stream.into_split();
    (LinkRead::Plain(read), LinkWrite::Plain(write))
}

/// Splits a TLS link (either side's).
pub fn split_tls(stream: tokio_rustls::TlsStream<TcpStream>) -> (LinkRead, LinkWrite) {
    let (read, write) = tokio::io::split(stream);
    (LinkRead::Tls(read), LinkWrite::Tls(write))
}

impl AsyncRead for LinkRead {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            LinkRead::Plain(r) => Pin::new(r).poll_read(cx, buf),
            LinkRead::Tls(r) => Pin::new(r).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for LinkWrite {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            LinkWrite::Plain(w) => Pin::new(w).poll_write(cx, buf),
            LinkWrite::Tls(w) => Pin::new(w).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            LinkWrite::Plain(w) => Pin::new(w).poll_write_vectored(cx, bufs),
            LinkWrite::Tls(w) => Pin::new(w).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            LinkWrite::Plain(w) => w.is_write_vectored(),
            LinkWrite::Tls(w) => w.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            LinkWrite::Plain(w) => Pin::new(w).poll_flush(cx),
            LinkWrite::Tls(w) => Pin::new(w).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            LinkWrite::Plain(w) => Pin::new(w).poll_shutdown(cx),
            LinkWrite::Tls(w) => Pin::new(w).poll_shutdown(cx),
        }
    }
}

/// Why a link could not be opened.
#[derive(Debug)]
pub enum LinkError {
    /// Not reachable now (refused, timed out, reset): another replica or a
    /// later try may do.
    Unreachable(String),
    /// TLS on the two sides does not agree (a certificate not trusted or
    /// expired, TLS against plain TCP): trying again will not help. The
    /// message says what to check.
    Tls(String),
}

impl std::fmt::Display for LinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinkError::Unreachable(why) | LinkError::Tls(why) => f.write_str(why),
        }
    }
}

/// Opens a link to `addr`: TCP, then the TLS handshake when `tls` is given,
/// each within `timeout`.
pub async fn connect(
    addr: &str,
    tls: Option<&ClientTls>,
    timeout: Duration,
) -> Result<(LinkRead, LinkWrite), LinkError> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| LinkError::Unreachable(format!("cannot reach {addr}: connect timed out")))?
        .map_err(|e| LinkError::Unreachable(format!("cannot reach {addr}: {e}")))?;
    let _ = stream.set_nodelay(true);
    let Some(tls) = tls else {
        return Ok(split_plain(stream));
    };
    let name = tls.server_name_for(addr).map_err(LinkError::Tls)?;
    let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
    match tokio::time::timeout(timeout, connector.connect(name, stream)).await {
        Err(_) => Err(LinkError::Unreachable(format!(
            "TLS handshake with {addr} timed out after {timeout:?}: is the replica serving TLS \
             (started with --tls-cert and --tls-key)?"
        ))),
        Ok(Err(e)) => Err(handshake_error(addr, &e)),
        Ok(Ok(stream)) => Ok(split_tls(tokio_rustls::TlsStream::Client(stream))),
    }
}

/// Classifies an IO error on a TLS link: `Some(message)` when TLS itself
/// failed (the settings disagree), with what to check.
pub fn tls_failure(addr: &str, e: &io::Error) -> Option<String> {
    let tls = e.get_ref()?.downcast_ref::<rustls::Error>()?;
    let hint = match tls {
        rustls::Error::InvalidCertificate(CertificateError::Expired)
        | rustls::Error::InvalidCertificate(CertificateError::ExpiredContext { .. }) => {
            "the replica's certificate has expired (or this machine's clock is wrong): renew it"
                .to_string()
        }
        rustls::Error::InvalidCertificate(CertificateError::NotValidYet)
        | rustls::Error::InvalidCertificate(CertificateError::NotValidYetContext { .. }) => {
            "the replica's certificate is not valid yet (check the clocks)".to_string()
        }
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            "the replica's certificate is not signed by the CA in --tls-ca: pass the CA that \
             signed the replicas' certificates"
                .to_string()
        }
        rustls::Error::InvalidCertificate(CertificateError::NotValidForName)
        | rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext { .. }) => {
            format!(
                "the replica's certificate does not name {addr}'s host: give it the replica's \
                 address as an IP SAN (or DNS name), or pass --tls-server-name"
            )
        }
        rustls::Error::InvalidCertificate(_) => {
            "the replica's certificate was rejected: check it and --tls-ca".to_string()
        }
        rustls::Error::AlertReceived(AlertDescription::CertificateRequired) => {
            "the replica requires a client certificate (--tls-client-auth): pass --tls-cert and \
             --tls-key"
                .to_string()
        }
        rustls::Error::AlertReceived(
            AlertDescription::UnknownCA
            | AlertDescription::BadCertificate
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateUnknown
            | AlertDescription::DecryptError,
        ) => "the replica rejected our client certificate: check it is signed by the \
              replica's --tls-ca and has not expired"
            .to_string(),
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
            format!(
                "{addr} did not answer in TLS: it serves plain TCP; connect without --tls-ca, \
                 or start the replica with --tls-cert and --tls-key"
            )
        }
        _ => "check that the replica serves TLS and that --tls-ca names the CA that signed its \
              certificate"
            .to_string(),
    };
    Some(format!("TLS with {addr} failed ({tls}): {hint}"))
}

fn handshake_error(addr: &str, e: &io::Error) -> LinkError {
    match tls_failure(addr, e) {
        Some(message) => LinkError::Tls(message),
        None if e.kind() == io::ErrorKind::UnexpectedEof => LinkError::Unreachable(format!(
            "TLS handshake with {addr}: the replica closed the connection (is it serving TLS, \
             started with --tls-cert and --tls-key?)"
        )),
        None => LinkError::Unreachable(format!("TLS handshake with {addr}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_roots() -> ClientTls {
        let config = rustls::ClientConfig::builder_with_provider(crypto_provider())
            .with_safe_default_protocol_versions()
            .expect("default versions")
            .with_root_certificates(RootCertStore::empty())
            .with_no_client_auth();
        ClientTls::from_config(Arc::new(config))
    }

    #[test]
    fn the_server_name_is_the_host_dialled_unless_one_is_given() {
        let tls = no_roots();
        let ip = |s: &str| ServerName::try_from(s.to_string()).expect("a name");
        assert_eq!(tls.server_name_for("127.0.0.1:14000"), Ok(ip("127.0.0.1")));
        assert_eq!(tls.server_name_for("[::1]:14000"), Ok(ip("::1")));
        assert_eq!(
            tls.server_name_for("replica-0.concoord:14000"),
            Ok(ip("replica-0.concoord"))
        );
        let named = tls.with_server_name("concoord.local").expect("a DNS name");
        assert_eq!(
            named.server_name_for("127.0.0.1:14000"),
            Ok(ip("concoord.local"))
        );
        assert!(no_roots().with_server_name("not a name!").is_err());
    }

    #[test]
    fn missing_and_empty_files_are_errors_that_name_the_file() {
        let e = load_certs(Path::new("/nonexistent/ca.pem")).expect_err("no such file");
        assert!(e.0.contains("/nonexistent/ca.pem"), "{e}");
        let empty = std::env::temp_dir().join(format!("concoord-empty-{}.pem", std::process::id()));
        std::fs::write(&empty, "").expect("write an empty file");
        let e = load_certs(&empty).expect_err("no certificate");
        assert!(e.0.contains("holds no PEM certificate"), "{e}");
        let _ = std::fs::remove_file(&empty);
    }
}
