//! The relay client (Syncthing's relay protocol v1, `proto::relay`): how
//! two devices that cannot reach each other meet through a relay.
//!
//! ```text
//! dial(relay://…, device) ── TLS "bep-relay" ─▶ ConnectRequest ─▶ SessionInvitation
//!                          └─ plain TCP ─▶ JoinSessionRequest ─▶ Response ─▶ TLS "bep/1.0" end to end
//! listen::Relays ── one permanent connection per configured relay (JoinRelayRequest,
//!                   Ping/Pong), its URI announced; each invitation is joined the same way
//!                   and the connection handed to the accept channel
//! ```
//! The relay only pipes bytes: the TLS between the devices is the same as
//! over TCP, checked the same way, so a relay can neither read nor forge a
//! session. The relay's own certificate is checked against the URI's
//! `id=` when it has one (Syncthing checks nothing without it, and nor can
//! we).

pub mod listen;
mod pool;
mod wire;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use proto::addr::Transport;
use proto::relay::{code, Message};
use proto::DeviceId;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::tls::TlsConfigs;
use super::{canonical, tcp, Connection, NetError, HANDSHAKE_TIMEOUT};

/// The port of a relay URI that names none (strelaysrv's default).
pub const DEFAULT_PORT: u16 = 22067;
/// How long a relay may stay silent before we give up on it, when its URI
/// does not say (strelaysrv's `-network-timeout`).
const DEFAULT_NETWORK_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the relay may take to answer a request.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// A relay URI, `relay://host:port/?id=…&token=…&networkTimeout=2m0s`
/// (other parameters are informational and ignored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayUri {
    /// As given (announced as is, so peers see what we joined).
    pub url: String,
    host: String,
    port: u16,
    /// The relay's certificate ID, when pinned.
    id: Option<DeviceId>,
    token: String,
    network_timeout: Duration,
}

impl RelayUri {
    /// Parses `url`; a bad `id=` is an error (a pin that cannot be checked
    /// must not silently become no pin).
    pub fn parse(url: &str) -> Result<Self, NetError> {
        let a = proto::addr::parse(url)?;
        let bad = |reason: String| NetError::BadUrl {
            url: url.to_string(),
            reason,
        };
        if a.transport != Transport::Relay {
            return Err(bad("not a relay:// address".into()));
        }
        if a.host.is_empty() {
            return Err(bad("a relay address needs a host".into()));
        }
        let mut uri = RelayUri {
            url: url.to_string(),
            host: a.host,
            port: a.port.unwrap_or(DEFAULT_PORT),
            id: None,
            token: String::new(),
            network_timeout: DEFAULT_NETWORK_TIMEOUT,
        };
        for pair in a.query.as_deref().unwrap_or("").split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "id" => {
                    uri.id = Some(
                        v.parse()
                            .map_err(|e| bad(format!("id={v:?} is not a device ID: {e}")))?,
                    )
                }
                "token" => uri.token = percent_decode(v),
                "networkTimeout" => {
                    if let Some(t) = go_duration(v).filter(|t| !t.is_zero()) {
                        uri.network_timeout = t;
                    }
                }
                _ => {}
            }
        }
        Ok(uri)
    }

    /// `host:port`, for messages.
    fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The relay's addresses.
    async fn resolve(&self) -> Result<Vec<SocketAddr>, NetError> {
        if let Ok(ip) = self.host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, self.port)]);
        }
        let found = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(NetError::io(format!("resolving {}", self.host)))?;
        Ok(found.collect())
    }
}

/// Go's `time.Duration` text as strelaysrv prints it (`1m0s`, `90s`,
/// `1h0m0s`, `500ms`).
fn go_duration(s: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit() && c != '.')?;
        let (num, tail) = rest.split_at(digits);
        let n: f64 = num.parse().ok()?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        let secs = match unit {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            _ => return None,
        };
        total += Duration::try_from_secs_f64(n * secs).ok()?;
        rest = next;
    }
    Some(total)
}

/// `%XX` escapes decoded (a token may carry them); anything malformed is
/// kept as written.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn relay_error(uri: &RelayUri, reason: impl Into<String>) -> NetError {
    NetError::Relay {
        relay: uri.authority(),
        reason: reason.into(),
    }
}

