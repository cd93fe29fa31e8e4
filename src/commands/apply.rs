//! `paymig apply`: preflight, confirmation, then the whole DAG under the lock,
//! journaled; a re-run resumes (every step adopts what exists).

use crate::config::Config;
use crate::engine::dag::Status;
use crate::engine::{Action, Mode, Outcome};
use crate::error::{Error, Result};

pub async fn run(cfg: Config, yes: bool, parallelism: usize) -> Result<()> {
    super::require_confirmable(yes, "paymig apply")?;
    let (_lock, journal) = super::lock_and_open(&cfg, "apply")?;
    let dag = super::build_dag()?;
    let mut ctx = super::connect(cfg, Mode::Apply, Some(journal.clone())).await?;
    ctx.parallelism = parallelism;
    super::preflight(&ctx, &dag).await?;
    if !yes {
        // As `terraform apply` does: show exactly what will happen, then ask.
        let cfg = ctx.cfg.clone();
        let planning = super::connect(cfg, Mode::Plan, Some(journal.clone())).await?;
        let plan = crate::engine::plan::compute(&planning, &dag).await;
        super::plan::print_text(&planning, &dag, &plan);
        if plan.pending() == 0 {
            println!("\nNothing to change.");
            return Ok(());
        }
    }
    super::confirm(
        yes,
        &format!(
            "apply these changes of migration {:?} to account {} ({})",
            ctx.cfg.migration.name, ctx.account, ctx.cfg.migration.region
        ),
    )?;

    crate::signals::listen();
    let run_id = journal.begin_run("apply")?;
    tracing::debug!(run = %run_id, parallelism, "apply started");
    crate::progress::start("apply", &dag.steps().iter().map(|s| s.id()).collect::<Vec<_>>());
    let reports = dag
        .execute(parallelism, |s| {
            let ctx = &ctx;
            Box::pin(async move {
                tracing::debug!(step = s.id(), "step running");
                let outcome = s.run(ctx).await?;
                if outcome == Outcome::Done {
                    ctx.settle(s.id())?;
                }
                Ok(outcome)
            })
        })
        .await;
    let failed: Vec<String> = reports
        .iter()
        .filter_map(|r| match &r.status {
            Status::Failed(e) => Some(format!("[{}] failed: {e}", r.step)),
            Status::Blocked(e) => Some(format!("[{}] blocked: {e}", r.step)),
            _ => None,
        })
        .collect();
    let stats = ctx.aws.stats.summary();
    let interrupted = crate::signals::received();
    let status = match (interrupted, failed.is_empty()) {
        (Some(_), _) => "interrupted",
        (None, true) => "ok",
        (None, false) => "failed",
    };
    journal.end_run(status, stats.mutating)?;

    let changes = ctx.changes();
    let count = |a: Action| changes.iter().filter(|c| c.action == a).count();
    crate::progress::finish(
        status,
        &serde_json::json!({
            "run": run_id, "created": count(Action::Create), "updated": count(Action::Update),
            "failed_steps": failed.len(), "read_calls": stats.read, "mutating_calls": stats.mutating,
            "retries": stats.retries,
        }),
    );
    println!("paymig apply: run {run_id}");
    let mut reports = reports;
    reports.sort_by_key(|r| dag.steps().iter().position(|s| s.id() == r.step));
    for r in &reports {
        let (created, updated) =
            changes.iter().filter(|c| c.step == r.step).fold((0, 0), |(c, u), ch| match ch.action {
                Action::Create => (c + 1, u),
                Action::Update => (c, u + 1),
                Action::Noop => (c, u),
            });
        let state = match &r.status {
            Status::Done => format!("done: {created} created, {updated} updated"),
            Status::Skipped(why) => format!("skipped: {why}"),
            Status::Failed(e) => format!("FAILED: {e}"),
            Status::Blocked(e) => format!("blocked: {e}"),
        };
        println!("  [{}] {state} ({:.1}s)", r.step, r.elapsed.as_secs_f64());
    }
    for (step, n) in ctx.notices() {
        println!("  ! [{step}] {n}");
    }
    super::report_calls(&ctx.aws);
    if let Some(signal) = interrupted {
        Err(Error::Interrupted { signal })
    } else if failed.is_empty() {
        Ok(())
    } else {
        Err(Error::StepsFailed { lines: failed })
    }
}
