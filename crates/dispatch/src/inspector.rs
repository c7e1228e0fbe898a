//! `edge-node inspector`: a small stand-in for an inspector's app (and the control room's
//! console) for tests, the demo and field trials. It sends one lifecycle update and prints
//! the dispatcher's reply, or watches what the dispatcher tells this inspector.

use crate::contract::Topics;
use std::time::{Duration, Instant};

use rumqttc::{Client, Event, Incoming, QoS};

use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::mqtt::{LinkOptions, mqtt_options};

/// What to send: `action` with its order, plus the optional fields.
pub struct Request<'a> {
    pub action: &'a str,
    pub order: &'a str,
    pub reason: Option<&'a str>,
    pub note: Option<&'a str>,
    pub to: Option<&'a str>,
}

fn connect(config: &Config, who: &str) -> Result<(Client, rumqttc::Connection, Topics), String> {
    let base = crate::mqtt::link_options(config)?;
    let topics = crate::mqtt::topics_of(config);
    let opts = LinkOptions {
        client_id: format!("gridsight-inspector-{who}-{}", std::process::id()),
        availability_topic: topics.inspector_availability(who),
        ..base
    };
    let mut o = mqtt_options(&opts);
    o.set_last_will(rumqttc::LastWill::new(&opts.availability_topic, "offline", QoS::AtMostOnce, false));
    let (client, connection) = Client::new(o, 16);
    Ok((client, connection, topics))
}

/// Sends the update as `who` and waits for the reply; returns it (JSON) or why there is none.
pub fn send(config: &Config, who: &str, req: &Request, timeout: Duration) -> Result<serde_json::Value, String> {
    let (client, mut connection, topics) = connect(config, who)?;
    let reply_topic = topics.replies(who);
    let id = format!("u-{}-{}", SystemClock.unix_ms(), std::process::id());
    // The same type the dispatcher reads; an action it does not know is refused here.
    let action: crate::contract::OrderAction =
        serde_json::from_value(serde_json::Value::String(req.action.to_string())).map_err(|_| {
            format!("unknown action {:?}: accept, reject, arrive, resolve, cancel or assign", req.action)
        })?;
    let update = crate::contract::OrderUpdate {
        id: id.clone(),
        order: req.order.to_string(),
        action,
        by: who.to_string(),
        reason: req.reason.map(str::to_string),
        note: req.note.map(str::to_string),
        to: req.to.map(str::to_string),
    };
    let deadline = Instant::now() + timeout;
    let mut sent = false;
    while Instant::now() < deadline {
        match connection.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(Ok(Event::Incoming(Incoming::ConnAck(_)))) => {
                client.subscribe(&reply_topic, QoS::AtLeastOnce).map_err(|e| e.to_string())?;
            }
            Ok(Ok(Event::Incoming(Incoming::SubAck(_)))) if !sent => {
                let topic = topics.updates(who);
                client
                    .publish(topic, QoS::AtLeastOnce, false, serde_json::to_vec(&update).unwrap_or_default())
                    .map_err(|e| e.to_string())?;
                sent = true;
            }
            Ok(Ok(Event::Incoming(Incoming::Publish(p)))) if p.topic == reply_topic => {
                let v: serde_json::Value = serde_json::from_slice(&p.payload).unwrap_or_default();
                if v["update"] == id.as_str() {
                    let _ = client.disconnect();
                    return Ok(v);
                }
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(format!("broker: {e}")),
            Err(_) => break,
        }
    }
    Err(format!("no reply within {} s (is the dispatcher running?)", timeout.as_secs()))
}

/// Prints every message the dispatcher sends to `who` (one JSON line each) until killed.
pub fn watch(config: &Config, who: &str) -> Result<(), String> {
    let (client, mut connection, topics) = connect(config, who)?;
    let contact = if who == super::CONTROL_ROOM {
        topics.control_room()
    } else {
        config
            .grid
            .inspectors
            .iter()
            .find(|i| i.id == who)
            .and_then(|i| i.contact_topic.clone())
            .unwrap_or_else(|| topics.inspector(who))
    };
    eprintln!("watching {contact}");
    for event in connection.iter() {
        match event {
            Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                client.subscribe(&contact, QoS::AtLeastOnce).map_err(|e| e.to_string())?;
            }
            Ok(Event::Incoming(Incoming::Publish(p))) => {
                let v: serde_json::Value = serde_json::from_slice(&p.payload).unwrap_or_default();
                let o = &v["order"];
                println!(
                    "{} {} order={} state={} camera={} category={} assignee={} deadline={}",
                    v["at"].as_str().unwrap_or("-"),
                    v["event"].as_str().unwrap_or("-"),
                    o["id"].as_str().unwrap_or("-"),
                    o["state"].as_str().unwrap_or("-"),
                    o["camera"].as_str().unwrap_or("-"),
                    o["category"].as_str().unwrap_or("-"),
                    o["assignee"].as_str().unwrap_or("-"),
                    o["deadline"].as_str().unwrap_or("-"),
                );
            }
            Ok(_) => {}
            Err(e) => {
                eprintln!("broker: {e}; retrying");
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
    Ok(())
}
