//! intake: the residents' reports API on the dispatcher's HTTP listener.
//!
//! ```text
//! POST /api/v1/reports               multipart: category, text, lat + lon or micro_grid,
//!                                    photo (JPEG/PNG ≤ 8 MiB), audio (≤ 2 MiB)  ─► 201 {id, token}
//! GET  /api/v1/reports/<id>          Authorization: Bearer <token> ─► status, timeline, note
//! GET  /api/v1/reports/<id>/photo.jpg  (token) ─► the stored photo
//! POST /api/v1/reports/<id>/rating   (token) {"rating": 1-5, "comment": "..."} ─► 200, once,
//!                                    after the order is resolved
//! ```
//!
//! Everything is checked before anything is stored, so a refused report leaves nothing
//! behind: the fields, the category, the coordinates and where they fall, the photo (decoded;
//! anything that is not a JPEG or PNG is refused). The photo is then made safe. Faces found
//! by the face model are pixelated, and it is encoded again as a JPEG, so no EXIF or other
//! metadata (GPS!) survives. Floods get 429, per address for new reports and per reporter
//! token for the rest.

use crate::Locked;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use super::reports::{NewReport, RatingRefused};
use super::{DispatchError, Dispatcher};
use crate::config::{Config, Grid, Reports};
use crate::http::{Reply, Request};
use crate::outbox::Optional;

/// Where the API lives (it carries the reporter's token, not the listener's).
pub const PATH: &str = "/api/v1/reports";

const MAX_PHOTO: usize = 8 << 20;
/// Said to a reporter whose photo or audio was not stored.
const LEFT_OUT: &str = "the report is stored, but not its photo or audio: the dispatcher's disk is under the reserve kept for alerts and orders";
const MAX_AUDIO: usize = 2 << 20;
const MAX_TEXT: usize = 2000;
/// Photos are kept at most this wide or high.
const MAX_SIDE: u32 = 1920;

/// One part of a `multipart/form-data` body.
#[derive(Debug)]
pub struct Part<'a> {
    pub name: String,
    pub content_type: Option<String>,
    pub data: &'a [u8],
}

/// Splits a `multipart/form-data` body; `Err` says what is wrong with it.
pub fn multipart<'a>(content_type: &str, body: &'a [u8]) -> Result<Vec<Part<'a>>, String> {
    let boundary = content_type
        .split(';')
        .map(str::trim)
        .find_map(|p| p.strip_prefix("boundary="))
        .map(|b| b.trim_matches('"'))
        .filter(|_| content_type.trim_start().to_ascii_lowercase().starts_with("multipart/form-data"))
        .ok_or("the body must be multipart/form-data with a boundary")?;
    if boundary.is_empty() || boundary.len() > 70 {
        return Err("the multipart boundary must be 1-70 characters".into());
    }
    let delimiter = format!("--{boundary}");
    let find = |hay: &[u8], needle: &[u8], from: usize| -> Option<usize> {
        hay.get(from..)?.windows(needle.len()).position(|w| w == needle).map(|i| i + from)
    };
    let mut parts = Vec::new();
    let mut at = find(body, delimiter.as_bytes(), 0).ok_or("no multipart boundary in the body")?;
    loop {
        at += delimiter.len();
        if body.get(at..at + 2) == Some(b"--") {
            return Ok(parts);
        }
        if body.get(at..at + 2) != Some(b"\r\n") {
            return Err("a multipart boundary is not followed by a line break".into());
        }
        at += 2;
        let head_end = find(body, b"\r\n\r\n", at).ok_or("a multipart part has no end of headers")?;
        let head = std::str::from_utf8(&body[at..head_end]).map_err(|_| "multipart headers are not UTF-8")?;
        let next =
            find(body, format!("\r\n{delimiter}").as_bytes(), head_end + 4).ok_or("a multipart part is not closed")?;
        let (mut name, mut ctype) = (None, None);
        for line in head.split("\r\n") {
            let (k, v) = line.split_once(':').ok_or("a multipart header without ':'")?;
            match k.trim().to_ascii_lowercase().as_str() {
                "content-disposition" => {
                    name = v
                        .split(';')
                        .map(str::trim)
                        .find_map(|p| p.strip_prefix("name="))
                        .map(|n| n.trim_matches('"').to_string());
                }
                "content-type" => ctype = Some(v.trim().to_ascii_lowercase()),
                _ => {}
            }
        }
        let name = name.ok_or("a multipart part without a name")?;
        if parts.iter().any(|p: &Part| p.name == name) {
            return Err(format!("the field {name} is given twice"));
        }
        parts.push(Part { name, content_type: ctype, data: &body[head_end + 4..next] });
        at = next + 2;
        if parts.len() > 16 {
            return Err("too many fields".into());
        }
    }
}

