//! The rustls configurations for sync connections, shared by TCP and QUIC:
//! TLS 1.3 only, ALPN `bep/1.0`, our one certificate as the whole chain,
//! client certificates mandatory, peers verified by [`PeerVerifier`]
//! (identity by device ID, not by a CA). Mirrors Syncthing's single TLS
//! config for listening and dialing (facts sheet §2).

use std::sync::Arc;

use rustls::client::Resumption;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::NoServerSessionStorage;
use rustls::{ClientConfig, ServerConfig};

use super::NetError;
use crate::identity::Identity;
use proto::tls::PeerVerifier;

/// The one application protocol BEP speaks over TLS and QUIC.
pub(crate) const ALPN: &[u8] = b"bep/1.0";

/// Client and server configs built from one identity.
pub(crate) struct TlsConfigs {
    /// For dialing (TCP and QUIC).
    pub(crate) client: Arc<ClientConfig>,
    /// For accepting (TCP and QUIC).
    pub(crate) server: Arc<ServerConfig>,
    /// For a relay's protocol mode: ALPN `bep-relay`; the relay's one
    /// self-signed certificate is checked like a peer's, and its ID
    /// against the URI's `id=` by the relay client.
    pub(crate) relay: Arc<ClientConfig>,
}

impl TlsConfigs {
    /// Builds both configs. Fails if the identity's certificate or key is
    /// unusable (or they do not belong together).
    pub(crate) fn new(identity: &Identity) -> Result<Self, NetError> {
        let (cert, key) = cert_and_key(identity)?;
        let identity_err = |e: rustls::Error| NetError::Identity(e.to_string());
        let provider = provider();
        let verifier = Arc::new(PeerVerifier::new(
            provider.signature_verification_algorithms,
        ));

        let mut server = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(identity_err)?
            .with_client_cert_verifier(verifier.clone())
            .with_single_cert(vec![cert.clone()], key.clone_key())
            .map_err(identity_err)?;
        server.alpn_protocols = vec![ALPN.to_vec()];
        // Syncthing disables resumption; tickets would only cost bytes and
        // a resumed session would skip the certificate we identify by.
        server.send_tls13_tickets = 0;
        server.session_storage = Arc::new(NoServerSessionStorage {});

        let mut client = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(identity_err)?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(vec![cert], key)
            .map_err(identity_err)?;
        client.resumption = Resumption::disabled();
        // Syncthing's TCP dialer sends no SNI; we dial IP addresses, for
        // which rustls sends none anyway.
        client.enable_sni = false;
        let mut relay = client.clone();
        relay.alpn_protocols = vec![proto::relay::ALPN.to_vec()];
        client.alpn_protocols = vec![ALPN.to_vec()];

        Ok(Self {
            client: Arc::new(client),
            server: Arc::new(server),
            relay: Arc::new(relay),
        })
    }
}

/// The identity's certificate and key in rustls' form.
pub(crate) fn cert_and_key(
    identity: &Identity,
) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), NetError> {
    let cert = CertificateDer::from_pem_slice(identity.cert_pem.as_bytes())
        .map_err(|e| NetError::Identity(format!("certificate: {e}")))?;
    // PKCS#8 is what we write; SEC1 (Syncthing's own key.pem) is also
    // understood, so an imported Syncthing identity works.
    let key = PrivateKeyDer::from_pem_slice(identity.key_pem.as_bytes())
        .map_err(|e| NetError::Identity(format!("private key: {e}")))?;
    Ok((cert, key))
}

/// Checks that a server we reached presented the certificate of `want`
/// (a `?id=` pin); `what` names it in the error ("the relay").
pub(crate) fn check_pinned(
    tls: &rustls::ClientConnection,
    want: proto::DeviceId,
    peer: std::net::SocketAddr,
    what: &str,
) -> Result<(), NetError> {
    let got = tls
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| proto::DeviceId::from_cert_der(c.as_ref()));
    if got == Some(want) {
        Ok(())
    } else {
        Err(NetError::Tls {
            peer,
            reason: format!("{what}'s certificate is not {want} (the id= pinned)"),
        })
    }
}

/// The crypto provider every config uses. Picked explicitly: with both
/// ring and aws-lc-rs compiled into the dependency graph the
/// process-default provider is ambiguous and `ClientConfig::builder()`
/// panics.
pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_offers_tls13_suites_quic_needs() {
        let p = rustls::crypto::ring::default_provider();
        assert!(p
            .cipher_suites
            .iter()
            .any(|s| s.suite() == rustls::CipherSuite::TLS13_AES_128_GCM_SHA256));
    }

    #[test]
    fn configs_build_from_a_fresh_identity() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (id, _) =
            crate::identity::load_or_create(&crate::home::Home::new(dir.path())).expect("identity");
        let c = TlsConfigs::new(&id).expect("configs");
        assert_eq!(c.client.alpn_protocols, vec![ALPN.to_vec()]);
        assert_eq!(c.server.alpn_protocols, vec![ALPN.to_vec()]);
    }

    #[test]
    fn a_mismatched_key_is_refused() {
        let a = proto::cert::generate("syncthing").expect("a");
        let b = proto::cert::generate("syncthing").expect("b");
        let id = Identity {
            device_id: a.device_id,
            cert_pem: a.cert_pem,
            key_pem: b.key_pem,
        };
        assert!(matches!(TlsConfigs::new(&id), Err(NetError::Identity(_))));
    }
}
