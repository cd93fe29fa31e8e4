//! `paymig rollback`: undoes the newest run that changed something (or the
//! one named), its records replayed newest first.

use super::undo::{begin, finish, in_full, Preview};
use crate::config::Config;
use crate::engine::undo::{replay, rollback_target};
use crate::engine::Mode;
use crate::error::{Error, Result};

pub async fn run(cfg: Config, args: crate::cli::RollbackArgs) -> Result<()> {
    let crate::cli::RollbackArgs { confirm, dry_run, run: named, parallelism } = args;
    let parallelism = usize::from(parallelism);
    let yes = confirm.yes;
    let dag = super::build_dag()?;
    if dry_run {
        let Some(journal) = super::open_read_only(&cfg)? else {
            println!("paymig rollback --dry-run: nothing to roll back (no journal)");
            return Ok(());
        };
        let Some((target, todo)) = rollback_target(&journal, &dag, named.as_deref()).map_err(Error::Usage)? else {
            println!("paymig rollback --dry-run: nothing to roll back");
            return Ok(());
        };
        let ctx = super::connect(cfg, Mode::Plan, Some(journal)).await?;
        let title = format!(
            "paymig rollback --dry-run: would undo run {} ({}, started {})",
            target.id, target.command, target.started
        );
        let preview = Preview::gather(&ctx, dag.steps(), todo, false).await;
        preview.print(&ctx, &title, "rollback", true);
        println!("nothing was changed");
        super::report_calls(&ctx.aws);
        return Ok(());
    }
    super::require_confirmable(yes, "paymig rollback")?;
    let (_lock, journal) = super::lock_and_open(&cfg, "rollback", confirm.lock_timeout).await?;
    let Some((target, todo)) = rollback_target(&journal, &dag, named.as_deref()).map_err(Error::Usage)? else {
        println!("paymig rollback: nothing to roll back");
        return Ok(());
    };
    let mut ctx = super::connect(cfg, Mode::Apply, Some(journal.clone())).await?;
    ctx.parallelism = parallelism;
    let title = format!("paymig rollback: undoing run {} ({}, started {})", target.id, target.command, target.started);
    let preview = Preview::gather(&ctx, dag.steps(), todo, false).await;
    preview.print(&ctx, &title, "rollback", in_full(yes));
    preview.log_at_risk();
    let question = format!("roll back run {} ({} changes) in account {}", target.id, preview.todo.len(), ctx.account);
    super::confirm_with(yes, &question, preview.confirm_word(&ctx))?;
    let (tally, started) = begin(&journal, "rollback", replay(&ctx, &journal, &dag, &preview.todo, "rollback")).await?;
    finish(&ctx, &journal, started, "rollback", tally, Vec::new())
}
