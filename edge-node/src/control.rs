//! control: commands an operator or a control room sends to a node over MQTT, and the
//! node's replies.
//!
//! Input: payloads on `<prefix>/<node>/commands`, at most `mqtt::MAX_INBOUND_BYTES`
//! (the link refuses larger ones before they get here). Output: a validated [`Request`],
//! or the reason it was refused. Every request gets a reply on
//! `<prefix>/<node>/commands/reply` carrying the request's `id`.
//!
//! ```json
//! {"id": "42", "command": "status"}   // publish node and camera status now
//! {"id": "43", "command": "reload"}   // re-read the config file (as SIGHUP)
//! {"id": "44", "command": "ping"}     // answer at once
//! {"id": "45", "command": "snapshot", "camera": "gate-north"}
//!                                      // the camera's newest frame, faces pixelated, as a JPEG on
//!                                      // <prefix>/<node>/cameras/<camera>/snapshot
//! ```

use crate::Locked;
use std::time::{Duration, Instant};

use serde::Deserialize;

/// What a request asks for: one type, in the contract.
pub use gridsight_contract::Command;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// Echoed in the reply so the sender can match them; 1–64 printable characters.
    #[serde(default)]
    pub id: Option<String>,
    pub command: Command,
    /// The camera of a `snapshot` (and of nothing else).
    #[serde(default)]
    pub camera: Option<String>,
}

/// A refused message: the reason, and the request id when one could be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub id: Option<String>,
    pub reason: String,
}

/// Parses and checks one payload. Never panics, whatever the bytes.
pub fn parse(payload: &[u8]) -> Result<Request, Refusal> {
    let text =
        std::str::from_utf8(payload).map_err(|_| Refusal { id: None, reason: "payload is not UTF-8 JSON".into() })?;
    // serde would also read a struct from a JSON array; only the documented object form is accepted.
    if !text.trim_start().starts_with('{') {
        return Err(Refusal {
            id: None,
            reason: "not a JSON object; expected {\"id\": \"...\", \"command\": \"status\" | \"reload\" | \"ping\" | \"snapshot\"}"
                .into(),
        });
    }
    let req: Request = serde_json::from_str(text).map_err(|e| Refusal {
        id: request_id(text),
        reason: format!(
            "not a valid command: {e}; expected {{\"id\": \"...\", \"command\": \"status\" | \"reload\" | \"ping\" | \"snapshot\"}}"
        ),
    })?;
    if let Some(id) = &req.id
        && !valid_id(id)
    {
        return Err(Refusal { id: None, reason: "id must be 1-64 printable characters".into() });
    }
    match (req.command, &req.camera) {
        (Command::Snapshot, None) => {
            return Err(Refusal { id: req.id, reason: "snapshot needs \"camera\": the camera's id".into() });
        }
        (Command::Snapshot, Some(c)) if !valid_id(c) || c.contains(['/', '+', '#']) => {
            return Err(Refusal {
                id: req.id,
                reason: "camera must be a camera id (1-64 characters, no / + #)".into(),
            });
        }
        (Command::Snapshot, Some(_)) | (_, None) => {}
        (other, Some(_)) => {
            return Err(Refusal {
                id: req.id,
                reason: format!("\"camera\" is only for the snapshot command, not {}", other.name()),
            });
        }
    }
    Ok(req)
}

pub use crate::contract::valid_id;

/// The `id` of a request that failed to parse, when it is there and usable (so the refusal
/// can name it).
fn request_id(text: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    v.get("id")?.as_str().filter(|id| valid_id(id)).map(str::to_string)
}

/// The reply JSON (`schema: gridsight.command_reply`).
pub fn reply(node: &str, id: Option<&str>, command: Option<Command>, result: Result<&str, &str>) -> serde_json::Value {
    let reply = crate::contract::CommandReply {
        schema: crate::contract::Schema::new(),
        version: crate::contract::Version1,
        node: node.to_string(),
        id: id.map(str::to_string),
        command,
        ok: result.is_ok(),
        detail: result.ok().map(str::to_string),
        reason: result.err().map(str::to_string),
        at: crate::contract::time::now(),
    };
    serde_json::to_value(&reply).unwrap_or_default()
}

