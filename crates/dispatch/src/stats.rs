//! Handling statistics per grid and category: orders created, the share handled (resolved or
//! cancelled), median and p90 time to accept and to resolve, escalations, and residents'
//! reports, their ratings and the orders reopened after a low one. Published (retained) on
//! `<prefix>/dispatch/stats` and served as Prometheus metrics.

use std::collections::BTreeMap;

use rusqlite::Connection;

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Group {
    pub grid: String,
    pub category: String,
    pub created: u64,
    pub open: u64,
    pub resolved: u64,
    pub cancelled: u64,
    pub escalations: u64,
    /// Seconds from creation to acceptance / resolution, of the orders that got there.
    pub to_accept: Vec<f64>,
    pub to_resolve: Vec<f64>,
    /// Residents' reports made in the window, how many their reporter rated, the sum of
    /// the ratings, and the orders reopened after a low rating.
    pub reports: u64,
    pub rated: u64,
    pub rating_sum: u64,
    pub reopened: u64,
}

impl Group {
    /// Resolved or cancelled, over created.
    pub fn handled_rate(&self) -> f64 {
        if self.created == 0 { 0.0 } else { (self.resolved + self.cancelled) as f64 / self.created as f64 }
    }

    /// The mean rating (1-5), when any report was rated.
    pub fn rating_mean(&self) -> Option<f64> {
        (self.rated > 0).then(|| self.rating_sum as f64 / self.rated as f64)
    }
}

/// Nearest-rank percentile of unsorted values; `None` when empty.
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len());
    Some(v[rank - 1])
}

/// The group of a grid and category, made empty when new.
fn group(groups: &mut BTreeMap<(String, String), Group>, grid: String, category: String) -> &mut Group {
    groups.entry((grid.clone(), category.clone())).or_insert_with(|| Group { grid, category, ..Group::default() })
}

/// Statistics over the orders and reports created at or after `since_ms`.
pub fn compute(conn: &Connection, since_ms: i64) -> rusqlite::Result<Vec<Group>> {
    let mut stmt = conn.prepare_cached(
        "SELECT COALESCE(grid, '-'), category, state, escalations, created_ms, accepted_ms, resolved_ms
         FROM orders WHERE created_ms >= ?1",
    )?;
    let mut groups: BTreeMap<(String, String), Group> = BTreeMap::new();
    let rows = stmt.query_map([since_ms], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, i64>(4)?,
            r.get::<_, Option<i64>>(5)?,
            r.get::<_, Option<i64>>(6)?,
        ))
    })?;
    for row in rows {
        let (grid, category, state, escalations, created, accepted, resolved) = row?;
        let g = group(&mut groups, grid, category);
        g.created += 1;
        g.escalations += escalations as u64;
        match state.as_str() {
            "resolved" => g.resolved += 1,
            "cancelled" => g.cancelled += 1,
            _ => g.open += 1,
        }
        if let Some(a) = accepted {
            g.to_accept.push((a - created) as f64 / 1000.0);
        }
        if let Some(r) = resolved {
            g.to_resolve.push((r - created) as f64 / 1000.0);
        }
    }
    let mut stmt = conn.prepare_cached(
        "SELECT COALESCE(grid, '-'), category, COUNT(*), COUNT(rating), COALESCE(SUM(rating), 0) FROM reports \
         WHERE created_ms >= ?1 GROUP BY 1, 2",
    )?;
    let rows = stmt.query_map([since_ms], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)?, r.get::<_, i64>(3)?, r.get::<_, i64>(4)?))
    })?;
    for row in rows {
        let (grid, category, reports, rated, sum) = row?;
        let g = group(&mut groups, grid, category);
        (g.reports, g.rated, g.rating_sum) = (reports as u64, rated as u64, sum as u64);
    }
    let mut stmt = conn.prepare_cached(
        "SELECT COALESCE(o.grid, '-'), o.category, COUNT(*) FROM order_events e JOIN orders o ON o.id = e.order_id \
         WHERE e.event = 'reopened' AND o.created_ms >= ?1 GROUP BY 1, 2",
    )?;
    let rows = stmt.query_map([since_ms], |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)?)))?;
    for row in rows {
        let (grid, category, n) = row?;
        group(&mut groups, grid, category).reopened = n as u64;
    }
    Ok(groups.into_values().collect())
}

