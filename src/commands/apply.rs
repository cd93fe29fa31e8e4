//! `paymig apply`: preflight, confirmation, then the whole DAG under the lock,
//! journaled ([`crate::engine::apply`]); a re-run resumes (every step adopts
//! what exists).

use crate::config::Config;
use crate::engine::apply::{counts, Applied};
use crate::engine::dag::Status;
use crate::engine::{Action, Mode};
use crate::error::Result;

pub async fn run(cfg: Config, args: crate::cli::ApplyArgs) -> Result<()> {
    let crate::cli::ApplyArgs { confirm, parallelism } = args;
    let parallelism = usize::from(parallelism);
    let yes = confirm.yes;
    super::require_confirmable(yes, "paymig apply")?;
    let dag = super::build_dag()?;
    let super::Writing { mut ctx, journal, lock: _lock } = super::open_writing(cfg, "apply", &confirm).await?;
    ctx.parallelism = parallelism;
    super::announce_reads(&ctx);
    super::preflight(&ctx, &dag).await?;
    if !yes {
        // As `terraform apply` does: show exactly what will happen, then ask.
        let planning = super::connect(ctx.cfg.clone(), Mode::Plan, Some(journal.clone())).await?;
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
    let started = std::time::Instant::now();
    let Applied { run, reports, failed } = crate::engine::apply::run(&ctx, &journal, &dag).await?;
    let changes = ctx.changes();
    let count = |a: Action| changes.iter().filter(|c| c.action == a).count();
    // Dev identifiers copied unchanged, said again at the end.
    let named: Vec<(String, crate::steps::common::references::Reference)> =
        ctx.references().into_iter().filter(|(_, r)| !r.found.is_mapped() && !r.kept).collect();
    let fields = serde_json::json!({
        "run": run, "created": count(Action::Create), "updated": count(Action::Update), "failed_steps": failed.len(),
        "unmapped_references": named.iter().map(|(step, r)| serde_json::json!({"step": step, "reference": r})).collect::<Vec<_>>(),
    });
    let ended = super::end_run(&ctx, &journal, failed, fields)?;
    println!("paymig apply: run {run}");
    for r in &reports {
        let (created, updated) = counts(&ctx, r.step);
        let state = match &r.status {
            Status::Done => format!("done: {created} created, {updated} updated"),
            Status::Skipped(why) => format!("skipped: {why}"),
            Status::Failed(e) => format!("FAILED: {e}"),
            Status::Blocked(e) => format!("blocked: {e}"),
            Status::Interrupted(e) => e.clone(),
        };
        println!("  [{}] {state} ({:.1}s)", r.step, r.elapsed.as_secs_f64());
    }
    for (step, n) in ctx.notices() {
        println!("  ! [{step}] {n}");
    }
    for (step, r) in &named {
        println!("  [{step}] {}", super::plan::describe_reference(r));
    }
    // The closing total, as rollback and destroy end.
    println!(
        "paymig apply: {}: {} created, {} updated, {} failed ({})",
        ended.status,
        count(Action::Create),
        count(Action::Update),
        ended.failures(),
        super::elapsed(started.elapsed())
    );
    ended.exit(&ctx.aws)
}
