//! The problems banner's lines, worked out on the server so every screen (and a test) sees
//! the same list: a leaf under the page and the fleet.

use serde_json::{Value, json};

/// One line of the problems banner: `level` is `error` or `warn`.
pub fn problem(level: &str, text: impl Into<String>) -> Value {
    json!({"level": level, "text": text.into()})
}

/// What a camera's status says is wrong, if anything.
pub fn camera_problem(c: &Value) -> Option<Value> {
    let name = match c["node"].as_str() {
        Some(node) if c["district"] == true => format!("{} on {node}", c["camera"].as_str().unwrap_or("?")),
        _ => c["camera"].as_str().unwrap_or("?").to_string(),
    };
    let detail = c["detail"].as_str().unwrap_or("");
    match c["state"].as_str()? {
        "streaming" => None,
        "connecting" => Some(problem("warn", format!("camera {name}: {detail}"))),
        "offline" => Some(problem("error", format!("camera {name}: its node is offline"))),
        _ => {
            // The error is often in the detail already (the reason of a backoff).
            let error = c["last_error"].as_str().filter(|e| !detail.contains(e));
            Some(problem(
                "error",
                format!("camera {name}: {detail}{}", error.map(|e| format!(" ({e})")).unwrap_or_default()),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn camera_problems_name_the_camera_and_the_reason() {
        let c = |state: &str| json!({"camera": "gate", "state": state, "detail": "retrying in 4 s", "last_error": "401 Unauthorized"});
        assert!(camera_problem(&c("streaming")).is_none());
        assert_eq!(camera_problem(&c("connecting")).unwrap()["level"], "warn");
        let p = camera_problem(&c("backoff")).unwrap();
        assert_eq!(p["level"], "error");
        assert_eq!(p["text"], "camera gate: retrying in 4 s (401 Unauthorized)");
        let d = json!({"camera": "gate", "node": "edge-1", "district": true, "state": "offline"});
        assert_eq!(camera_problem(&d).unwrap()["text"], "camera gate on edge-1: its node is offline");
    }
}
