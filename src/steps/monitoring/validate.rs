//! validate: the prod alarms, topic and dashboards against dev's.

use super::*;

pub(super) async fn validate(ctx: &Ctx) -> Result<crate::report::Findings, StepError> {
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
