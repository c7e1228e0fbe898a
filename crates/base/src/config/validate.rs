//! Raw config → validated [`Config`]. Reports every problem at once, each with the TOML
//! path it concerns and what would be valid. Values of passwords never enter a message.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::manifest::Manifest;
use super::model::*;
use super::raw::*;
use super::secret::Secret;
use super::units::{Schedule, parse_bytes, parse_duration};
use crate::geometry::{Point, Polygon, Polyline};
use crate::labels::default_labels;

/// Problems found, as (TOML path, message, byte offset inside the string value when the
/// problem is at a known character of it).
pub type Problems = Vec<(String, String, Option<usize>)>;

const ID_HINT: &str = "use lowercase letters, digits, '-' and '_' (1-64 characters)";

struct Validator<'a> {
    problems: Problems,
    /// Folder of the config file: relative paths are resolved against it.
    base: &'a Path,
}

fn valid_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn snake_case(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

impl Validator<'_> {
    fn err(&mut self, path: impl Into<String>, msg: impl Into<String>) {
        self.problems.push((path.into(), msg.into(), None));
    }

    /// A problem at byte `offset` of the string value at `path`.
    fn err_at(&mut self, path: impl Into<String>, offset: usize, msg: impl Into<String>) {
        self.problems.push((path.into(), msg.into(), Some(offset)));
    }

    fn path(&self, p: &Path) -> PathBuf {
        if p.is_absolute() { p.to_path_buf() } else { self.base.join(p) }
    }

    fn id(&mut self, path: String, id: &str, what: &str) {
        if !valid_id(id) {
            self.err(path, format!("{what} id \"{id}\" is not valid; {ID_HINT}"));
        }
    }

    fn duration(&mut self, path: String, value: Option<&String>, default: Duration) -> Duration {
        match value.map(|v| parse_duration(v)) {
            None => default,
            Some(Ok(d)) if d > Duration::ZERO => d,
            Some(Ok(_)) => {
                self.err(path, "must be longer than zero");
                default
            }
            Some(Err(e)) => {
                self.err(path, e);
                default
            }
        }
    }

    fn bytes(&mut self, path: &str, value: Option<&String>, default: u64) -> u64 {
        match value.map(|v| parse_bytes(v)) {
            None => default,
            Some(Ok(b)) => b,
            Some(Err(e)) => {
                self.err(path, e);
                default
            }
        }
    }

    fn fraction(&mut self, path: String, value: Option<f64>, default: f32) -> f32 {
        match value {
            None => default,
            Some(v) if v > 0.0 && v <= 1.0 => v as f32,
            Some(v) => {
                self.err(path, format!("{v} is out of range; use a number above 0 and at most 1"));
                default
            }
        }
    }

    fn readable(&mut self, path: String, file: &Path, what: &str) -> PathBuf {
        let full = self.path(file);
        if let Err(e) = std::fs::File::open(&full) {
            self.err(path, format!("cannot read {what} {}: {e}", full.display()));
        }
        full
    }

    /// Password from `password` or `password_file`, never both.
    fn password(&mut self, at: &str, inline: Option<&String>, file: Option<&PathBuf>) -> Option<Secret> {
        match (inline, file) {
            (Some(_), Some(_)) => {
                self.err(format!("{at}password_file"), "set either password or password_file, not both");
                None
            }
            (Some(p), None) => Some(Secret::new(p.clone())),
            (None, Some(f)) => {
                let full = self.path(f);
                match std::fs::read_to_string(&full) {
                    Ok(text) => Some(Secret::new(text.lines().next().unwrap_or("").trim())),
                    Err(e) => {
                        self.err(
                            format!("{at}password_file"),
                            format!(
                                "cannot read password file {}: {e}; the file must exist and be readable by the node",
                                full.display()
                            ),
                        );
                        None
                    }
                }
            }
            (None, None) => None,
        }
    }

    fn duplicates<'i>(&mut self, list: &str, ids: impl Iterator<Item = &'i str>, what: &str) {
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, id) in ids.enumerate() {
            if let Some(first) = seen.insert(id, i) {
                self.err(
                    format!("{list}[{i}].id"),
                    format!("duplicate {what} id \"{id}\" (also at {list}[{first}]); ids must be unique"),
                );
                seen.insert(id, first);
            }
        }
    }
}

pub fn validate(raw: RawConfig, base: &Path) -> Result<Config, Problems> {
    let mut v = Validator { problems: Vec::new(), base };
    if raw.version != 1 {
        v.err("version", format!("unsupported config version {}; this edge-node reads version = 1", raw.version));
    }

    v.id("node.id".into(), &raw.node.id, "node");
    let shard = raw.shard.as_ref().and_then(|s| shard(&mut v, s, &raw.node.id));
    let time_zone = raw.node.time_zone.as_ref().and_then(|tz| match crate::localtime::tz_value(tz) {
        Ok(v) => Some(v),
        Err(e) => {
            v.err("node.time_zone", e);
            None
        }
    });
    // In a shard this node's id is its entry in the shard's node list.
    let id = shard.as_ref().map_or_else(|| raw.node.id.clone(), |s| s.nodes[s.index].clone());
    let node = Node { name: raw.node.name.clone().unwrap_or_else(|| id.clone()), id, time_zone };

    let mqtt = raw.mqtt.as_ref().map(|m| mqtt(&mut v, m, &node.id));
    let storage = storage(&mut v, &raw.storage);
    let embedded_broker = match (&raw.mqtt, &raw.embedded_broker) {
        (Some(_), Some(_)) => {
            v.err("embedded_broker", "[embedded_broker] is only used without [mqtt]; remove one of the two sections");
            None
        }
        (Some(_), None) => None,
        (None, b) => {
            let listen = b.as_ref().and_then(|b| b.listen.as_deref()).unwrap_or("127.0.0.1:1883");
            match listen.parse::<SocketAddr>() {
                Ok(a) if a.ip().is_loopback() => Some(a),
                Ok(_) => {
                    v.err("embedded_broker.listen", format!("\"{listen}\" is not a loopback address; the embedded broker has no authentication, so it listens on 127.0.0.1 or [::1] only (use an external broker in [mqtt] for other clients)"));
                    None
                }
                Err(_) => {
                    v.err(
                        "embedded_broker.listen",
                        format!("\"{listen}\" is not an address; use IP:PORT such as \"127.0.0.1:1883\""),
                    );
                    None
                }
            }
        }
    };
    let http = http(&mut v, &raw.http);
    let clips = clips(&mut v, &raw.clips, &storage.data_dir);
    let models = models(&mut v, &raw.models, &storage.models_dir);
    let inference = inference(&mut v, &raw.inference);
    let grid = grid(&mut v, &raw.grid);
    let dispatch = dispatch(&mut v, &raw.dispatch, &grid);
    let defaults = CameraDefaults::new(&mut v, &raw.defaults, &models);

    v.duplicates("cameras", raw.cameras.iter().map(|c| c.id.as_str()), "camera");
    let mut cameras: Vec<Camera> =
        raw.cameras.iter().enumerate().map(|(i, c)| camera(&mut v, i, c, &defaults, &models, &grid)).collect();
    place(&mut v, &mut cameras, shard.as_ref());
    let home_assistant = home_assistant(&mut v, &raw.home_assistant);
    let reports = reports(&mut v, &raw.reports, &models);
    let apps = apps(&mut v, &raw.apps, &grid);

    if v.problems.is_empty() {
        Ok(Config {
            node,
            mqtt,
            embedded_broker,
            storage,
            http,
            clips,
            models,
            inference,
            cameras,
            grid,
            dispatch,
            shard,
            home_assistant,
            reports,
            apps,
        })
    } else {
        Err(v.problems)
    }
}

/// `[apps]`: the inspectors' tokens (each line names an inspector of `[grid]`), the voice.
fn apps(v: &mut Validator, a: &RawApps, grid: &Grid) -> Apps {
    let voice = a.voice.clone().unwrap_or_else(|| "en".into());
    if voice.is_empty() || !voice.chars().all(|c| c.is_ascii_alphanumeric() || "-_+/".contains(c)) {
        v.err("apps.voice", format!("\"{voice}\" is not an espeak-ng voice name (e.g. \"en\", \"cmn\")"));
    }
    let mut inspector_tokens: Vec<(String, Secret)> = Vec::new();
    if let Some(f) = &a.inspector_tokens {
        let full = v.path(f);
        match std::fs::read_to_string(&full) {
            Err(e) => v.err("apps.inspector_tokens", format!("cannot read {}: {e}", full.display())),
            Ok(text) => {
                for (n, line) in text.lines().enumerate() {
                    let line = line.split('#').next().unwrap_or("").trim();
                    if line.is_empty() {
                        continue;
                    }
                    let at = format!("{} line {}", full.display(), n + 1);
                    let mut words = line.split_whitespace();
                    let (Some(id), Some(token), None) = (words.next(), words.next(), words.next()) else {
                        v.err("apps.inspector_tokens", format!("{at}: write `<inspector id> <token>`"));
                        continue;
                    };
                    if !grid.inspectors.iter().any(|i| i.id == id) {
                        let known: Vec<&str> = grid.inspectors.iter().map(|i| i.id.as_str()).collect();
                        v.err(
                            "apps.inspector_tokens",
                            format!("{at}: \"{id}\" is not an inspector of [grid] (known: {})", known.join(", ")),
                        );
                    } else if token.len() < 16 {
                        v.err(
                            "apps.inspector_tokens",
                            format!("{at}: the token of {id} is shorter than 16 characters"),
                        );
                    } else if inspector_tokens.iter().any(|(i, _)| i == id) {
                        v.err("apps.inspector_tokens", format!("{at}: {id} has a token already"));
                    } else if inspector_tokens.iter().any(|(_, t)| t.expose() == token) {
                        v.err("apps.inspector_tokens", format!("{at}: this token is another inspector's too"));
                    } else {
                        inspector_tokens.push((id.to_string(), Secret::new(token)));
                    }
                }
            }
        }
    }
    Apps { inspector_tokens, voice }
}

