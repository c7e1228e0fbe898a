//! broker: the embedded MQTT broker (rumqttd) a node runs when its config has no `[mqtt]`
//! section: single-box sites and the demo need nothing else running.
//!
//! It listens on `embedded_broker.listen` (default `127.0.0.1:1883`), MQTT 3.1.1, no TLS
//! and no authentication, so it refuses to listen on anything but a loopback address.
//! Messages live in memory only: durability comes from the node's outbox (a row leaves it
//! only on PUBACK), not from the broker. It runs on its own threads for the process's life.

use std::collections::HashMap;
use std::net::SocketAddr;

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error(
        "embedded broker: {0} is not a loopback address; it has no authentication, so it listens on 127.0.0.1 or ::1 only (use an external broker in [mqtt] for other clients)"
    )]
    NotLoopback(SocketAddr),
    #[error("embedded broker: cannot listen on {addr}: {reason}")]
    Listen { addr: SocketAddr, reason: String },
}

/// Largest message the embedded broker accepts (snapshots are the big ones).
const MAX_PAYLOAD: usize = 8 << 20;

/// Starts the broker and returns once it accepts connections on `addr`.
pub fn start(addr: SocketAddr) -> Result<(), BrokerError> {
    if !addr.ip().is_loopback() {
        return Err(BrokerError::NotLoopback(addr));
    }
    // rumqttd logs and retries a failed bind on its own thread; check the port first.
    std::net::TcpListener::bind(addr).map_err(|e| BrokerError::Listen { addr, reason: e.to_string() })?;
    let server = ServerSettings {
        name: "v4-local".into(),
        listen: addr,
        tls: None,
        next_connection_delay_ms: 1,
        connections: ConnectionSettings {
            connection_timeout_ms: 60_000,
            max_payload_size: MAX_PAYLOAD,
            max_inflight_count: 500,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        },
    };
    let config = Config {
        id: 0,
        router: RouterConfig {
            max_connections: 1000,
            max_outgoing_packet_count: 200,
            // In-memory log per topic filter: 4 segments of 16 MiB at most.
            max_segment_size: 16 << 20,
            max_segment_count: 4,
            ..RouterConfig::default()
        },
        v4: Some(HashMap::from([("1".to_string(), server)])),
        ..Config::default()
    };
    let mut broker = Broker::new(config);
    std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            if let Err(e) = broker.start() {
                tracing::error!("embedded broker stopped: {e}");
            }
        })
        .map_err(|e| BrokerError::Listen { addr, reason: e.to_string() })?;
    // Listening once the address is taken (a probe connection would log an error there).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::net::TcpListener::bind(addr).is_ok() {
        if std::time::Instant::now() > deadline {
            return Err(BrokerError::Listen { addr, reason: "not accepting connections after 5 s".into() });
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    tracing::info!(listen = %addr, "embedded MQTT broker running (rumqttd, in memory, loopback only)");
    Ok(())
}
