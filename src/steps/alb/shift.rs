//! The blue/green shift of `paymig switch`: refused unless the target
//! colour's targets are healthy and none of the migration's alarms is in
//! ALARM; then the listener's weights shift in steps (canary, then all),
//! the alarms watched between steps, and on ALARM the weights it started
//! from are restored. A signal stops it where it is. Every weight change is
//! journaled with the previous weights, so `rollback` restores them.

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
    /// Stopped by a signal with the target colour at `pct` percent.
    Interrupted { signal: &'static str, pct: i32 },
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
        problems.push(format!("the {to} target group is not healthy (targets: {states:?})"));
    }
    let alarming = alarms_in_alarm(ctx).await?;
    if !alarming.is_empty() {
        problems.push(format!("alarms in ALARM: {}", alarming.join(", ")));
    }
    Ok(if problems.is_empty() { Ok(front) } else { Err(problems) })
}

/// Shifts `front` as `shift` says, printing each step.
pub async fn run(ctx: &Ctx, front: &Front, shift: Shift<'_>) -> Result<Ended, StepError> {
    let to = shift.to;
    let started_from = front.weights.clone();
    let steps: Vec<i32> = match shift.canary {
        Some(p) => vec![i32::from(p), 100],
        None => vec![100],
    };
    for (i, pct) in steps.iter().copied().enumerate() {
        let weights: Vec<(String, i32)> =
            COLOURS.iter().map(|c| (c.to_string(), if *c == to { pct } else { 100 - pct })).collect();
        set_weights(ctx, front, &weights).await?;
        println!("paymig switch: {to} {pct}%");
        let last = i + 1 == steps.len();
        let deadline = Instant::now() + if last { Duration::ZERO } else { shift.watch };
        loop {
            // Stopped mid-shift (CodeBuild's SIGTERM, Ctrl-C): no further
            // change is started (the engine's rule after a signal); the
            // weights stay where the last journaled change put them.
            if let Some(signal) = crate::signals::received() {
                println!(
                    "paymig switch: {signal}: stopped with {to} at {pct}%; `paymig rollback` restores {started_from:?}, `paymig switch --to {to}` completes the shift"
                );
                return Ok(Ended::Interrupted { signal, pct });
            }
            let alarming = alarms_in_alarm(ctx).await?;
            if !alarming.is_empty() {
                set_weights(ctx, front, &started_from).await?;
                println!("paymig switch: reverted to {started_from:?}");
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
        .map_err(StepError::aws(target_group, "DescribeTargetHealth"))?;
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
                .map_err(StepError::aws(&front.listener_arn, "ModifyListener"))?;
            Ok(())
        },
    )
    .await
}
