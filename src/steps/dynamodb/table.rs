//! One table: created from dev's schema with the prod key, its stream,
//! tags (paged) and settings (billing, PITR, TTL), and the wait for it to
//! settle between changes (AWS allows one change at a time).

use super::*;

pub(super) async fn converge_table(ctx: &Ctx, dev: &DevTable, key_arn: &str) -> Result<(), StepError> {
    let ddb = &ctx.aws.target.dynamodb;
    let name = ctx.cfg.names.prod(&dev.name);
    let res = Res::new(STEP, kind::DYNAMODB_TABLE, format!("table/{name}"), &name);
    let want = Schema::of(&dev.table);
    let provisioned = ctx.cfg.dynamodb.billing_mode == BillingMode::Provisioned;
    if provisioned && table_throughput(&dev.table).is_none() {
        ctx.notice(
            STEP,
            format!("{}: dev is on-demand; PROVISIONED prod gets 5 read / 5 write units per table and index", dev.name),
        );
    }

    let Some(prod) = describe_prod(ctx, &name).await? else {
        let detail = format!(
            "{} GSI, {} LSI, {}",
            want.gsis.len(),
            want.lsis.len(),
            if provisioned { "provisioned" } else { "on-demand" }
        );
        let created = ctx
            .create(&res, detail, json!({"dev": dev.name}), || create_table(ctx, dev, &name, &want, key_arn))
            .await?;
        if created.is_some() {
            ctx.timed(STEP, Wait::TableActive, &name, wait_settled(ctx, &name)).await?;
        }
        converge_settings(ctx, dev, &res, &name, None).await?;
        return Ok(());
    };

    // A run that stopped mid-change (or another tool) may have left the
    // table or an index changing: nothing more is accepted until it settles.
    if !ctx.is_plan() && !busy_parts(&prod).is_empty() {
        wait_settled(ctx, &name).await?;
    }
    let arn = prod.table_arn().unwrap_or_default().to_owned();
    let have = Schema::of(&prod);
    let incompatible = want.incompatible(&have);
    if !incompatible.is_empty() {
        let msg = format!(
            "prod table {name} exists with a different schema AWS cannot change in place ({}); delete it or rename the dev table, then re-run",
            incompatible.join("; ")
        );
        if ctx.is_plan() {
            ctx.notice(STEP, msg);
        } else {
            return Err(StepError::Invalid(msg));
        }
    }
    converge_tags(ctx, &res, &name, &arn).await?;
    // One online index at a time: each UpdateTable waits for the previous
    // index to become ACTIVE. The attribute definitions accumulate.
    let mut attrs = have.attributes.clone();
    for (index, spec) in want.missing_gsis(&have) {
        attrs.extend(spec.keys.iter().filter_map(|(k, _)| want.attributes.get(k).map(|t| (k.clone(), t.clone()))));
        let mut gsi = CreateGlobalSecondaryIndexAction::builder()
            .index_name(index)
            .set_key_schema(Some(key_schema(&spec.keys)))
            .projection(projection(spec));
        if provisioned {
            gsi = gsi.provisioned_throughput(throughput(spec.throughput));
        }
        let gsi = gsi.build().map_err(|e| StepError::Invalid(e.to_string()))?;
        ctx.update(&res, &name, format!("add GSI {index}"), Prev::Gsi { gsi: index.clone() }, || async {
            ddb.update_table()
                .table_name(&name)
                .set_attribute_definitions(Some(attribute_definitions(&attrs)))
                .global_secondary_index_updates(GlobalSecondaryIndexUpdate::builder().create(gsi).build())
                .send()
                .await
                .on(&name, "UpdateTable")?;
            wait_settled(ctx, &name).await
        })
        .await?;
    }
    for extra in have.gsis.keys().filter(|n| !want.gsis.contains_key(*n)) {
        ctx.notice(STEP, format!("prod table {name} has GSI {extra}, which dev does not; left in place"));
    }
    if want.stream != have.stream {
        let prev = have.stream.clone();
        let shown = |s: &Option<String>| s.clone().unwrap_or_else(|| "off".to_owned());
        let detail = Detail::change("stream", shown(&have.stream), shown(&want.stream));
        ctx.update(&res, &name, detail, Prev::Stream { stream: prev }, || {
            set_stream(ctx, &name, want.stream.as_deref(), have.stream.is_some())
        })
        .await?;
    }
    let billing =
        prod.billing_mode_summary().and_then(|b| b.billing_mode()).map_or("PROVISIONED", |b| b.as_str()).to_owned();
    if billing != billing_of(ctx).as_str() {
        ctx.update(
            &res,
            &name,
            Detail::change("billing mode", &billing, billing_of(ctx).as_str()),
            Prev::Billing { billing: billing.clone(), throughput: table_throughput(&prod) },
            || async {
                let mut u = ddb.update_table().table_name(&name).billing_mode(billing_of(ctx));
                if provisioned {
                    // AWS needs every GSI's throughput in the same call.
                    u = u.provisioned_throughput(throughput(table_throughput(&dev.table)));
                    for (index, spec) in want.gsis.iter().filter(|(n, _)| have.gsis.contains_key(*n)) {
                        u = u.global_secondary_index_updates(
                            GlobalSecondaryIndexUpdate::builder()
                                .update(
                                    UpdateGlobalSecondaryIndexAction::builder()
                                        .index_name(index)
                                        .provisioned_throughput(throughput(spec.throughput))
                                        .build()
                                        .map_err(|e| StepError::Invalid(e.to_string()))?,
                                )
                                .build(),
                        );
                    }
                }
                u.send().await.on(&name, "UpdateTable")?;
                wait_settled(ctx, &name).await
            },
        )
        .await?;
    }
    if prod.deletion_protection_enabled() == Some(true) {
        ctx.update(
            &res,
            &name,
            Detail::change("deletion protection", "on", "off"),
            Prev::DeletionProtection { deletion_protection: true },
            || async {
                ddb.update_table()
                    .table_name(&name)
                    .deletion_protection_enabled(false)
                    .send()
                    .await
                    .on(&name, "UpdateTable")?;
                wait_settled(ctx, &name).await
            },
        )
        .await?;
    }
    let sse_ok = prod.sse_description().is_some_and(|s| s.kms_master_key_arn() == Some(key_arn));
    if !sse_ok && !is_planned(key_arn) {
        ctx.notice(STEP, format!("prod table {name} is not encrypted with the prod key {key_arn}; validate reports it (set at creation only)"));
    }
    converge_settings(ctx, dev, &res, &name, Some(&prod)).await
}