/// `[reports]`: off unless `enabled`; then categories, and a face model for the photos.
fn reports(v: &mut Validator, r: &RawReports, models: &BTreeMap<String, ModelSpec>) -> Option<Reports> {
    if !r.enabled.unwrap_or(false) {
        return None;
    }
    let categories = r.categories.clone().unwrap_or_default();
    if categories.is_empty() {
        v.err("reports.categories", "list the categories residents may report, e.g. [\"pothole\", \"litter\"]");
    }
    for (i, c) in categories.iter().enumerate() {
        if c.is_empty() || !c.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
            v.err(format!("reports.categories[{i}]"), format!("\"{c}\" is not snake_case"));
        }
    }
    if !models.values().any(|m| m.family == Family::Yunet) {
        v.err(
            "reports.enabled",
            "report photos are pixelated with the face model: add one of family yunet to [models]",
        );
    }
    let attach_within_m = match r.attach_within {
        None => 50.0,
        Some(m) if (0.0..=10_000.0).contains(&m) => m,
        Some(m) => {
            v.err("reports.attach_within", format!("{m} is not a distance in meters from 0 to 10000"));
            50.0
        }
    };
    let outside_to_control_room = match r.outside.as_deref() {
        None | Some("refuse") => false,
        Some("control_room") => true,
        Some(o) => {
            v.err("reports.outside", format!("\"{o}\": use \"refuse\" or \"control_room\""));
            false
        }
    };
    Some(Reports {
        categories,
        attach_within_m,
        attach_for: v.duration("reports.attach_for".into(), r.attach_for.as_ref(), Duration::from_secs(7200)),
        outside_to_control_room,
        per_address: r.per_address.unwrap_or(10).max(1),
        per_token: r.per_token.unwrap_or(20).max(1),
        per_gateway: r.per_gateway.unwrap_or(600).max(1),
        reopen_at_most: r.reopen_at_most.filter(|n| {
            let ok = (1..=4).contains(n);
            if !ok {
                v.err("reports.reopen_at_most", format!("{n}: a rating from 1 to 4 (5 would reopen every order)"));
            }
            ok
        }),
    })
}

/// `[home_assistant]`: off unless `enabled`; topics without wildcards.
fn home_assistant(v: &mut Validator, h: &RawHomeAssistant) -> Option<HomeAssistant> {
    let prefix = h.discovery_prefix.clone().unwrap_or_else(|| "homeassistant".into());
    let birth = h.birth_topic.clone().unwrap_or_else(|| format!("{prefix}/status"));
    for (field, topic) in [("discovery_prefix", &prefix), ("birth_topic", &birth)] {
        if topic.is_empty() || topic.contains(['+', '#']) || topic.starts_with('/') || topic.ends_with('/') {
            v.err(
                format!("home_assistant.{field}"),
                format!("\"{topic}\" is not a topic (no wildcards, no leading or trailing /)"),
            );
        }
    }
    h.enabled.unwrap_or(false).then_some(HomeAssistant { discovery_prefix: prefix, birth_topic: birth })
}

/// `[clips]`: how long before and after the alert, the rate of blurred clips, retention.
fn clips(v: &mut Validator, c: &RawClips, data_dir: &Path) -> Clips {
    let pre_capture = v.duration("clips.pre_capture".into(), c.pre_capture.as_ref(), Duration::from_secs(5));
    let post_capture = v.duration("clips.post_capture".into(), c.post_capture.as_ref(), Duration::from_secs(5));
    for (name, d) in [("pre_capture", pre_capture), ("post_capture", post_capture)] {
        if d > Duration::from_secs(60) {
            v.err(format!("clips.{name}"), format!("{} s is too long; a clip side is at most 60 s", d.as_secs()));
        }
    }
    let fps = match c.fps {
        None => 5,
        Some(f) if (1.0..=25.0).contains(&f) && f.fract() == 0.0 => f as u32,
        Some(f) => {
            v.err("clips.fps", format!("{f} is not a whole number of frames per second from 1 to 25"));
            5
        }
    };
    let buffer_max_bytes = v.bytes("clips.buffer_max", c.buffer_max.as_ref(), 4 << 20);
    if buffer_max_bytes < 256 << 10 {
        v.err("clips.buffer_max", "at least 256KiB: a camera must hold a few seconds of its stream");
    }
    Clips {
        pre_capture,
        post_capture,
        fps,
        max_age: v.duration("clips.max_age".into(), c.max_age.as_ref(), Duration::from_secs(7 * 86400)),
        max_bytes: v.bytes("clips.max_size", c.max_size.as_ref(), 4 << 30),
        buffer_max_bytes,
        dir: c.dir.as_ref().map(|d| v.path(d)).unwrap_or_else(|| data_dir.join("clips")),
    }
}

/// `[http]`: the address, and the token any address but loopback needs (the status page,
/// snapshots and clips show people).
fn http(v: &mut Validator, h: &RawHttp) -> Http {
    let listen = h.listen.as_deref().unwrap_or("127.0.0.1:9090");
    let addr = listen.parse::<SocketAddr>().unwrap_or_else(|_| {
        v.err(
            "http.listen",
            format!("\"{listen}\" is not an address; use IP:PORT such as \"127.0.0.1:9090\" or \"0.0.0.0:9090\""),
        );
        SocketAddr::from(([127, 0, 0, 1], 9090))
    });
    let token = h.token_file.as_ref().and_then(|f| {
        let full = v.path(f);
        match std::fs::read_to_string(&full) {
            Ok(text) => {
                let token = text.lines().next().unwrap_or("").trim().to_string();
                if token.len() < 16 || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    v.err(
                        "http.token_file",
                        format!(
                            "the first line of {} must be a token of at least 16 characters without spaces \
                             (e.g. the output of `openssl rand -hex 16`)",
                            full.display()
                        ),
                    );
                    return None;
                }
                Some(Secret::new(token))
            }
            Err(e) => {
                v.err("http.token_file", format!("cannot read token file {}: {e}", full.display()));
                None
            }
        }
    });
    let users = h.users_file.as_ref().map(|f| users(v, f, token.as_ref())).unwrap_or_default();
    if h.token_file.is_none() && h.users_file.is_none() && !addr.ip().is_loopback() {
        v.err(
            "http.listen",
            format!(
                "{addr} is not a loopback address, and the status page, snapshots and clips show people: \
                 set http.token_file or http.users_file (requests must then carry a token) or listen on 127.0.0.1"
            ),
        );
    }
    let nearby_cameras = h.nearby_cameras.unwrap_or(4);
    if nearby_cameras > 12 {
        v.err("http.nearby_cameras", format!("{nearby_cameras}: at most 12 cameras beside the alert's own"));
    }
    let public_url = h.public_url.as_ref().and_then(|u| {
        let ok = (u.starts_with("http://") || u.starts_with("https://"))
            && u.len() > "https://".len()
            && !u.chars().any(|c| c.is_whitespace() || c == '"' || c == '<' || c == '>');
        if !ok {
            v.err("http.public_url", format!("\"{u}\" is not an address such as \"https://edge-3.district.lan:9443\""));
        }
        ok.then(|| u.trim_end_matches('/').to_string())
    });
    Http { listen: addr, token, users, nearby_cameras: nearby_cameras.min(12), public_url }
}

/// `http.users_file`: `<name> <role> <token>` per line; errors name the file's line.
fn users(v: &mut Validator, f: &std::path::Path, admin_token: Option<&Secret>) -> Vec<User> {
    let full = v.path(f);
    let text = match std::fs::read_to_string(&full) {
        Ok(t) => t,
        Err(e) => {
            v.err("http.users_file", format!("cannot read {}: {e}", full.display()));
            return Vec::new();
        }
    };
    let mut users: Vec<User> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let at = format!("{} line {}", full.display(), n + 1);
        let words: Vec<&str> = line.split_whitespace().collect();
        let [name, role, token] = words[..] else {
            v.err("http.users_file", format!("{at}: write `<name> <role> <token>` (role: viewer, live or admin)"));
            continue;
        };
        let role = match role {
            "viewer" => Role::Viewer,
            "live" => Role::Live,
            "admin" => Role::Admin,
            other => {
                v.err("http.users_file", format!("{at}: \"{other}\" is not a role; use viewer, live or admin"));
                continue;
            }
        };
        if !name.chars().all(|c| c.is_alphanumeric() || "-_.@".contains(c)) {
            v.err("http.users_file", format!("{at}: the name \"{name}\" may hold letters, digits and - _ . @ only"));
        } else if token.len() < 16 {
            v.err("http.users_file", format!("{at}: the token of {name} is shorter than 16 characters"));
        } else if users.iter().any(|u| u.name == name) {
            v.err("http.users_file", format!("{at}: {name} is named twice"));
        } else if users.iter().any(|u| u.token.expose() == token) || admin_token.is_some_and(|t| t.expose() == token) {
            v.err("http.users_file", format!("{at}: the token of {name} is someone else's too"));
        } else {
            users.push(User { name: name.to_string(), role, token: Secret::new(token) });
        }
    }
    users
}

