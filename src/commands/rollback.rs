//! `paymig rollback`: undoes the newest run that changed something (or the
//! one named), its records replayed newest first.

use super::undo::{begin, finish, print_list, show_dry_run, LIST_BEFORE_PROMPT};
use crate::config::Config;
use crate::engine::undo::{replay, rollback_target};
use crate::engine::Mode;
use crate::error::{Error, Result};

pub async fn run(cfg: Config, confirm: crate::cli::Confirm, dry_run: bool, named: Option<String>) -> Result<()> {
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
        let title = format!("would undo run {} ({}, started {})", target.id, target.command, target.started);
        return show_dry_run(&ctx, "rollback", &title, &todo, "");
    }
    super::require_confirmable(yes, "paymig rollback")?;
    let (_lock, journal) = super::lock_and_open(&cfg, "rollback", confirm.lock_timeout)?;
    let Some((target, todo)) = rollback_target(&journal, &dag, named.as_deref()).map_err(Error::Usage)? else {
        println!("paymig rollback: nothing to roll back");
        return Ok(());
    };
    let ctx = super::connect(cfg, Mode::Apply, Some(journal.clone())).await?;
    let title = format!("paymig rollback: undoing run {} ({}, started {})", target.id, target.command, target.started);
    print_list(&ctx, &title, &todo, (!yes).then_some(LIST_BEFORE_PROMPT));
    super::confirm(yes, &format!("roll back run {} ({} changes) in account {}", target.id, todo.len(), ctx.account))?;
    let (tally, started) = begin(&journal, "rollback", replay(&ctx, &journal, &dag, &todo, "rollback")).await?;
    finish(&ctx, &journal, started, "rollback", tally, Vec::new())
}
