//! `paymig unlock`: removes a lock note or lease a killed run left behind
//! (terraform's force-unlock), after showing its holder and asking. Refuses
//! while the holder is provably alive: a local lock whose file lock a process
//! still holds, or a lease whose holder is a live process of this host.

use crate::config::{Config, JournalLocation};
use crate::engine::lock::{self, LocalLock};
use crate::engine::remote::{is_dead_here, is_expired};
use crate::error::{Error, Result};

pub fn run(cfg: Config, yes: bool) -> Result<()> {
    let location = super::journal_location(&cfg);
    match &cfg.journal {
        JournalLocation::Local(dir) => {
            let mut asked: Option<Result<()>> = None;
            let outcome = lock::remove_stale(dir, &cfg.migration.name, |holder| {
                let answer = super::confirm(yes, &format!("remove the lock left by {holder}"));
                let ok = answer.is_ok();
                asked = Some(answer);
                ok
            })
            .map_err(|e| match e {
                lock::LockError::Io { path, source } => {
                    Error::Usage(format!("cannot read the lock {}: {source}", path.display()))
                }
                lock::LockError::Held { path, holder } => held(&path.display().to_string(), &holder),
            })?;
            match outcome {
                LocalLock::Free => {
                    println!("paymig unlock: the lock of migration {:?} is free ({location})", cfg.migration.name)
                }
                LocalLock::Held(h) => {
                    let who = h.map_or_else(|| "a running process".to_owned(), |h| h.to_string());
                    return Err(held(&lock::lock_path(dir, &cfg.migration.name).display().to_string(), &who));
                }
                LocalLock::Kept(_) => return asked.unwrap_or(Ok(())),
                LocalLock::Removed(h) => println!("paymig unlock: removed the lock left by {h}"),
            }
            Ok(())
        }
        JournalLocation::S3 { bucket, prefix } => {
            let remote = super::remote(&cfg, bucket, prefix)?;
            let where_ = format!("{}lock.json", remote.spec().location());
            let Some((holder, etag)) = remote.inspect_lease().map_err(|e| Error::Journal(e.into()))? else {
                println!("paymig unlock: the lock of migration {:?} is free ({where_})", cfg.migration.name);
                return Ok(());
            };
            let alive_here = holder.host == lock::hostname()
                && holder.build_id == lock::build_id()
                && lock::is_alive(holder.pid)
                && !is_expired(&holder);
            if alive_here {
                return Err(held(&where_, &holder.to_string()));
            }
            let state = if is_expired(&holder) {
                "its lease has run out"
            } else if is_dead_here(&holder) {
                "its process is gone"
            } else {
                "its lease is still current: make sure that run has stopped"
            };
            super::confirm(yes, &format!("remove the lease held by {holder} ({state})"))?;
            if remote.break_lease(&etag).map_err(|e| Error::Journal(e.into()))? {
                println!("paymig unlock: removed the lease held by {holder}");
                Ok(())
            } else {
                Err(Error::Locked {
                    location: where_,
                    holder: holder.to_string(),
                    help: "the lease changed while asking (its holder renewed it, or another run took it): it is alive; nothing was removed".into(),
                })
            }
        }
    }
}

fn held(location: &str, holder: &str) -> Error {
    Error::Locked {
        location: location.to_owned(),
        holder: holder.to_owned(),
        help: "that run is alive: wait for it to finish, or stop it (it resumes on the next run); unlock never removes a live run's lock".into(),
    }
}
