//! Alarms: dev's in a comparable, journal-able form (`AlarmSpec`), the
//! migration's own (error rate, throttles, database, DLQ), dimensions
//! rewritten to prod names, and their converge.

use super::*;

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

pub(super) fn dims(d: &[Dimension]) -> Vec<(String, String)> {
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

    pub(super) async fn put(&self, ctx: &Ctx) -> Result<(), StepError> {
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
            let tags = crate::steps::common::prod_tags_as(ctx, |k, v| {
                aws_sdk_cloudwatch::types::Tag::builder().key(k).value(v).build()
            });
            req = req.set_tags(Some(tags));
        }
        req.send().await.on(&self.name, "PutMetricAlarm")?;
        Ok(())
    }
}

pub(super) fn alarm_arn(ctx: &Ctx, name: &str) -> String {
    format!("arn:aws:cloudwatch:{}:{}:alarm:{name}", ctx.cfg.migration.region, ctx.account)
}

pub(super) fn topic_name(ctx: &Ctx) -> String {
    ctx.cfg.names.own("alarms")
}

pub(super) fn topic_arn(ctx: &Ctx) -> String {
    format!("arn:aws:sns:{}:{}:{}", ctx.cfg.migration.region, ctx.account, topic_name(ctx))
}

/// The alarms paymig defines itself, from `[monitoring]`.
pub(super) fn own_alarms(ctx: &Ctx, topic: &str) -> Vec<AlarmSpec> {
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
pub(super) fn rewrite_dims(names: &NameMap, d: &[(String, String)]) -> (Vec<(String, String)>, bool) {
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
pub(super) fn alarm_set(ctx: &Ctx, dev: &[MetricAlarm], topic: &str) -> Result<AlarmSet, StepError> {
    desired_alarms(own_alarms(ctx, topic), &ctx.cfg.names, &ctx.cfg.monitoring.alarm_thresholds, dev, topic)
        .map_err(StepError::Invalid)
}

pub(super) async fn converge_alarms(ctx: &Ctx, want: &[AlarmSpec]) -> Result<(), StepError> {
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
        let res = Res::new(STEP, kind::ALARM, format!("alarm/{}", spec.name), &spec.name);
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