/// Requests per minute per key.
#[derive(Default)]
struct Limits {
    seen: HashMap<String, (Instant, u32)>,
}

impl Limits {
    fn allow(&mut self, key: String, per_minute: u32, now: Instant) -> bool {
        if self.seen.len() > 10_000 {
            self.seen.retain(|_, (t, _)| now.duration_since(*t) < Duration::from_secs(60));
        }
        let e = self.seen.entry(key).or_insert((now, 0));
        if now.duration_since(e.0) >= Duration::from_secs(60) {
            *e = (now, 0);
        }
        e.1 += 1;
        e.1 <= per_minute
    }
}

/// Pixelates the faces of a picture in place. The dispatcher loads no model: the node
/// lends its whole-picture face search (`edge-node`'s `privacy::Privacy`, at 1x and 2x).
pub trait FaceFilter: Send + Sync {
    /// Hides every face of the `w`×`h` BGR picture; returns how many it hid, or why the
    /// search could not run.
    fn hide_faces(&self, bgr: &mut [u8], w: u32, h: u32) -> Result<usize, String>;
}

/// Decodes a JPEG or PNG, pixelates every face the face model finds, and encodes it
/// again (no metadata survives): residents' photos and inspectors' photos of their work.
pub fn safe_photo(faces: &dyn FaceFilter, data: &[u8]) -> Result<Vec<u8>, String> {
    let format = image::guess_format(data).map_err(|_| "the photo is not an image (JPEG or PNG)".to_string())?;
    if !matches!(format, image::ImageFormat::Jpeg | image::ImageFormat::Png) {
        return Err(format!("the photo is {format:?}; send a JPEG or PNG"));
    }
    let img =
        image::load_from_memory_with_format(data, format).map_err(|e| format!("the photo cannot be decoded: {e}"))?;
    let img = if img.width().max(img.height()) > MAX_SIDE {
        img.resize(MAX_SIDE, MAX_SIDE, image::imageops::FilterType::Triangle)
    } else {
        img
    };
    let rgb = img.to_rgb8();
    let (w, h) = rgb.dimensions();
    let mut bgr: Vec<u8> = rgb.pixels().flat_map(|p| [p[2], p[1], p[0]]).collect();
    // The whole photo ([`FaceFilter`]): residents photograph crowds too.
    let faces = faces.hide_faces(&mut bgr, w, h).map_err(|e| format!("the face model cannot run: {e}"))?;
    let rgb = image::RgbImage::from_raw(w, h, bgr.chunks_exact(3).flat_map(|p| [p[2], p[1], p[0]]).collect())
        .ok_or("the photo cannot be rebuilt")?;
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 85)
        .encode_image(&rgb)
        .map_err(|e| format!("the photo cannot be encoded: {e}"))?;
    tracing::info!(faces, bytes = out.len(), "report photo: faces pixelated, metadata dropped");
    Ok(out)
}

/// The reports API of one dispatcher.
pub struct Intake {
    dispatcher: Arc<Dispatcher>,
    config: Reports,
    grid: Grid,
    /// The whole-photo face search (the config has a face model when reports are on).
    faces: Arc<dyn FaceFilter>,
    limits: Mutex<Limits>,
}

fn error(status: u16, reason: impl Into<String>) -> Reply {
    let v = json!({"ok": false, "reason": reason.into()});
    Reply::new(status, "application/json", serde_json::to_vec(&v).unwrap_or_default())
}

fn ok(status: u16, v: serde_json::Value) -> Reply {
    Reply::new(status, "application/json", serde_json::to_vec(&v).unwrap_or_default())
}

impl Intake {
    /// `None` unless `[reports]` is enabled and `faces` is given (validation makes the
    /// config name a face model when reports are on; the node lends its face search).
    pub fn new(config: &Config, dispatcher: Arc<Dispatcher>, faces: Option<Arc<dyn FaceFilter>>) -> Option<Self> {
        let reports = config.reports.clone()?;
        Some(Self { dispatcher, config: reports, grid: config.grid.clone(), faces: faces?, limits: Mutex::default() })
    }