/// A node index from the environment: a number (the StatefulSet pod-index label through
/// the downward API), or the number after the last `-` of a pod's name (`$HOSTNAME` of
/// `edge-node-3`, for clusters older than Kubernetes 1.28).
fn index_in(text: &str) -> Option<i64> {
    let text = text.trim();
    text.parse().ok().or_else(|| {
        let (_, n) = text.rsplit_once('-')?;
        n.bytes().all(|b| b.is_ascii_digit()).then(|| n.parse().ok()).flatten()
    })
}

/// `[shard]`: the count, this node's index (from the file or the environment) and the
/// nodes' ids.
fn shard(v: &mut Validator, s: &RawShard, id: &str) -> Option<Shard> {
    let count = match usize::try_from(s.count) {
        Ok(n) if n >= 1 => n,
        _ => {
            v.err("shard.count", format!("{} is not a number of nodes; use 1 or more", s.count));
            return None;
        }
    };
    let index = match (s.index, &s.index_env) {
        (Some(_), Some(_)) => {
            v.err("shard.index_env", "set shard.index or shard.index_env, not both");
            return None;
        }
        (None, None) => {
            v.err("shard", "missing index: set shard.index, or shard.index_env to the variable that holds it");
            return None;
        }
        (Some(i), None) => (i, "shard.index".to_string(), format!("{i}")),
        (None, Some(var)) => match std::env::var(var) {
            Ok(text) => match index_in(&text) {
                Some(i) => (i, "shard.index_env".to_string(), format!("{i} (from ${var} = \"{text}\")")),
                None => {
                    v.err(
                        "shard.index_env",
                        format!("${var} is \"{text}\": neither a node index nor a name ending in -<index>"),
                    );
                    return None;
                }
            },
            Err(_) => {
                v.err("shard.index_env", format!("${var} is not set (it should hold this node's index, 0..{count})"));
                return None;
            }
        },
    };
    let (index, at, shown) = index;
    let Some(index) = usize::try_from(index).ok().filter(|i| *i < count) else {
        v.err(at, format!("index {shown} is outside 0..{count} (shard.count = {count})"));
        return None;
    };
    let nodes = match &s.nodes {
        None => super::shard::default_names(id, count),
        Some(list) => {
            if list.len() != count {
                v.err(
                    "shard.nodes",
                    format!("{} node ids for shard.count = {count}; list one id per node", list.len()),
                );
                return None;
            }
            for (i, n) in list.iter().enumerate() {
                v.id(format!("shard.nodes[{i}]"), n, "node");
            }
            let mut seen = std::collections::BTreeMap::new();
            for (i, n) in list.iter().enumerate() {
                if let Some(first) = seen.insert(n.as_str(), i) {
                    v.err(
                        format!("shard.nodes[{i}]"),
                        format!("\"{n}\" is also shard.nodes[{first}]: two nodes cannot have one id"),
                    );
                }
            }
            list.clone()
        }
    };
    Some(Shard { index, nodes })
}

/// Which cameras run here: pinned ones on their node, the others by rendezvous hashing.
fn place(v: &mut Validator, cameras: &mut [Camera], shard: Option<&Shard>) {
    for (i, c) in cameras.iter_mut().enumerate() {
        let owner = match (shard, &c.node) {
            (None, None) => None,
            (None, Some(_)) => {
                v.err(format!("cameras[{i}].node"), "pins the camera to a node, but there is no [shard]");
                continue;
            }
            (Some(s), Some(pin)) => match s.nodes.iter().position(|n| n == pin) {
                Some(p) => Some(p),
                None => {
                    v.err(
                        format!("cameras[{i}].node"),
                        format!("no node \"{pin}\" in the shard; its nodes are {}", s.nodes.join(", ")),
                    );
                    continue;
                }
            },
            (Some(s), None) => Some(super::shard::owner(&c.id, &s.nodes)),
        };
        c.here = c.enabled && owner.is_none_or(|o| shard.is_some_and(|s| s.index == o));
    }
}

fn mqtt(v: &mut Validator, m: &RawMqtt, node_id: &str) -> Mqtt {
    if m.host.trim().is_empty() || m.host.contains(['/', ' ']) {
        v.err(
            "mqtt.host",
            format!(
                "\"{}\" is not a host name; use a name or address such as \"broker.local\" or \"10.0.0.5\"",
                m.host
            ),
        );
    }
    if m.port == Some(0) {
        v.err("mqtt.port", "port 0 is not valid; use 1-65535 (1883 plain, 8883 TLS)");
    }
    let password = v.password("mqtt.", m.password.as_ref(), m.password_file.as_ref());
    if password.is_some() && m.username.is_none() {
        v.err("mqtt.username", "a password is set but no username; MQTT needs both");
    }
    let any_tls_file = m.ca_file.is_some() || m.client_cert_file.is_some() || m.client_key_file.is_some();
    if any_tls_file && !m.tls {
        v.err("mqtt.tls", "TLS files are set but tls = false; set tls = true or remove them");
    }
    if m.client_cert_file.is_some() != m.client_key_file.is_some() {
        v.err("mqtt.client_key_file", "client_cert_file and client_key_file go together; set both or neither");
    }
    let tls = m.tls.then(|| Tls {
        ca_file: m.ca_file.as_ref().map(|f| v.readable("mqtt.ca_file".into(), f, "CA file")),
        client_cert_file: m
            .client_cert_file
            .as_ref()
            .map(|f| v.readable("mqtt.client_cert_file".into(), f, "certificate")),
        client_key_file: m.client_key_file.as_ref().map(|f| v.readable("mqtt.client_key_file".into(), f, "key")),
    });
    let client_id = m.client_id.clone().unwrap_or_else(|| format!("gridsight-{node_id}"));
    if client_id.is_empty() || client_id.len() > 128 || client_id.contains(['/', '+', '#']) {
        v.err("mqtt.client_id", "client id must be 1-128 characters without '/', '+' or '#'");
    }
    let topic_prefix = m.topic_prefix.clone().unwrap_or_else(|| "gridsight".into());
    if topic_prefix.is_empty()
        || topic_prefix.contains(['+', '#'])
        || topic_prefix.starts_with('/')
        || topic_prefix.ends_with('/')
    {
        v.err("mqtt.topic_prefix", format!("\"{topic_prefix}\" cannot start a topic; use levels without wildcards, e.g. \"gridsight\" or \"district7/gridsight\""));
    }
    if m.max_inflight == Some(0) {
        v.err("mqtt.max_inflight", "must be at least 1");
    }
    Mqtt {
        host: m.host.clone(),
        port: m.port.unwrap_or(if m.tls { 8883 } else { 1883 }),
        tls,
        username: m.username.clone(),
        password,
        client_id,
        topic_prefix,
        keep_alive: v.duration("mqtt.keep_alive".into(), m.keep_alive.as_ref(), Duration::from_secs(30)),
        max_inflight: m.max_inflight.unwrap_or(100),
    }
}

fn storage(v: &mut Validator, s: &RawStorage) -> Storage {
    let data_dir = v.path(s.data_dir.as_deref().unwrap_or(Path::new("/var/lib/gridsight")));
    let models_dir = v.path(s.models_dir.as_deref().unwrap_or(Path::new("/usr/share/gridsight/models")));
    Storage {
        snapshot_dir: s.snapshot_dir.as_ref().map(|p| v.path(p)).unwrap_or_else(|| data_dir.join("snapshots")),
        snapshot_max_age: v.duration(
            "storage.snapshot_max_age".into(),
            s.snapshot_max_age.as_ref(),
            Duration::from_secs(7 * 86400),
        ),
        snapshot_max_bytes: v.bytes("storage.snapshot_max_size", s.snapshot_max_size.as_ref(), 2 << 30),
        outbox_max_bytes: v.bytes("storage.outbox_max_size", s.outbox_max_size.as_ref(), 512 << 20),
        disk_reserve: v.bytes("storage.disk_reserve", s.disk_reserve.as_ref(), 64 << 20),
        data_dir,
        models_dir,
    }
}

