//! Undo, sweep and data at risk (items per table).

use super::*;

pub(super) async fn delete_table(ctx: &Ctx, name: &str) -> Result<bool, StepError> {
    let ddb = &ctx.aws.target.dynamodb;
    let Some(t) = describe_prod(ctx, name).await? else { return Ok(false) };
    // DeleteTable is refused while the table or an index is changing.
    if !busy_parts(&t).is_empty() {
        wait_settled(ctx, name).await?;
    }
    if t.deletion_protection_enabled() == Some(true) {
        ddb.update_table().table_name(name).deletion_protection_enabled(false).send().await.on(name, "UpdateTable")?;
    }
    match ddb.delete_table().table_name(name).send().await.found(name, "DeleteTable")? {
        Some(_) => {}
        None => return Ok(false),
    }
    poll_until(ctx, STEP, name, "deleted", || async { Ok(describe_prod(ctx, name).await?.is_none().then_some(())) })
        .await?;
    Ok(true)
}

/// Runs an undo call on a table that may be gone already.
pub(super) async fn on_table<F, Fut>(name: &str, call: F) -> Result<(), StepError>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<(), StepError>>,
{
    match call().await {
        Err(e) if e.is_not_found() => {
            tracing::debug!(table = name, "already gone");
            Ok(())
        }
        other => other,
    }
}

/// What a table update replaced, as its intent records it for rollback
/// (untagged: the journal's own JSON shapes; a `null` setting is kept as
/// `null`, never dropped).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub(super) enum Prev {
    /// A setting of the table's [`TableSetting`] table, as it was.
    Setting(SettingBefore),
    /// A global secondary index added: undo deletes it.
    Gsi { gsi: String },
    /// The stream view type before (`null`: no stream).
    Stream {
        #[serde(deserialize_with = "present")]
        stream: Option<String>,
    },
    /// The billing mode and table throughput before.
    Billing {
        billing: String,
        #[serde(deserialize_with = "present")]
        throughput: Option<(i64, i64)>,
    },
    /// Deletion protection was on.
    DeletionProtection { deletion_protection: bool },
    /// Re-tagged (by the table's ARN).
    Tags(TagsBefore),
    /// Point-in-time recovery was off (journals before the settings
    /// table; now [`Prev::Setting`]).
    Pitr { pitr: bool },
    /// The TTL attribute before (`null`: none; journals before the
    /// settings table).
    Ttl {
        #[serde(deserialize_with = "present")]
        ttl: Option<String>,
    },
}

pub(super) async fn undo(ctx: &Ctx, r: &Record) -> Result<(), StepError> {
    let ddb = &ctx.aws.target.dynamodb;
    let name = r.intent.name.clone();
    match r.intent.op {
        Op::Create | Op::Adopt => {
            delete_table(ctx, &name).await?;
        }
        Op::Update => {
            // Every revert is an UpdateTable-like change: refused while the
            // table or an index is still changing (a previous revert's index
            // deletion above all).
            wait_settled(ctx, &name).await?;
            match r.prev::<Prev>()? {
                Prev::Gsi { gsi: index } => {
                    on_table(&name, || async {
                        ddb.update_table()
                            .table_name(&name)
                            .global_secondary_index_updates(
                                GlobalSecondaryIndexUpdate::builder()
                                    .delete(
                                        DeleteGlobalSecondaryIndexAction::builder()
                                            .index_name(index)
                                            .build()
                                            .expect("name set"),
                                    )
                                    .build(),
                            )
                            .send()
                            .await
                            .on(&name, "UpdateTable")?;
                        Ok(())
                    })
                    .await?;
                }
                Prev::Setting(before) => {
                    let table = Table { name: name.clone(), dev_ttl: None };
                    on_table(&name, || crate::steps::common::settings::restore::<TableSetting>(ctx, &table, &before))
                        .await?;
                }
                Prev::Pitr { .. } => on_table(&name, || set_pitr(ctx, &name, false)).await?,
                Prev::Ttl { ttl } => {
                    let now =
                        ddb.describe_time_to_live().table_name(&name).send().await.ok().and_then(|o| {
                            o.time_to_live_description().and_then(|d| d.attribute_name().map(str::to_owned))
                        });
                    on_table(&name, || set_ttl(ctx, &name, now.as_deref(), ttl.as_deref())).await?;
                }
                Prev::Stream { stream } => on_table(&name, || set_stream(ctx, &name, stream.as_deref(), true)).await?,
                Prev::Billing { billing, throughput: t } => {
                    on_table(&name, || async {
                        let mut u =
                            ddb.update_table().table_name(&name).billing_mode(DdbBilling::from(billing.as_str()));
                        if billing == "PROVISIONED" {
                            u = u.provisioned_throughput(throughput(t));
                        }
                        u.send().await.on(&name, "UpdateTable")?;
                        Ok(())
                    })
                    .await?;
                }
                Prev::DeletionProtection { .. } => {
                    on_table(&name, || async {
                        ddb.update_table()
                            .table_name(&name)
                            .deletion_protection_enabled(true)
                            .send()
                            .await
                            .on(&name, "UpdateTable")?;
                        Ok(())
                    })
                    .await?;
                }
                Prev::Tags(before) => {
                    let (added, arn) = (before.added(), before.arn.unwrap_or_default());
                    if !added.is_empty() {
                        on_table(&name, || async {
                            ddb.untag_resource()
                                .resource_arn(&arn)
                                .set_tag_keys(Some(added))
                                .send()
                                .await
                                .on(&name, "UntagResource")?;
                            Ok(())
                        })
                        .await?;
                    }
                }
            }
        }
    }
    Ok(())
}

/// Tables with items, by DynamoDB's own count (DescribeTable's ItemCount,
/// which DynamoDB refreshes about every six hours; paymig never reads a
/// table's items).
pub(super) async fn at_risk(ctx: &Ctx, resources: &[(String, String)]) -> Result<Vec<AtRisk>, StepError> {
    let mut out = Vec::new();
    for (kind, name) in resources.iter().filter(|(k, _)| k == "dynamodb_table") {
        let Some(t) = describe_prod(ctx, name).await? else { continue };
        let items = u64::try_from(t.item_count().unwrap_or(0)).unwrap_or(0);
        if items > 0 {
            let holds = format!(
                "DynamoDB table, {} item{} (DynamoDB's count, refreshed about every six hours)",
                thousands(items),
                if items == 1 { "" } else { "s" }
            );
            out.push(AtRisk { kind: kind.clone(), name: name.clone(), holds });
        }
    }
    Ok(out)
}

pub(super) async fn sweep(ctx: &Ctx, look: bool) -> Result<Vec<Swept>, StepError> {
    let mut removed = Vec::new();
    for dev in &ctx.cfg.source.dynamodb_tables {
        let name = ctx.cfg.names.prod(dev);
        let Some(t) = describe_prod(ctx, &name).await? else { continue };
        let arn = t.table_arn().unwrap_or_default();
        let tags = table_tags(ctx, &name, arn).await?;
        let ours = crate::steps::common::is_ours(ctx, tags.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        if ours && (look || delete_table(ctx, &name).await?) {
            removed.push(Swept::new("dynamodb_table", name));
        }
    }
    Ok(removed)
}
