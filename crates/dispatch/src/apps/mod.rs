//! The inspectors' app: a mobile web app at `/inspector/` (plain HTML, CSS and JavaScript
//! served from this crate, installable: a manifest and a service worker), and its API.
//!
//! Who: each inspector signs in with the token the operator gave them (`apps.inspector_tokens`);
//! the server answers with an HttpOnly cookie, so pictures, clips, the voice and the event
//! stream (which cannot send an `Authorization` header) carry it. An inspector sees and acts
//! on their own orders only.
//!
//! | path | what |
//! |---|---|
//! | `GET /inspector/` (+ `app.js`, `app.css`, `sw.js`, `manifest.webmanifest`, `icon.svg`) | the app |
//! | `POST /inspector/api/login` `{"token"}`, `POST /inspector/api/logout` | the cookie |
//! | `GET /inspector/api/me` | who is signed in |
//! | `GET /inspector/api/orders` | their orders: open ones (most urgent first), then closed today |
//! | `GET /inspector/api/events` | the same list pushed as server-sent events on every change |
//! | `GET /inspector/api/orders/<id>` | one order, its timeline, its micro-grid's outline |
//! | `GET /inspector/api/orders/<id>/{snapshot.jpg,clip.mp4,live.jpg,photo.jpg}` | its pictures (faces pixelated) |
//! | `POST /inspector/api/orders/<id>/update` `{"id", "action", "reason"?, "note"?, "photo"?}` | accept, reject, arrive, resolve |
//! | `POST /inspector/api/position` `{"lat", "lon", "accuracy"}` or `{"on_duty": false}` | the phone's position while on duty (nearest assignment) |
//! | `GET /orders/<id>/voice` | the spoken summary (WAV), for the inspector or the listener's token |
//! | `POST /orders/<id>/messages` (`audio/*` body), `GET /orders/<id>/messages/<n>` | the control room's recorded voice messages |
//!
//! Updates go through [`Dispatcher::handle_update`] exactly as on MQTT: the app makes the
//! update id when the button is pressed and keeps it while the phone is offline, so a
//! resend is answered again and changes nothing.

pub mod resident;
pub mod voice;

use std::convert::Infallible;
use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::config::{Config, Grid, Secret};
use crate::http::{Reply, Request};
use crate::intake::FaceFilter;
use crate::order::Order;
use crate::{Dispatcher, State};
use crate::{Locked, RwLocked};

/// Where the app is served.
pub const PREFIX: &str = "/inspector";
/// Where order media for any credential holder is served (`/orders/<id>/voice`).
pub const ORDERS: &str = "/orders";

/// The cookie that carries an inspector's token.
const COOKIE: &str = "gs_inspector";

/// Closed orders stay in an inspector's list this long (ms).
const CLOSED_SHOWN_MS: i64 = 24 * 3600 * 1000;

/// The largest photo of the work accepted (before pixelation).
const MAX_PHOTO: usize = 8 << 20;

/// The largest voice message of the control room.
const MAX_MESSAGE: usize = 2 << 20;

/// What the node keeps of its cameras and alerts, lent to the dispatcher that runs inside
/// it (`edge-node run`). A dispatcher on its own has none: the app then says the media
/// stay on the node.
pub trait Media: Send + Sync {
    /// The snapshot JPEG of an alert (faces pixelated), while retention keeps it.
    fn snapshot(&self, node: &str, alert: &str) -> Option<Vec<u8>>;
    /// The event clip (MP4, faces pixelated) an alert names (`/clips/<id>.mp4`), once it is made.
    fn clip(&self, node: &str, path: &str) -> Option<Vec<u8>>;
    /// The camera's newest picture, faces pixelated.
    fn live(&self, node: &str, camera: &str) -> Result<Vec<u8>, String>;
}

/// The app's state.
pub struct InspectorApp {
    dispatcher: Arc<Dispatcher>,
    /// Inspector id → token; replaced on a config reload ([`Self::set_tokens`]).
    tokens: std::sync::RwLock<Vec<(String, Secret)>>,
    /// The listener's own token: the control room may fetch `/orders/<id>/voice` with it.
    listener_token: Option<Secret>,
    grid: Grid,
    voice: voice::Voice,
    media: Option<Arc<dyn Media>>,
    faces: Option<Arc<dyn FaceFilter>>,
}

