//! `paymig switch --to blue|green [--canary P --interval S]`: the blue-green
//! traffic shift on the ALB listener ([`alb::shift`]): refused unless the
//! target colour is healthy and nothing is alarming; reverted on ALARM
//! (exit 1, naming the alarm); stopped where it is by SIGINT/SIGTERM (exit
//! 130/143, saying how to go back or on). `rollback` restores the weights.

use std::time::Duration;

use crate::cli::Color;
use crate::config::Config;
use crate::engine::StepError;
use crate::error::{Error, Result};
use crate::steps::alb::shift::{self, Ended, Shift};

pub async fn run(cfg: Config, args: crate::cli::SwitchArgs) -> Result<()> {
    let crate::cli::SwitchArgs { to, canary, interval, confirm } = args;
    let yes = confirm.yes;
    let to = match to {
        Color::Blue => "blue",
        Color::Green => "green",
    };
    if canary.is_some_and(|c| c == 0 || c >= 100) {
        return Err(Error::Usage("--canary is a percentage between 1 and 99\nhelp: for example `paymig switch --to green --canary 10 --interval 300`".into()));
    }
    super::require_confirmable(yes, "paymig switch")?;
    let super::Writing { ctx, journal, lock: _lock } = super::open_writing(cfg, "switch", &confirm).await?;
    let failed = |e: StepError| Error::StepsFailed { lines: vec![e.to_string()] };
    let front = match shift::preflight(&ctx, to).await.map_err(failed)? {
        Ok(front) => front,
        Err(problems) => {
            super::report_calls(&ctx.aws);
            return Err(Error::Preflight(problems));
        }
    };
    super::confirm(yes, &format!("shift traffic to {to} in account {}", ctx.account))?;
    crate::signals::listen();
    journal.begin_run("switch")?;
    let watch = Duration::from_secs(interval.unwrap_or(0));
    let (status, outcome) = match shift::run(&ctx, &front, Shift { to, canary, watch }).await {
        Ok(Ended::Shifted) => ("ok", Ok(())),
        Ok(Ended::Interrupted { signal }) => ("interrupted", Err(Error::Interrupted { signal })),
        Ok(Ended::Reverted(alarms)) => (
            "failed",
            Err(Error::StepsFailed { lines: vec![format!("switch to {to} reverted: {} in ALARM", alarms.join(", "))] }),
        ),
        Err(e) => ("failed", Err(failed(e))),
    };
    journal.end_run(status, ctx.aws.stats.summary().mutating)?;
    super::report_calls(&ctx.aws);
    outcome
}
