//! A STUN responder (RFC 5389 Binding, `proto::stun`) on a UDP port: it
//! tells a device the address its packets arrive from, which is what its
//! NAT maps its QUIC port to. Anything but a Binding request is ignored;
//! answers are rate limited per source IP (by the same rule as HTTPS
//! requests), so the port cannot be used to reflect floods.

use std::sync::Arc;
use std::time::Instant;

use tokio::net::UdpSocket;

use crate::limit::Limiter;
use crate::metrics::Metrics;

/// Answers Binding requests on `socket` until the task is dropped.
pub async fn serve(socket: UdpSocket, limiter: Option<Limiter>, metrics: Arc<Metrics>) {
    let mut buf = [0u8; 1500];
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                // ICMP errors from earlier answers surface here; go on.
                tracing::debug!("STUN receive: {e}");
                continue;
            }
        };
        let Some(tx) = proto::stun::parse_binding_request(&buf[..n]) else {
            continue;
        };
        if let Some(l) = &limiter {
            if l.check(from.ip(), Instant::now()).is_err() {
                metrics.stun(false);
                continue;
            }
        }
        metrics.stun(true);
        let from = std::net::SocketAddr::new(from.ip().to_canonical(), from.port());
        if let Err(e) = socket
            .send_to(&proto::stun::binding_response(&tx, from), from)
            .await
        {
            tracing::debug!(%from, "STUN answer: {e}");
        }
    }
}
