//! Free space on the filesystem that holds the outbox, and the reserve kept for alerts.
//!
//! Alerts and orders are small (≈ 0.5 KiB) and must never be lost; everything else the node
//! writes is optional and large: snapshots (≈ 30–60 KiB), event clips (≈ 0.3 MB), thumbnails,
//! residents' photos and audio. So the node keeps `storage.disk_reserve` bytes free for
//! alert rows. Every optional write asks [`DiskGuard::admit`] first, with its size: it is
//! written only when it leaves the reserve intact, after the oldest optional files (of every
//! folder registered with [`DiskGuard::keep_files`], snapshots and clips alike) are deleted
//! to make room; otherwise it is skipped, and each kind counts what it skipped and deleted
//! (log and `/metrics`). The outbox's own size limit is bounded by the free space less the
//! reserve. Clones share one ledger (the counters and the folders).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::Locked;

/// What the node may leave out when the disk is short. Alerts and orders are never optional.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Optional {
    /// An alert's snapshot (file and outbox row).
    Snapshot,
    /// An event clip.
    Clip,
    /// A camera's thumbnail for the district page.
    Thumbnail,
    /// A resident's photo (the report is stored without it).
    ReportPhoto,
    /// A resident's audio clip (the report is stored without it).
    ReportAudio,
    /// What the apps add to an order: spoken summaries, photos of the work, the control
    /// room's voice messages (the update or the order stands without them).
    OrderMedia,
}

impl Optional {
    pub const ALL: [Self; 6] =
        [Self::Snapshot, Self::Clip, Self::Thumbnail, Self::ReportPhoto, Self::ReportAudio, Self::OrderMedia];

    pub fn name(self) -> &'static str {
        match self {
            Self::Snapshot => "snapshot",
            Self::Clip => "clip",
            Self::Thumbnail => "thumbnail",
            Self::ReportPhoto => "report_photo",
            Self::ReportAudio => "report_audio",
            Self::OrderMedia => "order_media",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Counters and folders shared by every clone of a guard.
#[derive(Debug, Default)]
struct Ledger {
    /// Folders of optional files, (kind, folder, extension): the oldest go first.
    folders: Mutex<Vec<(Optional, PathBuf, &'static str)>>,
    skipped: [AtomicU64; 6],
    deleted: [AtomicU64; 6],
    /// When each kind last said in the log that it skipped (at most once a minute).
    warned: Mutex<[Option<Instant>; 6]>,
}

/// A skip is logged at most this often per kind (the counters count every one).
const WARN_EVERY: Duration = Duration::from_secs(60);

/// How much room is left on `data_dir`'s filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskState {
    /// At least the reserve is free.
    Ok,
    /// Under the reserve: optional files (snapshots, clips, thumbnails, residents' media) are no
    /// longer written, alerts still are.
    Low,
    /// Under an eighth of the reserve: alerts themselves are at risk.
    Full,
}

impl DiskState {
    pub fn name(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Low => "low",
            Self::Full => "full",
        }
    }
}

/// Reads the free space of a folder's filesystem and judges it against a reserve.
#[derive(Debug, Clone)]
pub struct DiskGuard {
    dir: PathBuf,
    reserve: u64,
    ledger: Arc<Ledger>,
}

impl DiskGuard {
    pub fn new(dir: &Path, reserve: u64) -> Self {
        Self { dir: dir.to_path_buf(), reserve, ledger: Arc::default() }
    }

    /// Registers a folder of optional files (`*.ext` of `kind`): the oldest of them are
    /// deleted first when an optional write needs room.
    pub fn keep_files(&self, kind: Optional, dir: &Path, ext: &'static str) {
        let mut folders = self.ledger.folders.locked();
        if !folders.iter().any(|(_, d, e)| d == dir && *e == ext) {
            folders.push((kind, dir.to_path_buf(), ext));
        }
    }

    /// Whether an optional write of `need` bytes (everything it puts on the disk: the file,
    /// a database row and its WAL frames) may go ahead: it leaves the reserve free, after
    /// the oldest optional files were deleted to make room if needed. A refusal is counted
    /// for `kind` and logged (at most once a minute per kind).
    pub fn admit(&self, kind: Optional, need: u64) -> bool {
        self.admit_with(kind, need, |_| {})
    }

    /// [`Self::admit`], with one more way to make room after the files: `more(bytes)` (the
    /// outbox's unsent snapshots).
    pub fn admit_with(&self, kind: Optional, need: u64, more: impl FnOnce(u64)) -> bool {
        let mut short = self.shortfall(need);
        if short > 0 {
            self.delete_oldest(short);
            short = self.shortfall(need);
        }
        if short > 0 {
            more(short);
            short = self.shortfall(need);
        }
        if short > 0 {
            self.skip(kind, need);
        }
        short == 0
    }

    /// Counts (and now and then logs) an optional write left out.
    fn skip(&self, kind: Optional, need: u64) {
        let n = self.ledger.skipped[kind.index()].fetch_add(1, Relaxed) + 1;
        let mut warned = self.ledger.warned.locked();
        let last = &mut warned[kind.index()];
        if last.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
            *last = Some(Instant::now());
            tracing::warn!(
                kind = kind.name(),
                bytes = need,
                skipped = n,
                free = self.free().unwrap_or(0),
                reserve = self.reserve,
                "disk under its reserve: not written, so that alerts still are (no older optional file left to delete)"
            );
        }
    }

    /// Optional writes of `kind` left out so far.
    pub fn skipped(&self, kind: Optional) -> u64 {
        self.ledger.skipped[kind.index()].load(Relaxed)
    }

    /// Optional files of `kind` deleted early to keep the reserve.
    pub fn deleted(&self, kind: Optional) -> u64 {
        self.ledger.deleted[kind.index()].load(Relaxed)
    }