const INDEX: &str = include_str!("inspector/index.html");
const APP_JS: &str = include_str!("inspector/app.js");
const APP_CSS: &str = include_str!("inspector/app.css");
const SW_JS: &str = include_str!("inspector/sw.js");
const MANIFEST: &str = include_str!("inspector/manifest.webmanifest");
const ICON: &str = include_str!("inspector/icon.svg");

fn answer(status: u16, v: &Value) -> Reply {
    Reply::new(status, "application/json", serde_json::to_vec(v).unwrap_or_default())
}

fn refused(status: u16, reason: impl Into<String>) -> Reply {
    answer(status, &json!({"ok": false, "reason": reason.into()}))
}

impl InspectorApp {
    /// `None` unless `apps.inspector_tokens` names at least one inspector.
    pub fn new(
        config: &Config,
        dispatcher: Arc<Dispatcher>,
        media: Option<Arc<dyn Media>>,
        faces: Option<Arc<dyn FaceFilter>>,
    ) -> Option<Self> {
        if config.apps.inspector_tokens.is_empty() {
            return None;
        }
        let disk = dispatcher.store().locked().disk().cloned();
        Some(Self {
            tokens: std::sync::RwLock::new(config.apps.inspector_tokens.clone()),
            listener_token: config.http.token.clone(),
            grid: config.grid.clone(),
            voice: voice::Voice::new(&config.apps.voice, &config.storage.data_dir, disk),
            media,
            faces,
            dispatcher,
        })
    }

    /// Whether `bytes` more of order media leave the disk's reserve for alerts.
    fn room_for(&self, bytes: usize) -> bool {
        let disk = self.dispatcher.store().locked().disk().cloned();
        disk.is_none_or(|d| d.admit(crate::outbox::Optional::OrderMedia, bytes as u64 * 3))
    }

    /// The inspectors' tokens of a reloaded config: a removed line withdraws that access at
    /// once (the app asks to sign in again), a new one works at once.
    pub fn set_tokens(&self, tokens: Vec<(String, Secret)>) {
        let n = tokens.len();
        *self.tokens.write_locked() = tokens;
        tracing::info!(inspectors = n, "inspectors' app: tokens reloaded");
    }

    /// The inspector a token belongs to (every token compared in full).
    fn inspector_of(&self, token: &str) -> Option<String> {
        let mut found = None;
        for (id, t) in self.tokens.read_locked().iter() {
            if crate::http::same(token.as_bytes(), t.expose().as_bytes()) {
                found = Some(id.clone());
            }
        }
        found
    }

    /// Who sends the request: the cookie, or `Authorization: Bearer <token>`.
    fn who(&self, authorization: &str, cookie: &str) -> Option<String> {
        let bearer = authorization.strip_prefix("Bearer ").map(str::trim);
        bearer.or_else(|| crate::http::cookie(cookie, COOKIE)).and_then(|t| self.inspector_of(t))
    }

    fn name_of<'a>(&'a self, id: &'a str) -> &'a str {
        self.grid.inspectors.iter().find(|i| i.id == id).map_or(id, |i| i.name.as_str())
    }

    /// Where an order is, in words: its micro-grid's name and the camera.
    fn place(&self, o: &Order) -> String {
        let mg =
            o.micro_grid.as_deref().map(|m| self.grid.micro_grids.iter().find(|g| g.id == m).map_or(m, |g| &g.name));
        match (mg, o.node.as_str()) {
            (Some(m), crate::reports::RESIDENTS) => m.to_string(),
            (Some(m), _) => format!("{m}, camera {}", o.camera),
            (None, _) => format!("camera {}", o.camera),
        }
    }

