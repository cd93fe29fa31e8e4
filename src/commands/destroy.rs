//! `paymig destroy`: undoes every journaled run, newest first, then sweeps
//! whatever else is tagged for the migration where paymig creates it.

use super::undo::{begin, finish, in_full, Preview};
use crate::config::Config;
use crate::engine::undo::{destroy_target, replay, sweep};
use crate::error::Result;

pub async fn run(cfg: Config, args: crate::cli::DestroyArgs) -> Result<()> {
    let crate::cli::DestroyArgs { confirm, dry_run, parallelism } = args;
    let parallelism = usize::from(parallelism);
    let yes = confirm.yes;
    let dag = super::build_dag()?;
    if dry_run {
        let ctx = super::open_reading(cfg).await?;
        let todo = destroy_target(ctx.journal.as_deref());
        let preview = Preview::gather(&ctx, dag.steps(), todo, true).await;
        preview.print(&ctx, "paymig destroy --dry-run: would undo every journaled change", "destroy", true);
        println!("nothing was changed");
        super::report_calls(&ctx.aws);
        return Ok(());
    }
    super::require_confirmable(yes, "paymig destroy")?;
    let super::Writing { mut ctx, journal, lock: _lock } = super::open_writing(cfg, "destroy", &confirm).await?;
    ctx.parallelism = parallelism;
    let todo = destroy_target(Some(&journal));
    let preview = Preview::gather(&ctx, dag.steps(), todo, true).await;
    preview.print(&ctx, "paymig destroy: undoing every journaled change", "destroy", in_full(yes));
    preview.log_at_risk();
    let (name, account, region) = (&ctx.cfg.migration.name, &ctx.account, &ctx.cfg.migration.region);
    let question = format!("destroy everything migration {name:?} created in account {account} ({region})");
    super::confirm_with(yes, &question, preview.confirm_word(&ctx))?;
    let (mut tally, started) =
        begin(&journal, "destroy", replay(&ctx, &journal, &dag, &preview.todo, "destroy")).await?;
    let swept = sweep(&ctx, dag.steps(), &mut tally, false).await;
    finish(&ctx, &journal, started, "destroy", tally, swept)
}