    /// Deletes the oldest optional files, of every registered folder, until `bytes` are
    /// freed or none is left; returns the bytes freed.
    pub fn delete_oldest(&self, bytes: u64) -> u64 {
        let folders = self.ledger.folders.locked().clone();
        let mut files: Vec<(SystemTime, u64, PathBuf, Optional)> = Vec::new();
        for (kind, dir, ext) in folders {
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            for entry in entries.flatten() {
                let path = entry.path();
                let Ok(meta) = entry.metadata() else { continue };
                if meta.is_file() && path.extension().is_some_and(|e| e == ext) {
                    files.push((meta.modified().unwrap_or(SystemTime::UNIX_EPOCH), meta.len(), path, kind));
                }
            }
        }
        files.sort_by(|a, b| (a.0, &a.2).cmp(&(b.0, &b.2)));
        let mut freed = 0;
        for (_, len, path, kind) in files {
            if freed >= bytes {
                break;
            }
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    freed += len;
                    self.ledger.deleted[kind.index()].fetch_add(1, Relaxed);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(path = %path.display(), "cannot delete an old file to make room: {e}"),
            }
        }
        freed
    }

    /// Size of the filesystem (`statvfs` `f_blocks`), `None` when it cannot be asked.
    pub fn total(&self) -> Option<u64> {
        statvfs(&self.dir).map(|st| {
            #[allow(clippy::unnecessary_cast)] // u32 on some targets
            let t = st.f_blocks as u64 * st.f_frsize as u64;
            t
        })
    }

    pub fn reserve(&self) -> u64 {
        self.reserve
    }

    /// Bytes an unprivileged writer can still use (`statvfs` `f_bavail`); `None` when the
    /// filesystem cannot be asked (then nothing is held back).
    pub fn free(&self) -> Option<u64> {
        free_bytes(&self.dir)
    }

    pub fn state(&self) -> DiskState {
        self.free().map_or(DiskState::Ok, |f| self.state_of(f))
    }

    pub fn state_of(&self, free: u64) -> DiskState {
        if free >= self.reserve {
            DiskState::Ok
        } else if free >= self.reserve / 8 {
            DiskState::Low
        } else {
            DiskState::Full
        }
    }

    /// How many bytes must be freed so that `need` more can be written and the reserve
    /// still be free (0: there is room).
    pub fn shortfall(&self, need: u64) -> u64 {
        self.free().map_or(0, |f| (self.reserve + need).saturating_sub(f))
    }
}

fn free_bytes(dir: &Path) -> Option<u64> {
    let st = statvfs(dir)?;
    #[allow(clippy::unnecessary_cast)] // u32 on some targets
    Some(st.f_bavail as u64 * st.f_frsize as u64)
}

fn statvfs(dir: &Path) -> Option<libc::statvfs> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is a valid NUL-terminated string and `st` is written by statvfs
    // before it is read (only when it returns 0).
    let rc = unsafe { libc::statvfs(path.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it filled `st`.
    Some(unsafe { st.assume_init() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_and_shortfall() {
        let g = DiskGuard::new(&std::env::temp_dir(), 800);
        assert_eq!(g.state_of(800), DiskState::Ok);
        assert_eq!(g.state_of(799), DiskState::Low);
        assert_eq!(g.state_of(100), DiskState::Low);
        assert_eq!(g.state_of(99), DiskState::Full);
        assert!(g.free().is_some_and(|f| f > 0), "statvfs works on the temp dir");
        assert_eq!(DiskGuard::new(&std::env::temp_dir(), 0).shortfall(1), 0);
        assert!(DiskGuard::new(Path::new("/nonexistent/x"), 10).free().is_none());
    }

    #[test]
    fn optional_writes_delete_the_oldest_files_of_every_folder_then_skip() {
        let dir = std::env::temp_dir().join(format!("gridsight-ledger-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (snaps, clips) = (dir.join("snapshots"), dir.join("clips"));
        std::fs::create_dir_all(&snaps).unwrap();
        std::fs::create_dir_all(&clips).unwrap();
        let now = SystemTime::now();
        let put = |p: PathBuf, age_s: u64| {
            std::fs::write(&p, vec![0u8; 1000]).unwrap();
            std::fs::File::options()
                .write(true)
                .open(&p)
                .unwrap()
                .set_modified(now - Duration::from_secs(age_s))
                .unwrap();
        };
        put(clips.join("old.mp4"), 300);
        put(snaps.join("mid.jpg"), 200);
        put(clips.join("new.mp4"), 100);
        put(clips.join("notes.txt"), 1000);
        let g = DiskGuard::new(&dir, 0);
        g.keep_files(Optional::Snapshot, &snaps, "jpg");
        g.keep_files(Optional::Clip, &clips, "mp4");
        let clone = g.clone();
        assert_eq!(g.delete_oldest(500), 1000, "the oldest file of any folder goes first");
        assert!(!clips.join("old.mp4").exists() && snaps.join("mid.jpg").exists());
        assert_eq!(clone.deleted(Optional::Clip), 1, "clones share the ledger");
        assert_eq!(g.delete_oldest(1), 1000);
        assert!(!snaps.join("mid.jpg").exists() && clips.join("new.mp4").exists());
        assert_eq!(g.deleted(Optional::Snapshot), 1);
        assert!(clips.join("notes.txt").exists(), "only the registered extension");
        // Nothing optional left but one file; a write far over the reserve is skipped.
        assert!(!g.admit(Optional::Thumbnail, 1 << 40));
        assert_eq!((g.skipped(Optional::Thumbnail), g.skipped(Optional::Clip)), (1, 0));
        assert!(!clips.join("new.mp4").exists(), "the last optional file went first");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
