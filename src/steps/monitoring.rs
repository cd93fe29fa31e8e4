//! monitoring: an SNS topic for alarms (encrypted with the prod key, with a
//! policy letting CloudWatch publish and email subscriptions from
//! `[monitoring] alarm_emails`); alarms with alarm and OK actions on it —
//! RDS CPU on the prod cluster, a metric-math error rate per prod function,
//! and the dev alarms found on migrated dev resources, rewritten onto their
//! prod twins; and the dev dashboards rewritten to prod through the name map
//! (a JSON-aware rewrite, never a blind string replace) plus an alarm widget.

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

pub struct Monitoring;

const STEP: &str = "monitoring";
/// DescribeAlarms takes at most this many names.
const ALARM_NAMES_PER_CALL: usize = 100;

static ABOUT: About = About {
    id: STEP,
    deps: &["kms", "database", "lambda", "dynamodb", "audit"],
    undo_apart: &[],
    early: &[],
    kinds: &["sns_topic", "alarm", "dashboard"],
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

// ---------------------------------------------------------------------------
// Alarms in a comparable, journal-able form

/// One metric-math query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Query {
    pub id: String,
    pub expression: Option<String>,
    pub metric: Option<StatMetric>,
    pub return_data: bool,
    #[serde(default)]
    pub label: Option<String>,
    /// An expression's period (a metric's is in its `MetricStat`).
    #[serde(default)]
    pub period: Option<i32>,
}

/// The metric a query reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatMetric {
    pub namespace: String,
    pub name: String,
    pub dimensions: Vec<(String, String)>,
    pub period: i32,
    pub stat: String,
    #[serde(default)]
    pub unit: Option<String>,
}

/// An alarm as paymig owns it: every setting PutMetricAlarm takes, so a
/// replicated dev alarm keeps its meaning (a percentile alarm its
/// `ExtendedStatistic`, an M-of-N alarm its `DatapointsToAlarm`, an
/// anomaly-detection alarm its `ThresholdMetricId` and no threshold). Fields
/// added after the first release default when an older journal is read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlarmSpec {
    pub name: String,
    pub description: Option<String>,
    pub namespace: Option<String>,
    pub metric: Option<String>,
    pub dimensions: Vec<(String, String)>,
    pub statistic: Option<String>,
    #[serde(default)]
    pub extended_statistic: Option<String>,
    pub period: Option<i32>,
    #[serde(default)]
    pub unit: Option<String>,
    pub evaluation_periods: i32,
    #[serde(default)]
    pub datapoints_to_alarm: Option<i32>,
    /// None for an anomaly-detection alarm (it compares with a band).
    pub threshold: Option<f64>,
    #[serde(default)]
    pub threshold_metric_id: Option<String>,
    pub comparison: String,
    pub treat_missing: String,
    #[serde(default)]
    pub evaluate_low_sample_count_percentile: Option<String>,
    pub actions: Vec<String>,
    pub ok_actions: Vec<String>,
    #[serde(default)]
    pub insufficient_data_actions: Vec<String>,
    pub queries: Vec<Query>,
}

/// An alarm is known by its name (its lane in the call log).
impl std::fmt::Display for AlarmSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

fn dims(d: &[Dimension]) -> Vec<(String, String)> {
    d.iter().filter_map(|d| Some((d.name()?.to_owned(), d.value()?.to_owned()))).collect()
}

impl AlarmSpec {
    pub fn of(a: &MetricAlarm) -> AlarmSpec {
        AlarmSpec {
            name: a.alarm_name().unwrap_or_default().to_owned(),
            description: a.alarm_description().map(str::to_owned),
            namespace: a.namespace().map(str::to_owned),
            metric: a.metric_name().map(str::to_owned),
            dimensions: dims(a.dimensions()),
            statistic: a.statistic().map(|s| s.as_str().to_owned()),
            extended_statistic: a.extended_statistic().map(str::to_owned),
            period: a.period(),
            unit: a.unit().map(|u| u.as_str().to_owned()),
            evaluation_periods: a.evaluation_periods().unwrap_or(1),
            datapoints_to_alarm: a.datapoints_to_alarm(),
            threshold: a.threshold(),
            threshold_metric_id: a.threshold_metric_id().map(str::to_owned),
            comparison: a.comparison_operator().map_or("GreaterThanThreshold".into(), |c| c.as_str().to_owned()),
            treat_missing: a.treat_missing_data().unwrap_or("missing").to_owned(),
            evaluate_low_sample_count_percentile: a.evaluate_low_sample_count_percentile().map(str::to_owned),
            actions: a.alarm_actions().to_vec(),
            ok_actions: a.ok_actions().to_vec(),
            insufficient_data_actions: a.insufficient_data_actions().to_vec(),
            queries: a
                .metrics()
                .iter()
                .map(|q| Query {
                    id: q.id().unwrap_or_default().to_owned(),
                    expression: q.expression().map(str::to_owned),
                    metric: q.metric_stat().and_then(|ms| {
                        let m = ms.metric()?;
                        Some(StatMetric {
                            namespace: m.namespace()?.to_owned(),
                            name: m.metric_name()?.to_owned(),
                            dimensions: dims(m.dimensions()),
                            period: ms.period()?,
                            stat: ms.stat()?.to_owned(),
                            unit: ms.unit().map(|u| u.as_str().to_owned()),
                        })
                    }),
                    return_data: q.return_data().unwrap_or(false),
                    label: q.label().map(str::to_owned),
                    period: q.period(),
                })
                .collect(),
        }
    }

