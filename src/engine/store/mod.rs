//! Where the journal and the lock live: one [`Store`] seam with two
//! implementations — a local directory ([`file::FileStore`]: an fsynced
//! `journal.jsonl` and an `flock`ed note) and S3 ([`s3::Remote`]: one object
//! per entry written conditionally, and a renewed lease). The journal and
//! the lock depend only on this trait; `commands::store` is the one place
//! that picks an implementation from `[migration] journal`.

use std::path::PathBuf;

pub mod file;
#[cfg(test)]
pub mod memory;
pub mod s3;
pub mod who;

pub use who::Holder;

/// A storage problem, with the file or object it concerns.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the journal at {path}: {source}\nhelp: check that the directory exists and is writable, or set [migration] journal")]
    Open { path: PathBuf, source: std::io::Error },
    #[error(
        "cannot write the journal at {path}: {source}\nhelp: free disk space or fix permissions, then re-run to resume"
    )]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Remote(#[from] s3::RemoteError),
}

impl StoreError {
    /// Whether the problem is the user's to fix before anything runs (exit
    /// 2); a failed write mid-run is not.
    pub fn is_usage(&self) -> bool {
        !matches!(
            self,
            StoreError::Write { .. } | StoreError::Remote(s3::RemoteError::Write(_) | s3::RemoteError::Conflict(_))
        )
    }
}

/// One stored journal line and where it came from (for a corrupt-line error).
#[derive(Debug, Clone)]
pub struct Line {
    pub source: String,
    pub number: usize,
    pub text: String,
}

/// What loading the journal found.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Every complete line, oldest first.
    pub lines: Vec<Line>,
    /// Enough single entries have piled up that the journal should
    /// [`Store::compact`] them (S3).
    pub compact: bool,
    /// A torn last line (a crash mid-write) moved aside to this file.
    pub torn_saved_to: Option<PathBuf>,
}

/// What taking the lock found.
#[derive(Debug)]
pub enum Leased {
    /// Taken; nobody held it.
    Fresh,
    /// Taken over from a run that died or whose lease ran out.
    TakenOver(Holder),
    /// A live run holds it (`None`: its note cannot be read).
    Held(Option<Holder>),
}

/// What `unlock` found and did.
#[derive(Debug)]
pub enum Unlocked {
    /// Nothing to remove.
    Free,
    /// A live run holds it: never removed.
    Held(Option<Holder>),
    /// A dead run's note or lease, left in place (not confirmed).
    Kept(Holder),
    /// A dead run's note or lease, removed.
    Removed(Holder),
    /// The lease changed while asking (renewed or taken): its holder is alive.
    Changed(Holder),
}

/// The journal's and the lock's storage.
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Where the journal lives: a file path or an `s3://` URL.
    fn location(&self) -> String;
    /// Where the lock lives.
    fn lock_location(&self) -> String;
    /// Every stored line, oldest first. `writable`: the run will append, so
    /// a torn tail is repaired (file) and the store made ready to write;
    /// otherwise nothing is created or changed, and a store with no journal
    /// loads empty.
    fn load(&self, writable: bool) -> Result<Loaded, StoreError>;
    /// Appends entry `seq`, durable when this returns.
    fn append(&self, seq: u64, line: Vec<u8>) -> Result<(), StoreError>;
    /// Replaces every stored entry up to `seq` by `body` (all of them, one
    /// per line), when [`Loaded::compact`] asked for it.
    fn compact(&self, seq: u64, body: Vec<u8>) -> Result<(), StoreError>;
    /// Takes the lock for `holder`.
    fn lease(&self, holder: Holder) -> Result<Leased, StoreError>;
    /// Gives the lock back (only if still ours).
    fn release(&self);
    /// Who holds the lock now, if anyone (`status`).
    fn holder(&self) -> Result<Option<Holder>, StoreError>;
    /// What to do about a lock a live run holds.
    fn held_help(&self, holder: Option<&Holder>) -> String;
    /// The warning for a lock taken over from a dead run.
    fn took_over(&self, stale: &Holder) -> String;
    /// Removes the lock a dead run left (`paymig unlock`), after `confirm`
    /// said yes to its holder and state; never one a live run holds.
    fn unlock(&self, confirm: &mut dyn FnMut(&Holder, &str) -> bool) -> Result<Unlocked, StoreError>;
}
