//! Self-signed certificates as Syncthing expects them, and the device ID
//! that a certificate stands for.
//!
//! Our keys are Ed25519 (accepted by Syncthing 1.19.2 in every role, and what
//! Syncthing 2.x generates itself). Syncthing checks the peer's certificate
//! name, so the certificate carries CN and DNS SAN `syncthing`.

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber, PKCS_ED25519,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use time::{Duration, OffsetDateTime, Time};

use crate::DeviceId;

/// Syncthing's certificate lifetime: twenty years of 365 days.
const VALIDITY_DAYS: i64 = 20 * 365;

/// A freshly generated certificate and its private key.
pub struct GeneratedCert {
    /// The certificate, PEM (`CERTIFICATE`).
    pub cert_pem: String,
    /// The private key, PKCS#8 PEM (`PRIVATE KEY`).
    pub key_pem: String,
    /// The ID of this certificate.
    pub device_id: DeviceId,
}

/// Why a certificate could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// rcgen refused the parameters or the key.
    #[error("generating the certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// ed25519-dalek could not encode the key.
    #[error("encoding the private key: {0}")]
    Key(String),
    /// The PEM text holds no certificate.
    #[error("no PEM certificate found: {0}")]
    Pem(String),
}

/// Generates an Ed25519 key and a self-signed certificate for it with the
/// given common name (and the same DNS SAN): `syncthing` for devices.
pub fn generate(common_name: &str) -> Result<GeneratedCert, CertError> {
    use ed25519_dalek::pkcs8::EncodePrivateKey;

    let signing = ed25519_dalek::SigningKey::from_bytes(&rand::random());
    let pkcs8 = signing
        .to_pkcs8_der()
        .map_err(|e| CertError::Key(e.to_string()))?;
    let key = KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8.as_bytes().into(), &PKCS_ED25519)?;

    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "ferrosync");
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.subject_alt_names = vec![SanType::DnsName(common_name.try_into()?)];
    // 62 random bits, top bit clear (a positive INTEGER without a padding
    // byte) and the next one set (never a non-minimal leading zero).
    let mut serial: [u8; 8] = rand::random();
    serial[0] = (serial[0] & 0x3f) | 0x40;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    let today = OffsetDateTime::now_utc().replace_time(Time::MIDNIGHT);
    params.not_before = today;
    params.not_after = today + Duration::days(VALIDITY_DAYS);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];

    let cert = params.self_signed(&key)?;
    Ok(GeneratedCert {
        device_id: DeviceId::from_cert_der(cert.der()),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// The device ID of the first certificate in a PEM text.
pub fn device_id_from_pem(cert_pem: &str) -> Result<DeviceId, CertError> {
    let der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
        .map_err(|e| CertError::Pem(e.to_string()))?;
    Ok(DeviceId::from_cert_der(&der))
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::*;

    #[test]
    fn certificate_has_what_syncthing_checks() {
        let g = generate("syncthing").expect("generate");
        let der = CertificateDer::from_pem_slice(g.cert_pem.as_bytes()).expect("pem");
        assert_eq!(DeviceId::from_cert_der(&der), g.device_id);
        assert_eq!(device_id_from_pem(&g.cert_pem).expect("id"), g.device_id);

        let (_, cert) = X509Certificate::from_der(&der).expect("parse");
        let cn = cert.subject().iter_common_name().next().expect("cn");
        assert_eq!(cn.as_str().expect("utf8"), "syncthing");
        assert_eq!(cert.subject(), cert.issuer(), "self-signed");
        let san = cert
            .subject_alternative_name()
            .expect("ext")
            .expect("san present");
        assert!(san
            .value
            .general_names
            .iter()
            .any(|n| matches!(n, GeneralName::DNSName("syncthing"))));
        let serial = cert.raw_serial();
        assert!(serial[0] & 0x80 == 0, "serial top bit must be clear");
        let lifetime =
            cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
        assert_eq!(lifetime, VALIDITY_DAYS * 86400);
        assert_eq!(
            cert.public_key().algorithm.algorithm,
            x509_parser::oid_registry::OID_SIG_ED25519
        );
        cert.verify_signature(None)
            .expect("self-signature verifies");

        assert!(g.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    }

    #[test]
    fn every_generation_is_a_new_identity() {
        let a = generate("syncthing").expect("a");
        let b = generate("syncthing").expect("b");
        assert_ne!(a.device_id, b.device_id);
    }

    #[test]
    fn garbage_pem_is_an_error() {
        assert!(device_id_from_pem("not a certificate").is_err());
    }
}