    async fn put(&self, ctx: &Ctx) -> Result<(), StepError> {
        let dim = |(n, v): &(String, String)| Dimension::builder().name(n).value(v).build();
        let mut req = ctx
            .aws
            .target
            .cloudwatch
            .put_metric_alarm()
            .alarm_name(&self.name)
            .set_alarm_description(self.description.clone())
            .actions_enabled(true)
            .set_alarm_actions(Some(self.actions.clone()))
            .set_ok_actions(Some(self.ok_actions.clone()))
            .set_insufficient_data_actions(Some(self.insufficient_data_actions.clone()))
            .evaluation_periods(self.evaluation_periods)
            .set_datapoints_to_alarm(self.datapoints_to_alarm)
            .set_threshold(self.threshold)
            .set_threshold_metric_id(self.threshold_metric_id.clone())
            .comparison_operator(ComparisonOperator::from(self.comparison.as_str()))
            .treat_missing_data(&self.treat_missing)
            .set_evaluate_low_sample_count_percentile(self.evaluate_low_sample_count_percentile.clone());
        if self.queries.is_empty() {
            req = req
                .set_namespace(self.namespace.clone())
                .set_metric_name(self.metric.clone())
                .set_dimensions(Some(self.dimensions.iter().map(dim).collect()))
                .set_statistic(self.statistic.as_deref().map(Statistic::from))
                .set_extended_statistic(self.extended_statistic.clone())
                .set_unit(self.unit.as_deref().map(StandardUnit::from))
                .set_period(self.period);
        } else {
            for q in &self.queries {
                let mut b = MetricDataQuery::builder()
                    .id(&q.id)
                    .return_data(q.return_data)
                    .set_expression(q.expression.clone())
                    .set_label(q.label.clone())
                    .set_period(q.period);
                if let Some(m) = &q.metric {
                    let metric = aws_sdk_cloudwatch::types::Metric::builder()
                        .namespace(&m.namespace)
                        .metric_name(&m.name)
                        .set_dimensions(Some(m.dimensions.iter().map(dim).collect()))
                        .build();
                    b = b.metric_stat(
                        MetricStat::builder()
                            .metric(metric)
                            .period(m.period)
                            .stat(&m.stat)
                            .set_unit(m.unit.as_deref().map(StandardUnit::from))
                            .build(),
                    );
                }
                req = req.metrics(b.build());
            }
        }
        if !ctx.is_plan() {
            let tags = super::common::prod_tags_as(ctx, |k, v| {
                aws_sdk_cloudwatch::types::Tag::builder().key(k).value(v).build()
            });
            req = req.set_tags(Some(tags));
        }
        req.send().await.on(&self.name, "PutMetricAlarm")?;
        Ok(())
    }
}

fn alarm_arn(ctx: &Ctx, name: &str) -> String {
    format!("arn:aws:cloudwatch:{}:{}:alarm:{name}", ctx.cfg.migration.region, ctx.account)
}

fn topic_name(ctx: &Ctx) -> String {
    ctx.cfg.names.own("alarms")
}

fn topic_arn(ctx: &Ctx) -> String {
    format!("arn:aws:sns:{}:{}:{}", ctx.cfg.migration.region, ctx.account, topic_name(ctx))
}

/// The alarms paymig defines itself, from `[monitoring]`.
fn own_alarms(ctx: &Ctx, topic: &str) -> Vec<AlarmSpec> {
    let n = &ctx.cfg.names;
    let base = |name: String, description: &str, threshold: f64| AlarmSpec {
        name,
        description: Some(description.to_owned()),
        namespace: None,
        metric: None,
        dimensions: vec![],
        statistic: None,
        extended_statistic: None,
        period: None,
        unit: None,
        evaluation_periods: 3,
        datapoints_to_alarm: None,
        threshold: Some(threshold),
        threshold_metric_id: None,
        comparison: "GreaterThanThreshold".into(),
        treat_missing: "notBreaching".into(),
        evaluate_low_sample_count_percentile: None,
        actions: vec![topic.to_owned()],
        ok_actions: vec![topic.to_owned()],
        insufficient_data_actions: vec![],
        queries: vec![],
    };
    let mut out = Vec::new();
    if !ctx.cfg.source.db_cluster.is_empty() {
        let cluster = n.prod(&ctx.cfg.source.db_cluster);
        out.push(AlarmSpec {
            namespace: Some("AWS/RDS".into()),
            metric: Some("CPUUtilization".into()),
            dimensions: vec![("DBClusterIdentifier".into(), cluster.clone())],
            statistic: Some("Average".into()),
            period: Some(300),
            ..base(
                format!("{cluster}-cpu-high"),
                "paymig: Aurora CPU above [monitoring] rds_cpu_percent",
                ctx.cfg.monitoring.rds_cpu_percent,
            )
        });
    }
    for f in &ctx.cfg.source.lambda_functions {
        let function = n.prod(f);
        let stat = |id: &str, metric: &str| Query {
            id: id.into(),
            expression: None,
            metric: Some(StatMetric {
                namespace: "AWS/Lambda".into(),
                name: metric.into(),
                dimensions: vec![("FunctionName".into(), function.clone())],
                period: 300,
                stat: "Sum".into(),
                unit: None,
            }),
            return_data: false,
            label: None,
            period: None,
        };
        out.push(AlarmSpec {
            evaluation_periods: 1,
            queries: vec![
                stat("m1", "Errors"),
                stat("m2", "Invocations"),
                Query {
                    id: "e1".into(),
                    expression: Some("100*(m1/m2)".into()),
                    metric: None,
                    return_data: true,
                    label: None,
                    period: None,
                },
            ],
            ..base(
                format!("{function}-error-rate"),
                "paymig: Lambda error rate (%) above [monitoring] lambda_error_rate_percent",
                ctx.cfg.monitoring.lambda_error_rate_percent,
            )
        });
    }
    out
}

