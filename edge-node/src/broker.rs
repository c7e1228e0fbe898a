//! broker: the embedded MQTT broker (rumqttd) a node runs when its config has no `[mqtt]`
//! section: single-box sites and the demo need nothing else running.
//!
//! It listens on `embedded_broker.listen` (default `127.0.0.1:1883`), MQTT 3.1.1, no TLS
//! and no authentication, so it refuses to listen on anything but a loopback address.
//! Messages live in memory only: durability comes from the node's outbox (a row leaves it
//! only on PUBACK), not from the broker. It runs on its own threads for the process's life.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

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

/// How long the broker may take to answer its first connection (a loaded machine).
const READY_WITHIN: Duration = Duration::from_secs(10);

/// Whether an MQTT broker answers on `addr`: an MQTT 3.1.1 CONNECT (clean session) gets an
/// accepting CONNACK; a DISCONNECT follows.
fn answers(addr: SocketAddr) -> bool {
    use std::io::{Read, Write};
    const ID: &[u8] = b"gridsight-ready-probe";
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    // Fixed header, remaining length; protocol name, level 4, clean session, keep-alive 10 s;
    // the client id.
    let mut connect =
        vec![0x10, (12 + ID.len()) as u8, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 10, 0, ID.len() as u8];
    connect.extend_from_slice(ID);
    let mut connack = [0u8; 4];
    let accepted =
        s.write_all(&connect).is_ok() && s.read_exact(&mut connack).is_ok() && connack[0] == 0x20 && connack[3] == 0;
    let _ = s.write_all(&[0xE0, 0]);
    accepted
}

/// Largest message the embedded broker accepts (snapshots are the big ones).
const MAX_PAYLOAD: usize = 8 << 20;

/// Starts the broker and returns once it accepts connections on `addr`.
pub fn start(addr: SocketAddr) -> Result<(), BrokerError> {
    if !addr.ip().is_loopback() {
        return Err(BrokerError::NotLoopback(addr));
    }
    // rumqttd's server thread logs a failed bind and ends; check the port first, for a
    // precise error.
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
    // Running once it answers an MQTT connection. Not by binding the port to see whether it
    // is taken: a probe that held the port while rumqttd bound it made rumqttd's only bind
    // fail, and the broker never listened (a loaded test run met it).
    let deadline = Instant::now() + READY_WITHIN;
    while !answers(addr) {
        if Instant::now() > deadline {
            return Err(BrokerError::Listen {
                addr,
                reason: format!("not accepting MQTT connections after {} s", READY_WITHIN.as_secs()),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    tracing::info!(listen = %addr, "embedded MQTT broker running (rumqttd, in memory, loopback only)");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn free_addr() -> SocketAddr {
        std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
    }

    #[test]
    fn it_answers_mqtt_once_started_and_refuses_a_taken_port() {
        let addr = free_addr();
        assert!(!answers(addr), "nothing listens yet");
        start(addr).unwrap();
        assert!(answers(addr));
        let again = start(addr).unwrap_err().to_string();
        assert!(again.contains(&format!("cannot listen on {addr}")), "{again}");
        assert!(start("192.0.2.1:1883".parse().unwrap()).unwrap_err().to_string().contains("not a loopback"));
    }

    #[test]
    fn a_listener_that_is_not_mqtt_does_not_answer() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            // Accept one connection and close it without a CONNACK.
            let _ = listener.accept();
        });
        assert!(!answers(addr));
        server.join().unwrap();
    }
}
