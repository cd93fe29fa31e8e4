//! Undo and sweep of alarms, dashboards, the topic and its subscriptions.

use super::*;

pub(super) async fn delete_alarm(ctx: &Ctx, name: &str) -> Result<(), StepError> {
    ctx.aws.target.cloudwatch.delete_alarms().alarm_names(name).send().await.on(name, "DeleteAlarms")?;
    Ok(())
}

pub(super) async fn delete_dashboard(ctx: &Ctx, name: &str) -> Result<(), StepError> {
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

pub(super) async fn delete_topic(ctx: &Ctx, arn: &str) -> Result<(), StepError> {
    // DeleteTopic is idempotent: a missing topic is not an error.
    ctx.aws.target.sns.delete_topic().topic_arn(arn).send().await.on(arn, "DeleteTopic")?;
    Ok(())
}

/// What a monitoring update replaced, as its intent records it for
/// rollback (untagged: the journal's own JSON shapes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub(super) enum Prev {
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

pub(super) async fn undo(ctx: &Ctx, r: &Record) -> Result<(), StepError> {
    let name = r.intent.name.as_str();
    let prev = || r.prev::<Prev>();
    match (r.intent.kind.as_str(), r.intent.op) {
        (kind::ALARM, Op::Create | Op::Adopt) => delete_alarm(ctx, name).await?,
        (kind::ALARM, Op::Update) => {
            if let Prev::Alarm { alarm } = prev()? {
                alarm.put(ctx).await?;
            }
        }
        (kind::DASHBOARD, Op::Create | Op::Adopt) => delete_dashboard(ctx, name).await?,
        (kind::DASHBOARD, Op::Update) => {
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
        (kind::SNS_TOPIC, Op::Create | Op::Adopt) => {
            delete_topic(ctx, r.id.as_deref().map_or_else(|| topic_arn(ctx), str::to_owned).as_str()).await?
        }
        (kind::SNS_TOPIC, Op::Update) => {
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

pub(super) async fn sweep(ctx: &Ctx, look: bool) -> Result<Vec<Swept>, StepError> {
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
