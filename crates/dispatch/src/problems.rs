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
        "streaming" => short_visits(c, &name),
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

/// Among this many tracks that ended, a camera that saw a quarter or more at one look only
/// is told to look more often.
const SHORT_VISITS_AFTER: u64 = 10;

/// A streaming camera that sees many of its tracks at one look only (`tracks_seen_once` in its
/// status) looks about as seldom as its visits last: a shorter one falls between two looks.
fn short_visits(c: &Value, name: &str) -> Option<Value> {
    let seen = &c["tracks_seen_once"];
    let (once, of) = (seen["once"].as_u64()?, seen["of"].as_u64()?);
    (of >= SHORT_VISITS_AFTER && 4 * once >= of).then(|| {
        problem(
            "warn",
            format!(
                "camera {name}: {once} of its latest {of} tracks were seen at one look only: visits here are often about as short as the time between its looks, and one a little shorter falls between two looks unseen (a zone or line rule's shortest_visit makes it look often enough)"
            ),
        )
    })
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

    #[test]
    fn a_camera_that_sees_many_tracks_once_is_told_to_look_more_often() {
        let c = |once: u32, of: u32| json!({"camera": "gate", "state": "streaming", "tracks_seen_once": {"once": once, "of": of}});
        let p = camera_problem(&c(7, 20)).unwrap();
        assert_eq!(p["level"], "warn");
        let text = p["text"].as_str().unwrap();
        assert!(text.starts_with("camera gate: 7 of its latest 20 tracks were seen at one look only"), "{text}");
        assert!(text.contains("shortest_visit"), "{text}");
        assert!(camera_problem(&c(4, 20)).is_none(), "under a quarter");
        assert!(camera_problem(&c(5, 9)).is_none(), "too few tracks to tell");
        assert!(camera_problem(&json!({"camera": "gate", "state": "streaming"})).is_none());
    }
}
