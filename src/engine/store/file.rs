//! The local store: `<dir>/<migration>/journal.jsonl`, appended and fsynced,
//! and `<dir>/<migration>/lock`, an advisory `flock` holding a small JSON
//! note of who holds it. The kernel releases the lock when its process dies,
//! so a crashed run can never wedge later ones; the note it left behind is
//! reported and replaced.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::who::{hostname, is_alive};
use super::{Holder, Leased, Line, Loaded, Store, StoreError, Unlocked};

/// A journal directory's store for one migration.
#[derive(Debug)]
pub struct FileStore {
    journal: PathBuf,
    lock: PathBuf,
    /// The journal, open for appending once loaded writable.
    writer: Mutex<Option<File>>,
    /// The lock file while this process holds it.
    held: Mutex<Option<File>>,
}

impl FileStore {
    pub fn new(dir: &Path, migration: &str) -> FileStore {
        FileStore {
            journal: dir.join(migration).join("journal.jsonl"),
            lock: dir.join(migration).join("lock"),
            writer: Mutex::new(None),
            held: Mutex::new(None),
        }
    }

    /// The journal file.
    pub fn journal_path(&self) -> &Path {
        &self.journal
    }

    /// The lock file.
    pub fn lock_path(&self) -> &Path {
        &self.lock
    }

    fn open_lock(&self, create: bool) -> std::io::Result<File> {
        if create {
            std::fs::create_dir_all(self.lock.parent().expect("lock path has a parent"))?;
        }
        OpenOptions::new().read(true).write(true).create(create).truncate(false).open(&self.lock)
    }

    /// Reads the journal; when `writable`, opens it for appending and moves
    /// a torn last line — a crash in the middle of a write — aside to
    /// `journal.jsonl.torn` (or completes a line whose newline alone is
    /// missing).
    fn read(&self, writable: bool) -> Result<Loaded, StoreError> {
        let path = &self.journal;
        let open_err = |source| StoreError::Open { path: path.clone(), source };
        let write_err = |source| StoreError::Write { path: path.clone(), source };
        if !writable && !path.exists() {
            return Ok(Loaded::default());
        }
        let mut file = if writable {
            std::fs::create_dir_all(path.parent().expect("journal path has a parent")).map_err(open_err)?;
            OpenOptions::new().read(true).append(true).create(true).open(path).map_err(open_err)?
        } else {
            OpenOptions::new().read(true).open(path).map_err(open_err)?
        };
        let bytes = std::fs::read(path).map_err(open_err)?;
        let mut loaded = Loaded::default();
        let mut text = String::from_utf8_lossy(&bytes).into_owned();
        let complete_len = text.rfind('\n').map_or(0, |i| i + 1);
        if complete_len < text.len() && !writable {
            text.truncate(complete_len);
        } else if complete_len < text.len() {
            let tail = text[complete_len..].to_owned();
            if serde_json::from_str::<serde_json::Value>(&tail).is_ok() {
                // The whole line reached the disk but its newline did not.
                file.write_all(b"\n").map_err(write_err)?;
                text.push('\n');
            } else {
                let aside = path.with_extension("jsonl.torn");
                let mut f = OpenOptions::new().create(true).append(true).open(&aside).map_err(open_err)?;
                f.write_all(tail.as_bytes())
                    .and_then(|_| f.write_all(b"\n"))
                    .and_then(|_| f.sync_all())
                    .map_err(open_err)?;
                file.set_len(complete_len as u64).map_err(write_err)?;
                file.sync_all().map_err(write_err)?;
                text.truncate(complete_len);
                loaded.torn_saved_to = Some(aside);
            }
        }
        let source = path.display().to_string();
        for (i, line) in text.lines().enumerate() {
            if !line.trim().is_empty() {
                loaded.lines.push(Line { source: source.clone(), number: i + 1, text: line.to_owned() });
            }
        }
        if writable {
            *self.writer.lock().expect("journal writer poisoned") = Some(file);
        }
        Ok(loaded)
    }
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

impl Store for FileStore {
    fn location(&self) -> String {
        self.journal.display().to_string()
    }

    fn lock_location(&self) -> String {
        self.lock.display().to_string()
    }

    fn load(&self, writable: bool) -> Result<Loaded, StoreError> {
        self.read(writable)
    }

    fn append(&self, _seq: u64, line: Vec<u8>) -> Result<(), StoreError> {
        let werr = |source| StoreError::Write { path: self.journal.clone(), source };
        let mut writer = self.writer.lock().expect("journal writer poisoned");
        let file = writer.as_mut().ok_or_else(|| werr(std::io::Error::other("the journal was opened read-only")))?;
        file.write_all(&line).map_err(werr)?;
        file.sync_data().map_err(werr)
    }

    fn compact(&self, _seq: u64, _body: Vec<u8>) -> Result<(), StoreError> {
        // One file: nothing to fold (load never asks).
        Ok(())
    }

