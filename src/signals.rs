//! SIGINT and SIGTERM (CodeBuild stops a build with SIGTERM): the first one
//! stops scheduling — no new step, no new resource, no new journal intent —
//! while the calls already in flight finish and are journaled; the command
//! then releases its lock and exits 130/143 with "re-run to resume". A second
//! signal ends the process at once (the crash-safe journal covers that too).

use std::sync::atomic::{AtomicU8, Ordering};

/// 0: none yet; otherwise the signal number received first.
static RECEIVED: AtomicU8 = AtomicU8::new(0);

const SIGINT: u8 = 2;
const SIGTERM: u8 = 15;

/// Starts listening; call once from a command that changes prod.
pub fn listen() {
    use tokio::signal::unix::{signal, SignalKind};
    for (kind, number) in [(SignalKind::interrupt(), SIGINT), (SignalKind::terminate(), SIGTERM)] {
        let Ok(mut stream) = signal(kind) else { continue };
        tokio::spawn(async move {
            while stream.recv().await.is_some() {
                // A second one (of either kind) ends the process at once:
                // the journal is fsynced entry by entry, and a re-run
                // resumes a killed run.
                if stopping() {
                    crate::progress::abandon();
                    eprintln!(
                        "paymig: stopped at once by a second {}: calls in flight were abandoned; every change made is in the journal — re-run the same command to resume",
                        name(number)
                    );
                    std::process::exit(128 + i32::from(number));
                }
                note(number);
            }
        });
    }
}

fn note(number: u8) {
    if RECEIVED.compare_exchange(0, number, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
        let name = name(number);
        tracing::warn!(
            signal = name,
            "{name} received: finishing the calls in flight, then stopping (send it again to stop at once; a re-run resumes either way)"
        );
    }
}

fn name(number: u8) -> &'static str {
    if number == SIGINT {
        "SIGINT"
    } else {
        "SIGTERM"
    }
}

/// The signal that asked the run to stop, if one did.
pub fn received() -> Option<&'static str> {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => None,
        n => Some(name(n)),
    }
}

/// Whether a signal asked the run to stop.
pub fn stopping() -> bool {
    received().is_some()
}
