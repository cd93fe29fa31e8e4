//! monitoring: an SNS topic for alarms (encrypted with the prod key, with a
//! policy letting CloudWatch publish and email subscriptions from
//! `[monitoring] alarm_emails`); alarms with alarm and OK actions on it —
//! RDS CPU on the prod cluster, a metric-math error rate per prod function,
//! and the dev alarms found on migrated dev resources, rewritten onto their
//! prod twins; and the dev dashboards rewritten to prod through the name map
//! (a JSON-aware rewrite, never a blind string replace) plus an alarm widget.
//!
//! This file holds the declaration and the converge that runs the parts in
//! order: `topic.rs`, `alarms.rs`, `dashboards.rs`, `validate.rs`,
//! `teardown.rs` (undo and sweep), `watch.rs` (what `switch` watches).

use crate::aws::call::Named;
use crate::aws::Call;
use std::collections::BTreeMap;

use aws_sdk_cloudwatch::types::{
    ComparisonOperator, Dimension, MetricAlarm, MetricDataQuery, MetricStat, StandardUnit, Statistic,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::engine::journal::{Op, Record};
use crate::engine::{About, Created, Ctx, Declared, Outcome, Res, Step, StepError, Swept};
use crate::naming::NameMap;
use crate::steps::common::arns;
use crate::steps::common::references::{Counterparts, Found};
mod alarms;
mod dashboards;
mod teardown;
mod topic;
mod validate;
mod watch;
pub use alarms::*;
pub use dashboards::*;
use teardown::*;
use topic::*;
use validate::*;
pub use watch::*;

pub struct Monitoring;

const STEP: &str = "monitoring";
/// DescribeAlarms takes at most this many names.
const ALARM_NAMES_PER_CALL: usize = 100;

/// The resource kinds this step records in the journal (what undo matches on).
pub mod kind {
    pub const SNS_TOPIC: &str = "sns_topic";
    pub const ALARM: &str = "alarm";
    pub const DASHBOARD: &str = "dashboard";
}

static ABOUT: About = About {
    id: STEP,
    deps: &["kms", "database", "lambda", "dynamodb", "audit"],
    undo_apart: &[],
    early: &[],
    kinds: &[kind::SNS_TOPIC, kind::ALARM, kind::DASHBOARD],
    actions: &[
        "sns:CreateTopic",
        "sns:GetTopicAttributes",
        "sns:SetTopicAttributes",
        "sns:DeleteTopic",
        "sns:Subscribe",
        "sns:Unsubscribe",
        "sns:ListSubscriptionsByTopic",
        "sns:TagResource",
        "cloudwatch:DescribeAlarms",
        "cloudwatch:PutMetricAlarm",
        "cloudwatch:DeleteAlarms",
        "cloudwatch:TagResource",
        "cloudwatch:GetDashboard",
        "cloudwatch:PutDashboard",
        "cloudwatch:DeleteDashboards",
    ],
    source_actions: &["cloudwatch:DescribeAlarms", "cloudwatch:GetDashboard"],
    scopes: &[("cloudwatch", arns::dashboards_and_alarms), ("sns", arns::topic)],
    sweeps: "alarms acting on the migration's topic, and the topic",
    waits: &[],
    undo_waits: &[],
};

impl Declared for Monitoring {
    fn about(&self) -> &'static About {
        &ABOUT
    }
}

impl Step for Monitoring {
    async fn preflight(&self, ctx: &Ctx) -> Vec<StepError> {
        let mut problems = Vec::new();
        for d in &ctx.cfg.source.dashboards {
            match ctx
                .aws
                .source
                .cloudwatch
                .get_dashboard()
                .dashboard_name(d)
                .send()
                .await
                .found(format!("[source] dashboards {d:?}"), "GetDashboard")
            {
                Ok(Some(_)) => {}
                Ok(None) => problems
                    .push(StepError::Invalid(format!("[source] dashboards: the dev dashboard {d:?} does not exist"))),
                Err(e) => problems.push(e),
            }
        }
        // Two dev alarms that would become one prod alarm: refused
        // before anything changes.
        match read_dev_alarms(ctx).await {
            Ok(dev) => {
                if let Err(e) = alarm_set(ctx, &dev, &topic_arn(ctx)) {
                    problems.push(e);
                }
            }
            Err(e) => problems.push(e),
        }
        problems
    }

    crate::step_functions!(run => converge, undo => undo, sweep => sweep, validate => validate);
}

async fn converge(ctx: &Ctx) -> Result<Outcome, StepError> {
    // The topic and the dev alarms do not depend on each other (join, not
    // try_join: a failed read never drops the topic's create in flight).
    let (topic, dev_alarms) = futures::join!(converge_topic(ctx), read_dev_alarms(ctx));
    let (topic, dev_alarms) = (topic?, dev_alarms?);
    let set = alarm_set(ctx, &dev_alarms, &topic)?;
    for (dev, prod) in &set.superseded {
        ctx.notice(
            STEP,
            format!(
                "dev alarm {dev} is not replicated: the configured alarm {prod} stands for it (configured alarms win)"
            ),
        );
    }
    converge_alarms(ctx, &set.alarms).await?;
    let arns: Vec<String> = set.alarms.iter().map(|a| alarm_arn(ctx, &a.name)).collect();
    converge_dashboards(ctx, &set.dev_to_prod, &arns).await?;
    Ok(Outcome::Done)
}

