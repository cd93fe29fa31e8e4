//! The blue/green shift of `paymig switch`: refused unless the target
//! colour's targets are healthy and none of the migration's alarms is in
//! ALARM; then the listener's weights shift in steps (canary, then all),
//! the alarms watched between steps, and on ALARM the weights it started
//! from are restored. A signal stops it where it is. Every weight change is
//! journaled with the previous weights, so `rollback` restores them.

use crate::aws::Call;
use std::time::{Duration, Instant};

use super::{forward, locate, Front, WeightsBefore, COLOURS};
use crate::engine::{Ctx, Res, StepError};
use crate::steps::monitoring::alarms_in_alarm;

/// How to shift: to which colour, through which canary percentage, watching
/// the alarms how long between steps.
#[derive(Debug, Clone, Copy)]
pub struct Shift<'a> {
    pub to: &'a str,
    pub canary: Option<u8>,
    pub watch: Duration,
}

/// How a shift ended.
#[derive(Debug)]
pub enum Ended {
    /// All traffic on the target colour.
    Shifted,
    /// Stopped by a signal part way (the line printed says where).
    Interrupted { signal: &'static str },
    /// Reverted to the starting weights: these alarms went into ALARM.
    Reverted(Vec<String>),
}

/// The listener to shift, or why the shift must not start (no listener,
/// the target colour unhealthy, alarms in ALARM).
pub async fn preflight(ctx: &Ctx, to: &str) -> Result<Result<Front, Vec<String>>, StepError> {
    let Some(front) = locate(ctx).await? else {
        return Ok(Err(vec![format!(
            "no listener on port {} of {}: run `paymig apply` first",
            ctx.cfg.blue_green.listener_port,
            ctx.cfg.names.own("alb")
        )]));
    };
    let mut problems = Vec::new();
    let target_group = &front.groups.iter().find(|(c, _)| c == to).expect("both colours located").1;
    let states = target_states(ctx, target_group).await?;
    if states.is_empty() || states.iter().any(|s| s != "healthy") {
        let states = if states.is_empty() { "none registered".to_owned() } else { states.join(", ") };
        problems.push(format!("the {to} target group is not healthy (targets: {states})"));
    }
    let alarming = alarms_in_alarm(ctx).await?;
    if !alarming.is_empty() {
        problems.push(format!("alarms in ALARM: {}", alarming.join(", ")));
    }
    Ok(if problems.is_empty() { Ok(front) } else { Err(problems) })
}

/// The watched alarm that needs longest to react to the canary, and how
/// long ([`crate::steps::monitoring::reaction_time`]), when that is longer
/// than `watch`: a canary interval shorter than it ends before the alarm
/// could see the canary's errors, so the gate only looks safe.
pub fn too_short(alarms: &[aws_sdk_cloudwatch::types::MetricAlarm], watch: Duration) -> Option<(String, Duration)> {
    let mut slowest: Option<(String, Duration)> = None;
    for a in alarms {
        let t = crate::steps::monitoring::reaction_time(a);
        if slowest.as_ref().is_none_or(|(_, s)| t > *s) {
            slowest = Some((a.alarm_name().unwrap_or("?").to_owned(), t));
        }
    }
    slowest.filter(|(_, t)| *t > watch)
}

/// Real time as switch waits it: `PAYMIG_ALARM_WINDOW_SCALE` (a test hook,
/// default 1) scales the alarms' reaction windows so that the tests need
/// not wait minutes.
fn scaled(d: Duration) -> Duration {
    let scale: f64 = std::env::var("PAYMIG_ALARM_WINDOW_SCALE").ok().and_then(|s| s.parse().ok()).unwrap_or(1.0);
    d.mul_f64(scale.clamp(0.0, 1.0))
}

/// Shifts `front` as `shift` says, printing each step.
pub async fn run(ctx: &Ctx, front: &Front, shift: Shift<'_>) -> Result<Ended, StepError> {
    let to = shift.to;
    let started_from = front.weights.clone();
    let steps: Vec<i32> = match shift.canary {
        Some(p) => vec![i32::from(p), 100],
        None => vec![100],
    };
    // Before the first weight change: can the alarms see the canary within
    // the interval? A warning, not a refusal; the shift then keeps watching
    // for that window after its last step.
    let mut settle = Duration::ZERO;
    if shift.canary.is_some() {
        if let Some((alarm, reaction)) = too_short(&crate::steps::monitoring::watched_alarms(ctx).await?, shift.watch) {
            tracing::warn!(
                alarm = %alarm,
                interval_s = shift.watch.as_secs(),
                alarm_window_s = reaction.as_secs(),
                suggested_interval_s = reaction.as_secs(),
                "--interval {}s is shorter than alarm {alarm} needs to react to the canary ({}s: its evaluation window plus about {}s before Lambda's metrics arrive); `--interval {}` would let it see the canary. Shifting anyway, and watching the alarms for {}s after the last step",
                shift.watch.as_secs(),
                reaction.as_secs(),
                crate::steps::monitoring::METRIC_DELAY.as_secs(),
                reaction.as_secs(),
                reaction.as_secs(),
            );
            settle = scaled(reaction);
        }
    }
    for (i, pct) in steps.iter().copied().enumerate() {
        let weights: Vec<(String, i32)> =
            COLOURS.iter().map(|c| (c.to_string(), if *c == to { pct } else { 100 - pct })).collect();
        set_weights(ctx, front, &weights).await?;
        println!("paymig switch: {to} {pct}%");
        let last = i + 1 == steps.len();
        if last && !settle.is_zero() {
            println!("paymig switch: watching the alarms for {}s before declaring the shift done", settle.as_secs());
        }
        let deadline = Instant::now() + if last { settle } else { shift.watch };
        loop {
            // Stopped mid-shift (CodeBuild's SIGTERM, Ctrl-C): no further
            // change is started (the engine's rule after a signal); the
            // weights stay where the last journaled change put them.
            if let Some(signal) = crate::signals::received() {
                println!(
                    "paymig switch: {signal}: stopped with {to} at {pct}%; `paymig rollback` restores {}, `paymig switch --to {to}` completes the shift",
                    weights_text(&started_from)
                );
                return Ok(Ended::Interrupted { signal });
            }
            let alarming = alarms_in_alarm(ctx).await?;
            if !alarming.is_empty() {
                set_weights(ctx, front, &started_from).await?;
                println!("paymig switch: reverted to {}", weights_text(&started_from));
                return Ok(Ended::Reverted(alarming));
            }
            if Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_secs(2).min(deadline.saturating_duration_since(Instant::now()))).await;
        }
    }
    Ok(Ended::Shifted)
}

