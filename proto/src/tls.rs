//! Certificate verifiers for both TLS roles (feature `tls`), used by the
//! daemon's sync connections and the discovery server. Syncthing peers present a
//! self-signed certificate and are identified by its hash alone, so there
//! is no chain to build and no name, validity or CA check to make: we
//! insist on exactly one parseable certificate and on a valid TLS 1.3
//! handshake signature by its key (which proves the peer holds the key of
//! the certificate it hashes to). Which device that is gets decided by the
//! caller, from the device ID.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls13_signature_with_raw_key, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, SubjectPublicKeyInfoDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};
use x509_parser::prelude::{FromDer, X509Certificate};

/// Accepts any single certificate (self-signed, expired, CA:FALSE, odd
/// names) but verifies the peer's CertificateVerify signature. Used as the
/// client's server-cert verifier and the server's client-cert verifier.
#[derive(Debug)]
pub struct PeerVerifier {
    algorithms: WebPkiSupportedAlgorithms,
    mandatory: bool,
}

impl PeerVerifier {
    /// A verifier that checks signatures with the provider's algorithms
    /// (ring: Ed25519, ECDSA P-256/P-384, RSA PSS and PKCS#1); as a
    /// server's client-cert verifier it requires a certificate.
    pub fn new(algorithms: WebPkiSupportedAlgorithms) -> Self {
        Self {
            algorithms,
            mandatory: true,
        }
    }

    /// The same, but a client may also connect without a certificate (a
    /// discovery lookup needs none; an announce is refused without one).
    pub fn optional(algorithms: WebPkiSupportedAlgorithms) -> Self {
        Self {
            algorithms,
            mandatory: false,
        }
    }

    fn check_chain(
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
    ) -> Result<(), Error> {
        // Syncthing drops connections with more than one certificate; so
        // do we, so that an ID always names exactly one key.
        if !intermediates.is_empty() {
            return Err(Error::General(format!(
                "peer sent {} certificates; exactly one is allowed",
                intermediates.len() + 1
            )));
        }
        spki(end_entity).map(|_| ())
    }

    fn verify13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        let spki = spki(cert)?;
        verify_tls13_signature_with_raw_key(
            message,
            &SubjectPublicKeyInfoDer::from(spki.as_slice()),
            dss,
            &self.algorithms,
        )
    }
}

/// The SubjectPublicKeyInfo of a certificate. x509-parser is more lenient
/// than webpki's end-entity parser (which refuses some legacy Syncthing
/// certificates: RSA with serial 0, SHA-1 signatures, odd extensions), and
/// all we need from the certificate is its key.
fn spki(cert: &CertificateDer<'_>) -> Result<Vec<u8>, Error> {
    match X509Certificate::from_der(cert.as_ref()) {
        Ok((_, parsed)) => Ok(parsed.tbs_certificate.subject_pki.raw.to_vec()),
        Err(_) => Err(Error::InvalidCertificate(CertificateError::BadEncoding)),
    }
}

fn no_tls12() -> Error {
    // The configs allow TLS 1.3 only; this is a second line of defence.
    Error::General("TLS 1.2 signatures are not accepted".into())
}

impl ServerCertVerifier for PeerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        Self::check_chain(end_entity, intermediates)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        Err(no_tls12())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.verify13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

impl ClientCertVerifier for PeerVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        // A sync peer without a certificate has no device ID.
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // Go's client sends its certificate only if this list is empty (or
        // names its issuer, which for a self-signed cert we cannot know).
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        Self::check_chain(end_entity, intermediates)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        Err(no_tls12())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.verify13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verifier() -> PeerVerifier {
        PeerVerifier::new(
            rustls::crypto::ring::default_provider().signature_verification_algorithms,
        )
    }

    fn cert() -> CertificateDer<'static> {
        use rustls::pki_types::pem::PemObject;
        let g = crate::cert::generate("syncthing").expect("generate");
        CertificateDer::from_pem_slice(g.cert_pem.as_bytes()).expect("pem")
    }

    #[test]
    fn one_certificate_is_accepted_two_are_not() {
        let v = verifier();
        let c = cert();
        let name = ServerName::try_from("syncthing").expect("name");
        assert!(v
            .verify_server_cert(&c, &[], &name, &[], UnixTime::now())
            .is_ok());
        assert!(v
            .verify_server_cert(&c, std::slice::from_ref(&c), &name, &[], UnixTime::now())
            .is_err());
        assert!(v.verify_client_cert(&c, &[], UnixTime::now()).is_ok());
        assert!(v
            .verify_client_cert(&c, std::slice::from_ref(&c), UnixTime::now())
            .is_err());
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        let v = verifier();
        let junk = CertificateDer::from(vec![0x30, 0x03, 1, 2, 3]);
        assert!(v.verify_client_cert(&junk, &[], UnixTime::now()).is_err());
    }

    #[test]
    fn client_auth_is_mandatory_without_ca_hints() {
        let v = verifier();
        assert!(v.offer_client_auth() && v.client_auth_mandatory());
        let o = PeerVerifier::optional(
            rustls::crypto::ring::default_provider().signature_verification_algorithms,
        );
        assert!(o.offer_client_auth() && !o.client_auth_mandatory());
        assert!(ClientCertVerifier::root_hint_subjects(&v).is_empty());
        let schemes = ClientCertVerifier::supported_verify_schemes(&v);
        for s in [
            SignatureScheme::ED25519,
            SignatureScheme::ECDSA_NISTP256_SHA256,
            SignatureScheme::ECDSA_NISTP384_SHA384,
            SignatureScheme::RSA_PSS_SHA256,
        ] {
            assert!(schemes.contains(&s), "{s:?} missing");
        }
    }
}
