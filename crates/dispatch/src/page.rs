//! The status page: one HTML page (`/`, [`PAGE`]) that polls one JSON (`/api/overview`)
//! and draws the camera grid, a problems banner, the live alert list, open orders with
//! their countdown and the dispatch statistics. The same page serves a node (`edge-node
//! run`, which builds its own overview from this module's parts) and the district
//! (`edge-node dispatch`, from the nodes' retained status topics); the JSON says which
//! (`district`). Plain HTML and JavaScript, no build step.
//!
//! The problems are worked out here, not in the page, so every screen (and a test) sees
//! the same list.

use crate::Locked;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

pub use crate::problems::{camera_problem, problem};

/// The page itself.
pub const PAGE: &str = include_str!("page.html");
/// The live video player the pages share (Media Source Extensions over the node's WebSocket).
pub const LIVE_PLAYER: &str = include_str!("live-player.js");

/// `GET /live-player.js`.
pub fn player_route() -> axum::Router {
    axum::Router::new().route(
        "/live-player.js",
        crate::http::get(|_| {
            crate::http::Reply::new(200, "text/javascript; charset=utf-8", LIVE_PLAYER)
                .with_header(axum::http::header::CACHE_CONTROL, "no-cache")
        }),
    )
}

/// How many open orders the page lists (the oldest deadlines first).
const ORDERS_SHOWN: usize = 200;

/// The dispatcher's part of the overview: open orders (nearest deadline first) and the
/// latest statistics.
pub fn dispatch_part(
    dispatcher: &crate::Dispatcher,
    stats: &Mutex<Vec<crate::stats::Group>>,
    window_s: u64,
    at: &str,
    problems: &mut Vec<Value>,
) -> (Value, Value) {
    let mut open: Vec<_> = match dispatcher.orders() {
        Ok(all) => all.into_iter().filter(|o| !o.state.is_closed()).map(|o| o.view()).collect(),
        Err(e) => {
            problems.push(problem("error", format!("cannot read the orders: {e}")));
            Vec::new()
        }
    };
    // Nearest deadline first (RFC 3339 in UTC sorts as text); orders without one last.
    open.sort_by(|a, b| match (&a.deadline, &b.deadline) {
        (Some(x), Some(y)) => x.cmp(y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.created_at.cmp(&b.created_at),
    });
    let late = open.iter().filter(|o| o.deadline.as_deref().is_some_and(|d| d < at)).count();
    if late > 0 {
        problems.push(problem("warn", format!("{late} open order(s) past their deadline")));
    }
    open.truncate(ORDERS_SHOWN);
    let stats = crate::stats::to_json(&stats.locked(), window_s, at);
    (serde_json::to_value(&open).unwrap_or_default(), stats)
}

/// The map's layers the dispatcher knows: the micro-grids' outlines and the inspectors'
/// recent positions (cameras and orders carry their own places).
pub fn map_part(dispatcher: Option<&crate::Dispatcher>) -> Value {
    let Some(d) = dispatcher else { return json!({"micro_grids": [], "inspectors": []}) };
    let now = d.now_ms();
    let grid = d.grid();
    json!({
        "micro_grids": grid.micro_grids.iter().map(|m| json!({
            "id": m.id, "name": m.name,
            "area": m.area.as_ref().map(|a| a.points().iter().map(|p| [p.x, p.y]).collect::<Vec<_>>()),
        })).collect::<Vec<_>>(),
        "inspectors": d.positions(now).into_iter().map(|(who, p)| json!({
            "inspector": who,
            "name": grid.inspectors.iter().find(|i| i.id == who).map_or(who.as_str(), |i| i.name.as_str()),
            "location": p.location, "accuracy_m": p.accuracy_m, "at": crate::contract::time::rfc3339_ms(p.at_ms),
        })).collect::<Vec<_>>(),
    })
}

/// The overview of a district (`edge-node dispatch`): the nodes and cameras from their
/// retained status topics, the alerts the dispatcher saw, every open order.
pub fn district_overview(
    title: &str,
    connected: bool,
    dispatcher: &crate::Dispatcher,
    latest: &Mutex<Vec<crate::stats::Group>>,
    fleet: &crate::fleet::Fleet,
    window_s: u64,
    nearby: u32,
) -> Value {
    let at = crate::contract::time::now();
    let mut problems = Vec::new();
    if !connected {
        problems.push(problem("error", "the dispatcher is not connected to the district broker"));
    }
    let (cameras, nodes, alerts) = fleet.overview(&mut problems);
    let (orders, stats) = dispatch_part(dispatcher, latest, window_s, &at, &mut problems);
    json!({
        "district": true,
        "title": title,
        "at": at,
        "broker_connected": connected,
        "outbox_pending": Value::Null,
        "disk": Value::Null,
        "problems": problems,
        "nodes": nodes,
        "cameras": cameras,
        "alerts": alerts,
        "orders": orders,
        "stats": stats,
        "map": map_part(Some(dispatcher)),
        "nearby_cameras": nearby,
    })
}

/// The district page of `edge-node dispatch`: `GET /` and `/api/overview`.
pub fn district_routes(
    title: String,
    link: Arc<crate::mqtt::LinkStats>,
    dispatcher: Arc<crate::Dispatcher>,
    latest: Arc<Mutex<Vec<crate::stats::Group>>>,
    fleet: Arc<crate::fleet::Fleet>,
    window_s: u64,
    nearby: u32,
) -> axum::Router {
    use crate::http::{Get, get, json};
    axum::Router::new()
        .route("/", get(|_: &Get| crate::http::Reply::new(200, "text/html; charset=utf-8", PAGE)))
        .route(
            "/api/overview",
            get(move |_: &Get| {
                let up = link.connected.load(std::sync::atomic::Ordering::SeqCst);
                json(&district_overview(&title, up, &dispatcher, &latest, &fleet, window_s, nearby))
            }),
        )
        .merge(player_route())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_is_plain_html_with_its_script() {
        assert!(PAGE.starts_with("<!doctype html>"));
        assert!(PAGE.contains("api/overview") && PAGE.contains("</html>"));
        // The SVG namespace is a name, not an address the browser loads.
        let page = PAGE.replace("\"http://www.w3.org/2000/svg\"", "");
        assert!(!page.contains("http://") && !page.contains("https://"), "the page loads nothing from elsewhere");
    }
}