pub(super) async fn create_table(
    ctx: &Ctx,
    dev: &DevTable,
    name: &str,
    want: &Schema,
    key_arn: &str,
) -> Result<Created<String>, StepError> {
    let provisioned = ctx.cfg.dynamodb.billing_mode == BillingMode::Provisioned;
    let mut req = ctx
        .aws
        .target
        .dynamodb
        .create_table()
        .table_name(name)
        .set_attribute_definitions(Some(attribute_definitions(&want.attributes)))
        .set_key_schema(Some(key_schema(&want.keys)))
        .billing_mode(billing_of(ctx))
        .table_class(TableClass::from(want.table_class.as_str()))
        .deletion_protection_enabled(false)
        .sse_specification(
            SseSpecification::builder().enabled(true).sse_type(SseType::Kms).kms_master_key_id(key_arn).build(),
        )
        .set_tags(Some(tags(ctx)));
    if provisioned {
        req = req.provisioned_throughput(throughput(table_throughput(&dev.table)));
    }
    for (n, i) in &want.gsis {
        let mut g = GlobalSecondaryIndex::builder()
            .index_name(n)
            .set_key_schema(Some(key_schema(&i.keys)))
            .projection(projection(i));
        if provisioned {
            g = g.provisioned_throughput(throughput(i.throughput));
        }
        req = req.global_secondary_indexes(g.build().map_err(|e| StepError::Invalid(e.to_string()))?);
    }
    for (n, i) in &want.lsis {
        let l = LocalSecondaryIndex::builder()
            .index_name(n)
            .set_key_schema(Some(key_schema(&i.keys)))
            .projection(projection(i));
        req = req.local_secondary_indexes(l.build().map_err(|e| StepError::Invalid(e.to_string()))?);
    }
    if let Some(view) = &want.stream {
        req = req.stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::from(view.as_str()))
                .build()
                .map_err(|e| StepError::Invalid(e.to_string()))?,
        );
    }
    let out = req.send().await.on(name, "CreateTable")?;
    let arn = out.table_description.and_then(|t| t.table_arn).unwrap_or_default();
    Ok(Created { value: name.to_owned(), id: name.to_owned(), arn: Some(arn), data: Value::Null })
}

pub(super) async fn set_stream(
    ctx: &Ctx,
    name: &str,
    view: Option<&str>,
    currently_enabled: bool,
) -> Result<(), StepError> {
    let ddb = &ctx.aws.target.dynamodb;
    // A stream's view type cannot change while it is enabled: disable first.
    if currently_enabled {
        ddb.update_table()
            .table_name(name)
            .stream_specification(StreamSpecification::builder().stream_enabled(false).build().expect("enabled set"))
            .send()
            .await
            .on(name, "UpdateTable")?;
        wait_settled(ctx, name).await?;
    }
    if let Some(v) = view {
        ddb.update_table()
            .table_name(name)
            .stream_specification(
                StreamSpecification::builder()
                    .stream_enabled(true)
                    .stream_view_type(StreamViewType::from(v))
                    .build()
                    .expect("enabled set"),
            )
            .send()
            .await
            .on(name, "UpdateTable")?;
        wait_settled(ctx, name).await?;
    }
    Ok(())
}

