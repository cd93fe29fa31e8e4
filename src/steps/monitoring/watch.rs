//! What `switch` watches: the migration's alarms, how soon each can react,
//! which are in ALARM.

use super::*;

/// How long after it happens a function's errors reach CloudWatch's
/// metrics: Lambda publishes them with a delay of about a minute.
pub const METRIC_DELAY: std::time::Duration = std::time::Duration::from_secs(60);

/// The earliest an alarm can go to ALARM because of a change in traffic:
/// the breaching datapoints it needs (`DatapointsToAlarm`, else
/// `EvaluationPeriods`) times its period (a metric-math alarm's longest
/// query period), plus [`METRIC_DELAY`].
pub fn reaction_time(a: &aws_sdk_cloudwatch::types::MetricAlarm) -> std::time::Duration {
    let period = a.period().or_else(|| {
        a.metrics().iter().filter_map(|m| m.period().or_else(|| m.metric_stat().and_then(|s| s.period()))).max()
    });
    let datapoints = a.datapoints_to_alarm().or(a.evaluation_periods()).unwrap_or(1).max(1);
    let seconds = u64::try_from(period.unwrap_or(60).max(1)).unwrap_or(60) * u64::try_from(datapoints).unwrap_or(1);
    std::time::Duration::from_secs(seconds) + METRIC_DELAY
}

/// The migration's alarms: those acting on its topic, in any state.
pub async fn watched_alarms(ctx: &Ctx) -> std::result::Result<Vec<aws_sdk_cloudwatch::types::MetricAlarm>, StepError> {
    let topic = format!("arn:aws:sns:{}:{}:{}", ctx.cfg.migration.region, ctx.account, ctx.cfg.names.own("alarms"));
    let mut pages = ctx.aws.target.cloudwatch.describe_alarms().into_paginator().send();
    let mut out = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.on("alarms", "DescribeAlarms")?;
        out.extend(page.metric_alarms().iter().filter(|a| a.alarm_actions().iter().any(|x| x == &topic)).cloned());
    }
    Ok(out)
}

/// The migration's alarms (those acting on its topic) now in ALARM.
pub async fn alarms_in_alarm(ctx: &Ctx) -> std::result::Result<Vec<String>, StepError> {
    let topic = format!("arn:aws:sns:{}:{}:{}", ctx.cfg.migration.region, ctx.account, ctx.cfg.names.own("alarms"));
    let mut pages = ctx
        .aws
        .target
        .cloudwatch
        .describe_alarms()
        .state_value(aws_sdk_cloudwatch::types::StateValue::Alarm)
        .into_paginator()
        .send();
    let mut out = Vec::new();
    while let Some(page) = pages.next().await {
        for a in page.on("alarms", "DescribeAlarms")?.metric_alarms() {
            if a.alarm_actions().iter().any(|x| x == &topic) {
                out.extend(a.alarm_name().map(str::to_owned));
            }
        }
    }
    Ok(out)
}
