//! One mutating run at a time: the lock a [`Store`] keeps (a local `flock`
//! or an S3 lease), held for as long as the [`Lock`] lives.

use std::sync::Arc;

use crate::engine::store::{Holder, Leased, Store, StoreError};

/// A held lock; released when dropped.
#[derive(Debug)]
pub struct Lock {
    store: Arc<dyn Store>,
    /// Where the lock lives (a file path or an s3:// URL).
    pub location: String,
    /// A note left by a run that died holding the lock (or whose lease ran
    /// out), if any.
    pub stale: Option<Holder>,
}

/// A live run holds the lock.
#[derive(Debug)]
pub struct Held {
    pub location: String,
    /// Who, as far as its note says (`None`: unreadable).
    pub holder: Option<Holder>,
    /// What to do about it.
    pub help: String,
}

impl Lock {
    /// Takes `store`'s lock for `command`, or says who holds it.
    pub fn take(store: Arc<dyn Store>, command: &str) -> Result<Result<Lock, Held>, StoreError> {
        let location = store.lock_location();
        Ok(match store.lease(Holder::me(command))? {
            Leased::Fresh => Ok(Lock { store, location, stale: None }),
            Leased::TakenOver(h) => Ok(Lock { store, location, stale: Some(h) }),
            Leased::Held(holder) => Err(Held { help: store.held_help(holder.as_ref()), location, holder }),
        })
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        self.store.release();
    }
}
