//! `paymig params`: the SSM parameter step alone. `--dry-run` walks the same
//! code in plan mode and prints what would be copied, rewritten, skipped
//! (with the reason) and in conflict — parameter names only, never values.

use std::sync::Arc;

use crate::config::Config;
use crate::engine::dag::Dag;
use crate::engine::{Declared, DynStep, Outcome};
use crate::error::{Error, Result};
use crate::steps::params::{Params, Report};

pub async fn run(cfg: Config, args: crate::cli::ParamsArgs) -> Result<()> {
    let crate::cli::ParamsArgs { dry_run, overwrite, confirm } = args;
    let yes = confirm.yes;
    let step = Arc::new(Params::new(overwrite));
    let dag = Dag::new(vec![step.clone() as Arc<dyn DynStep>]).map_err(|e| Error::Usage(e.to_string()))?;
    if dry_run {
        let ctx = super::open_reading(cfg).await?;
        let outcome = step.run(&ctx).await.map_err(|e| Error::StepsFailed { lines: vec![e.to_string()] })?;
        print_report("paymig params --dry-run", &step.report(), outcome);
        super::report_calls(&ctx.aws);
        return Ok(());
    }
    super::require_confirmable(yes, "paymig params")?;
    let super::Writing { ctx, journal, lock: _lock } = super::open_writing(cfg, "params", &confirm).await?;
    super::preflight(&ctx, &dag).await?;
    super::confirm(
        yes,
        &format!(
            "copy parameters {} -> {} in account {}",
            ctx.cfg.source.parameter_path, ctx.cfg.target.parameter_path, ctx.account
        ),
    )?;
    crate::signals::listen();
    journal.begin_run("params")?;
    let result = step.run(&ctx).await;
    // An interrupted step has not converged: its open intents are left for
    // the next run to settle, never closed here.
    let interrupted = crate::signals::received();
    if interrupted.is_none() && result.as_ref().is_ok_and(|o| *o == Outcome::Done) {
        ctx.settle(step.id()).map_err(|e| Error::StepsFailed { lines: vec![e.to_string()] })?;
    }
    let status = match (interrupted, result.is_ok()) {
        (Some(_), _) => "interrupted",
        (None, true) => "ok",
        (None, false) => "failed",
    };
    journal.end_run(status, ctx.aws.stats.summary().mutating)?;
    print_report("paymig params", &step.report(), result.as_ref().cloned().unwrap_or(Outcome::Done));
    if let Err(e) = &result {
        println!("paymig params: {e}");
    }
    super::report_calls(&ctx.aws);
    if let Some(signal) = interrupted {
        return Err(Error::Interrupted { signal });
    }
    result.map(|_| ()).map_err(|e| Error::StepsFailed { lines: vec![e.to_string()] })
}

fn print_report(title: &str, r: &Report, outcome: Outcome) {
    println!("{title}");
    if let Outcome::Skipped(why) = outcome {
        println!("  skipped: {why}");
    }
    let list = |label: &str, names: Vec<String>| {
        println!("  {label}: {}", names.len());
        for n in names {
            println!("    {n}");
        }
    };
    list("copied", r.copied.clone());
    list("rewritten (dev names replaced by prod names)", r.rewritten.clone());
    list("overwritten", r.overwritten.clone());
    list("unchanged", r.unchanged.clone());
    list("skipped", r.skipped.iter().map(|(n, why)| format!("{n} ({why})")).collect());
    list("conflicts (prod differs; --overwrite replaces, journaling the old value)", r.conflicts.clone());
    list(
        "flagged (copied unchanged; names a dev-like resource)",
        r.flagged.iter().map(|(n, w)| format!("{n} ({w})")).collect(),
    );
    list("rejected", r.rejected.iter().map(|(n, why)| format!("{n} ({why})")).collect());
}