/// Weights as a person reads them: `blue 100, green 0`.
fn weights_text(weights: &[(String, i32)]) -> String {
    weights.iter().map(|(c, w)| format!("{c} {w}")).collect::<Vec<_>>().join(", ")
}

/// The health states of a target group's targets (`unknown` where AWS
/// gives none): `switch` shifts traffic only to a colour whose targets are
/// all healthy.
async fn target_states(ctx: &Ctx, target_group: &str) -> Result<Vec<String>, StepError> {
    let health = ctx
        .aws
        .target
        .elbv2
        .describe_target_health()
        .target_group_arn(target_group)
        .send()
        .await
        .on(target_group, "DescribeTargetHealth")?;
    Ok(health
        .target_health_descriptions()
        .iter()
        .map(|d| d.target_health().and_then(|h| h.state()).map_or("unknown".into(), |s| s.as_str().to_owned()))
        .collect())
}

/// Changes the listener's weights through the journal (previous weights kept).
async fn set_weights(ctx: &Ctx, front: &Front, weights: &[(String, i32)]) -> std::result::Result<(), StepError> {
    let current = locate(ctx).await?.map(|f| f.weights).unwrap_or_default();
    let res = Res::new(
        "alb",
        "listener",
        format!("listener/{}", ctx.cfg.blue_green.listener_port),
        front.listener_arn.clone(),
    );
    let detail = weights.iter().map(|(c, w)| format!("{c} {w}")).collect::<Vec<_>>().join(", ");
    ctx.update(
        &res,
        &front.listener_arn,
        format!("weights {detail}"),
        WeightsBefore { groups: front.groups.clone(), weights: current },
        || async {
            ctx.aws
                .target
                .elbv2
                .modify_listener()
                .listener_arn(&front.listener_arn)
                .default_actions(forward(&front.groups, weights))
                .send()
                .await
                .on(&front.listener_arn, "ModifyListener")?;
            Ok(())
        },
    )
    .await
}
