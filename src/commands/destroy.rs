//! `paymig destroy`: undoes every journaled run, newest first, then sweeps
//! whatever else is tagged for the migration.

use super::undo::{begin, finish, print_list, show_dry_run, LIST_BEFORE_PROMPT};
use crate::config::Config;
use crate::engine::undo::{destroy_target, replay, sweep};
use crate::engine::Mode;
use crate::error::Result;

pub async fn run(cfg: Config, confirm: crate::cli::Confirm, dry_run: bool) -> Result<()> {
    let yes = confirm.yes;
    if dry_run {
        let journal = super::open_read_only(&cfg)?;
        let todo = destroy_target(journal.as_deref());
        let ctx = super::connect(cfg, Mode::Plan, journal).await?;
        let then = format!(
            "then would delete whatever else carries paymig:migration={} and paymig:suffix={}\n",
            ctx.cfg.migration.name,
            ctx.suffix()
        );
        return show_dry_run(&ctx, "destroy", "would undo every journaled change", &todo, &then);
    }
    super::require_confirmable(yes, "paymig destroy")?;
    let (_lock, journal) = super::lock_and_open(&cfg, "destroy", confirm.lock_timeout)?;
    let todo = destroy_target(Some(&journal));
    let dag = super::build_dag()?;
    let ctx = super::connect(cfg, Mode::Apply, Some(journal.clone())).await?;
    print_list(&ctx, "paymig destroy: undoing every journaled change", &todo, (!yes).then_some(LIST_BEFORE_PROMPT));
    let (name, account, region) = (&ctx.cfg.migration.name, &ctx.account, &ctx.cfg.migration.region);
    super::confirm(yes, &format!("destroy everything migration {name:?} created in account {account} ({region})"))?;
    let (mut tally, started) = begin(&journal, "destroy", replay(&ctx, &journal, &dag, &todo, "destroy")).await?;
    let swept = sweep(&ctx, dag.steps(), &mut tally).await;
    finish(&ctx, &journal, started, "destroy", tally, swept)
}
