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
    /// The CodeBuild build (`CODEBUILD_BUILD_ID`), when run in one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_id: Option<String>,
    /// Remote lease: when it was last renewed, and for how long it holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewed: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_seconds: Option<u64>,
}

impl Holder {
    /// This process, about to run `command`.
    pub fn me(command: &str) -> Self {
        Holder {
            pid: std::process::id(),
            host: hostname(),
            started: crate::engine::journal::now(),
            command: command.to_owned(),
            build_id: build_id(),
            renewed: None,
            lease_seconds: None,
        }
    }

    /// What a lock note that cannot be parsed stands for.
    pub fn unreadable() -> Self {
        Holder {
            pid: 0,
            host: "an unknown host".into(),
            started: "an unknown time".into(),
            command: "?".into(),
            build_id: None,
            renewed: None,
            lease_seconds: None,
        }
    }
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`paymig {}` (pid {} on {}", self.command, self.pid, self.host)?;
        if let Some(b) = &self.build_id {
            write!(f, ", build {b}")?;
        }
        write!(f, ", started {}", self.started)?;
        if let (Some(r), Some(s)) = (&self.renewed, self.lease_seconds) {
            write!(f, ", lease renewed {r} for {s}s")?;
        }
        f.write_str(")")
    }
}

/// The CodeBuild build id of this process, if any.
pub fn build_id() -> Option<String> {
    std::env::var("CODEBUILD_BUILD_ID").ok().filter(|b| !b.is_empty())
}

/// A held lock; released when dropped.
#[derive(Debug)]
pub struct Lock {
    kind: LockKind,
    /// Where the lock lives (a file path or an s3:// URL).
    pub location: String,
    /// A note left by a run that died holding the lock (or whose lease ran
    /// out), if any.
    pub stale: Option<Holder>,
}

#[derive(Debug)]
enum LockKind {
    File(File),
    Remote(std::sync::Arc<crate::engine::remote::Remote>),
}

impl Lock {
    /// A lease taken on a remote journal.
    pub fn remote(remote: std::sync::Arc<crate::engine::remote::Remote>, stale: Option<Holder>) -> Self {
        let location = format!("{}lock.json", remote.spec().location());
        Lock { kind: LockKind::Remote(remote), location, stale }
    }
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
    let me = Holder::me(command);
    file.set_len(0).map_err(io)?;
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    file.write_all(serde_json::to_string(&me).expect("holder serializes").as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    Ok(Lock { kind: LockKind::File(file), location: path.display().to_string(), stale })
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

/// What `unlock` found in a local lock.
#[derive(Debug)]
pub enum LocalLock {
    /// No note: nothing to remove.
    Free,
    /// A process holds the file lock now: it is alive (the kernel releases a
    /// dead process's lock), so its note must stay.
    Held(Option<Holder>),
    /// A note left by a run that died; removed.
    Removed(Holder),
    /// A note left by a run that died; kept (not confirmed).
    Kept(Holder),
}

/// Removes the note a dead run left in the local lock (`paymig unlock`);
/// never touches a lock a live process holds. `confirm` is asked with the
/// holder before anything is removed.
pub fn remove_stale(
    dir: &Path,
    migration: &str,
    confirm: impl FnOnce(&Holder) -> bool,
) -> Result<LocalLock, LockError> {
    let path = lock_path(dir, migration);
    let io = |source| LockError::Io { path: path.clone(), source };
    let mut file = match OpenOptions::new().read(true).write(true).open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(LocalLock::Free),
        Err(e) => return Err(io(e)),
    };
    if !try_flock(&file).map_err(io)? {
        return Ok(LocalLock::Held(read_note(&mut file)));
    }
    let Some(holder) = read_note(&mut file) else { return Ok(LocalLock::Free) };
    if !confirm(&holder) {
        return Ok(LocalLock::Kept(holder));
    }
    file.set_len(0).map_err(io)?;
    file.sync_all().map_err(io)?;
    Ok(LocalLock::Removed(holder))
}

impl Drop for Lock {
    fn drop(&mut self) {
        match &self.kind {
            // A clean exit empties the note; the flock goes with the descriptor.
            LockKind::File(file) => {
                let _ = file.set_len(0);
                let _ = file.sync_all();
            }
            LockKind::Remote(remote) => remote.release(),
        }
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
        let note = Holder { pid: 999_999, started: "t".into(), ..Holder::me("apply") };
        std::fs::write(lock_path(dir.path(), "payments"), serde_json::to_string(&note).unwrap()).unwrap();
        let again = acquire(dir.path(), "payments", "apply").unwrap();
        assert_eq!(again.stale, Some(note));
    }
}