    /// An order as the list shows it.
    fn card(&self, o: &Order, who: &str) -> Value {
        let view = o.view();
        let mut v = serde_json::to_value(&view).unwrap_or_default();
        v["place"] = self.place(o).into();
        v["deadline_ms"] = o.deadline_ms.into();
        v["created_ms"] = o.created_ms.into();
        v["open"] = (!o.state.is_closed()).into();
        // What the inspector can do now.
        let mine = o.assignee.as_deref() == Some(who);
        let actions: Vec<&str> = match o.state {
            State::Assigned if mine => vec!["accept", "reject"],
            State::Accepted if o.worker.as_deref() == Some(who) => vec!["arrive", "resolve"],
            State::OnSite if o.worker.as_deref() == Some(who) => vec!["resolve"],
            _ => vec![],
        };
        v["actions"] = actions.into();
        let resident = o.node == crate::reports::RESIDENTS;
        v["snapshot_url"] = match (&o.snapshot, resident) {
            (Some(_), true) => Some(format!("{PREFIX}/api/orders/{}/report.jpg", o.id)),
            (Some(_), false) if self.media.is_some() => Some(format!("{PREFIX}/api/orders/{}/snapshot.jpg", o.id)),
            _ => None,
        }
        .into();
        v["voice_url"] = format!("{ORDERS}/{}/voice", o.id).into();
        v["messages"] = self
            .dispatcher
            .messages(&o.id)
            .unwrap_or_default()
            .into_iter()
            .map(|(seq, by, at)| {
                json!({"url": format!("{ORDERS}/{}/messages/{seq}", o.id), "by": by,
                       "at": crate::contract::time::rfc3339_ms(at)})
            })
            .collect::<Vec<_>>()
            .into();
        v
    }

    /// The inspector's list: open orders first (priority, then the nearest deadline), then
    /// those closed in the last day, newest first.
    pub fn list(&self, who: &str, now: i64) -> Result<Value, String> {
        let mut orders = self.dispatcher.orders_of(who, now - CLOSED_SHOWN_MS).map_err(|e| e.to_string())?;
        let rank = |p: &str| match p {
            "urgent" => 0,
            "high" => 1,
            "normal" => 2,
            _ => 3,
        };
        orders.sort_by(|a, b| {
            let open = |o: &Order| o.state.is_closed();
            open(a).cmp(&open(b)).then_with(|| {
                if a.state.is_closed() {
                    b.closed_ms.cmp(&a.closed_ms)
                } else {
                    rank(&a.priority)
                        .cmp(&rank(&b.priority))
                        .then(a.deadline_ms.unwrap_or(i64::MAX).cmp(&b.deadline_ms.unwrap_or(i64::MAX)))
                        .then(b.created_ms.cmp(&a.created_ms))
                }
            })
        });
        Ok(json!({
            "inspector": who,
            "now_ms": now,
            "orders": orders.iter().map(|o| self.card(o, who)).collect::<Vec<_>>(),
        }))
    }

    /// One order of `who`'s, or why not.
    fn order_of(&self, who: &str, id: &str) -> Result<Order, Reply> {
        match self.dispatcher.order(id) {
            Ok(Some(o)) if o.assignee.as_deref() == Some(who) || o.worker.as_deref() == Some(who) => Ok(o),
            Ok(_) => Err(refused(404, format!("order {id} is not one of yours"))),
            Err(e) => Err(refused(503, format!("cannot read the orders: {e}"))),
        }
    }