/// Opens a protocol-mode connection: TCP, then TLS with ALPN `bep-relay`
/// presenting our certificate (the relay knows us by it), the relay's
/// certificate checked against `id=`.
async fn protocol_connection(
    uri: &RelayUri,
    tls: &TlsConfigs,
) -> Result<(TlsStream<TcpStream>, SocketAddr), NetError> {
    let mut last = None;
    for addr in uri.resolve().await? {
        let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                last = Some(NetError::Io {
                    context: format!("connecting to relay {addr}"),
                    source: e,
                });
                continue;
            }
            Err(_) => {
                last = Some(NetError::Timeout {
                    what: format!("TCP connect to relay {addr}"),
                    after: HANDSHAKE_TIMEOUT,
                });
                continue;
            }
        };
        let peer = canonical(addr);
        tcp::set_nodelay(&stream, peer);
        let name = match uri.host.parse::<IpAddr>() {
            Ok(ip) => ServerName::IpAddress(ip.into()),
            Err(_) => ServerName::try_from(uri.host.clone())
                .map_err(|_| relay_error(uri, "bad host name"))?,
        };
        let connector = TlsConnector::from(tls.relay.clone());
        let tls_stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, connector.connect(name, stream))
            .await
            .map_err(|_| NetError::Timeout {
                what: format!("TLS handshake with relay {peer}"),
                after: HANDSHAKE_TIMEOUT,
            })?
            .map_err(|e| NetError::Tls {
                peer,
                reason: e.to_string(),
            })?;
        if let Some(want) = uri.id {
            super::tls::check_pinned(tls_stream.get_ref().1, want, peer, "the relay")?;
        }
        return Ok((tls_stream, peer));
    }
    Err(last.unwrap_or_else(|| relay_error(uri, "the host has no address")))
}

/// An invitation to a session, as the relay sent it.
struct Invitation {
    from: Vec<u8>,
    key: Vec<u8>,
    address: SocketAddr,
    server_socket: bool,
}

impl Invitation {
    /// From the message; an empty or unspecified address means the relay
    /// we spoke to (strelaysrv sends that when bound to every address).
    fn new(m: Message, relay: SocketAddr) -> Option<Self> {
        let Message::SessionInvitation {
            from,
            key,
            address,
            port,
            server_socket,
        } = m
        else {
            return None;
        };
        let ip = match address.len() {
            4 => <[u8; 4]>::try_from(&address[..]).ok().map(IpAddr::from),
            16 => <[u8; 16]>::try_from(&address[..]).ok().map(IpAddr::from),
            _ => None,
        }
        .map(|ip| ip.to_canonical())
        .filter(|ip| !ip.is_unspecified())
        .unwrap_or(relay.ip());
        let port = if port == 0 { relay.port() } else { port };
        Some(Self {
            from,
            key,
            address: SocketAddr::new(ip, port),
            server_socket,
        })
    }

    /// Joins the session (plain TCP, `JoinSessionRequest`) and runs TLS
    /// on the pipe in the role the invitation gives; the peer must be the
    /// device the invitation names.
    async fn join(
        self,
        uri: &RelayUri,
        tls: &TlsConfigs,
        my_id: DeviceId,
    ) -> Result<Connection, NetError> {
        let addr = self.address;
        let mut stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| NetError::Timeout {
                what: format!("TCP connect to relay session {addr}"),
                after: HANDSHAKE_TIMEOUT,
            })?
            .map_err(NetError::io(format!("connecting to relay session {addr}")))?;
        tcp::set_nodelay(&stream, addr);
        let io = NetError::io(format!("joining a session at {addr}"));
        let answer = tokio::time::timeout(ANSWER_TIMEOUT, async {
            wire::write(&mut stream, &Message::JoinSessionRequest { key: self.key }).await?;
            wire::read(&mut stream).await
        })
        .await
        .map_err(|_| NetError::Timeout {
            what: format!("joining a session at {addr}"),
            after: ANSWER_TIMEOUT,
        })?
        .map_err(io)?;
        match answer {
            Message::Response {
                code: code::SUCCESS,
                ..
            } => {}
            Message::Response { code, message } => {
                return Err(relay_error(
                    uri,
                    format!("session refused: {message} (code {code})"),
                ))
            }
            other => {
                return Err(relay_error(
                    uri,
                    format!("answered a session join with {}", other.name()),
                ))
            }
        }
        let peer = canonical(addr);
        let mut conn = if self.server_socket {
            tcp::server_handshake(stream, peer, TlsAcceptor::from(tls.server.clone()), my_id)
                .await?
        } else {
            tcp::client_handshake(stream, peer, &tls.client, my_id).await?
        };
        if conn.device_id.as_bytes()[..] != self.from[..] {
            return Err(relay_error(
                uri,
                format!(
                    "the invitation named another device than {} who answered",
                    conn.device_id
                ),
            ));
        }
        conn.transport = Transport::Relay;
        conn.relay = Some(uri.url.clone());
        conn.outgoing = !self.server_socket;
        Ok(conn)
    }
}