/// Rewrites dimension values naming a listed dev resource to its prod twin.
fn rewrite_dims(names: &NameMap, d: &[(String, String)]) -> (Vec<(String, String)>, bool) {
    let mut hit = false;
    let out = d
        .iter()
        .map(|(k, v)| match names.known().get(v) {
            Some(p) => {
                hit = true;
                (k.clone(), p.clone())
            }
            None => (k.clone(), v.clone()),
        })
        .collect();
    (out, hit)
}

/// Every alarm monitoring owns, with one definition per name.
#[derive(Debug, Default)]
pub struct AlarmSet {
    /// The configured alarms first, then the replicated dev alarms.
    pub alarms: Vec<AlarmSpec>,
    /// Dev alarm name -> the prod alarm that stands for it (its replica, or
    /// the configured alarm of the same name): dashboards point at it.
    pub dev_to_prod: BTreeMap<String, String>,
    /// `(dev alarm, configured alarm)` pairs where the configured alarm
    /// stands for the dev alarm instead of a replica (configured alarms win).
    pub superseded: Vec<(String, String)>,
}

impl AlarmSet {
    /// The dev alarm a prod alarm was derived from, if any.
    pub fn dev_of(&self, prod: &str) -> Option<&str> {
        self.dev_to_prod.iter().find(|(_, p)| p.as_str() == prod).map(|(d, _)| d.as_str())
    }
}

/// The alarms to converge: `own` (configured), then every dev alarm on a
/// migrated dev resource rewritten onto the prod twins with all its settings,
/// every action list on the prod `topic` and `thresholds` (`[monitoring]
/// alarm_thresholds`, by dev name) applied. A dev alarm whose prod name is a
/// configured alarm's is not replicated (SPEC "Alarms": configured alarms
/// win). Two dev alarms that would become one prod alarm are an error naming
/// both: one name never gets two definitions.
pub fn desired_alarms(
    own: Vec<AlarmSpec>,
    names: &NameMap,
    thresholds: &BTreeMap<String, f64>,
    dev: &[MetricAlarm],
    topic: &str,
) -> Result<AlarmSet, String> {
    let mut set = AlarmSet { alarms: own, ..AlarmSet::default() };
    let configured: Vec<String> = set.alarms.iter().map(|a| a.name.clone()).collect();
    let mut replicas: BTreeMap<String, String> = BTreeMap::new();
    for a in dev {
        let mut spec = AlarmSpec::of(a);
        let (d, mut hit) = rewrite_dims(names, &spec.dimensions);
        spec.dimensions = d;
        for q in &mut spec.queries {
            if let Some(m) = &mut q.metric {
                let (d, h) = rewrite_dims(names, &m.dimensions);
                m.dimensions = d;
                hit |= h;
            }
        }
        if !hit {
            continue;
        }
        let dev_name = spec.name.clone();
        let prod_name = names.prod(&dev_name);
        if configured.contains(&prod_name) {
            set.dev_to_prod.insert(dev_name.clone(), prod_name.clone());
            set.superseded.push((dev_name, prod_name));
            continue;
        }
        if let Some(other) = replicas.insert(prod_name.clone(), dev_name.clone()) {
            return Err(format!(
                "the dev alarms {other:?} and {dev_name:?} would both become the prod alarm {prod_name:?}\nhelp: one prod name cannot hold two definitions; rename one of the dev alarms (paymig never writes to dev)"
            ));
        }
        spec.name = prod_name.clone();
        if let Some(t) = thresholds.get(&dev_name) {
            spec.threshold = Some(*t);
        }
        spec.actions = vec![topic.to_owned()];
        spec.ok_actions = vec![topic.to_owned()];
        if !spec.insufficient_data_actions.is_empty() {
            spec.insufficient_data_actions = vec![topic.to_owned()];
        }
        spec.description = Some(format!("paymig: replicated from dev alarm {dev_name}"));
        set.dev_to_prod.insert(dev_name, prod_name);
        set.alarms.push(spec);
    }
    Ok(set)
}

/// [`desired_alarms`] for this context.
fn alarm_set(ctx: &Ctx, dev: &[MetricAlarm], topic: &str) -> Result<AlarmSet, StepError> {
    desired_alarms(own_alarms(ctx, topic), &ctx.cfg.names, &ctx.cfg.monitoring.alarm_thresholds, dev, topic)
        .map_err(StepError::Invalid)
}

// ---------------------------------------------------------------------------
// Dashboards

