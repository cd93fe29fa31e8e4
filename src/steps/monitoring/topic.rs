//! The alarm topic: KMS-encrypted, its policy, the e-mail subscription.

use super::*;

pub(super) fn topic_policy(ctx: &Ctx, arn: &str) -> Value {
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

pub(super) async fn converge_topic(ctx: &Ctx) -> Result<String, StepError> {
    let sns = &ctx.aws.target.sns;
    let name = topic_name(ctx);
    let arn = topic_arn(ctx);
    let res = Res::new(STEP, kind::SNS_TOPIC, "topic", &name);
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
            let tags: Vec<aws_sdk_sns::types::Tag> = crate::steps::common::prod_tags_as(ctx, |k, v| {
                aws_sdk_sns::types::Tag::builder().key(k).value(v).build()
            })
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

pub(super) async fn set_topic_attribute(
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
pub(super) async fn subscriptions(ctx: &Ctx, arn: &str) -> Result<Vec<aws_sdk_sns::types::Subscription>, StepError> {
    let pages = ctx.aws.target.sns.list_subscriptions_by_topic().topic_arn(arn).into_paginator().items().send();
    pages.try_collect().await.on(arn, "ListSubscriptionsByTopic")
}

pub(super) async fn converge_subscriptions(ctx: &Ctx, res: &Res, arn: &str) -> Result<(), StepError> {
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