/// Replies to refused commands: at most 10 a second, so a flood of garbage cannot fill
/// the outbox with answers (every refusal is still counted and logged, rate-limited).
#[derive(Default)]
pub struct ReplyBudget {
    window: Option<Instant>,
    used: u32,
}

impl ReplyBudget {
    pub const PER_SECOND: u32 = 10;

    pub fn allow_at(&mut self, now: Instant) -> bool {
        if self.window.is_none_or(|w| now.duration_since(w) >= Duration::from_secs(1)) {
            self.window = Some(now);
            self.used = 0;
        }
        self.used += 1;
        self.used <= Self::PER_SECOND
    }
}

/// What happened to one inbound payload.
#[derive(Debug, PartialEq)]
pub enum Admitted {
    /// Queued for the node's main loop, which replies once it is done.
    Queued,
    /// Answered at once: refused (within the reply budget), or busy (the queue is full). Store this reply.
    Reply(serde_json::Value),
    /// Refused beyond the reply budget: counted and logged, not answered.
    Dropped,
}

/// The first stop of every payload on the commands topic, run on the MQTT link's task:
/// valid requests go to a bounded queue (capacity set by its creator; when full the sender
/// is told "busy, try again": every valid request with an id gets a reply); refusals are
/// counted exactly once, logged rate-limited, and answered within [`ReplyBudget`].
pub struct CommandGate {
    node: String,
    queue: tokio::sync::mpsc::Sender<Request>,
    refusals: std::sync::Arc<std::sync::Mutex<crate::mqtt::RefusalLog>>,
    budget: std::sync::Mutex<ReplyBudget>,
}

impl CommandGate {
    pub fn new(
        node: &str,
        queue: tokio::sync::mpsc::Sender<Request>,
        refusals: std::sync::Arc<std::sync::Mutex<crate::mqtt::RefusalLog>>,
    ) -> Self {
        Self { node: node.to_string(), queue, refusals, budget: Default::default() }
    }

    pub fn admit(&self, topic: &str, payload: &[u8]) -> Admitted {
        self.admit_at(topic, payload, Instant::now())
    }