/// `gridsight.dispatch_stats` JSON.
pub fn to_json(groups: &[Group], window_s: u64, at: &str) -> serde_json::Value {
    let round = |x: Option<f64>| x.map(|v| (v * 10.0).round() / 10.0);
    let stats = crate::contract::DispatchStats {
        schema: crate::contract::Schema::new(),
        version: crate::contract::Version1,
        window_s,
        at: at.to_string(),
        groups: groups
            .iter()
            .map(|g| crate::contract::StatsGroup {
                grid: g.grid.clone(),
                category: g.category.clone(),
                created: g.created,
                open: g.open,
                resolved: g.resolved,
                cancelled: g.cancelled,
                handled_rate: (g.handled_rate() * 1000.0).round() / 1000.0,
                accept_p50_s: round(percentile(&g.to_accept, 0.5)),
                accept_p90_s: round(percentile(&g.to_accept, 0.9)),
                resolve_p50_s: round(percentile(&g.to_resolve, 0.5)),
                resolve_p90_s: round(percentile(&g.to_resolve, 0.9)),
                escalations: g.escalations,
                reports: g.reports,
                rated: g.rated,
                rating_mean: g.rating_mean().map(|m| (m * 100.0).round() / 100.0),
                reopened: g.reopened,
            })
            .collect(),
    };
    serde_json::to_value(&stats).unwrap_or_default()
}

/// Prometheus text exposition of the same figures.
/// A collector of the latest statistics for `/metrics`.
pub fn collector(latest: std::sync::Arc<std::sync::Mutex<Vec<Group>>>) -> crate::telemetry::ScrapeCollector {
    use crate::Locked;
    crate::telemetry::ScrapeCollector::new(move |m| to_metrics(m, &latest.locked()))
}

/// The statistics as OpenMetrics text (what `/metrics` shows of them).
pub fn metrics_text(groups: &[Group]) -> String {
    let latest = std::sync::Arc::new(std::sync::Mutex::new(groups.to_vec()));
    crate::telemetry::render(vec![Box::new(collector(latest))])
}

pub fn to_metrics(m: &mut crate::telemetry::MetricsText, groups: &[Group]) {
    let mut metric = |name: &str, help: &str, value: &dyn Fn(&Group) -> Option<f64>| {
        let samples: Vec<(Vec<(&str, &str)>, f64)> = groups
            .iter()
            .filter_map(|g| value(g).map(|v| (vec![("grid", g.grid.as_str()), ("category", g.category.as_str())], v)))
            .collect();
        m.family(name, help, "gauge", &samples);
    };
    metric("gridsight_orders_created", "Orders created in the statistics window.", &|g| Some(g.created as f64));
    metric("gridsight_orders_open", "Orders not yet resolved or cancelled.", &|g| Some(g.open as f64));
    metric("gridsight_orders_resolved", "Orders resolved.", &|g| Some(g.resolved as f64));
    metric("gridsight_orders_cancelled", "Orders cancelled (false alarms).", &|g| Some(g.cancelled as f64));
    metric("gridsight_orders_handled_ratio", "Resolved or cancelled over created.", &|g| Some(g.handled_rate()));
    metric("gridsight_orders_escalations", "Escalation steps taken.", &|g| Some(g.escalations as f64));
    metric("gridsight_orders_accept_p50_seconds", "Median time from creation to acceptance.", &|g| {
        percentile(&g.to_accept, 0.5)
    });
    metric("gridsight_orders_accept_p90_seconds", "90th percentile time to acceptance.", &|g| {
        percentile(&g.to_accept, 0.9)
    });
    metric("gridsight_orders_resolve_p50_seconds", "Median time from creation to resolution.", &|g| {
        percentile(&g.to_resolve, 0.5)
    });
    metric("gridsight_orders_resolve_p90_seconds", "90th percentile time to resolution.", &|g| {
        percentile(&g.to_resolve, 0.9)
    });
    metric("gridsight_orders_reopened", "Orders reopened after a resident's low rating.", &|g| Some(g.reopened as f64));
    metric("gridsight_reports", "Residents' reports made in the statistics window.", &|g| Some(g.reports as f64));
    metric("gridsight_reports_rated", "Reports rated by their reporter.", &|g| Some(g.rated as f64));
    metric("gridsight_reports_rating_mean", "Mean rating (1-5) residents gave.", &|g| g.rating_mean());
}