    /// Answers a request under `/api/v1/reports`, or `None` for other paths.
    pub fn answer(&self, r: &Request) -> Option<Reply> {
        let rest = r.path.strip_prefix(PATH)?;
        let now = self.dispatcher.now_ms();
        let at = self.dispatcher.clock().now();
        Some(match (rest, &r.post) {
            ("", Some(post)) => {
                if !self.limits.locked().allow(format!("ip {}", post.peer), self.config.per_address, at) {
                    return Some(error(429, "too many reports from this address; try again in a minute"));
                }
                self.create(post.content_type, post.body, now)
            }
            ("" | "/", None) => error(405, "POST a report here; GET /api/v1/reports/<id> with its token"),
            (tail, post) => {
                let tail = tail.trim_start_matches('/');
                let (id, what) = tail.split_once('/').unwrap_or((tail, ""));
                let token = r
                    .authorization
                    .strip_prefix("Bearer ")
                    .or(r.authorization.strip_prefix("bearer "))
                    .unwrap_or("")
                    .trim();
                if !self.limits.locked().allow(format!("token {token}"), self.config.per_token, at) {
                    return Some(error(429, "too many requests with this token; try again in a minute"));
                }
                match self.dispatcher.report_token_ok(id, token) {
                    Err(e) => error(500, format!("cannot read the report: {e}")),
                    Ok(false) => error(403, "unknown report, or not its token (send Authorization: Bearer <token>)"),
                    Ok(true) => match (what, post) {
                        ("", None) => match self.dispatcher.report_status(id) {
                            Ok(Some(v)) => ok(200, serde_json::to_value(&v).unwrap_or_default()),
                            Ok(None) => error(404, "no such report"),
                            Err(e) => error(500, e.to_string()),
                        },
                        ("photo.jpg", None) => match self.dispatcher.report_photo(id) {
                            Ok(Some(jpeg)) => Reply::new(200, "image/jpeg", jpeg),
                            Ok(None) => error(404, "this report has no photo"),
                            Err(e) => error(500, e.to_string()),
                        },
                        ("rating", Some(post)) => self.rate(id, post.body, now),
                        _ => error(404, "not a report resource: /api/v1/reports/<id>, /photo.jpg, /rating"),
                    },
                }
            }
        })
    }