    fn detail(&self, who: &str, o: &Order, now: i64) -> Value {
        let mut v = self.card(o, who);
        let events = self.dispatcher.order_events(&o.id).unwrap_or_default();
        v["timeline"] = events
            .into_iter()
            .map(|(event, by, detail, at)| {
                json!({"event": event, "by": by, "detail": detail, "at": crate::contract::time::rfc3339_ms(at)})
            })
            .collect::<Vec<_>>()
            .into();
        let resident = o.node == crate::reports::RESIDENTS;
        let has_media = self.media.is_some() && !resident;
        v["clip_url"] =
            (has_media && o.clip.is_some()).then(|| format!("{PREFIX}/api/orders/{}/clip.mp4", o.id)).into();
        v["live_url"] = has_media.then(|| format!("{PREFIX}/api/orders/{}/live.jpg", o.id)).into();
        v["photo_url"] = self
            .dispatcher
            .photo(&o.id)
            .ok()
            .flatten()
            .map(|_| format!("{PREFIX}/api/orders/{}/photo.jpg", o.id))
            .into();
        if resident {
            // A report's order: the resident's words, photo and audio.
            if let Ok(Some(r)) = self.dispatcher.report_status(&o.first_alert) {
                v["report"] = serde_json::to_value(&r).unwrap_or_default();
            }
            v["report_photo_url"] =
                o.snapshot.is_some().then(|| format!("{PREFIX}/api/orders/{}/report.jpg", o.id)).into();
        }
        v["media_note"] = (self.media.is_none() && !resident)
            .then(|| format!("the snapshot and clip stay on node {}: this dispatcher runs on its own", o.node))
            .into();
        v["map"] = self.map_of(o);
        v["now_ms"] = now.into();
        v
    }

    /// The outline of the order's micro-grid (x = longitude, y = latitude) and where the
    /// order is (the camera, or the resident's point), for the small map.
    fn map_of(&self, o: &Order) -> Value {
        let mg = o.micro_grid.as_deref().and_then(|m| self.grid.micro_grids.iter().find(|g| g.id == m));
        if mg.is_none() && o.location.is_none() {
            return Value::Null;
        }
        json!({
            "micro_grid": mg.map(|m| &m.id),
            "name": mg.map_or("", |m| m.name.as_str()),
            "area": mg.and_then(|m| m.area.as_ref()).map(|a| a.points().iter().map(|p| [p.x, p.y]).collect::<Vec<_>>()),
            "at": o.location,
            "what": if o.node == crate::reports::RESIDENTS { "the report" } else { "the camera" },
        })
    }

    /// An update from the app: the same path as an MQTT update from `who`.
    fn update(&self, who: &str, id: &str, body: &[u8], now: i64) -> Reply {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct FromApp {
            id: String,
            action: crate::contract::OrderAction,
            #[serde(default)]
            reason: Option<String>,
            #[serde(default)]
            note: Option<String>,
            /// `data:image/jpeg;base64,…` (the app's camera input, already made smaller).
            #[serde(default)]
            photo: Option<String>,
        }
        let u: FromApp = match serde_json::from_slice(body) {
            Ok(u) => u,
            Err(e) => return refused(400, format!("the update is not understood: {e}")),
        };
        if !matches!(
            u.action,
            crate::contract::OrderAction::Accept
                | crate::contract::OrderAction::Reject
                | crate::contract::OrderAction::Arrive
                | crate::contract::OrderAction::Resolve
        ) {
            return refused(400, format!("an inspector cannot {} an order", u.action.name()));
        }
        let photo = match u.photo.as_deref().map(|p| self.photo_of(p)) {
            None => None,
            // Under the disk's reserve the update goes ahead without its photo.
            Some(Ok(jpeg)) if !self.room_for(jpeg.len()) => None,
            Some(Ok(jpeg)) => Some(jpeg),
            Some(Err(r)) => return r,
        };
        if let Some(jpeg) = &photo
            && let Err(e) = self.dispatcher.keep_photo(id, &u.id, who, jpeg, now)
        {
            return refused(503, format!("cannot keep the photo: {e}"));
        }
        let update = crate::contract::OrderUpdate {
            id: u.id.clone(),
            order: id.to_string(),
            action: u.action,
            by: who.to_string(),
            reason: u.reason,
            note: u.note,
            to: None,
        };
        let payload = serde_json::to_vec(&update).unwrap_or_default();
        match self.dispatcher.handle_update(who, &payload, now) {
            Ok(r) => {
                if !r.ok && !r.duplicate && photo.is_some() {
                    let _ = self.dispatcher.drop_photo(id, &u.id);
                }
                answer(if r.ok { 200 } else { 409 }, &r.to_json(now))
            }
            Err(e) => refused(503, format!("the update is not stored: {e}; send it again")),
        }
    }

