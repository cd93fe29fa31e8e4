//! `paymig unlock`: removes a lock note or lease a killed run left behind
//! (terraform's force-unlock), after showing its holder and asking. Refuses
//! while the holder is provably alive: a local lock whose file lock a process
//! still holds, or a lease whose holder is a live process of this host.

use crate::config::Config;
use crate::engine::store::Unlocked;
use crate::error::{Error, Result};

pub fn run(cfg: Config, yes: bool) -> Result<()> {
    let store = super::store(&cfg)?;
    let location = store.lock_location();
    let mut asked: Option<Result<()>> = None;
    let outcome = store
        .unlock(&mut |holder, state| {
            let answer = super::confirm(yes, &format!("remove the lock left by {holder} ({state})"));
            let ok = answer.is_ok();
            asked = Some(answer);
            ok
        })
        .map_err(|e| Error::Usage(format!("cannot read the lock {location}: {e}")))?;
    match outcome {
        Unlocked::Free => {
            println!("paymig unlock: the lock of migration {:?} is free ({location})", cfg.migration.name)
        }
        Unlocked::Held(h) => {
            let who = h.map_or_else(|| "a running process".to_owned(), |h| h.to_string());
            return Err(held(&location, &who));
        }
        Unlocked::Kept(_) => return asked.unwrap_or(Ok(())),
        Unlocked::Removed(h) => println!("paymig unlock: removed the lock left by {h}"),
        Unlocked::Changed(h) => {
            return Err(Error::Locked {
                location,
                holder: h.to_string(),
                help: "the lease changed while asking (its holder renewed it, or another run took it): it is alive; nothing was removed".into(),
            })
        }
    }
    Ok(())
}

fn held(location: &str, holder: &str) -> Error {
    Error::Locked {
        location: location.to_owned(),
        holder: holder.to_owned(),
        help: "that run is alive: wait for it to finish, or stop it (it resumes on the next run); unlock never removes a live run's lock".into(),
    }
}