    fn lease(&self, holder: Holder) -> Result<Leased, StoreError> {
        let io = |source| StoreError::Open { path: self.lock.clone(), source };
        let mut file = self.open_lock(true).map_err(io)?;
        if !try_flock(&file).map_err(io)? {
            return Ok(Leased::Held(read_note(&mut file)));
        }
        // We hold the lock: any note still in the file was left by a run that died.
        let stale = read_note(&mut file);
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        file.write_all(serde_json::to_string(&holder).expect("holder serializes").as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        *self.held.lock().expect("lock poisoned") = Some(file);
        Ok(stale.map_or(Leased::Fresh, Leased::TakenOver))
    }

    fn release(&self) {
        // A clean exit empties the note; the flock goes with the descriptor.
        if let Some(file) = self.held.lock().expect("lock poisoned").take() {
            let _ = file.set_len(0);
            let _ = file.sync_all();
        }
    }

    fn holder(&self) -> Result<Option<Holder>, StoreError> {
        let Ok(mut file) = self.open_lock(false) else { return Ok(None) };
        // Free when we can take it (dropping the file releases it at once).
        Ok(match try_flock(&file) {
            Ok(false) => read_note(&mut file),
            _ => None,
        })
    }

    fn held_help(&self, _holder: Option<&Holder>) -> String {
        "wait for it to finish (or pass --lock-timeout 10m to wait for it); if that process is gone, `paymig unlock` shows its holder and removes the lock".to_owned()
    }

    fn took_over(&self, stale: &Holder) -> String {
        let alive = stale.host == hostname() && is_alive(stale.pid);
        format!(
            "took over the lock left by {stale}{}; its journal entries are kept and this run resumes them",
            if alive { "" } else { ", which is no longer running" }
        )
    }

    fn unlock(&self, confirm: &mut dyn FnMut(&Holder, &str) -> bool) -> Result<Unlocked, StoreError> {
        let io = |source| StoreError::Open { path: self.lock.clone(), source };
        let mut file = match self.open_lock(false) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Unlocked::Free),
            Err(e) => return Err(io(e)),
        };
        // A process holding the file lock is alive (the kernel releases a
        // dead process's lock), so its note must stay.
        if !try_flock(&file).map_err(io)? {
            return Ok(Unlocked::Held(read_note(&mut file)));
        }
        let Some(holder) = read_note(&mut file) else { return Ok(Unlocked::Free) };
        if !confirm(&holder, "its process is gone") {
            return Ok(Unlocked::Kept(holder));
        }
        file.set_len(0).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(Unlocked::Removed(holder))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lease_names_the_holder_and_a_dead_note_is_stale() {
        let dir = tempfile::tempdir().unwrap();
        let first = FileStore::new(dir.path(), "payments");
        assert!(matches!(first.lease(Holder::me("apply")).unwrap(), Leased::Fresh));
        let second = FileStore::new(dir.path(), "payments");
        match second.lease(Holder::me("destroy")).unwrap() {
            Leased::Held(Some(h)) => assert_eq!((h.pid, h.command.as_str()), (std::process::id(), "apply")),
            other => panic!("expected Held, got {other:?}"),
        }
        assert_eq!(second.holder().unwrap().unwrap().command, "apply");
        first.release();
        drop(first);
        assert!(second.holder().unwrap().is_none());

        // A note without a live flock is what a killed run leaves behind.
        let note = Holder { pid: 999_999, started: "t".into(), ..Holder::me("apply") };
        std::fs::write(second.lock_path(), serde_json::to_string(&note).unwrap()).unwrap();
        match second.lease(Holder::me("apply")).unwrap() {
            Leased::TakenOver(h) => assert_eq!(h, note),
            other => panic!("expected TakenOver, got {other:?}"),
        }
        assert!(second.took_over(&note).contains("no longer running"));
    }

    #[test]
    fn a_read_only_load_changes_nothing_and_cannot_append() {
        let dir = tempfile::tempdir().unwrap();
        let s = FileStore::new(dir.path(), "payments");
        assert!(s.load(false).unwrap().lines.is_empty());
        assert!(!s.journal_path().exists(), "a read-only load creates nothing");
        assert!(matches!(s.append(1, b"{}\n".to_vec()), Err(StoreError::Write { .. })));
        s.load(true).unwrap();
        s.append(1, b"{\"seq\":1}\n".to_vec()).unwrap();
        std::fs::OpenOptions::new().append(true).open(s.journal_path()).unwrap().write_all(b"{\"se").unwrap();
        let again = FileStore::new(dir.path(), "payments");
        assert_eq!(again.load(false).unwrap().lines.len(), 1, "a torn tail is ignored read-only");
        let repaired = again.load(true).unwrap();
        assert_eq!(repaired.lines.len(), 1);
        assert!(repaired.torn_saved_to.is_some_and(|p| p.exists()));
    }
}