/// Every tag of a table: ListTagsOfResource pages (`NextToken`), and the
/// SDK has no paginator for it; the migration's own tags may be on any page.
pub(super) async fn table_tags(ctx: &Ctx, name: &str, arn: &str) -> Result<BTreeMap<String, String>, StepError> {
    let mut tags = BTreeMap::new();
    let mut next: Option<String> = None;
    loop {
        let page = ctx
            .aws
            .target
            .dynamodb
            .list_tags_of_resource()
            .resource_arn(arn)
            .set_next_token(next.take())
            .send()
            .await
            .on(name, "ListTagsOfResource")?;
        tags.extend(page.tags().iter().map(|t| (t.key().to_owned(), t.value().to_owned())));
        match page.next_token() {
            Some(token) if !token.is_empty() => next = Some(token.to_owned()),
            _ => return Ok(tags),
        }
    }
}

pub(super) async fn converge_tags(ctx: &Ctx, res: &Res, name: &str, arn: &str) -> Result<(), StepError> {
    let ddb = &ctx.aws.target.dynamodb;
    let have = table_tags(ctx, name, arn).await?;
    // Found by name: paymig's only if it carries the migration's tag.
    let ours = crate::steps::common::is_ours(ctx, have.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    ctx.existing(res, name, Some(arn), crate::engine::Ownership::of(ours))?;
    let missing: Vec<Tag> = ctx
        .cfg
        .prod_tags()
        .into_iter()
        .filter(|(k, v)| have.get(k) != Some(v))
        .map(|(k, v)| Tag::builder().key(k).value(v).build().expect("key and value set"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let keys: Vec<String> = missing.iter().map(|t| t.key().to_owned()).collect();
    ctx.update(
        res,
        name,
        format!("tags {}", keys.join(", ")),
        Prev::Tags(TagsBefore { tags: have.clone(), set: keys.clone(), arn: Some(arn.to_owned()) }),
        || async {
            ddb.tag_resource().resource_arn(arn).set_tags(Some(missing)).send().await.on(name, "TagResource")?;
            Ok(())
        },
    )
    .await
}

/// A prod table and dev's TTL attribute: what its settings belong to.
pub(super) struct Table {
    pub(super) name: String,
    pub(super) dev_ttl: Option<String>,
}

/// The table settings outside CreateTable, as a table of settings.
#[derive(Debug, Clone, Copy)]
pub(super) enum TableSetting {
    /// `"on"`/`"off"`.
    Pitr,
    /// The TTL attribute (`null`: off).
    Ttl,
}

impl Setting for TableSetting {
    type Of = Table;

    const ALL: &'static [TableSetting] = &[TableSetting::Pitr, TableSetting::Ttl];

    fn name(self) -> &'static str {
        match self {
            TableSetting::Pitr => "point-in-time recovery",
            TableSetting::Ttl => "time to live",
        }
    }

    async fn read(self, ctx: &Ctx, of: &Self::Of) -> Result<Value, StepError> {
        let (ddb, name) = (&ctx.aws.target.dynamodb, of.name.as_str());
        Ok(match self {
            TableSetting::Pitr => {
                let out = ddb
                    .describe_continuous_backups()
                    .table_name(name)
                    .send()
                    .await
                    .on(name, "DescribeContinuousBackups")?;
                let on = out
                    .continuous_backups_description()
                    .and_then(|c| c.point_in_time_recovery_description())
                    .and_then(|p| p.point_in_time_recovery_status())
                    .is_some_and(|s| s.as_str() == "ENABLED");
                json!(if on { "on" } else { "off" })
            }
            TableSetting::Ttl => {
                let out = ddb.describe_time_to_live().table_name(name).send().await.on(name, "DescribeTimeToLive")?;
                out.time_to_live_description()
                    .filter(|d| d.time_to_live_status().is_some_and(|s| matches!(s.as_str(), "ENABLED" | "ENABLING")))
                    .and_then(|d| d.attribute_name())
                    .map_or(Value::Null, |a| json!(a))
            }
        })
    }

    fn absent(self) -> Value {
        match self {
            TableSetting::Pitr => json!("off"),
            TableSetting::Ttl => Value::Null,
        }
    }

    fn desired(self, _ctx: &Ctx, of: &Self::Of, _have: &Value) -> Value {
        match self {
            TableSetting::Pitr => json!("on"),
            TableSetting::Ttl => of.dev_ttl.as_deref().map_or(Value::Null, |a| json!(a)),
        }
    }

    async fn write(self, ctx: &Ctx, of: &Self::Of, have: &Value, want: &Value) -> Result<(), StepError> {
        match self {
            TableSetting::Pitr => set_pitr(ctx, &of.name, want == "on").await,
            TableSetting::Ttl => set_ttl(ctx, &of.name, have.as_str(), want.as_str()).await,
        }
    }

    fn detail(self, have: &Value, want: &Value) -> Detail {
        let shown = |v: &Value| match (self, v.as_str()) {
            (TableSetting::Pitr, Some(s)) => s.to_owned(),
            (TableSetting::Ttl, Some(a)) => format!("on {a}"),
            _ => "off".to_owned(),
        };
        Detail::change(self.name(), shown(have), shown(want))
    }
}

/// PITR and TTL: settings outside CreateTable.
pub(super) async fn converge_settings(
    ctx: &Ctx,
    dev: &DevTable,
    res: &Res,
    name: &str,
    existing: Option<&TableDescription>,
) -> Result<(), StepError> {
    let exists = !(ctx.is_plan() && existing.is_none());
    let table = Table { name: name.to_owned(), dev_ttl: dev.ttl_attribute.clone() };
    crate::steps::common::settings::converge::<TableSetting>(ctx, res, name, &table, exists).await
}

pub(super) async fn set_pitr(ctx: &Ctx, name: &str, on: bool) -> Result<(), StepError> {
    // Right after a table becomes ACTIVE, AWS often answers
    // ContinuousBackupsUnavailableException for a while (the SDK does not
    // retry it): retried for as long as a table may take.
    retry_until(
        &format!("point-in-time recovery on {name}"),
        ctx.max_wait(),
        |e| e.is_code("ContinuousBackupsUnavailableException"),
        || async {
            ctx.aws
                .target
                .dynamodb
                .update_continuous_backups()
                .table_name(name)
                .point_in_time_recovery_specification(
                    PointInTimeRecoverySpecification::builder()
                        .point_in_time_recovery_enabled(on)
                        .build()
                        .expect("flag set"),
                )
                .send()
                .await
                .on(name, "UpdateContinuousBackups")
        },
    )
    .await?;
    Ok(())
}

/// Waits until the table and each of its indexes are ACTIVE: UpdateTable is
/// refused while the table or an index is CREATING/UPDATING, and AWS creates
/// or deletes one online index at a time. A describe loop (the SDK's
/// `table_exists` waiter looks at the table only), bounded by
/// `[migration] max_wait_minutes`.
pub(super) async fn wait_settled(ctx: &Ctx, name: &str) -> Result<(), StepError> {
    let waited = async {
        let started = std::time::Instant::now();
        loop {
            let table = describe_prod(ctx, name).await?;
            let busy: Vec<String> = match &table {
                None => return Ok(()),
                Some(t) => busy_parts(t),
            };
            if busy.is_empty() {
                return Ok(());
            }
            if started.elapsed() >= ctx.max_wait() {
                return Err(StepError::Timeout {
                    resource: name.to_owned(),
                    what: format!("ACTIVE ({} still changing)", busy.join(", ")),
                    waited: ctx.max_wait(),
                });
            }
            // Every wait's rule: elapsed/20, between 1 and 15 s.
            tokio::time::sleep(crate::engine::poll_delay(started.elapsed())).await;
        }
    };
    crate::progress::while_waiting(STEP, &format!("{name} and its indexes to become ACTIVE"), waited).await
}

/// What of a table is not ACTIVE yet: the table and each index by name.
pub(super) fn busy_parts(t: &TableDescription) -> Vec<String> {
    let mut busy = Vec::new();
    if t.table_status().is_some_and(|s| s.as_str() != "ACTIVE") {
        busy.push(format!("the table ({})", t.table_status().map_or("", |s| s.as_str())));
    }
    for g in t.global_secondary_indexes() {
        if g.index_status().is_some_and(|s| s.as_str() != "ACTIVE") {
            busy.push(format!(
                "index {} ({})",
                g.index_name().unwrap_or("?"),
                g.index_status().map_or("", |s| s.as_str())
            ));
        }
    }
    busy
}

pub(super) async fn set_ttl(ctx: &Ctx, name: &str, from: Option<&str>, to: Option<&str>) -> Result<(), StepError> {
    let ddb = &ctx.aws.target.dynamodb;
    if let Some(old) = from {
        ddb.update_time_to_live()
            .table_name(name)
            .time_to_live_specification(
                TimeToLiveSpecification::builder().attribute_name(old).enabled(false).build().expect("set"),
            )
            .send()
            .await
            .on(name, "UpdateTimeToLive")?;
    }
    if let Some(new) = to {
        ddb.update_time_to_live()
            .table_name(name)
            .time_to_live_specification(
                TimeToLiveSpecification::builder().attribute_name(new).enabled(true).build().expect("set"),
            )
            .send()
            .await
            .on(name, "UpdateTimeToLive")?;
    }
    Ok(())
}