fn models(v: &mut Validator, raw: &BTreeMap<String, RawModel>, dir: &Path) -> BTreeMap<String, ModelSpec> {
    if raw.is_empty() {
        return BTreeMap::new();
    }
    let manifest_path = dir.join("manifest.toml");
    let manifest = match Manifest::load(&manifest_path) {
        Ok(m) => Some(m),
        Err(e) => {
            v.err(
                "storage.models_dir",
                format!("{e}; models_dir must hold the models and their manifest.toml (run `make setup`)"),
            );
            None
        }
    };
    let mut out = BTreeMap::new();
    for (name, m) in raw {
        let at = format!("models.{name}");
        if !valid_id(name) {
            v.err(at.clone(), format!("model name \"{name}\" is not valid; {ID_HINT}"));
        }
        let Some(manifest) = &manifest else { continue };
        let Some(entry) = manifest.by_file(&m.file) else {
            let known: Vec<&str> = manifest.models.iter().map(|m| m.file.as_str()).collect();
            v.err(
                format!("{at}.file"),
                format!("\"{}\" is not in {}; use one of: {}", m.file, manifest_path.display(), known.join(", ")),
            );
            continue;
        };
        let path = dir.join(&entry.file);
        if !path.is_file() {
            v.err(
                format!("{at}.file"),
                format!("{} is listed in the manifest but not installed; run `make setup`", path.display()),
            );
        }
        let fixed = entry.input.fixed_size();
        let input_size = match (fixed, m.input_size) {
            (Some(f), Some([w, h])) if (w, h) != f => {
                v.err(
                    format!("{at}.input_size"),
                    format!(
                        "{} has a fixed input of {}x{}; remove input_size or use a dynamic model file",
                        entry.file, f.0, f.1
                    ),
                );
                f
            }
            (Some(f), _) => f,
            (None, Some([w, h])) => {
                check_size(v, format!("{at}.input_size"), w, h);
                (w, h)
            }
            // A dynamic file's default limit: YOLOX at the scale it was trained for (416 wide;
            // a 16:9 frame then runs at 416x256 instead of a padded 416x416), YuNet at 640.
            (None, None) => match entry.family {
                Family::Yolox => (416, 416),
                _ => (640, 384),
            },
        };
        let (score_default, nms_default) = match entry.family {
            Family::Yolox => (0.35, 0.45),
            Family::Yunet => (0.7, 0.3),
        };
        let labels: Vec<String> = match &m.labels {
            Some(l) if l.is_empty() => {
                v.err(format!("{at}.labels"), "labels must not be empty; leave it out to use the family's labels");
                Vec::new()
            }
            Some(l) => l.clone(),
            None => default_labels(entry.family).iter().map(|s| s.to_string()).collect(),
        };
        let mut classes = Vec::new();
        for (i, c) in m.classes.iter().flatten().enumerate() {
            match labels.iter().position(|l| l == c) {
                Some(id) => classes.push(id),
                None => v.err(
                    format!("{at}.classes[{i}]"),
                    format!("unknown class \"{c}\" for a {} model; {}", entry.family, label_hint(&labels)),
                ),
            }
        }
        out.insert(
            name.clone(),
            ModelSpec {
                name: name.clone(),
                family: entry.family,
                path,
                input_size,
                dynamic: fixed.is_none(),
                score_threshold: v.fraction(format!("{at}.score_threshold"), m.score_threshold, score_default),
                nms_iou: v.fraction(format!("{at}.nms_iou"), m.nms_iou, nms_default),
                classes,
                labels,
            },
        );
    }
    out
}

/// The label closest to a misspelt one (at most a third of its letters off), for "did you
/// mean": case and separators aside first (`Traffic-Light` is `traffic light`).
fn nearest_label<'a>(wrong: &str, labels: &[&'a String]) -> Option<&'a String> {
    let norm = |s: &str| s.to_lowercase().replace(['_', '-'], " ");
    let w = norm(wrong);
    let distance = |a: &str, b: &str| {
        let b: Vec<char> = b.chars().collect();
        let mut row: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut prev = row[0];
            row[0] = i + 1;
            for j in 0..b.len() {
                let cur = row[j + 1];
                row[j + 1] = (prev + usize::from(ca != b[j])).min(row[j] + 1).min(cur + 1);
                prev = cur;
            }
        }
        row[b.len()]
    };
    labels
        .iter()
        .map(|l| (distance(&w, &norm(l)), *l))
        .filter(|(d, _)| *d <= (w.chars().count() / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, l)| l)
}

fn label_hint(labels: &[String]) -> String {
    let shown: Vec<&str> = labels.iter().take(12).map(String::as_str).collect();
    let more = if labels.len() > shown.len() { ", ..." } else { "" };
    format!("valid labels: {}{more}", shown.join(", "))
}

fn check_size(v: &mut Validator, path: String, w: u32, h: u32) {
    if !w.is_multiple_of(32) || !h.is_multiple_of(32) || !(32..=4096).contains(&w) || !(32..=4096).contains(&h) {
        v.err(path, format!("[{w}, {h}] is not a valid input size; width and height must be multiples of 32 between 32 and 4096, e.g. [640, 384]"));
    }
}

fn inference(v: &mut Validator, r: &RawInference) -> Inference {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let positive = |v: &mut Validator, name: &str, value: Option<u32>, default: usize, max: u32| match value {
        None => default,
        Some(n) if (1..=max).contains(&n) => n as usize,
        Some(n) => {
            v.err(format!("inference.{name}"), format!("{n} is out of range; use 1-{max}"));
            default
        }
    };
    let workers = match r.workers {
        None | Some(0) => cores.clamp(1, 4),
        Some(n) if n <= 64 => n as usize,
        Some(n) => {
            v.err("inference.workers", format!("{n} workers is too many; use 0 (one per core) to 64"));
            1
        }
    };
    Inference {
        provider: r.provider.unwrap_or(Provider::Cpu),
        workers,
        threads_per_worker: positive(v, "threads_per_worker", r.threads_per_worker, 1, 64),
        max_batch: positive(v, "max_batch", r.max_batch, 1, 64),
        max_wait: v.duration("inference.max_wait".into(), r.max_wait.as_ref(), Duration::from_millis(10)),
        queue_per_camera: positive(v, "queue_per_camera", r.queue_per_camera, 2, 64),
    }
}

fn grid(v: &mut Validator, g: &RawGrid) -> Grid {
    v.duplicates("grid.communities", g.communities.iter().map(|c| c.id.as_str()), "community");
    v.duplicates("grid.grids", g.grids.iter().map(|c| c.id.as_str()), "grid");
    v.duplicates("grid.micro_grids", g.micro_grids.iter().map(|c| c.id.as_str()), "micro-grid");
    v.duplicates("grid.inspectors", g.inspectors.iter().map(|c| c.id.as_str()), "inspector");
    let communities: HashSet<&str> = g.communities.iter().map(|c| c.id.as_str()).collect();
    let grids: HashSet<&str> = g.grids.iter().map(|c| c.id.as_str()).collect();
    let inspectors: HashSet<&str> = g.inspectors.iter().map(|c| c.id.as_str()).collect();
    let unknown = |kind: &str, id: &str, known: &HashSet<&str>| {
        let mut k: Vec<&&str> = known.iter().collect();
        k.sort();
        let list = if k.is_empty() {
            "none is defined".to_string()
        } else {
            format!("known: {}", k.iter().map(|s| **s).collect::<Vec<_>>().join(", "))
        };
        format!("unknown {kind} \"{id}\"; {list}")
    };

    let mut out = Grid::default();
    for (i, c) in g.communities.iter().enumerate() {
        v.id(format!("grid.communities[{i}].id"), &c.id, "community");
        out.communities.push(Community { id: c.id.clone(), name: c.name.clone().unwrap_or_else(|| c.id.clone()) });
    }
    for (i, c) in g.grids.iter().enumerate() {
        v.id(format!("grid.grids[{i}].id"), &c.id, "grid");
        if !communities.contains(c.community.as_str()) {
            v.err(format!("grid.grids[{i}].community"), unknown("community", &c.community, &communities));
        }
        if let Some(l) = &c.leader
            && !inspectors.contains(l.as_str())
        {
            v.err(format!("grid.grids[{i}].leader"), unknown("inspector", l, &inspectors));
        }
        out.grids.push(GridCell {
            id: c.id.clone(),
            name: c.name.clone().unwrap_or_else(|| c.id.clone()),
            community: c.community.clone(),
            leader: c.leader.clone(),
        });
    }
    for (i, m) in g.micro_grids.iter().enumerate() {
        v.id(format!("grid.micro_grids[{i}].id"), &m.id, "micro-grid");
        if !grids.contains(m.grid.as_str()) {
            v.err(format!("grid.micro_grids[{i}].grid"), unknown("grid", &m.grid, &grids));
        }
        let area = m.polygon.as_ref().and_then(|pts| {
            let at = format!("grid.micro_grids[{i}].polygon");
            if let Some(p) = pts.iter().find(|p| !(-180.0..=180.0).contains(&p[0]) || !(-90.0..=90.0).contains(&p[1])) {
                v.err(at, format!("[{}, {}] is not [longitude, latitude] (-180..180, -90..90)", p[0], p[1]));
                return None;
            }
            match crate::geometry::Polygon::new(pts.iter().map(|p| crate::geometry::Point::new(p[0], p[1])).collect()) {
                Ok(poly) => Some(poly),
                Err(e) => {
                    v.err(at, e.to_string());
                    None
                }
            }
        });
        out.micro_grids.push(MicroGrid {
            id: m.id.clone(),
            name: m.name.clone().unwrap_or_else(|| m.id.clone()),
            grid: m.grid.clone(),
            area,
        });
    }
    for (i, p) in g.inspectors.iter().enumerate() {
        v.id(format!("grid.inspectors[{i}].id"), &p.id, "inspector");
        if !grids.contains(p.grid.as_str()) {
            v.err(format!("grid.inspectors[{i}].grid"), unknown("grid", &p.grid, &grids));
        }
        let duty = Schedule::parse(&p.duty).unwrap_or_else(|(j, e)| {
            v.err(format!("grid.inspectors[{i}].duty[{j}]"), e);
            Schedule::always()
        });
        out.inspectors.push(Inspector {
            id: p.id.clone(),
            name: p.name.clone(),
            grid: p.grid.clone(),
            contact_topic: p.contact_topic.clone(),
            duty,
        });
    }
    out
}

