//! TLS on a replica's links ([`ReplicaTls`]): it serves TLS with its
//! certificate, verifies the certificates peers present against its CA, and
//! opens its own peer links as a TLS client presenting the same certificate.
//! What the first bytes of a connection say (TLS or not) and what a failed
//! handshake means are logged here in words an operator can act on.

use concoord_client::tls::{crypto_provider, load_certs, load_key, load_roots, rustls};
use concoord_client::{ClientTls, TlsError};
use rustls::server::WebPkiClientVerifier;
use rustls::{AlertDescription, CertificateError};
use std::io;
use std::path::Path;
use std::sync::Arc;

/// The first byte of a TLS record carrying a handshake (a ClientHello).
pub(super) const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// A replica's TLS settings.
#[derive(Clone)]
pub struct ReplicaTls {
    pub(super) acceptor: tokio_rustls::TlsAcceptor,
    /// How this replica dials its peers.
    pub(super) peer: ClientTls,
}

impl std::fmt::Debug for ReplicaTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaTls").finish_non_exhaustive()
    }
}

impl ReplicaTls {
    /// Serves `cert_file` (a PEM chain, the leaf first) with `key_file`;
    /// peers must present a certificate `ca_file` signed. Clients must too
    /// when `require_client_certs`; otherwise they need only trust ours.
    pub fn from_files(
        cert_file: &Path,
        key_file: &Path,
        ca_file: &Path,
        require_client_certs: bool,
    ) -> Result<Self, TlsError> {
        let certs = load_certs(cert_file)?;
        let key = load_key(key_file)?;
        let roots = Arc::new(load_roots(ca_file)?);
        let verifier = WebPkiClientVerifier::builder_with_provider(roots, crypto_provider());
        let verifier = if require_client_certs {
            verifier
        } else {
            verifier.allow_unauthenticated()
        };
        let verifier = verifier
            .build()
            .map_err(|e| TlsError(format!("{}: {e}", ca_file.display())))?;
        let mismatch = |e: rustls::Error| {
            TlsError(format!(
                "{} and {} do not make a certificate and its key: {e}",
                cert_file.display(),
                key_file.display()
            ))
        };
        let server = rustls::ServerConfig::builder_with_provider(crypto_provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs, key.clone_key())
            .map_err(mismatch)?;
        let peer = ClientTls::from_files(ca_file, Some((cert_file, key_file)))?;
        Ok(ReplicaTls {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(server)),
            peer,
        })
    }

    /// How this replica dials peers (and the group it joins).
    pub fn peer_client(&self) -> &ClientTls {
        &self.peer
    }
}

/// Why a TLS handshake a client (or peer) started with this replica failed,
/// with what to check.
pub(super) fn accept_failure(e: &io::Error) -> String {
    let Some(tls) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return format!("{e} (the client went away during the TLS handshake)");
    };
    let hint = match tls {
        rustls::Error::AlertReceived(
            AlertDescription::UnknownCA
            | AlertDescription::BadCertificate
            | AlertDescription::CertificateUnknown,
        ) => {
            "the client does not trust this replica's certificate: its --tls-ca must be the CA \
              that signed --tls-cert, and the certificate must name the address it dials (IP SAN)"
        }
        rustls::Error::AlertReceived(AlertDescription::CertificateExpired) => {
            "the client says this replica's certificate has expired: renew --tls-cert"
        }
        rustls::Error::NoCertificatesPresented => {
            "the client presented no certificate, and --tls-client-auth requires one"
        }
        rustls::Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        ) => "the client's certificate has expired",
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            "the client's certificate is not signed by this replica's --tls-ca"
        }
        rustls::Error::InvalidCertificate(_) => "the client's certificate was rejected",
        _ => "check both sides' TLS settings",
    };
    format!("{tls}: {hint}")
}