    /// `POST /inspector/api/position`: `{"lat", "lon", "accuracy"}` while on duty (the app
    /// sends it when the phone moves and every minute), `{"on_duty": false}` to stop: only
    /// the latest is kept, in memory, and forgotten off duty.
    fn position(&self, who: &str, body: &[u8], now: i64) -> Reply {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Shared {
            #[serde(default = "yes")]
            on_duty: bool,
            lat: Option<f64>,
            lon: Option<f64>,
            accuracy: Option<f64>,
        }
        fn yes() -> bool {
            true
        }
        let p: Shared = match serde_json::from_slice(body) {
            Ok(p) => p,
            Err(e) => {
                return refused(400, format!("send {{\"lat\", \"lon\", \"accuracy\"}} or {{\"on_duty\": false}}: {e}"));
            }
        };
        if !p.on_duty {
            self.dispatcher.set_position(who, None);
            return answer(200, &json!({"ok": true, "sharing": false}));
        }
        let (Some(lat), Some(lon)) = (p.lat, p.lon) else {
            return refused(400, "lat and lon are needed while on duty");
        };
        if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
            return refused(400, format!("{lat}, {lon} is not a latitude and longitude"));
        }
        let accuracy_m = p.accuracy.unwrap_or(0.0).max(0.0);
        self.dispatcher.set_position(who, Some(crate::Position { location: [lon, lat], accuracy_m, at_ms: now }));
        answer(200, &json!({"ok": true, "sharing": true}))
    }

    /// A data URL's photo, faces pixelated, or the answer that refuses it.
    fn photo_of(&self, data_url: &str) -> Result<Vec<u8>, Reply> {
        use base64::Engine;
        let Some(faces) = &self.faces else {
            return Err(refused(422, "photos need a face model in the config (faces are pixelated before keeping)"));
        };
        let b64 = data_url.split_once(";base64,").map_or(data_url, |(_, b)| b);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|_| refused(400, "the photo is not base64 data"))?;
        if bytes.len() > MAX_PHOTO {
            return Err(refused(413, format!("the photo is over {} MiB", MAX_PHOTO >> 20)));
        }
        crate::intake::safe_photo(faces.as_ref(), &bytes).map_err(|e| refused(400, e))
    }

    fn media(&self, who: &str, id: &str, what: &str) -> Reply {
        let o = match self.order_of(who, id) {
            Ok(o) => o,
            Err(r) => return r,
        };
        let missing = |what: &str| Reply::new(404, "text/plain", format!("no {what} for order {id}\n"));
        let media = self.media.as_ref();
        match what {
            "snapshot.jpg" => {
                let alert = o.snapshot.as_deref().and_then(|t| t.rsplit('/').next()).unwrap_or(&o.first_alert);
                match media.and_then(|m| m.snapshot(&o.node, alert)) {
                    Some(j) => Reply::new(200, "image/jpeg", j),
                    None => missing("snapshot"),
                }
            }
            "clip.mp4" => match o.clip.as_deref().and_then(|c| media?.clip(&o.node, c)) {
                Some(mp4) => Reply::new(200, "video/mp4", mp4),
                None => missing("clip (not made yet, or removed by retention)"),
            },
            "live.jpg" => match media.map(|m| m.live(&o.node, &o.camera)) {
                Some(Ok(j)) => Reply::new(200, "image/jpeg", j),
                Some(Err(e)) => Reply::new(503, "text/plain", format!("camera {}: {e}\n", o.camera)),
                None => missing("live picture"),
            },
            "report.jpg" => match self.dispatcher.report_photo(&o.first_alert) {
                Ok(Some(j)) => Reply::new(200, "image/jpeg", j),
                _ => missing("resident's photo"),
            },
            "report-audio" => match self.dispatcher.report_audio(&o.first_alert) {
                Ok(Some((audio, ctype))) => {
                    let ctype = audio_type(&ctype);
                    Reply::new(200, ctype, audio)
                }
                _ => missing("resident's voice note"),
            },
            "photo.jpg" => match self.dispatcher.photo(id) {
                Ok(Some(j)) => Reply::new(200, "image/jpeg", j),
                _ => missing("photo"),
            },
            _ => Reply::new(404, "text/plain", "not found\n"),
        }
    }

    /// Whether the request carries the listener's token (the control room), or the
    /// listener has none (loopback only).
    fn control_room(&self, r: &Request) -> bool {
        self.listener_token.as_ref().is_none_or(|t| crate::http::authorized_by(r.authorization, t))
    }

    /// An order for its inspector, or for the control room.
    fn order_for(&self, r: &Request, id: &str) -> Result<Order, Reply> {
        match self.who(r.authorization, r.cookie) {
            Some(who) => self.order_of(&who, id),
            None if self.control_room(r) => match self.dispatcher.order(id) {
                Ok(Some(o)) => Ok(o),
                Ok(None) => Err(refused(404, format!("no order {id}"))),
                Err(e) => Err(refused(503, e.to_string())),
            },
            None => Err(refused(401, "sign in to the inspector app, or send the listener's token")),
        }
    }

    /// `POST /orders/<id>/messages` (the control room; an `audio/*` body of at most 2 MiB):
    /// a recorded voice message for the order's inspector.
    fn add_message(&self, r: &Request, id: &str, content_type: &str, body: &[u8], now: i64) -> Reply {
        if !self.control_room(r) {
            return refused(401, "voice messages come from the control room: send the listener's token");
        }
        let ctype = content_type.split(';').next().unwrap_or("").trim();
        if !ctype.starts_with("audio/") || body.is_empty() {
            return refused(400, format!("send the recording as the body, Content-Type audio/*, not \"{ctype}\""));
        }
        if body.len() > MAX_MESSAGE {
            return refused(413, format!("the recording is over {} MiB", MAX_MESSAGE >> 20));
        }
        if !self.room_for(body.len()) {
            return refused(507, "the disk is under its reserve (kept for alerts): the message is not kept");
        }
        match self.dispatcher.add_message(id, crate::CONTROL_ROOM, body, ctype, now) {
            Ok(seq) => {
                tracing::info!(order = %id, message = seq, bytes = body.len(), "voice message attached");
                answer(
                    201,
                    &json!({"ok": true, "order": id, "message": seq, "url": format!("{ORDERS}/{id}/messages/{seq}")}),
                )
            }
            Err(e) => refused(409, e),
        }
    }

    /// `GET /orders/<id>/messages/<n>`: for its inspector, or the control room.
    fn message(&self, r: &Request, id: &str, n: &str) -> Reply {
        if let Err(r) = self.order_for(r, id) {
            return r;
        }
        let found = n.parse().ok().and_then(|n| self.dispatcher.message(id, n).ok().flatten());
        match found {
            Some((audio, ctype)) => {
                let ctype = audio_type(&ctype);
                Reply::new(200, ctype, audio).with_header(header::CACHE_CONTROL, "private, max-age=86400")
            }
            None => refused(404, format!("order {id} has no voice message {n}")),
        }
    }

    /// `GET /orders/<id>/voice`: for its inspector, or the control room.
    fn voice(&self, r: &Request, id: &str, now: i64) -> Reply {
        let o = match self.order_for(r, id) {
            Ok(o) => o,
            Err(r) => return r,
        };
        let text = self.voice.summary(&o, &self.place(&o), o.created_ms.max(now.min(o.created_ms + 1000)));
        match self.voice.wav(&o.id, &text) {
            Ok(wav) => Reply::new(200, "audio/wav", wav).with_header(header::CACHE_CONTROL, "private, max-age=86400"),
            Err(e) => {
                tracing::warn!(order = %o.id, "no voice: {e}");
                Reply::new(503, "text/plain", format!("the summary cannot be spoken: {e}\n"))
            }
        }
    }

    /// Every request under [`PREFIX`] and [`ORDERS`].
    pub fn answer(&self, r: &Request, now: i64) -> Option<Reply> {
        let stat = |ctype: &'static str, body: &'static str| {
            Reply::new(200, ctype, body).with_header(header::CACHE_CONTROL, "no-cache")
        };
        if let Some(rest) = r.path.strip_prefix(ORDERS) {
            let parts: Vec<&str> = rest.strip_prefix('/')?.split('/').collect();
            return Some(match (parts.as_slice(), &r.post) {
                ([id, "voice"], None) => self.voice(r, id, now),
                ([id, "messages"], Some(p)) => self.add_message(r, id, p.content_type, p.body, now),
                ([id, "messages", n], None) => self.message(r, id, n),
                _ => return None,
            });
        }
        let rest = r.path.strip_prefix(PREFIX)?;
        let post = r.post.as_ref();
        Some(match (rest, post) {
            ("", None) => Reply::new(308, "text/plain", "").with_header(header::LOCATION, format!("{PREFIX}/")),
            ("/", None) | ("/index.html", None) => stat("text/html; charset=utf-8", INDEX),
            ("/app.js", None) => stat("text/javascript; charset=utf-8", APP_JS),
            ("/app.css", None) => stat("text/css; charset=utf-8", APP_CSS),
            ("/sw.js", None) => stat("text/javascript; charset=utf-8", SW_JS),
            ("/manifest.webmanifest", None) => stat("application/manifest+json", MANIFEST),
            ("/icon.svg", None) => stat("image/svg+xml", ICON),
            ("/api/login", Some(p)) => {
                #[derive(serde::Deserialize)]
                struct Login {
                    token: String,
                }
                let Ok(l) = serde_json::from_slice::<Login>(p.body) else {
                    return Some(refused(400, "send {\"token\": \"…\"}"));
                };
                match self.inspector_of(l.token.trim()) {
                    Some(who) => answer(200, &json!({"ok": true, "inspector": who, "name": self.name_of(&who)}))
                        .with_header(
                            header::SET_COOKIE,
                            format!("{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age=2592000", l.token.trim()),
                        ),
                    None => refused(401, "this is not an inspector's token; ask the control room for yours"),
                }
            }
            ("/api/logout", Some(_)) => {
                // Signing out ends duty on this phone: the position is forgotten.
                if let Some(who) = self.who(r.authorization, r.cookie) {
                    self.dispatcher.set_position(&who, None);
                }
                let gone = format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
                answer(200, &json!({"ok": true})).with_header(header::SET_COOKIE, gone)
            }
            (api, post) if api.starts_with("/api/") => {
                let Some(who) = self.who(r.authorization, r.cookie) else {
                    return Some(refused(401, "not signed in (or the token was withdrawn): sign in again"));
                };
                let who = who.as_str();
                let parts: Vec<&str> = api["/api/".len()..].split('/').collect();
                match (parts.as_slice(), post) {
                    (["me"], None) => answer(200, &json!({"inspector": who, "name": self.name_of(who)})),
                    (["orders"], None) => match self.list(who, now) {
                        Ok(v) => answer(200, &v),
                        Err(e) => refused(503, format!("cannot read the orders: {e}")),
                    },
                    (["orders", id], None) => match self.order_of(who, id) {
                        Ok(o) => answer(200, &self.detail(who, &o, now)),
                        Err(r) => r,
                    },
                    (["orders", id, what], None) => self.media(who, id, what),
                    (["orders", id, "update"], Some(p)) => self.update(who, id, p.body, now),
                    (["position"], Some(p)) => self.position(who, p.body, now),
                    _ => refused(404, format!("no such request: {}", r.path)),
                }
            }
            _ => return None,
        })
    }
}