fn dispatch(v: &mut Validator, d: &RawDispatch, grid: &Grid) -> Dispatch {
    v.duplicates("dispatch.routes", d.routes.iter().map(|r| r.category.as_str()), "route for category");
    let mut routes = Vec::new();
    for (i, r) in d.routes.iter().enumerate() {
        let at = |f: &str| format!("dispatch.routes[{i}].{f}");
        if r.category != "*" && !snake_case(&r.category) {
            v.err(
                at("category"),
                format!("\"{}\" is not a category; use snake_case (e.g. \"illegal_parking\") or \"*\"", r.category),
            );
        }
        let def = Route::default_for(&r.category);
        let reassign = r.reassign.unwrap_or(def.reassign);
        if reassign > 10 {
            v.err(at("reassign"), "at most 10 reassignments; escalate instead");
        }
        let escalate = r.escalate.clone().unwrap_or(def.escalate);
        if escalate.windows(2).any(|w| w[0] == w[1])
            || escalate.first() == Some(&EscalationStep::ControlRoom) && escalate.len() > 1
        {
            v.err(at("escalate"), "list each step once, leader before control_room: [\"leader\", \"control_room\"], [\"control_room\"] or [\"leader\"]");
        }
        routes.push(Route {
            category: r.category.clone(),
            priority: r.priority.unwrap_or(def.priority),
            accept_within: v.duration(at("accept_within"), r.accept_within.as_ref(), def.accept_within),
            resolve_within: v.duration(at("resolve_within"), r.resolve_within.as_ref(), def.resolve_within),
            reassign: reassign.min(10),
            escalate,
        });
    }
    if routes.is_empty() {
        routes.push(Route::default_for("*"));
    }
    Dispatch {
        enabled: d.enabled.unwrap_or(!grid.inspectors.is_empty()),
        stats_interval: v.duration(
            "dispatch.stats_interval".into(),
            d.stats_interval.as_ref(),
            Duration::from_secs(60),
        ),
        retention: v.duration("dispatch.retention".into(), d.retention.as_ref(), Duration::from_secs(90 * 86400)),
        routes,
        nearest_max_open: d.nearest_max_open.unwrap_or(3),
        position_max_age: v.duration(
            "dispatch.position_max_age".into(),
            d.position_max_age.as_ref(),
            Duration::from_secs(120),
        ),
    }
}

/// `[defaults]` validated once, so an error there is reported at `defaults.*`, not per camera.
struct CameraDefaults {
    transport: Transport,
    decode: DecodeMode,
    hw_decode: HwDecode,
    rtsp_client: RtspClient,
    detect_fps: f64,
    models: Vec<String>,
    stall_timeout: Duration,
    motion_gate: bool,
    full_detect_interval: Duration,
    coordinates: Coordinates,
    faces: FacePolicy,
    clips: ClipPolicy,
    live: LivePolicy,
    severity: Severity,
    min_score: f32,
    cooldown: Duration,
    dispatch: bool,
}

impl CameraDefaults {
    fn new(v: &mut Validator, d: &RawDefaults, models: &BTreeMap<String, ModelSpec>) -> Self {
        let rules = d.rules.as_ref();
        Self {
            transport: d.transport.unwrap_or(Transport::Tcp),
            // An explicit rate is honoured; otherwise the cadence follows the rules.
            decode: d.decode.unwrap_or(if d.detect_fps.is_some() { DecodeMode::Auto } else { DecodeMode::Adaptive }),
            hw_decode: d.hw_decode.unwrap_or(HwDecode::None),
            rtsp_client: d.rtsp_client.unwrap_or(RtspClient::Retina),
            detect_fps: fps(v, "defaults.detect_fps".into(), d.detect_fps, 1.0),
            models: model_list(v, "defaults.models", d.models.as_ref(), models, models.keys().cloned().collect()),
            stall_timeout: v.duration(
                "defaults.stall_timeout".into(),
                d.stall_timeout.as_ref(),
                Duration::from_secs(10),
            ),
            motion_gate: d.motion_gate.unwrap_or(true),
            full_detect_interval: v.duration(
                "defaults.full_detect_interval".into(),
                d.full_detect_interval.as_ref(),
                Duration::from_secs(30),
            ),
            coordinates: d.coordinates.unwrap_or(Coordinates::Normalized),
            faces: d.privacy.as_ref().and_then(|p| p.faces).unwrap_or(FacePolicy::Blur),
            clips: d.privacy.as_ref().and_then(|p| p.clips).unwrap_or(ClipPolicy::Blurred),
            live: d.privacy.as_ref().and_then(|p| p.live).unwrap_or(LivePolicy::On),
            severity: rules.and_then(|r| r.severity).unwrap_or(Severity::Medium),
            min_score: v.fraction("defaults.rules.min_score".into(), rules.and_then(|r| r.min_score), 0.5),
            cooldown: v.duration(
                "defaults.rules.cooldown".into(),
                rules.and_then(|r| r.cooldown.as_ref()),
                Duration::from_secs(60),
            ),
            dispatch: rules.and_then(|r| r.dispatch).unwrap_or(true),
        }
    }
}

fn fps(v: &mut Validator, path: String, value: Option<f64>, default: f64) -> f64 {
    match value {
        None => default,
        Some(f) if f > 0.0 && f <= 60.0 => f,
        Some(f) => {
            v.err(
                path,
                format!(
                    "detect_fps {f} is out of range; use a rate above 0 and at most 60 frames per second (e.g. 1, 2.5)"
                ),
            );
            default
        }
    }
}

fn model_list(
    v: &mut Validator,
    path: &str,
    names: Option<&Vec<String>>,
    models: &BTreeMap<String, ModelSpec>,
    default: Vec<String>,
) -> Vec<String> {
    let Some(names) = names else { return default };
    for (i, n) in names.iter().enumerate() {
        if !models.contains_key(n) {
            let known: Vec<&str> = models.keys().map(String::as_str).collect();
            v.err(
                format!("{path}[{i}]"),
                format!(
                    "unknown model \"{n}\"; defined in [models.*]: {}",
                    if known.is_empty() { "none".into() } else { known.join(", ") }
                ),
            );
        }
    }
    names.clone()
}