/// Rewrites a dashboard body: string values naming a listed dev resource (as
/// the whole value, a whole word of a title, or the last part of an ARN) and
/// dev alarm ARNs become their prod twins; numbers and structure stay.
pub fn rewrite_dashboard(
    body: &Value,
    names: &NameMap,
    alarm_names: &BTreeMap<String, String>,
    arn_from: &str,
    arn_to: &str,
) -> Value {
    match body {
        Value::String(s) => Value::String(rewrite_string(s, names, alarm_names, arn_from, arn_to)),
        Value::Array(a) => {
            Value::Array(a.iter().map(|v| rewrite_dashboard(v, names, alarm_names, arn_from, arn_to)).collect())
        }
        Value::Object(o) => Value::Object(
            o.iter().map(|(k, v)| (k.clone(), rewrite_dashboard(v, names, alarm_names, arn_from, arn_to))).collect(),
        ),
        other => other.clone(),
    }
}

fn rewrite_string(
    s: &str,
    names: &NameMap,
    alarm_names: &BTreeMap<String, String>,
    arn_from: &str,
    arn_to: &str,
) -> String {
    if let Some(p) = names.known().get(s) {
        return p.clone();
    }
    if let Some(rest) = s.strip_prefix("arn:aws:") {
        let parts: Vec<&str> = rest.split(':').collect();
        if let Some(last) = parts.last() {
            let mapped = alarm_names.get(*last).or_else(|| names.known().get(*last)).cloned();
            if let Some(m) = mapped {
                let head = s[..s.len() - last.len()].replace(arn_from, arn_to);
                return format!("{head}{m}");
            }
        }
        return s.to_owned();
    }
    // Free text (titles): replace whole words that are known dev names.
    crate::naming::map_words(s, |w| names.known().get(w).or_else(|| alarm_names.get(w)).map(String::as_str))
}

/// Strings of a body that still look like dev identifiers.
pub fn dev_leftovers(body: &Value, names: &NameMap) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(v: &Value, names: &NameMap, out: &mut Vec<String>) {
        match v {
            Value::String(s) if names.looks_dev(s) => out.push(s.clone()),
            Value::Array(a) => a.iter().for_each(|x| walk(x, names, out)),
            Value::Object(o) => o.values().for_each(|x| walk(x, names, out)),
            _ => {}
        }
    }
    walk(body, names, &mut out);
    out
}

/// Appends a widget listing the migration's alarms below the others.
fn with_alarm_widget(mut body: Value, title: &str, alarms: &[String]) -> Value {
    let bottom = body["widgets"]
        .as_array()
        .map(|w| w.iter().map(|x| x["y"].as_i64().unwrap_or(0) + x["height"].as_i64().unwrap_or(6)).max().unwrap_or(0))
        .unwrap_or(0);
    let widget = json!({"type": "alarm", "x": 0, "y": bottom, "width": 24, "height": 4,
        "properties": {"title": title, "alarms": alarms}});
    match body["widgets"].as_array_mut() {
        Some(w) => w.push(widget),
        None => body["widgets"] = json!([widget]),
    }
    body
}

// ---------------------------------------------------------------------------

fn topic_policy(ctx: &Ctx, arn: &str) -> Value {
    let account = &ctx.account;
    json!({"Version": "2012-10-17", "Statement": [
        {"Sid": "OwnerManages", "Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{account}:root")},
         "Action": ["sns:GetTopicAttributes", "sns:SetTopicAttributes", "sns:Subscribe", "sns:ListSubscriptionsByTopic", "sns:Publish", "sns:DeleteTopic"],
         "Resource": arn},
        {"Sid": "CloudWatchAlarmsPublish", "Effect": "Allow", "Principal": {"Service": "cloudwatch.amazonaws.com"},
         "Action": "sns:Publish", "Resource": arn,
         "Condition": {"StringEquals": {"aws:SourceAccount": account},
                       "ArnLike": {"aws:SourceArn": format!("arn:aws:cloudwatch:{}:{account}:alarm:*", ctx.cfg.migration.region)}}}
    ]})
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

async fn converge_topic(ctx: &Ctx) -> Result<String, StepError> {
    let sns = &ctx.aws.target.sns;
    let name = topic_name(ctx);
    let arn = topic_arn(ctx);
    let res = Res::new(STEP, "sns_topic", "topic", &name);
    let key = crate::steps::kms::key_arn(ctx);
    let policy = topic_policy(ctx, &arn);
    let attrs = sns
        .get_topic_attributes()
        .topic_arn(&arn)
        .send()
        .await
        .found(&name, "GetTopicAttributes")?
        .map(|out| out.attributes.unwrap_or_default());
    match attrs {
        None => {
            let tags: Vec<aws_sdk_sns::types::Tag> =
                super::common::prod_tags_as(ctx, |k, v| aws_sdk_sns::types::Tag::builder().key(k).value(v).build())
                    .into_iter()
                    .collect::<Result<_, _>>()
                    .map_err(|e| StepError::Invalid(e.to_string()))?;
            let attributes =
                BTreeMap::from([("KmsMasterKeyId".to_owned(), key.clone()), ("Policy".to_owned(), policy.to_string())]);
            ctx.create(&res, "encrypted with the prod key; CloudWatch may publish", Value::Null, || async {
                let out = sns
                    .create_topic()
                    .name(&name)
                    .set_attributes(Some(attributes.into_iter().collect()))
                    .set_tags(Some(tags))
                    .send()
                    .await
                    .on(&name, "CreateTopic")?;
                let arn = out.topic_arn.unwrap_or_default();
                Ok(Created { value: (), id: arn.clone(), arn: Some(arn), data: Value::Null })
            })
            .await?;
            if !ctx.is_plan() {
                converge_subscriptions(ctx, &res, &arn).await?;
            }
        }
        Some(a) => {
            ctx.adopt(&res, &arn, Some(&arn))?;
            if a.get("KmsMasterKeyId").map(String::as_str) != Some(key.as_str()) {
                set_topic_attribute(ctx, &res, &arn, "KmsMasterKeyId", a.get("KmsMasterKeyId").cloned(), &key).await?;
            }
            let have: Value = a.get("Policy").and_then(|p| serde_json::from_str(p).ok()).unwrap_or(Value::Null);
            if have != policy {
                set_topic_attribute(ctx, &res, &arn, "Policy", a.get("Policy").cloned(), &policy.to_string()).await?;
            }
            converge_subscriptions(ctx, &res, &arn).await?;
        }
    }
    Ok(arn)
}

