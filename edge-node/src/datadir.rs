//! datadir: one process per `data_dir`.
//!
//! The outbox, the dispatcher's database and the MQTT client id belong to one node: two
//! processes on one `data_dir` would take over each other's broker session and interleave
//! their writes. At start, `run` and `dispatch` take an exclusive advisory lock (`flock`) on
//! `<data_dir>/edge-node.lock` and write their pid into it; a second process finds the lock
//! held and stops with the holder's pid. The kernel releases the lock when the process
//! ends, however it ends (a stale file after kill -9 or a power cut is not a held lock).

use std::fs::{File, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "data_dir {} is in use by another edge-node (pid {}); stop it, or give this one its own storage.data_dir",
        dir.display(),
        pid.map_or_else(|| "unknown".to_string(), |p| p.to_string())
    )]
    InUse { dir: PathBuf, pid: Option<u32> },
    #[error("cannot lock data_dir {}: {source}", dir.display())]
    Io { dir: PathBuf, source: std::io::Error },
}

/// Held for the life of the process; dropping it releases the lock.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
    path: PathBuf,
}

impl DataDirLock {
    /// Creates `dir` if needed and locks it, or says who holds it.
    pub fn acquire(dir: &Path) -> Result<Self, LockError> {
        let io = |source| LockError::Io { dir: dir.to_path_buf(), source };
        std::fs::create_dir_all(dir).map_err(io)?;
        let path = dir.join("edge-node.lock");
        let mut file = File::options().read(true).write(true).create(true).truncate(false).open(&path).map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(LockError::InUse { dir: dir.to_path_buf(), pid: text.trim().parse().ok() });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        file.sync_data().map_err(io)?;
        Ok(Self { _file: file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid() {
        let dir = std::env::temp_dir().join(format!("gridsight-lock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let first = DataDirLock::acquire(&dir).unwrap();
        assert_eq!(std::fs::read_to_string(first.path()).unwrap().trim(), std::process::id().to_string());
        match DataDirLock::acquire(&dir) {
            Err(LockError::InUse { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("second lock: {other:?}"),
        }
        drop(first);
        // Released with its holder; a leftover file does not block.
        DataDirLock::acquire(&dir).unwrap();
    }
}