fn camera(
    v: &mut Validator,
    i: usize,
    c: &RawCamera,
    d: &CameraDefaults,
    models: &BTreeMap<String, ModelSpec>,
    grid: &Grid,
) -> Camera {
    let at = format!("cameras[{i}].");
    v.id(format!("{at}id"), &c.id, "camera");
    let (url, url_credentials) = match parse_rtsp_url(&c.url) {
        Ok(parsed) => parsed,
        Err(e) => {
            v.err_at(format!("{at}url"), e.offset, e.message);
            (RtspUrl { secure: false, host: String::new(), port: None, path: String::new() }, None)
        }
    };
    let password = v.password(&at, c.password.as_ref(), c.password_file.as_ref());
    let credentials = match (url_credentials, &c.username, password) {
        (Some(_), Some(_), _) => {
            v.err(
                format!("{at}username"),
                "credentials are both in the url and in username; keep one (username with password_file is safer)",
            );
            None
        }
        (Some(creds), None, None) => Some(creds),
        (Some(_), None, Some(_)) => {
            v.err(
                format!("{at}password"),
                "the url already holds credentials; remove them from the url or remove the password",
            );
            None
        }
        (None, Some(u), p) => Some(Credentials { username: u.clone(), password: p.unwrap_or_else(|| Secret::new("")) }),
        (None, None, Some(_)) => {
            v.err(format!("{at}username"), "a password is set but no username");
            None
        }
        (None, None, None) => None,
    };

    let camera_models = model_list(v, &format!("{at}models"), c.models.as_ref(), models, d.models.clone());
    if let Some([w, h]) = c.input_size {
        check_size(v, format!("{at}input_size"), w, h);
        for name in &camera_models {
            if let Some(m) = models.get(name)
                && !m.dynamic
                && m.input_size != (w, h)
            {
                v.err(
                    format!("{at}input_size"),
                    format!(
                        "model \"{name}\" has a fixed {}x{} input; use a dynamic model file or remove input_size",
                        m.input_size.0, m.input_size.1
                    ),
                );
            }
        }
    }
    if let Some(mg) = &c.micro_grid
        && !grid.micro_grids.iter().any(|m| &m.id == mg)
    {
        let known: Vec<&str> = grid.micro_grids.iter().map(|m| m.id.as_str()).collect();
        v.err(
            format!("{at}micro_grid"),
            format!(
                "unknown micro-grid \"{mg}\"; defined in [[grid.micro_grids]]: {}",
                if known.is_empty() { "none".into() } else { known.join(", ") }
            ),
        );
    }

    if let Some([lon, lat]) = c.location {
        if !(-180.0..=180.0).contains(&lon) || !(-90.0..=90.0).contains(&lat) {
            v.err(format!("{at}location"), format!("[{lon}, {lat}] is not [longitude, latitude] in degrees"));
        } else if let Some(m) = c.micro_grid.as_ref().and_then(|mg| grid.micro_grids.iter().find(|m| &m.id == mg))
            && let Some(area) = &m.area
            && !area.contains(Point::new(lon, lat))
        {
            v.err(
                format!("{at}location"),
                format!("[{lon}, {lat}] is outside micro-grid {}'s polygon (x = longitude, y = latitude)", m.id),
            );
        }
    }

    let direction = match (c.direction, c.field_of_view, c.location) {
        (None, None, _) => None,
        (_, _, None) => {
            v.err(format!("{at}direction"), "a camera's direction and field of view need its location");
            None
        }
        (dir, fov, Some(_)) => {
            let dir = dir.unwrap_or(0.0);
            let fov = fov.unwrap_or(60.0);
            if !(0.0..=360.0).contains(&dir) {
                v.err(
                    format!("{at}direction"),
                    format!("{dir} is not a bearing: degrees clockwise from north, 0 to 360"),
                );
            }
            if !(1.0..=360.0).contains(&fov) {
                v.err(format!("{at}field_of_view"), format!("{fov} is not a field of view: 1 to 360 degrees"));
            }
            Some((dir, fov))
        }
    };

    let coordinates = c.coordinates.unwrap_or(d.coordinates);
    let points = |v: &mut Validator, path: &str, raw: &[RawPoint]| -> Vec<Point> {
        for (k, [x, y]) in raw.iter().enumerate() {
            let ok = match coordinates {
                Coordinates::Normalized => (0.0..=1.0).contains(x) && (0.0..=1.0).contains(y),
                Coordinates::Pixel => *x >= 0.0 && *y >= 0.0 && x.is_finite() && y.is_finite(),
            };
            if !ok {
                let hint = match coordinates {
                    Coordinates::Normalized => {
                        "normalized coordinates are fractions of the frame between 0 and 1 (or set coordinates = \"pixel\")"
                    }
                    Coordinates::Pixel => "pixel coordinates must be 0 or more",
                };
                v.err(format!("{path}[{k}]"), format!("point [{x}, {y}] is outside the frame; {hint}"));
            }
        }
        raw.iter().map(|[x, y]| Point::new(*x, *y)).collect()
    };
    let mut zones = BTreeMap::new();
    for (name, z) in &c.zones {
        let path = format!("{at}zones.{name}.polygon");
        if !valid_id(name) {
            v.err(format!("{at}zones.{name}"), format!("zone name \"{name}\" is not valid; {ID_HINT}"));
        }
        let pts = points(v, &path, &z.polygon);
        match Polygon::new(pts) {
            Ok(p) => {
                zones.insert(name.clone(), p);
            }
            Err(e) => v.err(path, format!("zone polygon {e}")),
        }
    }
    let mut lines = BTreeMap::new();
    for (name, l) in &c.lines {
        let path = format!("{at}lines.{name}.points");
        if !valid_id(name) {
            v.err(format!("{at}lines.{name}"), format!("line name \"{name}\" is not valid; {ID_HINT}"));
        }
        let pts = points(v, &path, &l.points);
        match Polyline::new(pts) {
            Ok(p) => {
                lines.insert(name.clone(), p);
            }
            Err(e) => v.err(path, format!("line {e}")),
        }
    }

    v.duplicates(&format!("{at}rules"), c.rules.iter().map(|r| r.id.as_str()), "rule");
    let object_models: Vec<&ModelSpec> =
        camera_models.iter().filter_map(|n| models.get(n)).filter(|m| m.family != Family::Yunet).collect();
    let labels: Vec<&String> = object_models.iter().flat_map(|m| &m.labels).collect();
    // A label the model knows but its `classes` list leaves out is never detected: a rule
    // naming it would never fire.
    let filtered: Vec<(&String, &str)> = object_models
        .iter()
        .filter(|m| !m.classes.is_empty())
        .flat_map(|m| {
            m.labels
                .iter()
                .enumerate()
                .filter(|(id, _)| !m.classes.contains(id))
                .map(|(_, l)| (l, m.name.as_str()))
                .collect::<Vec<_>>()
        })
        .filter(|(l, _)| {
            !object_models
                .iter()
                .any(|m| m.classes.is_empty() && m.labels.contains(l) || m.classes.iter().any(|&i| m.labels[i] == **l))
        })
        .collect();
    let has_faces = camera_models.iter().filter_map(|n| models.get(n)).any(|m| m.family == Family::Yunet);
    let ctx =
        RuleContext { zones: &c.zones, lines: &c.lines, labels: &labels, filtered: &filtered, has_faces, defaults: d };
    let rules = c.rules.iter().enumerate().filter_map(|(j, r)| rule(v, &format!("{at}rules[{j}]"), r, &ctx)).collect();

    Camera {
        id: c.id.clone(),
        name: c.name.clone().unwrap_or_else(|| c.id.clone()),
        url,
        credentials,
        enabled: c.enabled.unwrap_or(true),
        transport: c.transport.unwrap_or(d.transport),
        decode: c.decode.unwrap_or(match (c.detect_fps, d.decode) {
            (Some(_), DecodeMode::Adaptive) => DecodeMode::Auto,
            (_, mode) => mode,
        }),
        hw_decode: c.hw_decode.unwrap_or(d.hw_decode),
        rtsp_client: c.rtsp_client.unwrap_or(d.rtsp_client),
        detect_fps: fps(v, format!("{at}detect_fps"), c.detect_fps, d.detect_fps),
        models: camera_models,
        input_size: c.input_size.map(|[w, h]| (w, h)),
        micro_grid: c.micro_grid.clone(),
        location: c.location,
        direction,
        node: c.node.clone(),
        here: false,
        stall_timeout: v.duration(format!("{at}stall_timeout"), c.stall_timeout.as_ref(), d.stall_timeout),
        motion_gate: c.motion_gate.unwrap_or(d.motion_gate),
        full_detect_interval: v.duration(
            format!("{at}full_detect_interval"),
            c.full_detect_interval.as_ref(),
            d.full_detect_interval,
        ),
        coordinates,
        zones,
        lines,
        rules,
        faces: c.privacy.as_ref().and_then(|p| p.faces).unwrap_or(d.faces),
        clips: c.privacy.as_ref().and_then(|p| p.clips).unwrap_or(d.clips),
        live: c.privacy.as_ref().and_then(|p| p.live).unwrap_or(d.live),
    }
}

struct RuleContext<'a> {
    zones: &'a BTreeMap<String, RawZone>,
    lines: &'a BTreeMap<String, RawLine>,
    labels: &'a [&'a String],
    /// Labels a model of the camera knows but its `classes` list leaves out, with the model.
    filtered: &'a [(&'a String, &'a str)],
    has_faces: bool,
    defaults: &'a CameraDefaults,
}