/// The SNS topics dev's alarms act on (alarm, OK and insufficient-data
/// actions): their prod counterpart is the migration's alarm topic.
pub async fn dev_alarm_topics(ctx: &Ctx) -> Result<std::collections::BTreeSet<String>, StepError> {
    Ok(read_dev_alarms(ctx)
        .await?
        .iter()
        .flat_map(|a| a.alarm_actions().iter().chain(a.ok_actions()).chain(a.insufficient_data_actions()))
        .filter(|t| t.starts_with("arn:aws:sns:"))
        .cloned()
        .collect())
}

async fn read_dev_alarms(ctx: &Ctx) -> Result<Vec<MetricAlarm>, StepError> {
    let mut pages = ctx.aws.source.cloudwatch.describe_alarms().into_paginator().send();
    let mut out = Vec::new();
    while let Some(page) = pages.next().await {
        out.extend(page.on("dev alarms", "DescribeAlarms")?.metric_alarms().iter().cloned());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn names() -> NameMap {
        let cfg = Config::parse(
            std::path::Path::new("m.toml"),
            &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations.toml")).unwrap(),
        )
        .unwrap();
        cfg.names
    }

    #[test]
    fn an_alarm_reacts_after_its_breaching_datapoints_and_the_metrics_delay() {
        use aws_sdk_cloudwatch::types::{MetricAlarm, MetricDataQuery, MetricStat};
        let plain = MetricAlarm::builder().period(60).evaluation_periods(3).build();
        assert_eq!(reaction_time(&plain).as_secs(), 180 + 60);
        let m_of_n = MetricAlarm::builder().period(60).evaluation_periods(5).datapoints_to_alarm(2).build();
        assert_eq!(reaction_time(&m_of_n).as_secs(), 120 + 60);
        let math = MetricAlarm::builder()
            .evaluation_periods(1)
            .metrics(MetricDataQuery::builder().id("m1").metric_stat(MetricStat::builder().period(300).build()).build())
            .metrics(MetricDataQuery::builder().id("e1").expression("m1*100").build())
            .build();
        assert_eq!(reaction_time(&math).as_secs(), 300 + 60);
    }

    #[test]
    fn dashboards_are_rewritten_by_structure_not_by_blind_replace() {
        let n = names();
        let alarms = BTreeMap::from([(
            "payment-processor-dev-throttles".to_owned(),
            "payment-processor-prod-throttles".to_owned(),
        )]);
        let body = json!({"widgets": [
            {"type": "metric", "x": 0, "y": 0, "width": 12, "height": 6, "properties": {
                "metrics": [["AWS/Lambda", "Errors", "FunctionName", "payment-processor-dev"], ["AWS/RDS", "CPUUtilization", "DBClusterIdentifier", "payments-dev"]],
                "title": "payment-processor-dev errors", "region": "us-east-1", "period": 300}},
            {"type": "alarm", "x": 0, "y": 6, "width": 12, "height": 3, "properties": {
                "alarms": ["arn:aws:cloudwatch:us-east-1:111111111111:alarm:payment-processor-dev-throttles"]}},
            {"type": "text", "x": 12, "y": 0, "width": 6, "height": 2, "properties": {"markdown": "developers: see runbook"}}
        ]});
        let out = rewrite_dashboard(&body, &n, &alarms, ":111111111111:", ":222222222222:");
        let w = &out["widgets"];
        assert_eq!(w[0]["properties"]["metrics"][0][3], "payment-processor-prod");
        assert_eq!(w[0]["properties"]["metrics"][1][3], "payments-prod");
        assert_eq!(w[0]["properties"]["metrics"][0][2], "FunctionName");
        assert_eq!(w[0]["properties"]["title"], "payment-processor-prod errors");
        assert_eq!(
            w[1]["properties"]["alarms"][0],
            "arn:aws:cloudwatch:us-east-1:222222222222:alarm:payment-processor-prod-throttles"
        );
        assert_eq!(w[2]["properties"]["markdown"], "developers: see runbook", "words merely containing dev are left");
        assert_eq!(w[0]["properties"]["period"], 300);
        assert!(dev_leftovers(&out, &n).is_empty());
        assert_eq!(dev_leftovers(&json!({"t": "db.payments-dev.internal"}), &n), ["db.payments-dev.internal"]);
    }

    fn dev_alarm(name: &str, dim: (&str, &str)) -> aws_sdk_cloudwatch::types::MetricAlarm {
        MetricAlarm::builder()
            .alarm_name(name)
            .namespace("AWS/RDS")
            .metric_name("CPUUtilization")
            .dimensions(Dimension::builder().name(dim.0).value(dim.1).build())
            .extended_statistic("p99")
            .period(60)
            .unit(StandardUnit::Percent)
            .evaluation_periods(5)
            .datapoints_to_alarm(3)
            .threshold(70.0)
            .comparison_operator(ComparisonOperator::GreaterThanThreshold)
            .treat_missing_data("breaching")
            .evaluate_low_sample_count_percentile("ignore")
            .alarm_actions("arn:aws:sns:us-east-1:111111111111:dev-alerts")
            .insufficient_data_actions("arn:aws:sns:us-east-1:111111111111:dev-alerts")
            .build()
    }

    fn configured(name: &str) -> AlarmSpec {
        let mut a = AlarmSpec::of(&dev_alarm(name, ("DBClusterIdentifier", "payments-prod")));
        a.description = Some("configured".into());
        a
    }

    #[test]
    fn replicated_alarms_keep_every_setting_with_actions_on_the_prod_topic() {
        let n = names();
        let dev = [dev_alarm("payments-dev-cpu-p99", ("DBClusterIdentifier", "payments-dev"))];
        let set = desired_alarms(vec![], &n, &BTreeMap::new(), &dev, "topic").unwrap();
        let a = &set.alarms[0];
        assert_eq!(a.name, "payments-prod-cpu-p99");
        assert_eq!(a.dimensions, [("DBClusterIdentifier".to_owned(), "payments-prod".to_owned())]);
        assert_eq!(
            (a.extended_statistic.as_deref(), a.statistic.as_deref(), a.unit.as_deref()),
            (Some("p99"), None, Some("Percent"))
        );
        assert_eq!((a.evaluation_periods, a.datapoints_to_alarm), (5, Some(3)));
        assert_eq!(a.evaluate_low_sample_count_percentile.as_deref(), Some("ignore"));
        assert_eq!(a.treat_missing, "breaching");
        assert_eq!((a.actions.clone(), a.ok_actions.clone()), (vec!["topic".to_owned()], vec!["topic".to_owned()]));
        assert_eq!(a.insufficient_data_actions, ["topic"], "every action list is rewritten to the prod topic");
        assert_eq!(set.dev_to_prod["payments-dev-cpu-p99"], "payments-prod-cpu-p99");
        // A journaled definition of an older version (no new fields) still reads.
        let old = serde_json::json!({"name": "x", "description": null, "namespace": null, "metric": null,
            "dimensions": [], "statistic": "Sum", "period": 60, "evaluation_periods": 1, "threshold": 1.0,
            "comparison": "GreaterThanThreshold", "treat_missing": "missing", "actions": [], "ok_actions": [],
            "queries": [{"id": "m1", "expression": null, "metric": null, "return_data": true}]});
        let spec: AlarmSpec = serde_json::from_value(old).unwrap();
        assert_eq!((spec.threshold, spec.datapoints_to_alarm), (Some(1.0), None));
    }

    #[test]
    fn configured_alarms_win_and_one_name_never_gets_two_definitions() {
        let n = names();
        let thresholds = BTreeMap::from([("payments-dev-cpu-high".to_owned(), 50.0)]);
        let dev = [
            dev_alarm("payments-dev-cpu-high", ("DBClusterIdentifier", "payments-dev")),
            dev_alarm("legacy-dev-cpu", ("DBClusterIdentifier", "legacy-dev")),
        ];
        let set = desired_alarms(vec![configured("payments-prod-cpu-high")], &n, &thresholds, &dev, "t").unwrap();
        assert_eq!(set.alarms.len(), 1, "the dev alarm is not replicated over the configured one");
        assert_eq!(set.alarms[0].description.as_deref(), Some("configured"));
        assert_eq!(set.alarms[0].threshold, Some(70.0), "the configured threshold stands");
        assert_eq!(set.superseded, [("payments-dev-cpu-high".to_owned(), "payments-prod-cpu-high".to_owned())]);
        assert_eq!(set.dev_to_prod["payments-dev-cpu-high"], "payments-prod-cpu-high", "dashboards point at it");
        assert_eq!(set.dev_of("payments-prod-cpu-high"), Some("payments-dev-cpu-high"));

        // Two dev alarms with one prod name: an error naming both.
        let dev = [
            dev_alarm("payments-cpu", ("DBClusterIdentifier", "payments-dev")),
            dev_alarm("payments-cpu-dev", ("DBClusterIdentifier", "payments-dev")),
        ];
        let err = desired_alarms(vec![], &n, &BTreeMap::new(), &dev, "t").unwrap_err();
        assert!(
            err.contains("\"payments-cpu\"")
                && err.contains("\"payments-cpu-dev\"")
                && err.contains("payments-cpu-prod"),
            "{err}"
        );
    }

    #[test]
    fn the_alarm_widget_goes_below_the_others() {
        let body = with_alarm_widget(
            json!({"widgets": [{"y": 0, "height": 6}, {"y": 6, "height": 3}]}),
            "alarms",
            &["a".into()],
        );
        assert_eq!(body["widgets"][2]["y"], 9);
        assert_eq!(body["widgets"][2]["properties"]["alarms"], json!(["a"]));
    }
}