async fn set_topic_attribute(
    ctx: &Ctx,
    res: &Res,
    arn: &str,
    attr: &str,
    prev: Option<String>,
    value: &str,
) -> Result<(), StepError> {
    ctx.update(
        res,
        arn,
        crate::engine::Detail::between(
            format!("topic {attr}"),
            &Value::String(prev.clone().unwrap_or_default()),
            &Value::String(value.to_owned()),
        ),
        Prev::TopicAttribute { attribute: attr.to_owned(), value: prev },
        || async {
            ctx.aws
                .target
                .sns
                .set_topic_attributes()
                .topic_arn(arn)
                .attribute_name(attr)
                .attribute_value(value)
                .send()
                .await
                .on(arn, "SetTopicAttributes")?;
            Ok(())
        },
    )
    .await
}

/// The topic's subscriptions, every page.
async fn subscriptions(ctx: &Ctx, arn: &str) -> Result<Vec<aws_sdk_sns::types::Subscription>, StepError> {
    let pages = ctx.aws.target.sns.list_subscriptions_by_topic().topic_arn(arn).into_paginator().items().send();
    pages.try_collect().await.on(arn, "ListSubscriptionsByTopic")
}

async fn converge_subscriptions(ctx: &Ctx, res: &Res, arn: &str) -> Result<(), StepError> {
    let sns = &ctx.aws.target.sns;
    if ctx.cfg.monitoring.alarm_emails.is_empty() {
        return Ok(());
    }
    let subs = subscriptions(ctx, arn).await?;
    for email in &ctx.cfg.monitoring.alarm_emails {
        if subs.iter().any(|s| s.protocol() == Some("email") && s.endpoint() == Some(email.as_str())) {
            continue;
        }
        ctx.update(res, arn, format!("subscribe {email}"), Prev::Subscribe { subscribe: email.to_owned() }, || async {
            sns.subscribe().topic_arn(arn).protocol("email").endpoint(email).send().await.on(arn, "Subscribe")?;
            Ok(())
        })
        .await?;
    }
    Ok(())
}

async fn converge_alarms(ctx: &Ctx, want: &[AlarmSpec]) -> Result<(), StepError> {
    let cw = &ctx.aws.target.cloudwatch;
    let mut have: BTreeMap<String, AlarmSpec> = BTreeMap::new();
    let names: Vec<String> = want.iter().map(|a| a.name.clone()).collect();
    for chunk in names.chunks(ALARM_NAMES_PER_CALL) {
        let mut pages = cw.describe_alarms().set_alarm_names(Some(chunk.to_vec())).into_paginator().send();
        while let Some(page) = pages.next().await {
            for a in page.on("prod alarms", "DescribeAlarms")?.metric_alarms() {
                let spec = AlarmSpec::of(a);
                have.insert(spec.name.clone(), spec);
            }
        }
    }
    // One lane per alarm: each is its own PutMetricAlarm.
    let have = &have;
    ctx.each(want.iter().cloned(), |spec: AlarmSpec| async move {
        let res = Res::new(STEP, "alarm", format!("alarm/{}", spec.name), &spec.name);
        let arn = alarm_arn(ctx, &spec.name);
        match have.get(&spec.name) {
            None => {
                ctx.create(
                    &res,
                    match spec.threshold {
                        Some(t) => format!("threshold {t} ({})", spec.comparison),
                        None => {
                            format!("band {} ({})", spec.threshold_metric_id.as_deref().unwrap_or("?"), spec.comparison)
                        }
                    },
                    Value::Null,
                    || async {
                        spec.put(ctx).await?;
                        Ok(Created { value: (), id: spec.name.clone(), arn: Some(arn.clone()), data: Value::Null })
                    },
                )
                .await?;
            }
            Some(current) => {
                ctx.existing(&res, &spec.name, Some(&arn), crate::engine::Ownership::Unproven)?;
                if *current != spec {
                    let (have, want) = (
                        serde_json::to_value(current).unwrap_or_default(),
                        serde_json::to_value(&spec).unwrap_or_default(),
                    );
                    ctx.update(
                        &res,
                        &spec.name,
                        crate::engine::Detail::between("definition", &have, &want),
                        Prev::Alarm { alarm: Box::new(current.clone()) },
                        || spec.put(ctx),
                    )
                    .await?;
                }
            }
        }
        Ok(())
    })
    .await
}