fn rule(v: &mut Validator, at: &str, r: &RawRule, ctx: &RuleContext) -> Option<Rule> {
    let before = v.problems.len();
    let kind_name = r.kind.as_str();
    v.id(format!("{at}.id"), &r.id, "rule");
    if !snake_case(&r.category) {
        v.err(
            format!("{at}.category"),
            format!(
                "category \"{}\" is not valid; use snake_case such as \"illegal_parking\" or \"intrusion\"",
                r.category
            ),
        );
    }

    let forbid = |v: &mut Validator, field: &str, set: bool| {
        if set {
            v.err(format!("{at}.{field}"), format!("{field} does not apply to a {kind_name} rule; remove it"));
        }
    };
    let uses_zone = r.kind != RuleKindName::LineCross;
    forbid(v, "zone", !uses_zone && r.zone.is_some());
    forbid(v, "line", uses_zone && r.line.is_some());
    let still = matches!(r.kind, RuleKindName::LeftObject | RuleKindName::RemovedObject);
    forbid(
        v,
        "min_duration",
        !matches!(r.kind, RuleKindName::ZoneDwell | RuleKindName::Crowd | RuleKindName::Absence)
            && !still
            && r.min_duration.is_some(),
    );
    forbid(v, "min_area", !still && r.min_area.is_some());
    forbid(v, "absorb_after", !still && r.absorb_after.is_some());
    forbid(v, "ignore_classes", !still && r.ignore_classes.is_some());
    if still && r.classes.is_some() {
        v.err(
            format!("{at}.classes"),
            format!(
                "a {kind_name} rule finds what no class names; remove classes (ignore_classes lists what the object \
                 model explains, e.g. [\"person\", \"car\"])"
            ),
        );
    }
    forbid(v, "stationary_only", r.kind != RuleKindName::ZoneDwell && r.stationary_only.is_some());
    forbid(v, "direction", r.kind != RuleKindName::LineCross && r.direction.is_some());
    forbid(v, "min_count", r.kind != RuleKindName::Crowd && r.min_count.is_some());
    forbid(
        v,
        "schedule",
        !matches!(r.kind, RuleKindName::ZoneEnter | RuleKindName::FaceInZone | RuleKindName::Absence)
            && r.schedule.is_some(),
    );
    forbid(v, "classes", r.kind == RuleKindName::FaceInZone && r.classes.is_some());
    forbid(
        v,
        "shortest_visit",
        !matches!(r.kind, RuleKindName::ZoneEnter | RuleKindName::LineCross) && r.shortest_visit.is_some(),
    );
    let shortest_visit = |v: &mut Validator| {
        r.shortest_visit.as_ref().map(|_| {
            let d = v.duration(format!("{at}.shortest_visit"), r.shortest_visit.as_ref(), Duration::from_secs(1));
            if d < Duration::from_millis(100) {
                v.err(
                    format!("{at}.shortest_visit"),
                    "shortest_visit must be at least 0.1 s (10 detections per second while something moves)",
                );
            }
            d.max(Duration::from_millis(100))
        })
    };

    let zone = if uses_zone {
        match &r.zone {
            None => {
                v.err(
                    format!("{at}.zone"),
                    format!("a {kind_name} rule needs zone = \"<name of a zone of this camera>\""),
                );
                String::new()
            }
            Some(z) if !ctx.zones.contains_key(z) => {
                let known: Vec<&str> = ctx.zones.keys().map(String::as_str).collect();
                v.err(
                    format!("{at}.zone"),
                    format!(
                        "unknown zone \"{z}\"; this camera's zones: {}",
                        if known.is_empty() { "none".into() } else { known.join(", ") }
                    ),
                );
                String::new()
            }
            Some(z) => z.clone(),
        }
    } else {
        String::new()
    };
    let classes = match (&r.classes, r.kind) {
        (_, RuleKindName::FaceInZone | RuleKindName::LeftObject | RuleKindName::RemovedObject) => Vec::new(),
        (None, _) => {
            v.err(
                format!("{at}.classes"),
                format!("a {kind_name} rule needs classes, e.g. [\"person\"] or [\"car\", \"truck\"]"),
            );
            Vec::new()
        }
        (Some(list), _) if list.is_empty() => {
            v.err(format!("{at}.classes"), "classes must name at least one label, e.g. [\"person\"]");
            Vec::new()
        }
        (Some(list), _) => {
            check_classes(v, &format!("{at}.classes"), list, ctx);
            list.clone()
        }
    };
    if r.kind == RuleKindName::FaceInZone && !ctx.has_faces {
        v.err(format!("{at}.kind"), "face_in_zone needs a face model (family yunet) among this camera's models");
    }
    let schedule = Schedule::parse(r.schedule.as_deref().unwrap_or(&[])).unwrap_or_else(|(k, e)| {
        v.err(format!("{at}.schedule[{k}]"), e);
        Schedule::always()
    });
    let min_duration = |v: &mut Validator| match &r.min_duration {
        None => {
            v.err(format!("{at}.min_duration"), format!("a {kind_name} rule needs min_duration, e.g. \"5m\""));
            Duration::ZERO
        }
        Some(_) => v.duration(format!("{at}.min_duration"), r.min_duration.as_ref(), Duration::ZERO),
    };
    let kind = match r.kind {
        RuleKindName::ZoneDwell => RuleKind::ZoneDwell {
            zone,
            classes,
            min_duration: min_duration(v),
            stationary_only: r.stationary_only.unwrap_or(false),
        },
        RuleKindName::Crowd => {
            let min_count = match r.min_count {
                Some(n) if n >= 1 => n,
                Some(_) => {
                    v.err(format!("{at}.min_count"), "min_count must be at least 1");
                    1
                }
                None => {
                    v.err(format!("{at}.min_count"), "a crowd rule needs min_count, e.g. 10");
                    1
                }
            };
            RuleKind::Crowd { zone, classes, min_count, min_duration: min_duration(v) }
        }
        RuleKindName::ZoneEnter => RuleKind::ZoneEnter { zone, classes, schedule, shortest_visit: shortest_visit(v) },
        RuleKindName::FaceInZone => RuleKind::FaceInZone { zone, schedule },
        RuleKindName::Absence => RuleKind::Absence { zone, classes, min_duration: min_duration(v), schedule },
        RuleKindName::LeftObject | RuleKindName::RemovedObject => {
            let least = min_duration(v);
            let still = still_rule(v, at, r, ctx, zone, least);
            if r.kind == RuleKindName::LeftObject {
                RuleKind::LeftObject(still)
            } else {
                RuleKind::RemovedObject(still)
            }
        }
        RuleKindName::LineCross => {
            let line = match &r.line {
                None => {
                    v.err(format!("{at}.line"), "a line_cross rule needs line = \"<name of a line of this camera>\"");
                    String::new()
                }
                Some(l) if !ctx.lines.contains_key(l) => {
                    let known: Vec<&str> = ctx.lines.keys().map(String::as_str).collect();
                    v.err(
                        format!("{at}.line"),
                        format!(
                            "unknown line \"{l}\"; this camera's lines: {}",
                            if known.is_empty() { "none".into() } else { known.join(", ") }
                        ),
                    );
                    String::new()
                }
                Some(l) => l.clone(),
            };
            RuleKind::LineCross {
                line,
                classes,
                direction: r.direction.unwrap_or(Direction::Either),
                shortest_visit: shortest_visit(v),
            }
        }
    };
    let d = ctx.defaults;
    let rule = Rule {
        id: r.id.clone(),
        category: r.category.clone(),
        severity: r.severity.unwrap_or(d.severity),
        min_score: v.fraction(format!("{at}.min_score"), r.min_score, d.min_score),
        cooldown: v.duration(format!("{at}.cooldown"), r.cooldown.as_ref(), d.cooldown),
        dispatch: r.dispatch.unwrap_or(d.dispatch),
        kind,
    };
    (v.problems.len() == before).then_some(rule)
}

/// Each of `list` must be a class the camera's object models detect; else an error at
/// `path[k]` with the nearest label, or the model whose `classes` leaves it out.
fn check_classes(v: &mut Validator, path: &str, list: &[String], ctx: &RuleContext) {
    for (k, c) in list.iter().enumerate() {
        if let Some((_, model)) = ctx.filtered.iter().find(|(l, _)| *l == c) {
            v.err(
                format!("{path}[{k}]"),
                format!(
                    "\"{c}\" is a class of model {model}, but [models.{model}] classes leaves it out, so it is never \
                     detected: add it there"
                ),
            );
        } else if !ctx.labels.contains(&c) {
            let hint = if ctx.labels.is_empty() {
                "this camera runs no object model".to_string()
            } else {
                let near = nearest_label(c, ctx.labels).map(|l| format!("did you mean \"{l}\"? ")).unwrap_or_default();
                format!(
                    "{near}not a label of this camera's object models ({}: {})",
                    ctx.labels.len(),
                    ctx.labels.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                )
            };
            v.err(format!("{path}[{k}]"), format!("unknown class \"{c}\": {hint}"));
        }
    }
}

/// The shortest `min_duration` of a `left_object` or `removed_object` rule: the short-term
/// background takes a thing in after about 5 s.
const STILL_MIN_DURATION: Duration = Duration::from_secs(10);

/// The fields of a `left_object` or `removed_object` rule.
fn still_rule(
    v: &mut Validator,
    at: &str,
    r: &RawRule,
    ctx: &RuleContext,
    zone: String,
    min_duration: Duration,
) -> StillRule {
    if r.min_duration.is_some() && min_duration < STILL_MIN_DURATION {
        v.err(
            format!("{at}.min_duration"),
            format!(
                "min_duration must be at least 10 s for a {}: a change is told from a passer-by after about 5 s",
                r.kind.as_str()
            ),
        );
    }
    let absorb_after = v.duration(format!("{at}.absorb_after"), r.absorb_after.as_ref(), Duration::from_secs(1800));
    if absorb_after <= min_duration {
        v.err(
            format!("{at}.absorb_after"),
            format!(
                "absorb_after ({} s) must be longer than min_duration ({} s): a change would become background \
                 before it could alert",
                absorb_after.as_secs(),
                min_duration.as_secs()
            ),
        );
    }
    let min_area = match r.min_area {
        None => 0.002,
        Some(a) if a > 0.0 && a <= 0.5 => a as f32,
        Some(a) => {
            v.err(
                format!("{at}.min_area"),
                format!("{a} is out of range; min_area is a share of the frame above 0 and at most 0.5, e.g. 0.002"),
            );
            0.002
        }
    };
    let ignore_classes = match &r.ignore_classes {
        Some(list) => {
            check_classes(v, &format!("{at}.ignore_classes"), list, ctx);
            list.clone()
        }
        None if ctx.labels.iter().any(|l| l.as_str() == "person") => vec!["person".to_string()],
        None => Vec::new(),
    };
    StillRule { zone, min_area, min_duration, absorb_after, ignore_classes }
}

/// A malformed camera address: what is wrong and where (a byte offset into the url).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlError {
    pub offset: usize,
    pub message: String,
}

