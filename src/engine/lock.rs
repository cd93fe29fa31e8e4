//! One mutating run at a time: an advisory `flock` on `<journal>/<migration>/lock`,
//! holding a small JSON note of who holds it. The kernel releases the lock when
//! its process dies, so a crashed run can never wedge later ones; the note it
//! left behind is reported and replaced.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Who holds (or held) the lock.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    pub host: String,
    pub started: String,
    pub command: String,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`paymig {}` (pid {} on {}, started {})", self.command, self.pid, self.host, self.started)
    }
}

/// A held lock; released when dropped.
#[derive(Debug)]
pub struct Lock {
    file: File,
    pub path: PathBuf,
    /// A note left by a run that died holding the lock, if any.
    pub stale: Option<Holder>,
}

/// Why the lock could not be taken.
#[derive(Debug)]
pub enum LockError {
    Held { path: PathBuf, holder: String },
    Io { path: PathBuf, source: std::io::Error },
}

pub fn lock_path(dir: &Path, migration: &str) -> PathBuf {
    dir.join(migration).join("lock")
}

fn try_flock(file: &File) -> std::io::Result<bool> {
    // SAFETY: flock on a file descriptor we own.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(err)
    }
}

fn read_note(file: &mut File) -> Option<Holder> {
    let mut s = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut s).ok()?;
    serde_json::from_str(s.trim()).ok()
}

/// Takes the lock for `command`, or says who holds it.
pub fn acquire(dir: &Path, migration: &str, command: &str) -> Result<Lock, LockError> {
    let path = lock_path(dir, migration);
    let io = |source| LockError::Io { path: path.clone(), source };
    std::fs::create_dir_all(path.parent().expect("lock path has a parent")).map_err(io)?;
    let mut file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io)?;
    if !try_flock(&file).map_err(io)? {
        let holder = read_note(&mut file).map_or_else(|| "an unknown process".to_owned(), |h| h.to_string());
        return Err(LockError::Held { path, holder });
    }
    // We hold the lock: any note still in the file was left by a run that died.
    let stale = read_note(&mut file);
    let me = Holder {
        pid: std::process::id(),
        host: hostname(),
        started: time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        command: command.to_owned(),
    };
    file.set_len(0).map_err(io)?;
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    file.write_all(serde_json::to_string(&me).expect("holder serializes").as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    Ok(Lock { file, path, stale })
}

/// The current holder, if the lock is held (for `status`).
pub fn holder(dir: &Path, migration: &str) -> Option<Holder> {
    let path = lock_path(dir, migration);
    let mut file = OpenOptions::new().read(true).write(true).open(&path).ok()?;
    if try_flock(&file).ok()? {
        // Free: drop releases it at once.
        None
    } else {
        read_note(&mut file)
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        // A clean exit empties the note; the flock goes with the descriptor.
        let _ = self.file.set_len(0);
        let _ = self.file.sync_all();
    }
}

/// Whether `pid` is a live process on this host.
pub fn is_alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks for existence and permission.
    let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// This machine's host name.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown-host".into();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_acquire_names_the_holder_and_a_dead_note_is_stale() {
        let dir = tempfile::tempdir().unwrap();
        let first = acquire(dir.path(), "payments", "apply").unwrap();
        assert!(first.stale.is_none());
        match acquire(dir.path(), "payments", "destroy") {
            Err(LockError::Held { holder, .. }) => {
                assert!(holder.contains(&format!("pid {}", std::process::id())), "{holder}")
            }
            other => panic!("expected Held, got {other:?}"),
        }
        assert_eq!(holder(dir.path(), "payments").unwrap().command, "apply");
        drop(first);
        assert!(holder(dir.path(), "payments").is_none());

        // A note without a live flock is what a killed run leaves behind.
        let note = Holder { pid: 999_999, host: hostname(), started: "t".into(), command: "apply".into() };
        std::fs::write(lock_path(dir.path(), "payments"), serde_json::to_string(&note).unwrap()).unwrap();
        let again = acquire(dir.path(), "payments", "apply").unwrap();
        assert_eq!(again.stale, Some(note));
    }
}