/// Dev's account: prod's unless dev is reached through a role.
async fn dev_account(ctx: &Ctx) -> Result<String, StepError> {
    match ctx.cfg.source.role_arn {
        Some(_) => ctx.aws.source.account_id().await.map_err(StepError::Invalid),
        None => Ok(ctx.account.clone()),
    }
}

/// Dev's dashboard `dev`, parsed.
async fn dev_dashboard(ctx: &Ctx, dev: &str) -> Result<Value, StepError> {
    let read = ctx.aws.source.cloudwatch.get_dashboard().dashboard_name(dev).send().await;
    let body = read.on(dev, "GetDashboard")?.dashboard_body.unwrap_or_default();
    serde_json::from_str(&body).map_err(|e| StepError::Invalid(format!("dev dashboard {dev}: body is not JSON: {e}")))
}

/// Every string of a JSON value.
fn strings(v: &Value) -> Vec<&str> {
    match v {
        Value::String(s) => vec![s.as_str()],
        Value::Array(a) => a.iter().flat_map(strings).collect(),
        Value::Object(o) => o.values().flat_map(strings).collect(),
        _ => vec![],
    }
}

/// `v` with every string passed through `f`.
fn map_strings(v: &Value, f: &mut impl FnMut(&str) -> String) -> Value {
    match v {
        Value::String(s) => Value::String(f(s)),
        Value::Array(a) => Value::Array(a.iter().map(|x| map_strings(x, f)).collect()),
        Value::Object(o) => Value::Object(o.iter().map(|(k, x)| (k.clone(), map_strings(x, f))).collect()),
        other => other.clone(),
    }
}

/// The dev identifiers left in a body, as the references map finds them.
fn body_references(refs: &Counterparts, body: &Value) -> Vec<Found> {
    let mut found: Vec<Found> = strings(body).into_iter().flat_map(|s| refs.rewrite(s).1).collect();
    found.dedup();
    found
}

/// The prod twin of dev's dashboard `body`: dev's names, account and alarm
/// ARNs rewritten by structure, every other dev identifier through the
/// references map (endpoints, ids, the key…), and a widget of the prod
/// alarms; with the dev identifiers found.
fn desired_dashboard(
    ctx: &Ctx,
    refs: &Counterparts,
    body: &Value,
    source_account: &str,
    alarm_names: &BTreeMap<String, String>,
    alarm_arns: &[String],
) -> (Value, Vec<Found>) {
    let (from, to) = (format!(":{source_account}:"), format!(":{}:", ctx.account));
    let rewritten = rewrite_dashboard(body, &ctx.cfg.names, alarm_names, &from, &to);
    let mut found = Vec::new();
    let mapped = map_strings(&rewritten, &mut |s| {
        let (v, f) = refs.rewrite(s);
        found.extend(f);
        v
    });
    found.dedup();
    (with_alarm_widget(mapped, &format!("{} alarms ({})", ctx.cfg.migration.name, ctx.suffix()), alarm_arns), found)
}

/// Dev's dashboards and the references map over their strings.
async fn dev_dashboards(ctx: &Ctx) -> Result<(Vec<(String, Value)>, Counterparts), StepError> {
    let mut bodies = Vec::new();
    for dev in &ctx.cfg.source.dashboards {
        bodies.push((dev.clone(), dev_dashboard(ctx, dev).await?));
    }
    let refs = crate::steps::common::references::gather(ctx, bodies.iter().flat_map(|(_, b)| strings(b))).await?;
    Ok((bodies, refs))
}

async fn converge_dashboards(
    ctx: &Ctx,
    alarm_names: &BTreeMap<String, String>,
    alarm_arns: &[String],
) -> Result<(), StepError> {
    let cw = &ctx.aws.target.cloudwatch;
    let source_account = dev_account(ctx).await?;
    let (bodies, refs) = dev_dashboards(ctx).await?;
    for (dev, body) in &bodies {
        let name = ctx.cfg.names.prod(dev);
        let res = Res::new(STEP, "dashboard", format!("dashboard/{name}"), &name);
        let (want, found) = desired_dashboard(ctx, &refs, body, &source_account, alarm_names, alarm_arns);
        crate::steps::common::references::record(ctx, STEP, &format!("dashboard:{dev}"), &found);
        let current = cw
            .get_dashboard()
            .dashboard_name(&name)
            .send()
            .await
            .found(&name, "GetDashboard")?
            .and_then(|out| out.dashboard_body.and_then(|b| serde_json::from_str::<Value>(&b).ok()));
        let put = || async {
            cw.put_dashboard()
                .dashboard_name(&name)
                .dashboard_body(want.to_string())
                .send()
                .await
                .on(&name, "PutDashboard")?;
            Ok(())
        };
        match current {
            None => {
                ctx.create(&res, format!("rewritten from {dev}"), json!({"dev": dev}), || async {
                    put().await?;
                    Ok(Created { value: (), id: name.clone(), arn: None, data: Value::Null })
                })
                .await?;
            }
            Some(c) => {
                ctx.existing(&res, &name, None, crate::engine::Ownership::Unproven)?;
                if c != want {
                    ctx.update(&res, &name, "body", Prev::Dashboard { body: c.clone() }, put).await?;
                }
            }
        }
    }
    Ok(())
}

