//! `paymig rollback` (the newest run that changed something) and `paymig
//! destroy` (every run, then a sweep of what is tagged for the migration):
//! journal records replayed newest first, each marked `undone` once reversed.
//! Both are idempotent: an interrupted one finishes on the next call. The
//! replay and the sweep are the engine's ([`crate::engine::undo`]); this
//! lists, asks and reports.

use crate::config::Config;
use crate::engine::journal::{Journal, Record};
use crate::engine::undo::{describe, replay, rollback_target, sweep, without_settings_of_deleted, Tally};
use crate::engine::{Ctx, Mode};
use crate::error::{Error, Result};

pub async fn rollback(cfg: Config, yes: bool, dry_run: bool, named: Option<String>) -> Result<()> {
    if dry_run {
        let Some(journal) = super::open_read_only(&cfg)? else {
            println!("paymig rollback --dry-run: nothing to roll back (no journal)");
            return Ok(());
        };
        let Some((target, todo)) = rollback_target(&journal, named.as_deref()).map_err(Error::Usage)? else {
            println!("paymig rollback --dry-run: nothing to roll back");
            return Ok(());
        };
        let ctx = super::connect(cfg, Mode::Plan, Some(journal)).await?;
        print_list(
            &ctx,
            &format!(
                "paymig rollback --dry-run: would undo run {} ({}, started {})",
                target.id, target.command, target.started
            ),
            &todo,
            None,
        );
        println!("nothing was changed");
        super::report_calls(&ctx.aws);
        return Ok(());
    }
    super::require_confirmable(yes, "paymig rollback")?;
    let (_lock, journal) = super::lock_and_open(&cfg, "rollback")?;
    let Some((target, todo)) = rollback_target(&journal, named.as_deref()).map_err(Error::Usage)? else {
        println!("paymig rollback: nothing to roll back");
        return Ok(());
    };
    let ctx = super::connect(cfg, Mode::Apply, Some(journal.clone())).await?;
    let title = format!("paymig rollback: undoing run {} ({}, started {})", target.id, target.command, target.started);
    print_list(&ctx, &title, &todo, (!yes).then_some(LIST_BEFORE_PROMPT));
    super::confirm(yes, &format!("roll back run {} ({} changes) in account {}", target.id, todo.len(), ctx.account))?;
    crate::signals::listen();
    let started = std::time::Instant::now();
    journal.begin_run("rollback")?;
    let tally = replay(&ctx, &journal, &todo, "rollback").await;
    finish(&ctx, &journal, started, "rollback", tally, Vec::new())
}

pub async fn destroy(cfg: Config, yes: bool, dry_run: bool) -> Result<()> {
    if dry_run {
        let journal = super::open_read_only(&cfg)?;
        let todo: Vec<Record> = match &journal {
            Some(j) => j.records().into_iter().filter(Record::is_live).rev().collect(),
            None => Vec::new(),
        };
        let ctx = super::connect(cfg, Mode::Plan, journal).await?;
        print_list(&ctx, "paymig destroy --dry-run: would undo every journaled change", &todo, None);
        println!(
            "then would delete whatever else carries paymig:migration={} and paymig:suffix={}\nnothing was changed",
            ctx.cfg.migration.name,
            ctx.suffix()
        );
        super::report_calls(&ctx.aws);
        return Ok(());
    }
    super::require_confirmable(yes, "paymig destroy")?;
    let (_lock, journal) = super::lock_and_open(&cfg, "destroy")?;
    let todo: Vec<Record> = journal.records().into_iter().filter(Record::is_live).rev().collect();
    let dag = super::build_dag()?;
    let ctx = super::connect(cfg, Mode::Apply, Some(journal.clone())).await?;
    print_list(&ctx, "paymig destroy: undoing every journaled change", &todo, (!yes).then_some(LIST_BEFORE_PROMPT));
    super::confirm(
        yes,
        &format!(
            "destroy everything migration {:?} created in account {} ({})",
            ctx.cfg.migration.name, ctx.account, ctx.cfg.migration.region
        ),
    )?;
    crate::signals::listen();
    let started = std::time::Instant::now();
    journal.begin_run("destroy")?;
    let mut tally = replay(&ctx, &journal, &todo, "destroy").await;
    let swept = sweep(&ctx, dag.steps(), &mut tally).await;
    finish(&ctx, &journal, started, "destroy", tally, swept)
}

/// How many lines of the list are shown before a confirmation prompt.
const LIST_BEFORE_PROMPT: usize = 60;

/// Prints what undoing `todo` does (at most `limit` lines), with the account
/// and region, before any prompt.
fn print_list(ctx: &Ctx, title: &str, todo: &[Record], limit: Option<usize>) {
    let (work, dropped) = without_settings_of_deleted(todo);
    println!(
        "{title}\naccount {}, region {} (replicas: {})",
        ctx.account, ctx.cfg.migration.region, ctx.cfg.migration.replica_region
    );
    let shown = limit.unwrap_or(usize::MAX);
    for r in work.iter().take(shown) {
        println!("  - [{}] {}", r.intent.step, describe(r));
    }
    if work.len() > shown {
        println!("  … and {} more (`--dry-run` lists them all)", work.len() - shown);
    }
    let dropped: usize = dropped.values().map(Vec::len).sum();
    println!(
        "{} change(s) to undo{}",
        work.len(),
        if dropped > 0 {
            format!("; {dropped} setting change(s) on resources that are deleted go with them")
        } else {
            String::new()
        }
    );
}

fn finish(
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
    let failures = tally.failures.clone();
    let stats = ctx.aws.stats.summary();
    let interrupted = crate::signals::received();
    let status = match (interrupted, failures.is_empty()) {
        (Some(_), _) => "interrupted",
        (None, true) => "ok",
        (None, false) => "failed",
    };
    journal.end_run(status, stats.mutating)?;
    crate::progress::finish(
        status,
        &serde_json::json!({"deleted": tally.deleted, "restored": tally.restored, "failures": failures.len(), "swept": swept.len(), "read_calls": stats.read, "mutating_calls": stats.mutating, "retries": stats.retries}),
    );
    println!(
        "paymig {command}: {status}: {tally}, {} swept, {} failed ({:.1}s)",
        swept.len(),
        failures.len(),
        started.elapsed().as_secs_f64()
    );
    super::report_calls(&ctx.aws);
    if let Some(signal) = interrupted {
        Err(Error::Interrupted { signal })
    } else if failures.is_empty() {
        Ok(())
    } else {
        Err(Error::StepsFailed { lines: failures })
    }
}
