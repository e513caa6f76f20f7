//! Upstream CLI's `<instance>/hot-restart.lock` (`pid:ms:hex`, created
//! exclusively, stale once its pid is gone), which paperclipd takes too.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use super::{alive, lock_path};
use crate::error::{Error, Result};
use crate::instance::Instance;
use crate::sys;

/// Upstream CLI's `hot-restart.lock`, held for a whole reload; removed
/// on drop if it still holds our token.
#[derive(Debug)]
pub struct RestartLock {
    path: PathBuf,
    token: String,
}

impl RestartLock {
    /// Takes the lock, waiting up to `wait` for another restart (ours or
    /// upstream's CLI) to finish; a lock whose owner is gone is removed.
    pub async fn acquire(instance: &Instance, wait: Duration) -> Result<Self> {
        let path = lock_path(instance);
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let ms = now.as_millis();
        let nonce = u64::from(now.subsec_nanos()) ^ (u64::from(sys::pid().unsigned_abs()) << 32);
        let token = format!("{}:{ms}:{nonce:x}", sys::pid());
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let created = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path);
            match created {
                Ok(mut f) => {
                    f.write_all(format!("{token}\n").as_bytes()).map_err(|e| {
                        let _ = fs::remove_file(&path);
                        Error::os(format!("cannot write {}: {e}", path.display()))
                    })?;
                    return Ok(RestartLock { path, token });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let existing = fs::read_to_string(&path).unwrap_or_default();
                    let owner = existing
                        .trim()
                        .split(':')
                        .next()
                        .and_then(|p| p.parse::<i32>().ok());
                    if let Some(pid) = owner.filter(|p| *p > 0 && !alive(*p)) {
                        // Only the token we read, never a newer one.
                        if fs::read_to_string(&path).unwrap_or_default() == existing {
                            let _ = fs::remove_file(&path);
                            crate::log::info(&format!(
                                "removed the stale hot-restart lock {} of pid {pid}, which is gone",
                                path.display()
                            ));
                        }
                        continue;
                    }
                    if tokio::time::Instant::now() >= deadline {
                        return Err(Error::busy(format!(
                            "another restart of this instance is in progress: {} is held by {} \
                             (paperclipai's `service restart` or another paperclipd reload). Wait \
                             for it to finish and retry; if no such process runs, remove the file",
                            path.display(),
                            owner.map_or_else(
                                || "an unknown process".to_string(),
                                crate::procfs::describe
                            )
                        )));
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(Error::os(format!("cannot create {}: {e}", path.display()))),
            }
        }
    }
}

impl Drop for RestartLock {
    fn drop(&mut self) {
        if fs::read_to_string(&self.path).is_ok_and(|t| t.trim() == self.token) {
            let _ = fs::remove_file(&self.path);
        }
    }
}