    /// Leaves out the photo and the audio when storing them would eat into the disk reserve
    /// kept for alerts and orders (the report itself is always stored); returns what was
    /// left out, for the reply.
    fn fit_media(&self, report: &mut NewReport) -> Vec<&'static str> {
        let Some(disk) = self.dispatcher.store().locked().disk().cloned() else { return Vec::new() };
        let mut left_out = Vec::new();
        // A database row and its WAL frames: about three times the bytes.
        if report.photo.as_ref().is_some_and(|p| !disk.admit(Optional::ReportPhoto, p.len() as u64 * 3)) {
            report.photo = None;
            left_out.push("photo");
        }
        if report.audio.as_ref().is_some_and(|a| !disk.admit(Optional::ReportAudio, a.0.len() as u64 * 3)) {
            report.audio = None;
            left_out.push("audio");
        }
        left_out
    }

    fn create(&self, content_type: &str, body: &[u8], now: i64) -> Reply {
        let mut report = match self.check(content_type, body) {
            Ok(r) => r,
            Err((status, reason)) => return error(status, reason),
        };
        let left_out = self.fit_media(&mut report);
        match self.dispatcher.handle_report(
            &report,
            self.config.attach_within_m,
            self.config.attach_for.as_millis() as i64,
            now,
        ) {
            Ok(a) => {
                let mut v = json!({"ok": true, "id": a.id, "token": a.token, "order": a.order, "attached": a.attached,
                                   "status": format!("/api/v1/reports/{}", a.id)});
                if !left_out.is_empty() {
                    v["left_out"] = json!(left_out);
                    v["note"] = LEFT_OUT.into();
                }
                ok(201, v)
            }
            Err(e) => error(500, format!("the report could not be stored: {e}")),
        }
    }

    /// Every check, then the photo made safe; nothing is stored here.
    fn check(&self, content_type: &str, body: &[u8]) -> Result<NewReport, (u16, String)> {
        let parts = multipart(content_type, body).map_err(|e| (400, e))?;
        self.check_parts(&parts)
    }

    /// A report published by an app's gateway on `<prefix>/dispatch/reports/in/<gateway>`:
    /// `{"id": "<request id>", "category", "text", "lat", "lon" | "micro_grid",
    /// "photo": "<base64 JPEG/PNG>", "audio": "<base64>", "audio_type": "audio/..."}` (the
    /// whole message at most 64 KiB). Answered on `<prefix>/dispatch/reports/replies/<gateway>`
    /// with the request id; the same request again gets the same answer. `Err`: not stored
    /// (the broker redelivers it).
    pub fn mqtt(&self, gateway: &str, payload: &[u8], now: i64) -> Result<(), DispatchError> {
        use base64::Engine;
        let v: serde_json::Value = serde_json::from_slice(payload).unwrap_or(serde_json::Value::Null);
        let request = v["id"].as_str().filter(|id| crate::contract::valid_id(id)).map(str::to_string);
        let left_out: std::cell::RefCell<Vec<&'static str>> = Default::default();
        let reply_of = |request: Option<&str>, r: Result<&super::reports::Accepted, &str>| {
            let mut reply = crate::contract::ReportReply {
                schema: crate::contract::Schema::new(),
                version: crate::contract::Version1,
                request: request.map(str::to_string),
                ok: r.is_ok(),
                id: None,
                token: None,
                order: None,
                attached: None,
                left_out: Vec::new(),
                note: None,
                reason: None,
                retry: None,
                duplicate: None,
            };
            match r {
                Ok(a) => {
                    reply.id = Some(a.id.clone());
                    reply.token = Some(a.token.clone());
                    reply.order = a.order.clone();
                    reply.attached = Some(a.attached);
                    reply.left_out = left_out.borrow().iter().map(|s| s.to_string()).collect();
                    reply.note = (!reply.left_out.is_empty()).then(|| LEFT_OUT.to_string());
                }
                Err(reason) => reply.reason = Some(reason.to_string()),
            }
            reply
        };
        let topic = self.dispatcher.topics().report_replies(gateway);
        let publish = |reply: &crate::contract::ReportReply| {
            let m = crate::outbox::Message {
                topic: topic.clone(),
                payload: serde_json::to_vec(reply).unwrap_or_default(),
                retain: false,
                kind: crate::outbox::Kind::Order,
            };
            self.dispatcher.store().locked().push(&m).map(|_| ())
        };
        let Some(request) = request else {
            publish(&reply_of(None, Err("expected a JSON object with \"id\" (1-64 characters): the request id")))?;
            return Ok(());
        };
        // A flood through one gateway: answered, not stored, so the same request can come again.
        if !self.limits.locked().allow(
            format!("gateway {gateway}"),
            self.config.per_gateway,
            self.dispatcher.clock().now(),
        ) {
            let mut reply =
                reply_of(Some(&request), Err("too many reports through this gateway; try again in a minute"));
            reply.retry = Some(true);
            publish(&reply)?;
            return Ok(());
        }
        // The fields as a form would send them, then the same checks.
        let mut owned: Vec<(String, Option<String>, Vec<u8>)> = Vec::new();
        let mut problem = None;
        for (k, val) in v.as_object().into_iter().flatten() {
            match (k.as_str(), val) {
                ("id" | "audio_type", _) => {}
                ("photo" | "audio", serde_json::Value::String(b64)) => {
                    match base64::engine::general_purpose::STANDARD.decode(b64) {
                        Ok(bytes) => {
                            let ctype =
                                (k == "audio").then(|| v["audio_type"].as_str().unwrap_or("").to_ascii_lowercase());
                            owned.push((k.clone(), ctype, bytes));
                        }
                        Err(_) => problem = Some(format!("{k} is not base64")),
                    }
                }
                (_, serde_json::Value::String(t)) => owned.push((k.clone(), None, t.clone().into_bytes())),
                (_, serde_json::Value::Number(n)) => owned.push((k.clone(), None, n.to_string().into_bytes())),
                _ => problem = Some(format!("{k} must be a string or a number")),
            }
        }
        let parts: Vec<Part> =
            owned.iter().map(|(n, c, d)| Part { name: n.clone(), content_type: c.clone(), data: d }).collect();
        let checked = match problem {
            Some(p) => Err(p),
            None => self.check_parts(&parts).map_err(|(_, reason)| reason),
        };
        let checked = checked.map(|mut r| {
            *left_out.borrow_mut() = self.fit_media(&mut r);
            r
        });
        let sender = format!("reports:{gateway}");
        let (reply, duplicate) = self.dispatcher.handle_report_once(
            &sender,
            &request,
            checked.as_ref().map_err(String::as_str),
            self.config.attach_within_m,
            self.config.attach_for.as_millis() as i64,
            now,
            &|r| serde_json::to_value(reply_of(Some(&request), r)).unwrap_or_default(),
        )?;
        // The answer as stored (the first time, or now), read back with its type.
        let mut reply: crate::contract::ReportReply = serde_json::from_value(reply)
            .unwrap_or_else(|e| reply_of(Some(&request), Err(&format!("the stored answer cannot be read: {e}"))));
        reply.duplicate = Some(duplicate);
        publish(&reply)?;
        Ok(())
    }

    fn check_parts(&self, parts: &[Part]) -> Result<NewReport, (u16, String)> {
        let bad = |s: String| (400, s);
        let field = |name: &str| parts.iter().find(|p| p.name == name);
        let text_of = |name: &str| -> Result<Option<String>, (u16, String)> {
            field(name)
                .map(|p| {
                    std::str::from_utf8(p.data)
                        .map(|s| s.trim().to_string())
                        .map_err(|_| bad(format!("{name} is not UTF-8 text")))
                })
                .transpose()
        };
        for p in parts {
            if !["category", "text", "lat", "lon", "micro_grid", "photo", "audio"].contains(&p.name.as_str()) {
                return Err(bad(format!(
                    "unknown field {}; use category, text, lat, lon, micro_grid, photo, audio",
                    p.name
                )));
            }
        }
        let category = text_of("category")?.ok_or_else(|| bad("missing field category".into()))?;
        if !self.config.categories.contains(&category) {
            return Err(bad(format!("unknown category \"{category}\"; one of {}", self.config.categories.join(", "))));
        }
        let text = text_of("text")?.ok_or_else(|| bad("missing field text (what is wrong, in words)".into()))?;
        if text.is_empty() || text.chars().count() > MAX_TEXT {
            return Err(bad(format!("text must be 1-{MAX_TEXT} characters")));
        }
        let number = |name: &str, range: std::ops::RangeInclusive<f64>| -> Result<Option<f64>, (u16, String)> {
            match text_of(name)? {
                None => Ok(None),
                Some(t) => match t.parse::<f64>() {
                    Ok(v) if v.is_finite() && range.contains(&v) => Ok(Some(v)),
                    _ => Err(bad(format!("{name} \"{t}\" is not a number from {} to {}", range.start(), range.end()))),
                },
            }
        };
        let (lat, lon) = (number("lat", -90.0..=90.0)?, number("lon", -180.0..=180.0)?);
        let micro_grid = text_of("micro_grid")?;
        let (point, micro_grid) = match (lat, lon, micro_grid) {
            (Some(la), Some(lo), None) => {
                let found = self
                    .grid
                    .micro_grids
                    .iter()
                    .find(|m| m.area.as_ref().is_some_and(|a| a.contains(crate::geometry::Point::new(lo, la))));
                match found {
                    Some(m) => (Some((la, lo)), Some(m.id.clone())),
                    None if self.config.outside_to_control_room => (Some((la, lo)), None),
                    None => return Err((422, format!("{la}, {lo} is outside every micro-grid of this district"))),
                }
            }
            (None, None, Some(m)) => match self.grid.micro_grids.iter().find(|g| g.id == m) {
                Some(g) => (None, Some(g.id.clone())),
                None => return Err(bad(format!("unknown micro_grid \"{m}\""))),
            },
            (None, None, None) => return Err(bad("missing location: lat and lon, or micro_grid".into())),
            (Some(_), None, _) | (None, Some(_), _) => return Err(bad("give both lat and lon".into())),
            (Some(_), Some(_), Some(_)) => return Err(bad("give lat and lon, or micro_grid, not both".into())),
        };
        let grid =
            micro_grid.as_ref().and_then(|m| self.grid.micro_grids.iter().find(|g| &g.id == m)).map(|g| g.grid.clone());
        let audio = match field("audio") {
            None => None,
            Some(p) if p.data.len() > MAX_AUDIO => {
                return Err((413, format!("the audio clip is over {} MiB", MAX_AUDIO >> 20)));
            }
            Some(p) if p.data.is_empty() => return Err(bad("the audio clip is empty".into())),
            Some(p) => {
                let ctype = p.content_type.clone().unwrap_or_default();
                if !ctype.starts_with("audio/") {
                    return Err(bad(format!("the audio part is \"{ctype}\", not audio/*")));
                }
                Some((p.data.to_vec(), ctype))
            }
        };
        let photo = match field("photo") {
            None => None,
            Some(p) if p.data.len() > MAX_PHOTO => {
                return Err((413, format!("the photo is over {} MiB", MAX_PHOTO >> 20)));
            }
            Some(p) => Some(safe_photo(self.faces.as_ref(), p.data).map_err(bad)?),
        };
        Ok(NewReport { category, text, point, micro_grid, grid, photo, audio })
    }

    fn rate(&self, id: &str, body: &[u8], now: i64) -> Reply {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Rating {
            rating: u8,
            #[serde(default)]
            comment: String,
        }
        let r: Rating = match serde_json::from_slice(body) {
            Ok(r) => r,
            Err(e) => return error(400, format!("expected {{\"rating\": 1-5, \"comment\": \"...\"}}: {e}")),
        };
        if !(1..=5).contains(&r.rating) {
            return error(400, "rating must be 1 to 5");
        }
        if r.comment.chars().count() > MAX_TEXT {
            return error(400, format!("comment must be at most {MAX_TEXT} characters"));
        }
        match self.dispatcher.rate_report(id, r.rating, r.comment.trim(), self.config.reopen_at_most, now) {
            Ok(Ok(reopened)) => ok(200, json!({"ok": true, "id": id, "rating": r.rating, "reopened": reopened})),
            Ok(Err(RatingRefused::NotFound)) => error(404, "no such report"),
            Ok(Err(RatingRefused::Already)) => error(409, "this report is rated already"),
            Ok(Err(RatingRefused::NotYet(why))) => error(409, why),
            Err(e) => error(500, e.to_string()),
        }
    }
}

