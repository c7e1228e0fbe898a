//! The residents' app: a mobile web app at `/report/` (served when `[reports]` is on) that
//! files reports through the reports API (`POST /api/v1/reports`, see `intake.rs`) and
//! follows them: the timeline pushed as server-sent events, the closing note, the rating.
//!
//! | path | what |
//! |---|---|
//! | `GET /report/` (+ `app.js`, `app.css`, `sw.js`, `manifest.webmanifest`, `icon.svg`) | the app |
//! | `GET /report/api/config` | the categories, the micro-grids and their outlines (the tap map) |
//! | `GET /report/api/reports/<id>/events` | the report's status, pushed on every change |
//! | `GET /report/api/reports/<id>/photo.jpg` | its stored (pixelated) photo |
//!
//! The reporter's token comes back from the API when the report is filed; the page keeps it
//! (local storage) and sends it as a cookie `gs_r_<id>` for the two report paths above,
//! which a browser's `EventSource` and `<img>` cannot send as a header.

use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::Dispatcher;
use crate::config::{Config, Grid};
use crate::http::{Reply, Request};

pub const PREFIX: &str = "/report";

const INDEX: &str = include_str!("resident/index.html");
const APP_JS: &str = include_str!("resident/app.js");
const APP_CSS: &str = include_str!("resident/app.css");
const SW_JS: &str = include_str!("resident/sw.js");
const MANIFEST: &str = include_str!("resident/manifest.webmanifest");
const ICON: &str = include_str!("inspector/icon.svg");

pub struct ResidentApp {
    dispatcher: Arc<Dispatcher>,
    categories: Vec<String>,
    grid: Grid,
}

impl ResidentApp {
    /// `None` unless `[reports]` is on.
    pub fn new(config: &Config, dispatcher: Arc<Dispatcher>) -> Option<Self> {
        let reports = config.reports.as_ref()?;
        Some(Self { dispatcher, categories: reports.categories.clone(), grid: config.grid.clone() })
    }

    /// Whether the cookie of report `id` holds its token.
    fn holds(&self, cookie: &str, id: &str) -> bool {
        crate::http::cookie(cookie, &format!("gs_r_{id}"))
            .is_some_and(|token| self.dispatcher.report_token_ok(id, token).unwrap_or(false))
    }

    fn config(&self) -> serde_json::Value {
        json!({
            "categories": self.categories,
            "micro_grids": self.grid.micro_grids.iter().map(|m| json!({
                "id": m.id,
                "name": m.name,
                "area": m.area.as_ref().map(|a| a.points().iter().map(|p| [p.x, p.y]).collect::<Vec<_>>()),
            })).collect::<Vec<_>>(),
        })
    }

    pub fn answer(&self, r: &Request) -> Option<Reply> {
        let stat = |ctype: &'static str, body: &'static str| {
            Reply::new(200, ctype, body).with_header(header::CACHE_CONTROL, "no-cache")
        };
        let rest = r.path.strip_prefix(PREFIX)?;
        if r.post.is_some() {
            return Some(Reply::new(405, "text/plain", "file reports with POST /api/v1/reports\n"));
        }
        Some(match rest {
            "" => Reply::new(308, "text/plain", "").with_header(header::LOCATION, format!("{PREFIX}/")),
            "/" | "/index.html" => stat("text/html; charset=utf-8", INDEX),
            "/app.js" => stat("text/javascript; charset=utf-8", APP_JS),
            "/app.css" => stat("text/css; charset=utf-8", APP_CSS),
            "/sw.js" => stat("text/javascript; charset=utf-8", SW_JS),
            "/manifest.webmanifest" => stat("application/manifest+json", MANIFEST),
            "/icon.svg" => stat("image/svg+xml", ICON),
            "/api/config" => crate::http::json(&self.config()),
            other => {
                let parts: Vec<&str> = other.trim_start_matches('/').split('/').collect();
                match parts.as_slice() {
                    ["api", "reports", id, "photo.jpg"] if self.holds(r.cookie, id) => {
                        match self.dispatcher.report_photo(id) {
                            Ok(Some(j)) => Reply::new(200, "image/jpeg", j),
                            _ => Reply::new(404, "text/plain", "this report has no photo\n"),
                        }
                    }
                    ["api", "reports", _, _] => Reply::new(403, "text/plain", "not this report's token\n"),
                    _ => return None,
                }
            }
        })
    }
}

/// `GET /report/api/reports/<id>/events`: the report's status now and after every change.
async fn events(app: Arc<ResidentApp>, id: String, headers: HeaderMap) -> Response {
    let cookie = headers.get(header::COOKIE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let allowed = {
        let (app, id) = (app.clone(), id.clone());
        tokio::task::spawn_blocking(move || app.holds(&cookie, &id)).await.unwrap_or(false)
    };
    if !allowed {
        return (StatusCode::FORBIDDEN, "unknown report, or not its token\n").into_response();
    }
    let dispatcher = app.dispatcher.clone();
    super::push_on_change(&dispatcher, "report", move || {
        let v = app.dispatcher.report_status(&id).ok()??;
        let text = serde_json::to_string(&v).ok()?;
        Some((text.clone(), text))
    })
}

/// The app's routes; list [`PREFIX`] in `http::Access::own_credentials`.
pub fn routes(app: Arc<ResidentApp>) -> axum::Router {
    let handler: crate::http::Handler = {
        let app = app.clone();
        Arc::new(move |r: &Request| app.answer(r))
    };
    let index = crate::http::get(|_| {
        Reply::new(200, "text/html; charset=utf-8", INDEX).with_header(header::CACHE_CONTROL, "no-cache")
    });
    let stream = axum::routing::get(move |axum::extract::Path(id): axum::extract::Path<String>, headers: HeaderMap| {
        events(app.clone(), id, headers)
    });
    axum::Router::new()
        .route("/report/", index)
        .route("/report/api/reports/:id/events", stream)
        .merge(crate::http::with_body(PREFIX, handler))
}