async fn validate(ctx: &Ctx) -> Result<crate::report::Findings, StepError> {
    use crate::report::{diff, Check, Findings, Resource};
    let mut f = Findings::default();
    let topic = topic_arn(ctx);
    let key = crate::steps::kms::key_arn(ctx);
    match ctx
        .aws
        .target
        .sns
        .get_topic_attributes()
        .topic_arn(&topic)
        .send()
        .await
        .found(topic_name(ctx), "GetTopicAttributes")?
    {
        Some(out) => {
            let a = out.attributes.unwrap_or_default();
            f.resources.push(Resource::compared("sns_topic", "(prod only)", &topic_name(ctx), vec![]));
            let encrypted = a.get("KmsMasterKeyId") == Some(&key);
            let state = if encrypted { "the prod key" } else { a.get("KmsMasterKeyId").map_or("none", String::as_str) };
            f.checks.push(Check::setting("sns.cmk", &topic_name(ctx), encrypted, "encryption", state));
            let policy: Value = a.get("Policy").and_then(|p| serde_json::from_str(p).ok()).unwrap_or(Value::Null);
            f.checks.push(Check::wanted(
                "sns.cloudwatch_publish",
                &topic_name(ctx),
                policy == topic_policy(ctx, &topic),
                "CloudWatch of this account may publish",
                "a topic policy without that grant",
            ));
        }
        None => f.resources.push(Resource::missing("sns_topic", "(prod only)", &topic_name(ctx))), // Could not read is not missing: a throttled read is a failure (exit 1), never drift.
    }
    let dev_alarms = read_dev_alarms(ctx).await?;
    let set = alarm_set(ctx, &dev_alarms, &topic)?;
    let want: Vec<(String, AlarmSpec)> =
        set.alarms.iter().map(|a| (set.dev_of(&a.name).unwrap_or("(prod only)").to_owned(), a.clone())).collect();
    let names: Vec<String> = want.iter().map(|(_, a)| a.name.clone()).collect();
    let mut have: BTreeMap<String, AlarmSpec> = BTreeMap::new();
    for chunk in names.chunks(ALARM_NAMES_PER_CALL) {
        let out = ctx
            .aws
            .target
            .cloudwatch
            .describe_alarms()
            .set_alarm_names(Some(chunk.to_vec()))
            .send()
            .await
            .on("prod alarms", "DescribeAlarms")?;
        have.extend(
            out.metric_alarms().iter().map(|a| (a.alarm_name().unwrap_or_default().to_owned(), AlarmSpec::of(a))),
        );
    }
    for (dev, spec) in &want {
        match have.get(&spec.name) {
            None => f.resources.push(Resource::missing("alarm", dev, &spec.name)),
            Some(h) => {
                let mut d = Vec::new();
                diff(
                    &mut d,
                    "definition",
                    serde_json::to_string(spec).unwrap_or_default(),
                    serde_json::to_string(h).unwrap_or_default(),
                    false,
                );
                if dev != "(prod only)" {
                    diff(&mut d, "name", dev, &spec.name, true);
                }
                f.resources.push(Resource::compared("alarm", dev, &spec.name, d));
                let list = |a: &[String]| if a.is_empty() { "none".to_owned() } else { a.join(", ") };
                f.checks.push(Check::wanted(
                    "monitoring.alarm_actions",
                    &spec.name,
                    h.actions.contains(&topic) && h.ok_actions.contains(&topic),
                    "alarm and OK actions on the alarm topic",
                    format!("alarm actions {}; OK actions {}", list(&h.actions), list(&h.ok_actions)),
                ));
            }
        }
    }
    let alarm_names = &set.dev_to_prod;
    let arns: Vec<String> = want.iter().map(|(_, a)| alarm_arn(ctx, &a.name)).collect();
    let source_account = dev_account(ctx).await?;
    let (bodies, refs) = dev_dashboards(ctx).await?;
    for (dev, body) in &bodies {
        let name = ctx.cfg.names.prod(dev);
        let (desired, _) = desired_dashboard(ctx, &refs, body, &source_account, alarm_names, &arns);
        match ctx.aws.target.cloudwatch.get_dashboard().dashboard_name(&name).send().await {
            Ok(out) => {
                let current: Value =
                    out.dashboard_body.and_then(|b| serde_json::from_str(&b).ok()).unwrap_or(Value::Null);
                let mut d = Vec::new();
                diff(&mut d, "name", dev, &name, true);
                diff(&mut d, "body", desired.to_string(), current.to_string(), false);
                f.resources.push(Resource::compared("dashboard", dev, &name, d));
                let left = dev_leftovers(&current, &ctx.cfg.names);
                f.checks.push(Check::new(
                    "monitoring.dashboard_no_dev_identifiers",
                    &name,
                    left.is_empty(),
                    if left.is_empty() { "none".to_owned() } else { left.join(", ") },
                ));
                let place = format!("dashboard:{dev}");
                let leftovers: Vec<(String, Found)> =
                    body_references(&refs, &current).into_iter().map(|f| (place.clone(), f)).collect();
                f.checks.extend(crate::steps::common::references::checks(ctx, &name, &leftovers));
            }
            Err(e) => match StepError::sdk(&name, "GetDashboard", &e) {
                e if e.is_not_found() => f.resources.push(Resource::missing("dashboard", dev, &name)),
                e => return Err(e),
            },
        }
    }
    Ok(f)
}

