//! Spoken order summaries: espeak-ng (Debian's `espeak-ng`, which speaks English and
//! Mandarin among others) writes a WAV file once per order, kept under
//! `<data_dir>/voice/`; later requests read the file.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::order::Order;

/// The synthesizer and where its files go.
pub struct Voice {
    /// An espeak-ng voice name (`en`, `cmn`, …), checked by the config.
    voice: String,
    dir: PathBuf,
    /// The data disk's reserve: a summary is an optional file (`order_media`).
    disk: Option<crate::outbox::DiskGuard>,
}

/// Summaries older than this are deleted when a new one is made (orders rarely stay open
/// longer; a later request makes it again).
const KEEP: Duration = Duration::from_secs(7 * 86_400);

/// What espeak-ng writes for a summary, at most (22 kHz, 16 bit, about 15 s).
const WAV_BYTES: u64 = 700 << 10;

/// How long espeak-ng may take for one summary.
const SPEAK_WITHIN: Duration = Duration::from_secs(20);

impl Voice {
    pub fn new(voice: &str, data_dir: &std::path::Path, disk: Option<crate::outbox::DiskGuard>) -> Self {
        let dir = data_dir.join("voice");
        if let Some(d) = &disk {
            d.keep_files(crate::outbox::Optional::OrderMedia, &dir, "wav");
        }
        Self { voice: voice.to_string(), dir, disk }
    }

    /// What is said of a new order: category, place, the deadline.
    pub fn summary(&self, o: &Order, place: &str, now_ms: i64) -> String {
        let minutes = o.deadline_ms.map(|d| ((d - now_ms).max(0) as f64 / 60_000.0).ceil() as i64);
        let category = o.category.replace('_', " ");
        if self.voice.starts_with("cmn") || self.voice.starts_with("zh") {
            let due = minutes.map(|m| format!("请在{m}分钟内处理。")).unwrap_or_default();
            format!("新工单：{category}。地点：{place}。{due}")
        } else {
            let due = match (o.deadline, minutes) {
                (Some(crate::Deadline::Accept), Some(m)) => format!("Accept within {m} minutes."),
                (_, Some(m)) => format!("Resolve within {m} minutes."),
                _ => String::new(),
            };
            format!("New {} order: {category}, at {place}. {due}", o.priority)
        }
    }

    /// The WAV of `text` for order `id` (made on first use, then read from disk).
    pub fn wav(&self, id: &str, text: &str) -> Result<Vec<u8>, String> {
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) || id.starts_with('.') {
            return Err(format!("\"{id}\" cannot name a file"));
        }
        let file = self.dir.join(format!("{id}.wav"));
        if let Ok(wav) = std::fs::read(&file) {
            return Ok(wav);
        }
        std::fs::create_dir_all(&self.dir).map_err(|e| format!("cannot create {}: {e}", self.dir.display()))?;
        self.prune();
        if self.disk.as_ref().is_some_and(|d| !d.admit(crate::outbox::Optional::OrderMedia, WAV_BYTES)) {
            return Err("the disk is under its reserve (kept for alerts): no spoken summary".into());
        }
        let partial = self.dir.join(format!("{id}.wav.part"));
        let mut child = Command::new("espeak-ng")
            .args(["-v", &self.voice, "-s", "150", "-w"])
            .arg(&partial)
            .arg("--")
            .arg(text)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run espeak-ng ({e}); install the Debian package espeak-ng"))?;
        let started = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break s,
                Ok(None) if started.elapsed() < SPEAK_WITHIN => std::thread::sleep(Duration::from_millis(20)),
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("espeak-ng took over {} s", SPEAK_WITHIN.as_secs()));
                }
                Err(e) => return Err(format!("espeak-ng: {e}")),
            }
        };
        if !status.success() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            return Err(format!("espeak-ng failed ({status}): {}", err.trim()));
        }
        std::fs::rename(&partial, &file).map_err(|e| format!("cannot keep {}: {e}", file.display()))?;
        std::fs::read(&file).map_err(|e| format!("cannot read {}: {e}", file.display()))
    }

    /// Deletes summaries older than [`KEEP`].
    fn prune(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return };
        let now = std::time::SystemTime::now();
        for e in entries.flatten() {
            let old =
                e.metadata().and_then(|m| m.modified()).is_ok_and(|t| now.duration_since(t).unwrap_or_default() > KEEP);
            if old && e.path().extension().is_some_and(|x| x == "wav") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}
