//! Human units in config strings: durations ("30s", "1h30m"), byte sizes ("512MiB") and
//! weekly schedules ("mon-fri 08:00-18:00"). Each parser's error says what would be valid.

use std::time::Duration;

/// Parses `500ms`, `30s`, `5m`, `2h`, `7d`, and sums such as `1h30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    const HINT: &str = "expected a duration such as \"500ms\", \"30s\", \"5m\", \"1h30m\" or \"7d\"";
    let s = text.trim();
    if s.is_empty() {
        return Err(format!("empty duration; {HINT}"));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("\"{text}\" is not a duration; {HINT}"));
        }
        let n: u64 = rest[..digits].parse().map_err(|_| format!("\"{text}\" is too large; {HINT}"))?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let part = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n * 60),
            "h" => Duration::from_secs(n * 3600),
            "d" => Duration::from_secs(n * 86_400),
            "" => return Err(format!("\"{text}\" has no unit; {HINT}")),
            other => return Err(format!("\"{text}\" has unknown unit \"{other}\"; {HINT}")),
        };
        total += part;
    }
    Ok(total)
}

/// Parses `1024`, `64KiB`, `512MiB`, `2GiB` (also kB/MB/GB as powers of 1000).
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    const HINT: &str = "expected a size such as \"512MiB\", \"2GiB\" or \"100MB\"";
    let s = text.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    if digits == 0 {
        return Err(format!("\"{text}\" is not a size; {HINT}"));
    }
    let n: u64 = s[..digits].parse().map_err(|_| format!("\"{text}\" is too large; {HINT}"))?;
    let mult: u64 = match s[digits..].trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        other => return Err(format!("\"{text}\" has unknown unit \"{other}\"; {HINT}")),
    };
    n.checked_mul(mult).ok_or_else(|| format!("\"{text}\" is too large"))
}

/// A weekly schedule: a set of windows. Empty means "always".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Schedule {
    pub windows: Vec<Window>,
}

/// Active on `days` (bit 0 = Monday) from `start` to `end`, minutes after midnight.
/// `end <= start` wraps past midnight into the next day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub days: u8,
    pub start: u16,
    pub end: u16,
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl Schedule {
    pub fn always() -> Self {
        Self::default()
    }

    pub fn parse(windows: &[String]) -> Result<Self, (usize, String)> {
        windows
            .iter()
            .enumerate()
            .map(|(i, w)| Window::parse(w).map_err(|e| (i, e)))
            .collect::<Result<Vec<_>, _>>()
            .map(|windows| Self { windows })
    }

    /// Whether the schedule is active on `weekday` (0 = Monday) at `minute` after midnight.
    pub fn is_active(&self, weekday: u8, minute: u16) -> bool {
        if self.windows.is_empty() {
            return true;
        }
        let yesterday = (weekday + 6) % 7;
        self.windows.iter().any(|w| {
            let today = w.days & (1 << weekday) != 0;
            if w.start < w.end {
                today && (w.start..w.end).contains(&minute)
            } else {
                (today && minute >= w.start) || (w.days & (1 << yesterday) != 0 && minute < w.end)
            }
        })
    }
}

impl Window {
    /// `"mon-fri 08:00-18:00"`, `"sat,sun 00:00-24:00"`, `"daily 22:00-06:00"`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let hint = "expected \"DAYS HH:MM-HH:MM\" where DAYS is daily, a day (mon..sun), a range \
                    (mon-fri) or a list (sat,sun), e.g. \"mon-fri 08:00-18:00\"";
        let mut parts = text.split_whitespace();
        let (Some(days), Some(times), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!("\"{text}\": {hint}"));
        };
        let days = parse_days(days).ok_or_else(|| format!("\"{text}\": unknown days \"{days}\"; {hint}"))?;
        let (start, end) = times
            .split_once('-')
            .and_then(|(a, b)| Some((parse_clock(a)?, parse_clock(b)?)))
            .ok_or_else(|| format!("\"{text}\": bad time range \"{times}\"; {hint}"))?;
        if start == end || start == 24 * 60 {
            return Err(format!("\"{text}\": the window is empty; {hint}"));
        }
        Ok(Self { days, start, end: end % (24 * 60) })
    }
}

fn parse_days(s: &str) -> Option<u8> {
    if s == "daily" {
        return Some(0x7f);
    }
    let index = |d: &str| DAYS.iter().position(|x| *x == d);
    let mut mask = 0u8;
    for item in s.split(',') {
        if let Some((a, b)) = item.split_once('-') {
            let (a, b) = (index(a)?, index(b)?);
            let mut d = a;
            loop {
                mask |= 1 << d;
                if d == b {
                    break;
                }
                d = (d + 1) % 7;
            }
        } else {
            mask |= 1 << index(item)?;
        }
    }
    Some(mask)
}

fn parse_clock(s: &str) -> Option<u16> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    match (h, m) {
        (24, 0) => Some(24 * 60),
        (0..=23, 0..=59) => Some(h * 60 + m),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86400)));
        assert!(parse_duration("30").unwrap_err().contains("no unit"));
        assert!(parse_duration("5 minutes").is_err());
        assert!(parse_duration("m5").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("512MiB"), Ok(512 << 20));
        assert_eq!(parse_bytes("2GB"), Ok(2_000_000_000));
        assert_eq!(parse_bytes("100"), Ok(100));
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("3XB").is_err());
    }

    #[test]
    fn schedules() {
        let s = Schedule::parse(&["mon-fri 08:00-18:00".into()]).unwrap();
        assert!(s.is_active(0, 8 * 60));
        assert!(!s.is_active(0, 18 * 60));
        assert!(!s.is_active(5, 9 * 60));
        // Overnight, Friday to Saturday morning and Sunday night to Monday morning.
        let s = Schedule::parse(&["fri,sun 22:00-06:00".into()]).unwrap();
        assert!(s.is_active(4, 23 * 60));
        assert!(s.is_active(5, 5 * 60));
        assert!(!s.is_active(5, 23 * 60));
        assert!(s.is_active(0, 60));
        assert!(!s.is_active(1, 60));
        let s = Schedule::parse(&["sat-mon 00:00-24:00".into()]).unwrap();
        assert!(s.is_active(6, 0) && s.is_active(0, 1439) && !s.is_active(1, 600));
        assert!(Schedule::always().is_active(3, 700));
        assert_eq!(Schedule::parse(&["ok".into()]).unwrap_err().0, 0);
        assert!(Window::parse("mon 08:00-08:00").is_err());
        assert!(Window::parse("funday 08:00-09:00").is_err());
        assert!(Window::parse("mon 25:00-26:00").is_err());
    }
}
