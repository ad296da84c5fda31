//! Behind a TLS-terminating reverse proxy (`--behind-proxy ADDR`): the
//! proxy, and only the proxy, may say who the client is. Requests must
//! come from the proxy's address; the client's address is the last entry
//! of `X-Forwarded-For` (the one the proxy added; earlier ones are the
//! client's own word) with `X-Client-Port`, and its certificate comes from
//! `X-Tls-Client-Cert-Der-Base64` (Caddy), `X-Forwarded-Tls-Client-Cert`
//! (Traefik) or `X-Ssl-Cert` (nginx, URL-escaped PEM). Without this mode
//! none of these headers is read (stdiscosrv believed the certificate
//! headers on direct TLS connections too: protocol facts §11).

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;
use data_encoding::BASE64;
use proto::DeviceId;

use crate::http::Peer;

/// Why a request through the proxy mode is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// It did not come from the proxy.
    NotTheProxy(IpAddr),
    /// The proxy did not say who the client is.
    NoClientAddress,
}

/// The client as the proxy describes it.
pub fn client(proxy: IpAddr, peer: Peer, headers: &HeaderMap) -> Result<Peer, Refused> {
    if peer.addr.ip().to_canonical() != proxy.to_canonical() {
        return Err(Refused::NotTheProxy(peer.addr.ip()));
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let ip: IpAddr = header("x-forwarded-for")
        .and_then(|v| v.rsplit(',').next())
        .and_then(|v| v.trim().parse().ok())
        .ok_or(Refused::NoClientAddress)?;
    let port = header("x-client-port")
        .and_then(|p| p.trim().parse::<u16>().ok())
        .unwrap_or(0);
    let der = header("x-tls-client-cert-der-base64")
        .or_else(|| header("x-forwarded-tls-client-cert"))
        .and_then(|b| {
            let b = percent_encoding::percent_decode_str(b).decode_utf8().ok()?;
            BASE64.decode(b.trim().as_bytes()).ok()
        })
        .or_else(|| header("x-ssl-cert").and_then(pem_der));
    Ok(Peer {
        addr: SocketAddr::new(ip, port),
        device: der.map(|d| DeviceId::from_cert_der(&d)),
    })
}

/// The DER inside nginx's URL-escaped PEM.
fn pem_der(escaped: &str) -> Option<Vec<u8>> {
    let pem = percent_encoding::percent_decode_str(escaped)
        .decode_utf8()
        .ok()?;
    let body: String = pem
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("-----"))
        .collect();
    BASE64.decode(body.as_bytes()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn peer(ip: &str) -> Peer {
        Peer {
            addr: SocketAddr::new(ip.parse().expect("ip"), 4000),
            device: None,
        }
    }

    #[test]
    fn only_the_proxy_speaks_for_clients() {
        let proxy: IpAddr = "10.0.0.1".parse().expect("ip");
        let g = proto::cert::generate("syncthing").expect("cert");
        let der = {
            use rustls::pki_types::pem::PemObject;
            rustls::pki_types::CertificateDer::from_pem_slice(g.cert_pem.as_bytes()).expect("der")
        };
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("203.0.113.66, 198.51.100.5"),
        );
        h.insert("x-client-port", HeaderValue::from_static("22000"));
        h.insert(
            "x-tls-client-cert-der-base64",
            HeaderValue::from_str(&BASE64.encode(der.as_ref())).expect("header"),
        );
        let c = client(proxy, peer("10.0.0.1"), &h).expect("from the proxy");
        assert_eq!(
            c.addr,
            "198.51.100.5:22000".parse().expect("addr"),
            "the proxy's entry, not the client's"
        );
        assert_eq!(c.device, Some(g.device_id));
        assert_eq!(
            client(proxy, peer("10.0.0.2"), &h),
            Err(Refused::NotTheProxy("10.0.0.2".parse().expect("ip")))
        );
        let mut nginx = HeaderMap::new();
        nginx.insert("x-forwarded-for", HeaderValue::from_static("198.51.100.5"));
        let escaped: String =
            percent_encoding::utf8_percent_encode(&g.cert_pem, percent_encoding::NON_ALPHANUMERIC)
                .collect();
        nginx.insert(
            "x-ssl-cert",
            HeaderValue::from_str(&escaped).expect("header"),
        );
        let c = client(proxy, peer("10.0.0.1"), &nginx).expect("nginx");
        assert_eq!(c.device, Some(g.device_id));
        assert_eq!(c.addr.port(), 0, "no X-Client-Port: unknown");
        assert_eq!(
            client(proxy, peer("10.0.0.1"), &HeaderMap::new()),
            Err(Refused::NoClientAddress)
        );
    }
}
