//! Free space on the filesystem that holds the outbox, and the reserve kept for alerts.
//!
//! Alerts are small (≈ 0.5 KiB) and must never be lost; snapshots are large (≈ 30–60 KiB)
//! and may be. So the node keeps `storage.disk_reserve` bytes free for alert rows: a
//! snapshot is stored only when it leaves the reserve intact (after deleting the oldest
//! snapshot files and unsent snapshots to make room), and the outbox's own size limit is
//! bounded by the free space less the reserve.

use std::path::{Path, PathBuf};

/// How much room is left on `data_dir`'s filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskState {
    /// At least the reserve is free.
    Ok,
    /// Under the reserve: snapshots are no longer stored, alerts still are.
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
}

impl DiskGuard {
    pub fn new(dir: &Path, reserve: u64) -> Self {
        Self { dir: dir.to_path_buf(), reserve }
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
    let st = unsafe { st.assume_init() };
    #[allow(clippy::unnecessary_cast)] // u32 on some targets
    Some(st.f_bavail as u64 * st.f_frsize as u64)
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
}