impl std::fmt::Display for UrlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Parses an `rtsp://` or `rtsps://` address fully (RFC 3986 authority: user info with
/// percent-encoding, a DNS name, IPv4 address or bracketed IPv6 address, a port in
/// 1–65535, a path without spaces) and splits the credentials off. Errors name the byte
/// offset of the problem and never contain the credentials.
pub fn parse_rtsp_url(url: &str) -> Result<(RtspUrl, Option<Credentials>), UrlError> {
    const HINT: &str =
        "use rtsp://[user:password@]host[:port]/path (IPv6 hosts in brackets: rtsp://[fe80::1]:554/path)";
    let fail = |offset: usize, what: String| Err(UrlError { offset, message: format!("{what}; {HINT}") });
    let (secure, scheme_len) = if url.starts_with("rtsp://") {
        (false, 7)
    } else if url.starts_with("rtsps://") {
        (true, 8)
    } else {
        let scheme = url.split_once("://").map_or("no scheme", |(s, _)| s);
        let scheme = if scheme.len() > 16 || scheme.contains(['@', ':']) { "unknown" } else { scheme };
        return fail(0, format!("the url is not an RTSP address (scheme: {scheme})"));
    };
    let rest = &url[scheme_len..];
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_len);
    // Camera passwords often hold an unescaped '@': the last one ends the user info.
    let (userinfo, hostport, host_at) = match authority.rfind('@') {
        Some(i) => (Some(&authority[..i]), &authority[i + 1..], scheme_len + i + 1),
        None => (None, authority, scheme_len),
    };
    let (host, port_text, port_at) = if let Some(inner) = hostport.strip_prefix('[') {
        let Some(close) = inner.find(']') else {
            return fail(host_at, "the IPv6 address has no closing ']'".into());
        };
        let addr = &inner[..close];
        let ip = addr.split_once("%25").map_or(addr, |(ip, _zone)| ip);
        if ip.parse::<std::net::Ipv6Addr>().is_err() {
            return fail(host_at + 1, format!("\"{addr}\" is not an IPv6 address"));
        }
        let after = &inner[close + 1..];
        match after.strip_prefix(':') {
            Some(p) => (&hostport[..close + 2], Some(p), host_at + close + 3),
            None if after.is_empty() => (&hostport[..close + 2], None, 0),
            None => return fail(host_at + close + 2, "unexpected text after the IPv6 address's ']'".into()),
        }
    } else {
        match hostport.split_once(':') {
            Some((h, p)) => (h, Some(p), host_at + h.len() + 1),
            None => (hostport, None, 0),
        }
    };
    if !host.starts_with('[') {
        if host.is_empty() {
            return fail(host_at, "the url has no host".into());
        }
        if let Some(i) = host.find(|c: char| !(c.is_ascii_alphanumeric() || "-._~".contains(c))) {
            let c = host[i..].chars().next().unwrap_or(' ');
            return fail(host_at + i, format!("the host contains {c:?}, which a host name cannot hold"));
        }
        let is_ipv4_like = host.bytes().all(|b| b.is_ascii_digit() || b == b'.');
        if is_ipv4_like && host.parse::<std::net::Ipv4Addr>().is_err() {
            return fail(host_at, format!("\"{host}\" is not an IPv4 address"));
        }
        let labels = host.strip_suffix('.').unwrap_or(host);
        if host.len() > 253 || labels.split('.').any(|l| l.is_empty() || l.len() > 63) {
            return fail(host_at, format!("\"{host}\" is not a valid host name (empty or over-long label)"));
        }
    }
    let port = match port_text {
        None => None,
        Some("") => return fail(port_at, "the port after ':' is empty".into()),
        Some(p) => match p.parse::<u32>() {
            Ok(n) if p.bytes().all(|b| b.is_ascii_digit()) && (1..=65535).contains(&n) => Some(n as u16),
            Ok(_) if p.bytes().all(|b| b.is_ascii_digit()) => {
                return fail(port_at, format!("port {p} is out of range (1-65535)"));
            }
            _ => return fail(port_at, "the port must be a number from 1 to 65535".into()),
        },
    };
    if let Some(i) = path.find(|c: char| c.is_whitespace() || c.is_control()) {
        return fail(
            scheme_len + authority_len + i,
            "the path contains a space or control character (write it as %20)".into(),
        );
    }
    let credentials = match userinfo {
        None => None,
        Some(u) => {
            let (user, pass, pass_at) = match u.split_once(':') {
                Some((user, pass)) => (user, pass, scheme_len + user.len() + 1),
                None => (u, "", 0),
            };
            if user.is_empty() {
                return fail(scheme_len, "the user name before '@' is empty".into());
            }
            let user = percent_decode(user)
                .map_err(|(i, m)| UrlError { offset: scheme_len + i, message: format!("the user name {m}") })?;
            let pass = percent_decode(pass)
                .map_err(|(i, m)| UrlError { offset: pass_at + i, message: format!("the password {m}") })?;
            Some(Credentials { username: user, password: Secret::new(pass) })
        }
    };
    Ok((RtspUrl { secure, host: host.to_string(), port, path: path.to_string() }, credentials))
}

/// Decodes `%XX` escapes; the error gives the offset of a bad escape and says what is
/// wrong without echoing the text (it may be a password).
fn percent_decode(s: &str) -> Result<String, (usize, String)> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
            match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                Some(b) if hex.is_some_and(|h| h.bytes().all(|c| c.is_ascii_hexdigit())) => {
                    out.push(b);
                    i += 3;
                    continue;
                }
                _ => return Err((i, "has a '%' not followed by two hex digits (write a literal % as %25)".into())),
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).map_err(|_| (0, "decodes to bytes that are not UTF-8".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtsp_urls_lose_their_credentials() {
        let (url, creds) = parse_rtsp_url("rtsp://admin:p%40ss@10.0.0.7:554/Streaming/Channels/101").unwrap();
        assert_eq!(url.to_string(), "rtsp://10.0.0.7:554/Streaming/Channels/101");
        let creds = creds.unwrap();
        assert_eq!((creds.username.as_str(), creds.password.expose()), ("admin", "p@ss"));
        assert_eq!(parse_rtsp_url("rtsps://cam.local/live").unwrap().0.to_string(), "rtsps://cam.local/live");
        let e = parse_rtsp_url("http://admin:secret@cam/x").unwrap_err();
        assert!(e.message.contains("scheme: http") && !e.message.contains("secret"), "{e}");
        let (url, creds) = parse_rtsp_url("rtsp://u:p@ss@[fe80::1%25eth0]:8554/a?b=1").unwrap();
        assert_eq!(url.to_string(), "rtsp://[fe80::1%25eth0]:8554/a?b=1");
        assert_eq!(creds.unwrap().password.expose(), "p@ss");
        assert_eq!(parse_rtsp_url("rtsp://[::1]/x").unwrap().0.host, "[::1]");
        assert_eq!(parse_rtsp_url("rtsp://cam.local./x").unwrap().0.port, None);
    }

    /// Each malformed address is refused with the offset of its first bad character and
    /// a reason; none echoes a password.
    #[test]
    fn malformed_urls_name_where_and_why() {
        let cases: [(&str, usize, &str); 17] = [
            ("rtsp://[::1", 7, "no closing ']'"),
            ("rtsp://u:p@[127.0.0.1:19555/x", 11, "no closing ']'"),
            ("rtsp://[127.0.0.1]:554/x", 8, "not an IPv6 address"),
            ("rtsp://[::1]x/y", 12, "after the IPv6"),
            ("rtsp://cam:99999/x", 11, "out of range"),
            ("rtsp://cam:0/x", 11, "out of range"),
            ("rtsp://cam:/x", 11, "empty"),
            ("rtsp://cam:+554/x", 11, "number"),
            ("rtsp://cam:55a/x", 11, "number"),
            ("rtsp:///x", 7, "no host"),
            ("rtsp://u:secret@/x", 16, "no host"),
            ("rtsp://ca m/x", 9, "host contains"),
            ("rtsp://300.1.1.1/x", 7, "not an IPv4"),
            ("rtsp://a..b/x", 7, "not a valid host"),
            ("rtsp://cam/a b", 12, "space"),
            ("rtsp://u:se%zzret@cam/x", 11, "password has a '%'"),
            ("rtsp://:pw@cam/x", 7, "user name before '@' is empty"),
        ];
        for (url, offset, want) in cases {
            let e = parse_rtsp_url(url).expect_err(url);
            assert!(e.message.contains(want), "{url}: {e}");
            assert_eq!(e.offset, offset, "{url}: {e}");
            assert!(!e.message.contains("secret") && !e.message.contains("se%zz"), "{url}: {e}");
        }
        assert!(parse_rtsp_url("rtsp://u:%e2%82%ac@cam/x").unwrap().1.unwrap().password.expose() == "\u{20ac}");
        assert!(parse_rtsp_url("rtsp://u:%ff@cam/x").unwrap_err().message.contains("not UTF-8"));
    }

    #[test]
    fn a_shard_index_comes_from_a_number_or_a_pod_name() {
        assert_eq!(index_in("3"), Some(3));
        assert_eq!(index_in(" 0\n"), Some(0));
        assert_eq!(index_in("edge-node-12"), Some(12));
        assert_eq!(index_in("edge-node"), None);
        assert_eq!(index_in("edge-node-"), None);
        assert_eq!(index_in("edge-1a"), None);
        assert_eq!(index_in("-"), None);
    }
}
