//! What `rollback` and `destroy` share: journal records replayed newest
//! first, each marked `undone` once reversed, both idempotent (an
//! interrupted one finishes on the next call). The replay and the sweep are
//! the engine's ([`crate::engine::undo`]); this lists, asks and reports.

use crate::engine::journal::{Journal, Record};
use crate::engine::undo::{describe, without_settings_of_deleted, Tally};
use crate::engine::Ctx;
use crate::error::Result;

/// How many lines of the list are shown before a confirmation prompt.
pub const LIST_BEFORE_PROMPT: usize = 60;

/// Listens for signals and opens the journal run, then replays.
pub async fn begin(
    journal: &Journal,
    command: &str,
    replay: impl std::future::Future<Output = Tally>,
) -> Result<(Tally, std::time::Instant)> {
    crate::signals::listen();
    let started = std::time::Instant::now();
    journal.begin_run(command)?;
    Ok((replay.await, started))
}

/// A dry run's whole output: the list, `then`, and that nothing changed.
pub fn show_dry_run(ctx: &Ctx, command: &str, title: &str, todo: &[Record], then: &str) -> Result<()> {
    print_list(ctx, &format!("paymig {command} --dry-run: {title}"), todo, None);
    println!("{then}nothing was changed");
    super::report_calls(&ctx.aws);
    Ok(())
}

/// Prints what undoing `todo` does (at most `limit` lines), with the account
/// and region, before any prompt.
pub fn print_list(ctx: &Ctx, title: &str, todo: &[Record], limit: Option<usize>) {
    let (work, dropped) = without_settings_of_deleted(todo);
    let m = &ctx.cfg.migration;
    println!("{title}\naccount {}, region {} (replicas: {})", ctx.account, m.region, m.replica_region);
    let shown = limit.unwrap_or(usize::MAX);
    for r in work.iter().take(shown) {
        println!("  - [{}] {}", r.intent.step, describe(r));
    }
    if work.len() > shown {
        println!("  … and {} more (`--dry-run` lists them all)", work.len() - shown);
    }
    let dropped: usize = dropped.values().map(Vec::len).sum();
    let dropped = match dropped {
        0 => String::new(),
        n => format!("; {n} setting change(s) on resources that are deleted go with them"),
    };
    println!("{} change(s) to undo{dropped}", work.len());
}

pub fn finish(
    ctx: &Ctx,
    journal: &Journal,
    started: std::time::Instant,
    command: &str,
    tally: Tally,
    swept: Vec<String>,
) -> Result<()> {
    for s in &swept {
        crate::progress::println(format!("  - swept {s}"));
    }
    let fields = serde_json::json!({"deleted": tally.deleted, "restored": tally.restored, "failures": tally.failures.len(), "swept": swept.len()});
    let summary = tally.to_string();
    let ended = super::end_run(ctx, journal, tally.failures, fields)?;
    println!(
        "paymig {command}: {}: {summary}, {} swept, {} failed ({})",
        ended.status,
        swept.len(),
        ended.failures(),
        super::elapsed(started.elapsed())
    );
    ended.exit(&ctx.aws)
}