async fn delete_alarm(ctx: &Ctx, name: &str) -> Result<(), StepError> {
    ctx.aws.target.cloudwatch.delete_alarms().alarm_names(name).send().await.on(name, "DeleteAlarms")?;
    Ok(())
}

async fn delete_dashboard(ctx: &Ctx, name: &str) -> Result<(), StepError> {
    match ctx
        .aws
        .target
        .cloudwatch
        .delete_dashboards()
        .dashboard_names(name)
        .send()
        .await
        .found(name, "DeleteDashboards")?
    {
        Some(_) => Ok(()),
        None => Ok(()),
    }
}

async fn delete_topic(ctx: &Ctx, arn: &str) -> Result<(), StepError> {
    // DeleteTopic is idempotent: a missing topic is not an error.
    ctx.aws.target.sns.delete_topic().topic_arn(arn).send().await.on(arn, "DeleteTopic")?;
    Ok(())
}

/// What a monitoring update replaced, as its intent records it for
/// rollback (untagged: the journal's own JSON shapes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
enum Prev {
    /// The alarm's definition before.
    Alarm { alarm: Box<AlarmSpec> },
    /// The dashboard's body before.
    Dashboard { body: Value },
    /// An email subscribed: undo unsubscribes it.
    Subscribe { subscribe: String },
    /// A topic attribute and its value before (`null`: unset).
    TopicAttribute {
        attribute: String,
        #[serde(deserialize_with = "crate::engine::journal::present")]
        value: Option<String>,
    },
}

async fn undo(ctx: &Ctx, r: &Record) -> Result<(), StepError> {
    let name = r.intent.name.as_str();
    let prev = || r.prev::<Prev>();
    match (r.intent.kind.as_str(), r.intent.op) {
        ("alarm", Op::Create | Op::Adopt) => delete_alarm(ctx, name).await?,
        ("alarm", Op::Update) => {
            if let Prev::Alarm { alarm } = prev()? {
                alarm.put(ctx).await?;
            }
        }
        ("dashboard", Op::Create | Op::Adopt) => delete_dashboard(ctx, name).await?,
        ("dashboard", Op::Update) => {
            let Prev::Dashboard { body } = prev()? else { return Ok(()) };
            ctx.aws
                .target
                .cloudwatch
                .put_dashboard()
                .dashboard_name(name)
                .dashboard_body(body.to_string())
                .send()
                .await
                .on(name, "PutDashboard")?;
        }
        ("sns_topic", Op::Create | Op::Adopt) => {
            delete_topic(ctx, r.id.as_deref().map_or_else(|| topic_arn(ctx), str::to_owned).as_str()).await?
        }
        ("sns_topic", Op::Update) => {
            let arn = r.intent.data["id"].as_str().unwrap_or_default();
            let sns = &ctx.aws.target.sns;
            let prev = prev()?;
            if let Prev::Subscribe { subscribe: email } = &prev {
                // A topic already gone has none; any other failed read (a
                // denial above all) is the undo's failure, never "none".
                let subs = subscriptions(ctx, arn).await.found()?.unwrap_or_default();
                for s in subs.iter().filter(|s| s.endpoint() == Some(email.as_str())) {
                    // A pending confirmation has no ARN to unsubscribe; it
                    // goes with the topic.
                    if let Some(sub) = s.subscription_arn().filter(|a| a.starts_with("arn:")) {
                        let out = sns.unsubscribe().subscription_arn(sub).send().await;
                        out.found(sub, "Unsubscribe")?;
                    }
                }
            } else if let Prev::TopicAttribute { attribute: attr, value: Some(value) } = &prev {
                sns.set_topic_attributes()
                    .topic_arn(arn)
                    .attribute_name(attr)
                    .attribute_value(value)
                    .send()
                    .await
                    .gone(arn, "SetTopicAttributes")?;
            }
        }
        (kind, op) => return Err(StepError::Invalid(format!("monitoring cannot undo {op:?} of {kind}"))),
    }
    Ok(())
}

async fn sweep(ctx: &Ctx, look: bool) -> Result<Vec<Swept>, StepError> {
    let mut removed = Vec::new();
    let cw = &ctx.aws.target.cloudwatch;
    let topic = topic_arn(ctx);
    // Alarms paymig names: its own and those acting on its topic.
    let mut pages = cw.describe_alarms().into_paginator().send();
    let mut ours = Vec::new();
    while let Some(page) = pages.next().await {
        for a in page.on("prod alarms", "DescribeAlarms")?.metric_alarms() {
            if a.alarm_actions().iter().any(|x| x == &topic) {
                ours.extend(a.alarm_name().map(str::to_owned));
            }
        }
    }
    for a in ours {
        if !look {
            delete_alarm(ctx, &a).await?;
        }
        removed.push(Swept::new("alarm", a));
    }
    // Dashboards carry no tags: one paymig created is in the journal; one
    // found by name alone may predate paymig and is not swept.
    if ctx.aws.target.sns.get_topic_attributes().topic_arn(&topic).send().await.is_ok() {
        if !look {
            delete_topic(ctx, &topic).await?;
        }
        removed.push(Swept::new("sns_topic", topic));
    }
    Ok(removed)
}

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