/// Everything under [`PATH`]: reports in (`POST`, with a body), their status, photo and
/// rating (the reporter's token, not the listener's).
pub fn routes(intake: Arc<Intake>) -> axum::Router {
    crate::http::with_body(PATH, Arc::new(move |r: &Request| intake.answer(r)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(parts: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
        let mut b = Vec::new();
        for (name, ctype, data) in parts {
            b.extend_from_slice(format!("--XyZ\r\nContent-Disposition: form-data; name=\"{name}\"").as_bytes());
            if let Some(c) = ctype {
                b.extend_from_slice(format!("; filename=\"f\"\r\nContent-Type: {c}").as_bytes());
            }
            b.extend_from_slice(b"\r\n\r\n");
            b.extend_from_slice(data);
            b.extend_from_slice(b"\r\n");
        }
        b.extend_from_slice(b"--XyZ--\r\n");
        b
    }

    #[test]
    fn multipart_fields_and_refusals() {
        let b = body(&[("category", None, b"pothole"), ("photo", Some("image/jpeg"), b"\xff\xd8binary\r\n--Xy")]);
        let parts = multipart("multipart/form-data; boundary=XyZ", &b).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].data, b"pothole");
        assert_eq!(parts[1].content_type.as_deref(), Some("image/jpeg"));
        assert_eq!(parts[1].data, b"\xff\xd8binary\r\n--Xy");
        assert!(multipart("application/json", &b).is_err());
        assert!(multipart("multipart/form-data; boundary=other", &b).is_err());
        assert!(multipart("multipart/form-data; boundary=XyZ", b"--XyZ\r\nno headers end").is_err());
        let twice = body(&[("text", None, b"a"), ("text", None, b"b")]);
        assert!(multipart("multipart/form-data; boundary=XyZ", &twice).unwrap_err().contains("twice"));
        assert!(multipart("multipart/form-data; boundary=XyZ", b"").is_err());
    }

    #[test]
    fn limits_per_minute() {
        let mut l = Limits::default();
        let t = Instant::now();
        assert!((0..3).all(|_| l.allow("a".into(), 3, t)));
        assert!(!l.allow("a".into(), 3, t));
        assert!(l.allow("b".into(), 3, t));
        assert!(l.allow("a".into(), 3, t + Duration::from_secs(61)));
    }
}