    pub fn admit_at(&self, topic: &str, payload: &[u8], now: Instant) -> Admitted {
        match parse(payload) {
            Ok(req) => {
                let (id, command) = (req.id.clone(), req.command);
                match self.queue.try_send(req) {
                    Ok(()) => Admitted::Queued,
                    Err(_) => Admitted::Reply(reply(
                        &self.node,
                        id.as_deref(),
                        Some(command),
                        Err("busy: too many commands at once; try again in a moment"),
                    )),
                }
            }
            Err(r) => {
                self.refusals.locked().refuse(topic, &r.reason);
                if self.budget.locked().allow_at(now) {
                    Admitted::Reply(reply(&self.node, r.id.as_deref(), None, Err(&r.reason)))
                } else {
                    Admitted::Dropped
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A full queue answers "busy" (with the request's id) instead of dropping the request;
    /// refusals are answered up to the budget and every one is counted.
    #[test]
    fn a_burst_gets_a_reply_for_every_valid_command() {
        let (tx, mut rx) = tokio::sync::mpsc::channel(4);
        let refusals = std::sync::Arc::new(std::sync::Mutex::new(crate::mqtt::RefusalLog::default()));
        let gate = CommandGate::new("n", tx, refusals.clone());
        let t0 = Instant::now();
        let mut busy = Vec::new();
        for i in 0..10 {
            match gate.admit_at("t", format!(r#"{{"id":"b{i}","command":"ping"}}"#).as_bytes(), t0) {
                Admitted::Queued => {}
                Admitted::Reply(r) => {
                    assert_eq!(r["ok"], false);
                    assert!(r["reason"].as_str().unwrap().starts_with("busy"), "{r}");
                    busy.push(r["id"].as_str().unwrap().to_string());
                }
                Admitted::Dropped => panic!("a valid command was dropped"),
            }
        }
        let queued: Vec<String> = std::iter::from_fn(|| rx.try_recv().ok()).map(|r| r.id.unwrap()).collect();
        assert_eq!(queued, ["b0", "b1", "b2", "b3"]);
        assert_eq!(busy, ["b4", "b5", "b6", "b7", "b8", "b9"]);

        let outcomes: Vec<Admitted> =
            (0..25).map(|i| gate.admit_at("t", b"garbage", t0 + Duration::from_millis(i))).collect();
        assert_eq!(outcomes.iter().filter(|a| matches!(a, Admitted::Reply(_))).count(), 10);
        assert_eq!(outcomes.iter().filter(|a| **a == Admitted::Dropped).count(), 15);
        assert_eq!(refusals.locked().total, 25, "each refusal counted once, queue full or not");
        // A new second, a new budget.
        assert!(matches!(gate.admit_at("t", b"garbage", t0 + Duration::from_secs(2)), Admitted::Reply(_)));
    }

    #[test]
    fn valid_commands() {
        assert_eq!(
            parse(br#"{"id":"7","command":"status"}"#).unwrap(),
            Request { id: Some("7".into()), command: Command::Status, camera: None }
        );
        assert_eq!(
            parse(br#"{"id":"8","command":"snapshot","camera":"gate-1"}"#).unwrap(),
            Request { id: Some("8".into()), command: Command::Snapshot, camera: Some("gate-1".into()) }
        );
        assert_eq!(parse(br#"{"command":"ping"}"#).unwrap().command, Command::Ping);
        assert_eq!(parse(br#"{"command":"reload"}"#).unwrap().command, Command::Reload);
    }

    /// Every kind of hostile or broken payload is refused with a reason, never a panic.
    #[test]
    fn hostile_payloads_are_refused_with_a_reason() {
        let deep = "[".repeat(100_000);
        let deep_in_object = format!(r#"{{"id": {}"#, "{\"a\":".repeat(50_000));
        let long_id = format!(r#"{{"id":"{}","command":"ping"}}"#, "x".repeat(65));
        let cases: Vec<(&[u8], &str)> = vec![
            (b"", "not a JSON object"),
            (b"\xff\xfe\x00garbage", "not UTF-8"),
            (b"not json", "not a JSON object"),
            (b"{]", "not a valid command"),
            (b"[1,2,3]", "not a JSON object"),
            (br#"{"command": 5}"#, "not a valid command"),
            (br#"{"command": "format_disk"}"#, "unknown variant"),
            (br#"{"id": "s", "command": "snapshot"}"#, "snapshot needs"),
            (br#"{"command": "snapshot", "camera": "a/#"}"#, "camera must be"),
            (br#"{"command": "snapshot", "camera": ""}"#, "camera must be"),
            (br#"{"command": "ping", "camera": "a"}"#, "only for the snapshot"),
            (br#"{"command": "ping", "extra": 1}"#, "unknown field"),
            (br#"{"id": 12, "command": "ping"}"#, "invalid type"),
            (br#"{"id": "a", "command": "ping""#, "EOF"),
            (deep.as_bytes(), "not a JSON object"),
            (deep_in_object.as_bytes(), "not a valid command"),
            (br#"["7", "ping"]"#, "not a JSON object"),
            (long_id.as_bytes(), "1-64"),
            (br#"{"id":"","command":"ping"}"#, "1-64"),
        ];
        for (payload, want) in cases {
            let r = parse(payload).unwrap_err();
            assert!(
                r.reason.contains(want),
                "{:?}: {}",
                String::from_utf8_lossy(&payload[..payload.len().min(40)]),
                r.reason
            );
        }
        // The id of a readable but wrong request is echoed.
        assert_eq!(parse(br#"{"id":"9","command":"nope"}"#).unwrap_err().id.as_deref(), Some("9"));
    }
}
