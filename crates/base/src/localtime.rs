//! localtime: the node's wall-clock calendar, for weekly schedules (rules' active hours,
//! inspectors' duty).
//!
//! The node's time zone is `node.time_zone` in the config (an IANA name such as
//! `"Asia/Shanghai"`, `"UTC"`, or a fixed offset such as `"UTC+08:00"`), else the
//! machine's. It is applied once, at start, by setting `TZ` for the process before any
//! thread exists; glibc's `localtime_r` then does the conversion, daylight saving included.

use std::time::{SystemTime, UNIX_EPOCH};

/// Local calendar position for schedules: weekday 0 = Monday, minute after midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalTime {
    pub weekday: u8,
    pub minute: u16,
}

/// The `TZ` value for a configured time zone, or why it is not one.
/// Accepts `UTC`, `UTC±HH:MM` and names with a file under the zoneinfo folder (`TZDIR`,
/// default `/usr/share/zoneinfo`).
pub fn tz_value(name: &str) -> Result<String, String> {
    if name == "UTC" {
        return Ok("UTC0".into());
    }
    if let Some(off) = name.strip_prefix("UTC") {
        return fixed_offset(off).ok_or_else(|| {
            format!("\"{name}\" is not a UTC offset; write e.g. \"UTC+08:00\" or \"UTC-05:30\" (hours ≤ 14)")
        });
    }
    let dir = std::env::var_os("TZDIR").map_or_else(|| "/usr/share/zoneinfo".into(), std::path::PathBuf::from);
    let safe = !name.is_empty() && !name.starts_with('/') && !name.split('/').any(|p| p == ".." || p.is_empty());
    if safe && dir.join(name).is_file() {
        return Ok(format!(":{name}"));
    }
    // A likely typo: the closest name in the same folder (e.g. Asia/).
    let (folder, leaf) = name.rsplit_once('/').unwrap_or(("", name));
    let best = std::fs::read_dir(dir.join(folder))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .map(|n| (crate::spelling::edit_distance(leaf, &n), n))
        .filter(|(d, _)| *d <= 2)
        .min();
    if let (true, Some((_, n))) = (safe, best) {
        let full = if folder.is_empty() { n } else { format!("{folder}/{n}") };
        return Err(format!("unknown time zone \"{name}\"; did you mean \"{full}\"?"));
    }
    Err(format!(
        "unknown time zone \"{name}\"; use an IANA name (e.g. \"Asia/Shanghai\", files under {}), \"UTC\" or \"UTC+08:00\"",
        dir.display()
    ))
}

/// `+08:00` → POSIX `<+0800>-08:00` (POSIX offsets have the opposite sign).
fn fixed_offset(off: &str) -> Option<String> {
    let (sign, rest) = match off.as_bytes().first()? {
        b'+' => ('+', &off[1..]),
        b'-' => ('-', &off[1..]),
        _ => return None,
    };
    let (h, m) = rest.split_once(':').unwrap_or((rest, "00"));
    let (h, m): (u8, u8) = (h.parse().ok()?, m.parse().ok()?);
    if h > 14 || m > 59 || rest.len() > 5 {
        return None;
    }
    let posix = if sign == '+' { '-' } else { '+' };
    Some(format!("<{sign}{h:02}{m:02}>{posix}{h:02}:{m:02}"))
}

/// Makes `tz` (from [`tz_value`]) the process's time zone.
///
/// # Safety
/// No other thread may be running (it sets an environment variable).
pub unsafe fn apply(tz: &str) {
    unsafe extern "C" {
        fn tzset();
    }
    // SAFETY: the caller guarantees a single thread.
    unsafe {
        std::env::set_var("TZ", tz);
        tzset();
    }
}

/// Local weekday (0 = Monday) and minute of `t`, in the process's time zone.
pub fn local_time(t: SystemTime) -> LocalTime {
    #[repr(C)]
    struct Tm {
        sec: i32,
        min: i32,
        hour: i32,
        mday: i32,
        mon: i32,
        year: i32,
        wday: i32,
        yday: i32,
        isdst: i32,
        gmtoff: i64,
        zone: *const std::ffi::c_char,
    }
    unsafe extern "C" {
        fn localtime_r(t: *const i64, out: *mut Tm) -> *mut Tm;
    }
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    let mut tm = Tm {
        sec: 0,
        min: 0,
        hour: 0,
        mday: 0,
        mon: 0,
        year: 0,
        wday: 0,
        yday: 0,
        isdst: 0,
        gmtoff: 0,
        zone: std::ptr::null(),
    };
    // SAFETY: both pointers are valid for the call; localtime_r is thread-safe.
    let ok = unsafe { !localtime_r(&secs, &mut tm).is_null() };
    if !ok {
        return LocalTime { weekday: 0, minute: 0 };
    }
    LocalTime { weekday: ((tm.wday + 6) % 7) as u8, minute: (tm.hour * 60 + tm.min) as u16 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_offsets() {
        assert_eq!(tz_value("UTC").unwrap(), "UTC0");
        assert_eq!(tz_value("UTC+08:00").unwrap(), "<+0800>-08:00");
        assert_eq!(tz_value("UTC-05:30").unwrap(), "<-0530>+05:30");
        assert_eq!(tz_value("UTC+8").unwrap(), "<+0800>-08:00");
        assert!(tz_value("UTC+15:00").is_err());
        assert!(tz_value("UTC8").is_err());
        assert!(tz_value("Mars/Olympus").unwrap_err().contains("unknown time zone"));
        assert!(tz_value("../etc/passwd").is_err());
        if std::path::Path::new("/usr/share/zoneinfo/Asia/Shanghai").is_file() {
            assert_eq!(tz_value("Asia/Shanghai").unwrap(), ":Asia/Shanghai");
        }
    }

    /// Runs in a child process of its own so that setting TZ touches no other test.
    #[test]
    fn fixed_offset_moves_the_calendar() {
        if std::env::var_os("GRIDSIGHT_TZ_CHILD").is_none() {
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "localtime::tests::fixed_offset_moves_the_calendar", "--test-threads=1"])
                .env("GRIDSIGHT_TZ_CHILD", "1")
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
            return;
        }
        // 2026-11-27 (a Friday) 20:30 UTC is Saturday 04:30 at UTC+08:00.
        let t = UNIX_EPOCH + std::time::Duration::from_secs(1_795_811_400);
        unsafe { apply(&tz_value("UTC").unwrap()) };
        assert_eq!(local_time(t), LocalTime { weekday: 4, minute: 20 * 60 + 30 });
        unsafe { apply(&tz_value("UTC+08:00").unwrap()) };
        assert_eq!(local_time(t), LocalTime { weekday: 5, minute: 4 * 60 + 30 });
    }
}