/// Dials `device` through the relay: asks for a session, joins it, and
/// runs TLS end to end with the device.
pub(super) async fn dial(
    uri: &RelayUri,
    device: DeviceId,
    tls: &TlsConfigs,
    my_id: DeviceId,
) -> Result<Connection, NetError> {
    let (mut stream, relay) = protocol_connection(uri, tls).await?;
    let answer = tokio::time::timeout(ANSWER_TIMEOUT, async {
        wire::write(
            &mut stream,
            &Message::ConnectRequest {
                id: device.as_bytes().to_vec(),
            },
        )
        .await?;
        wire::read(&mut stream).await
    })
    .await
    .map_err(|_| NetError::Timeout {
        what: format!("the relay {}'s answer", uri.authority()),
        after: ANSWER_TIMEOUT,
    })?
    .map_err(NetError::io(format!("asking relay {relay} for a session")))?;
    drop(stream);
    let invitation = match answer {
        m @ Message::SessionInvitation { .. } => {
            Invitation::new(m, relay).ok_or_else(|| relay_error(uri, "unreadable invitation"))?
        }
        Message::Response {
            code: code::NOT_FOUND,
            ..
        } => {
            return Err(relay_error(
                uri,
                format!("{device} is not joined to this relay"),
            ))
        }
        Message::Response { code, message } => {
            return Err(relay_error(uri, format!("{message} (code {code})")))
        }
        Message::RelayFull => return Err(relay_error(uri, "the relay is full")),
        other => return Err(relay_error(uri, format!("answered with {}", other.name()))),
    };
    invitation.join(uri, tls, my_id).await
}

/// What the permanent connections and dials share.
pub(super) struct Ctx {
    pub(super) my_id: DeviceId,
    pub(super) tls: Arc<TlsConfigs>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_parse_with_their_pin_token_and_timeout() {
        let id = DeviceId::from_bytes([7; 32]);
        let u = RelayUri::parse(&format!(
            "relay://198.51.100.7:443/?id={id}&pingInterval=1m0s&networkTimeout=1m30s&token=a%2Fb"
        ))
        .expect("parse");
        assert_eq!(u.port, 443);
        assert_eq!(u.id, Some(id));
        assert_eq!(u.token, "a/b");
        assert_eq!(u.network_timeout, Duration::from_secs(90));
        let u = RelayUri::parse("relay://relay.example.org").expect("no port");
        assert_eq!((u.port, u.id), (DEFAULT_PORT, None));
        assert_eq!(u.network_timeout, DEFAULT_NETWORK_TIMEOUT);
        assert!(RelayUri::parse("relay://h:1/?id=NOPE").is_err());
        assert!(RelayUri::parse("tcp://h:1").is_err());
        assert!(RelayUri::parse("relay://:1").is_err());
    }

    #[test]
    fn go_durations_read_as_strelaysrv_prints_them() {
        assert_eq!(go_duration("2m0s"), Some(Duration::from_secs(120)));
        assert_eq!(go_duration("1h0m0s"), Some(Duration::from_secs(3600)));
        assert_eq!(go_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(go_duration("90"), None);
        assert_eq!(go_duration("1x"), None);
        assert_eq!(percent_decode("%4a%zz%"), "J%zz%");
    }

    #[test]
    fn an_unspecified_invitation_address_means_the_relay() {
        let relay: SocketAddr = "198.51.100.1:22067".parse().expect("addr");
        let inv = |address: Vec<u8>, port| Message::SessionInvitation {
            from: vec![1; 32],
            key: vec![2; 32],
            address,
            port,
            server_socket: true,
        };
        let at = |m| Invitation::new(m, relay).expect("invitation").address;
        assert_eq!(at(inv(vec![], 22067)), relay);
        assert_eq!(at(inv(vec![0; 16], 22067)), relay);
        let mapped = {
            let mut a = vec![0u8; 10];
            a.extend_from_slice(&[0xff, 0xff, 127, 0, 0, 1]);
            a
        };
        assert_eq!(
            at(inv(mapped, 9)),
            "127.0.0.1:9".parse::<SocketAddr>().expect("addr")
        );
        assert_eq!(
            at(inv(vec![10, 0, 0, 2], 0)),
            "10.0.0.2:22067".parse::<SocketAddr>().expect("addr")
        );
        assert!(Invitation::new(Message::Ping, relay).is_none());
    }
}
