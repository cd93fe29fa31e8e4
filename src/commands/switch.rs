//! `paymig switch --to blue|green [--canary P --interval S]`: the blue-green
//! traffic shift on the ALB listener. Refuses unless the target colour's
//! targets are healthy and none of the migration's alarms is in ALARM; then
//! shifts the weights in steps (canary, then all), watching the alarms
//! between steps and reverting to the weights it started from on ALARM
//! (exit 1, naming the alarm). SIGINT/SIGTERM stop it where it is (exit
//! 130/143, saying how to go back or on). Every weight change is journaled
//! with the previous weights, so `rollback` restores them.

use std::time::{Duration, Instant};

use crate::cli::Color;
use crate::config::Config;
use crate::engine::{Mode, StepError};
use crate::error::{Error, Result};
use crate::steps::{alb, monitoring};

pub async fn run(cfg: Config, to: Color, canary: Option<u8>, interval: Option<u64>, yes: bool) -> Result<()> {
    let to = match to {
        Color::Blue => "blue",
        Color::Green => "green",
    };
    if canary.is_some_and(|c| c == 0 || c >= 100) {
        return Err(Error::Usage("--canary is a percentage between 1 and 99\nhelp: for example `paymig switch --to green --canary 10 --interval 300`".into()));
    }
    super::require_confirmable(yes, "paymig switch")?;
    let (_lock, journal) = super::lock_and_open(&cfg, "switch")?;
    let ctx = super::connect(cfg, Mode::Apply, Some(journal.clone())).await?;
    let failed = |e: StepError| Error::StepsFailed { lines: vec![e.to_string()] };
    let front = alb::locate(&ctx).await.map_err(failed)?.ok_or_else(|| {
        Error::Preflight(vec![format!(
            "no listener on port {} of {}: run `paymig apply` first",
            ctx.cfg.blue_green.listener_port,
            ctx.cfg.names.own("alb")
        )])
    })?;
    // Preflight: the target colour is healthy and nothing is alarming.
    let mut problems = Vec::new();
    let target_group = &front.groups.iter().find(|(c, _)| c == to).expect("both colours located").1;
    let states = alb::target_states(&ctx, target_group).await.map_err(failed)?;
    if states.is_empty() || states.iter().any(|s| s != "healthy") {
        problems.push(format!("the {to} target group is not healthy (targets: {states:?})"));
    }
    let alarming = monitoring::alarms_in_alarm(&ctx).await.map_err(failed)?;
    if !alarming.is_empty() {
        problems.push(format!("alarms in ALARM: {}", alarming.join(", ")));
    }
    if !problems.is_empty() {
        super::report_calls(&ctx.aws);
        return Err(Error::Preflight(problems));
    }
    super::confirm(yes, &format!("shift traffic to {to} in account {}", ctx.account))?;
    crate::signals::listen();
    journal.begin_run("switch")?;
    let started_from = front.weights.clone();
    let steps: Vec<i32> = match canary {
        Some(p) => vec![i32::from(p), 100],
        None => vec![100],
    };
    let watch = Duration::from_secs(interval.unwrap_or(0));
    let mut outcome = Ok(());
    for (i, pct) in steps.iter().enumerate() {
        let weights: Vec<(String, i32)> =
            alb::COLOURS.iter().map(|c| (c.to_string(), if *c == to { *pct } else { 100 - pct })).collect();
        alb::set_weights(&ctx, &front, &weights).await.map_err(failed)?;
        println!("paymig switch: {to} {pct}%");
        let last = i + 1 == steps.len();
        let deadline = Instant::now() + if last { Duration::ZERO } else { watch };
        loop {
            // Stopped mid-shift (CodeBuild's SIGTERM, Ctrl-C): no further
            // change is started (the engine's rule after a signal); the
            // weights stay where the last journaled change put them.
            if let Some(signal) = crate::signals::received() {
                println!(
                    "paymig switch: {signal}: stopped with {to} at {pct}%; `paymig rollback` restores {started_from:?}, `paymig switch --to {to}` completes the shift"
                );
                outcome = Err(Error::Interrupted { signal });
                break;
            }
            let alarming = monitoring::alarms_in_alarm(&ctx).await.map_err(failed)?;
            if !alarming.is_empty() {
                alb::set_weights(&ctx, &front, &started_from).await.map_err(failed)?;
                println!("paymig switch: reverted to {started_from:?}");
                outcome = Err(Error::StepsFailed {
                    lines: vec![format!("switch to {to} reverted: {} in ALARM", alarming.join(", "))],
                });
                break;
            }
            if Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_secs(2).min(deadline.saturating_duration_since(Instant::now()))).await;
        }
        if outcome.is_err() {
            break;
        }
    }
    let status = match &outcome {
        Ok(()) => "ok",
        Err(Error::Interrupted { .. }) => "interrupted",
        Err(_) => "failed",
    };
    journal.end_run(status, ctx.aws.stats.summary().mutating)?;
    super::report_calls(&ctx.aws);
    outcome
}