/// The type a stored recording is served as: one of the audio types browsers record and
/// play, else plain bytes (a stored type is never echoed as it came).
fn audio_type(stored: &str) -> &'static str {
    ["audio/webm", "audio/ogg", "audio/mpeg", "audio/mp4", "audio/wav"]
        .into_iter()
        .find(|t| stored.starts_with(t))
        .unwrap_or("application/octet-stream")
}

/// Server-sent events of `name`: `read()` (on a blocking thread) at once and after every
/// committed change of the dispatcher; it gives (what decides whether it changed, the
/// event's data), sent when the first differs from the last sent. A comment every 15 s keeps
/// proxies from closing the stream. `read` returning `None` sends nothing that time.
pub(crate) fn push_on_change<F>(dispatcher: &Dispatcher, name: &'static str, read: F) -> Response
where
    F: Fn() -> Option<(String, String)> + Send + Sync + 'static,
{
    use axum::response::sse::{Event, KeepAlive, Sse};
    use futures::StreamExt;
    let state = (Arc::new(read), dispatcher.watch(), String::new(), true);
    let stream = futures::stream::unfold(state, move |(read, mut changes, mut last, mut first)| async move {
        loop {
            if !first && changes.changed().await.is_err() {
                return None;
            }
            first = false;
            changes.borrow_and_update();
            let r = read.clone();
            let Some((key, data)) = tokio::task::spawn_blocking(move || r()).await.ok()? else { continue };
            if key != last {
                last = key;
                return Some((Event::default().event(name).data(data), (read, changes, last, first)));
            }
        }
    });
    Sse::new(stream.map(Ok::<_, Infallible>))
        .keep_alive(KeepAlive::new().interval(std::time::Duration::from_secs(15)))
        .into_response()
}

/// `GET /inspector/api/events`: the inspector's list, pushed as a server-sent event
/// (`event: orders`) at once and after every change that alters it; a comment every 15 s
/// keeps proxies from closing the stream.
async fn events(app: Arc<InspectorApp>, headers: HeaderMap) -> Response {
    let text = |h: header::HeaderName| headers.get(h).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let Some(who) = app.who(&text(header::AUTHORIZATION), &text(header::COOKIE)) else {
        return (StatusCode::UNAUTHORIZED, "not signed in\n").into_response();
    };
    let dispatcher = app.dispatcher.clone();
    push_on_change(&dispatcher, "orders", move || {
        let v = app.list(&who, app.dispatcher.now_ms()).ok()?;
        // Unchanged lists are not sent again (`now_ms` aside).
        Some((v["orders"].to_string(), v.to_string()))
    })
}

/// The app's routes; list [`PREFIX`] and [`ORDERS`] in `http::Access::own_credentials`.
pub fn routes(app: Arc<InspectorApp>) -> axum::Router {
    let handler: crate::http::Handler = {
        let app = app.clone();
        Arc::new(move |r: &Request| app.answer(r, app.dispatcher.now_ms()))
    };
    let stream = axum::routing::get(move |headers: HeaderMap| events(app.clone(), headers));
    // `/inspector/*rest` does not match an empty rest: the page itself has its own route.
    let index = crate::http::get(|_| {
        Reply::new(200, "text/html; charset=utf-8", INDEX).with_header(header::CACHE_CONTROL, "no-cache")
    });
    axum::Router::new()
        .route("/inspector/", index)
        .route("/inspector/api/events", stream)
        .merge(crate::http::with_body(PREFIX, handler.clone()))
        .merge(crate::http::with_body(ORDERS, handler))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both apps are plain files served from the binary: nothing comes from elsewhere (no
    /// CDN, no map tiles); the SVG namespace is a name, not an address.
    #[test]
    fn the_apps_load_nothing_from_elsewhere() {
        let files = [
            ("inspector index", INDEX),
            ("inspector app.js", APP_JS),
            ("inspector app.css", APP_CSS),
            ("inspector sw.js", SW_JS),
            ("inspector manifest", MANIFEST),
            ("resident index", include_str!("resident/index.html")),
            ("resident app.js", include_str!("resident/app.js")),
            ("resident app.css", include_str!("resident/app.css")),
            ("resident sw.js", include_str!("resident/sw.js")),
            ("resident manifest", include_str!("resident/manifest.webmanifest")),
        ];
        for (name, text) in files {
            let text = text.replace("\"http://www.w3.org/2000/svg\"", "");
            assert!(!text.contains("http://") && !text.contains("https://"), "{name} names an address elsewhere");
        }
        for manifest in [MANIFEST, include_str!("resident/manifest.webmanifest")] {
            let m: serde_json::Value = serde_json::from_str(manifest).unwrap();
            assert!(m["start_url"].is_string() && m["icons"][0]["src"].is_string(), "{m}");
        }
    }
}
