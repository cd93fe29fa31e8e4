//! dynamodb: every `[source] dynamodb_tables` entry reproduced in prod —
//! attribute definitions, key schema, GSIs and LSIs (keys and projections),
//! stream specification, TTL and table class — with billing from
//! `[dynamodb] billing_mode`, SSE with the prod CMK, point-in-time recovery on
//! and deletion protection off. Tables are created one after another, each
//! waited for until ACTIVE (AWS limits concurrent creates of indexed tables).
//! A prod table with a different schema is never silently adopted.

use crate::aws::Call;
use crate::engine::estimate::{Compose, Wait};
use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode as DdbBilling, CreateGlobalSecondaryIndexAction, DeleteGlobalSecondaryIndexAction,
    GlobalSecondaryIndex, GlobalSecondaryIndexUpdate, KeySchemaElement, LocalSecondaryIndex,
    PointInTimeRecoverySpecification, Projection, ProvisionedThroughput, SseSpecification, SseType,
    StreamSpecification, StreamViewType, TableClass, TableDescription, Tag, TimeToLiveSpecification,
    UpdateGlobalSecondaryIndexAction,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::config::BillingMode;
use crate::engine::journal::{present, Op, Record};
use crate::engine::step::thousands;
use crate::engine::{
    is_planned, poll_until, retry_until, About, AtRisk, Created, Ctx, Declared, Detail, Outcome, Res, Step, StepError,
    Swept,
};
use crate::steps::common::arns;
use crate::steps::common::TagsBefore;

pub struct DynamoDb;

const STEP: &str = "dynamodb";

static ABOUT: About = About {
    id: STEP,
    deps: &["kms"],
    undo_apart: &[],
    early: &[],
    kinds: &["dynamodb_table"],
    actions: &[
        "dynamodb:DescribeTable",
        "dynamodb:DescribeTimeToLive",
        "dynamodb:DescribeContinuousBackups",
        "dynamodb:ListTagsOfResource",
        "dynamodb:CreateTable",
        "dynamodb:UpdateTable",
        "dynamodb:DeleteTable",
        "dynamodb:UpdateTimeToLive",
        "dynamodb:UpdateContinuousBackups",
        "dynamodb:TagResource",
        "dynamodb:UntagResource",
    ],
    source_actions: &["dynamodb:DescribeTable", "dynamodb:DescribeTimeToLive"],
    scopes: &[("dynamodb", arns::tables)],
    sweeps: "the DynamoDB tables this configuration names, when tagged for the migration",
    waits: &[("dynamodb_table", Wait::TableActive, Compose::Chain)],
    undo_waits: &[],
};

impl Declared for DynamoDb {
    fn about(&self) -> &'static About {
        &ABOUT
    }
}

impl Step for DynamoDb {
    async fn preflight(&self, ctx: &Ctx) -> Vec<StepError> {
        let mut problems = Vec::new();
        for t in &ctx.cfg.source.dynamodb_tables {
            if let Err(e) = read_dev(ctx, t).await {
                problems.push(e);
            }
        }
        problems
    }

    crate::step_functions!(run => converge, undo => undo, sweep => sweep, validate => validate, at_risk => at_risk);
}

/// The comparable shape of a table: what must match between dev and prod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schema {
    pub attributes: BTreeMap<String, String>,
    pub keys: Vec<(String, String)>,
    /// name -> (keys, projection type, non-key attributes)
    pub gsis: BTreeMap<String, Index>,
    pub lsis: BTreeMap<String, Index>,
    pub stream: Option<String>,
    pub table_class: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Index {
    pub keys: Vec<(String, String)>,
    pub projection: String,
    pub non_key: BTreeSet<String>,
    /// Provisioned (read, write) capacity, when the table is provisioned.
    pub throughput: Option<(i64, i64)>,
}

fn keys_of(k: &[KeySchemaElement]) -> Vec<(String, String)> {
    k.iter().map(|e| (e.attribute_name().to_owned(), e.key_type().as_str().to_owned())).collect()
}

fn projection_of(p: Option<&Projection>) -> (String, BTreeSet<String>) {
    (
        p.and_then(|p| p.projection_type()).map_or("ALL".to_owned(), |t| t.as_str().to_owned()),
        p.map(|p| p.non_key_attributes().iter().cloned().collect()).unwrap_or_default(),
    )
}

impl Schema {
    pub fn of(t: &TableDescription) -> Schema {
        let gsis = t
            .global_secondary_indexes()
            .iter()
            .map(|g| {
                let (projection, non_key) = projection_of(g.projection());
                let throughput = g
                    .provisioned_throughput()
                    .and_then(|p| Some((p.read_capacity_units()?, p.write_capacity_units()?)))
                    .filter(|(r, w)| *r > 0 || *w > 0);
                (
                    g.index_name().unwrap_or_default().to_owned(),
                    Index { keys: keys_of(g.key_schema()), projection, non_key, throughput },
                )
            })
            .collect();
        let lsis = t
            .local_secondary_indexes()
            .iter()
            .map(|l| {
                let (projection, non_key) = projection_of(l.projection());
                (
                    l.index_name().unwrap_or_default().to_owned(),
                    Index { keys: keys_of(l.key_schema()), projection, non_key, throughput: None },
                )
            })
            .collect();
        Schema {
            attributes: t
                .attribute_definitions()
                .iter()
                .map(|a| (a.attribute_name().to_owned(), a.attribute_type().as_str().to_owned()))
                .collect(),
            keys: keys_of(t.key_schema()),
            gsis,
            lsis,
            stream: t
                .stream_specification()
                .filter(|s| s.stream_enabled())
                .map(|s| s.stream_view_type().map_or("NEW_AND_OLD_IMAGES".into(), |v| v.as_str().to_owned())),
            table_class: t
                .table_class_summary()
                .and_then(|c| c.table_class())
                .map_or("STANDARD".into(), |c| c.as_str().to_owned()),
        }
    }

    /// Differences AWS cannot apply in place (key schema, LSIs, a GSI whose
    /// keys changed), each as one line.
    pub fn incompatible(&self, prod: &Schema) -> Vec<String> {
        let mut out = Vec::new();
        if self.keys != prod.keys {
            out.push(format!("key schema: dev {:?}, prod {:?}", self.keys, prod.keys));
        }
        let same_lsis = self.lsis.len() == prod.lsis.len()
            && self.lsis.iter().all(|(n, i)| prod.lsis.get(n).is_some_and(|p| p.same_shape(i)));
        if !same_lsis {
            out.push(format!(
                "local secondary indexes: dev {:?}, prod {:?}",
                self.lsis.keys().collect::<Vec<_>>(),
                prod.lsis.keys().collect::<Vec<_>>()
            ));
        }
        for (name, want) in &self.gsis {
            if let Some(have) = prod.gsis.get(name) {
                if !have.same_shape(want) {
                    out.push(format!("global secondary index {name}: keys or projection differ"));
                }
            }
        }
        out
    }

    /// GSIs dev has and prod lacks (added in place).
    pub fn missing_gsis<'a>(&'a self, prod: &Schema) -> Vec<(&'a String, &'a Index)> {
        self.gsis.iter().filter(|(n, _)| !prod.gsis.contains_key(*n)).collect()
    }
}

impl Index {
    /// Same keys and projection (throughput aside, which can change in place).
    pub fn same_shape(&self, other: &Index) -> bool {
        (&self.keys, &self.projection, &self.non_key) == (&other.keys, &other.projection, &other.non_key)
    }
}

/// What the migration reads of a dev table.
#[derive(Debug, Clone)]
pub struct DevTable {
    pub name: String,
    pub table: TableDescription,
    pub ttl_attribute: Option<String>,
}

async fn read_dev(ctx: &Ctx, name: &str) -> Result<DevTable, StepError> {
    let ddb = &ctx.aws.source.dynamodb;
    let table = match ddb
        .describe_table()
        .table_name(name)
        .send()
        .await
        .found(format!("dev table {name}"), "DescribeTable")?
    {
        Some(out) => {
            out.table.ok_or_else(|| StepError::Invalid(format!("dev table {name}: DescribeTable returned no table")))?
        }
        None => {
            return Err(StepError::Invalid(format!("[source] dynamodb_tables: the dev table {name:?} does not exist (check the name and the source account/region)")));
        }
    };
    let ttl = ddb
        .describe_time_to_live()
        .table_name(name)
        .send()
        .await
        .on(format!("dev table {name}"), "DescribeTimeToLive")?;
    let ttl_attribute = ttl
        .time_to_live_description()
        .filter(|d| d.time_to_live_status().is_some_and(|s| matches!(s.as_str(), "ENABLED" | "ENABLING")))
        .and_then(|d| d.attribute_name().map(str::to_owned));
    Ok(DevTable { name: name.to_owned(), table, ttl_attribute })
}

fn billing_of(ctx: &Ctx) -> DdbBilling {
    match ctx.cfg.dynamodb.billing_mode {
        BillingMode::PayPerRequest => DdbBilling::PayPerRequest,
        BillingMode::Provisioned => DdbBilling::Provisioned,
    }
}

/// Dev's throughput, or a modest default when dev is on-demand.
fn throughput(t: Option<(i64, i64)>) -> ProvisionedThroughput {
    let (r, w) = t.unwrap_or((5, 5));
    ProvisionedThroughput::builder().read_capacity_units(r).write_capacity_units(w).build().expect("both units set")
}

fn table_throughput(t: &TableDescription) -> Option<(i64, i64)> {
    t.provisioned_throughput()
        .and_then(|p| Some((p.read_capacity_units()?, p.write_capacity_units()?)))
        .filter(|(r, w)| *r > 0 || *w > 0)
}

fn tags(ctx: &Ctx) -> Vec<Tag> {
    super::common::prod_tags_as(ctx, |k, v| Tag::builder().key(k).value(v).build().expect("key and value set"))
}

fn projection(i: &Index) -> Projection {
    let mut p = Projection::builder().projection_type(i.projection.as_str().into());
    if !i.non_key.is_empty() {
        p = p.set_non_key_attributes(Some(i.non_key.iter().cloned().collect()));
    }
    p.build()
}

fn key_schema(keys: &[(String, String)]) -> Vec<KeySchemaElement> {
    keys.iter()
        .map(|(n, t)| {
            KeySchemaElement::builder().attribute_name(n).key_type(t.as_str().into()).build().expect("key set")
        })
        .collect()
}

fn attribute_definitions(attrs: &BTreeMap<String, String>) -> Vec<AttributeDefinition> {
    attrs
        .iter()
        .map(|(n, t)| {
            AttributeDefinition::builder()
                .attribute_name(n)
                .attribute_type(t.as_str().into())
                .build()
                .expect("attribute set")
        })
        .collect()
}

async fn describe_prod(ctx: &Ctx, name: &str) -> Result<Option<TableDescription>, StepError> {
    match ctx.aws.target.dynamodb.describe_table().table_name(name).send().await.found(name, "DescribeTable")? {
        Some(out) => Ok(out.table),
        None => Ok(None),
    }
}

/// Published once every table converged: their streams exist from then on.
#[derive(Debug, Clone, Default)]
struct Converged;

/// The stream ARN of dev table `dev_table`'s prod twin, for mapping dev's
/// stream references (its label is the prod table's own): read once the
/// dynamodb step converged the table in this run (waited for), or as it
/// exists.
pub async fn prod_stream(ctx: &Ctx, dev_table: &str) -> Result<Option<String>, StepError> {
    let _ = ctx.outputs.wait::<Converged>(STEP).await;
    Ok(describe_prod(ctx, &ctx.cfg.names.prod(dev_table)).await?.and_then(|t| t.latest_stream_arn))
}

async fn converge(ctx: &Ctx) -> Result<Outcome, StepError> {
    if ctx.cfg.source.dynamodb_tables.is_empty() {
        return Ok(Outcome::Skipped("no [source] dynamodb_tables configured".into()));
    }
    let key_arn = crate::steps::kms::key_arn(ctx);
    // Tables side by side, each in its own lane: reading dev, creating,
    // waiting for ACTIVE and the follow-up settings are one chain per table.
    let key_arn = &key_arn;
    ctx.each(ctx.cfg.source.dynamodb_tables.clone(), |dev_name: String| async move {
        let dev = read_dev(ctx, &dev_name).await?;
        converge_table(ctx, &dev, key_arn).await
    })
    .await?;
    ctx.outputs.publish(Converged);
    Ok(Outcome::Done)
}

async fn converge_table(ctx: &Ctx, dev: &DevTable, key_arn: &str) -> Result<(), StepError> {
    let ddb = &ctx.aws.target.dynamodb;
    let name = ctx.cfg.names.prod(&dev.name);
    let res = Res::new(STEP, "dynamodb_table", format!("table/{name}"), &name);
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

async fn create_table(
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

async fn set_stream(ctx: &Ctx, name: &str, view: Option<&str>, currently_enabled: bool) -> Result<(), StepError> {
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
async fn table_tags(ctx: &Ctx, name: &str, arn: &str) -> Result<BTreeMap<String, String>, StepError> {
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

async fn converge_tags(ctx: &Ctx, res: &Res, name: &str, arn: &str) -> Result<(), StepError> {
    let ddb = &ctx.aws.target.dynamodb;
    let have = table_tags(ctx, name, arn).await?;
    // Found by name: paymig's only if it carries the migration's tag.
    let ours = super::common::is_ours(ctx, have.iter().map(|(k, v)| (k.as_str(), v.as_str())));
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

/// PITR and TTL: settings outside CreateTable.
async fn converge_settings(
    ctx: &Ctx,
    dev: &DevTable,
    res: &Res,
    name: &str,
    existing: Option<&TableDescription>,
) -> Result<(), StepError> {
    let ddb = &ctx.aws.target.dynamodb;
    let planned_new = ctx.is_plan() && existing.is_none();
    let pitr_on = if planned_new {
        false
    } else {
        let out =
            ddb.describe_continuous_backups().table_name(name).send().await.on(name, "DescribeContinuousBackups")?;
        out.continuous_backups_description()
            .and_then(|c| c.point_in_time_recovery_description())
            .and_then(|p| p.point_in_time_recovery_status())
            .is_some_and(|s| s.as_str() == "ENABLED")
    };
    if !pitr_on {
        let detail = Detail::change("point-in-time recovery", "off", "on");
        ctx.update(res, name, detail, Prev::Pitr { pitr: false }, || set_pitr(ctx, name, true)).await?;
    }
    let ttl_now = if planned_new {
        None
    } else {
        let out = ddb.describe_time_to_live().table_name(name).send().await.on(name, "DescribeTimeToLive")?;
        out.time_to_live_description()
            .filter(|d| d.time_to_live_status().is_some_and(|s| matches!(s.as_str(), "ENABLED" | "ENABLING")))
            .and_then(|d| d.attribute_name().map(str::to_owned))
    };
    if ttl_now != dev.ttl_attribute {
        let shown = |t: &Option<String>| t.clone().map_or_else(|| "off".to_owned(), |a| format!("on {a}"));
        let detail = Detail::change("time to live", shown(&ttl_now), shown(&dev.ttl_attribute));
        ctx.update(res, name, detail, Prev::Ttl { ttl: ttl_now.clone() }, || {
            set_ttl(ctx, name, ttl_now.as_deref(), dev.ttl_attribute.as_deref())
        })
        .await?;
    }
    Ok(())
}

async fn set_pitr(ctx: &Ctx, name: &str, on: bool) -> Result<(), StepError> {
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
async fn wait_settled(ctx: &Ctx, name: &str) -> Result<(), StepError> {
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
fn busy_parts(t: &TableDescription) -> Vec<String> {
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

async fn set_ttl(ctx: &Ctx, name: &str, from: Option<&str>, to: Option<&str>) -> Result<(), StepError> {
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

async fn validate(ctx: &Ctx) -> Result<crate::report::Findings, StepError> {
    use crate::report::{diff, Check, Findings, Resource};
    let ddb = &ctx.aws.target.dynamodb;
    let key = crate::steps::kms::key_arn(ctx);
    let mut f = Findings::default();
    for dev_name in &ctx.cfg.source.dynamodb_tables {
        let dev = read_dev(ctx, dev_name).await?;
        let name = ctx.cfg.names.prod(dev_name);
        let Some(prod) = describe_prod(ctx, &name).await? else {
            f.resources.push(Resource::missing("dynamodb_table", dev_name, &name));
            continue;
        };
        let (want, have) = (Schema::of(&dev.table), Schema::of(&prod));
        let mut d = Vec::new();
        diff(&mut d, "name", dev_name, &name, true);
        diff(
            &mut d,
            "attribute_definitions",
            format!("{:?}", want.attributes),
            format!("{:?}", have.attributes),
            false,
        );
        diff(&mut d, "key_schema", format!("{:?}", want.keys), format!("{:?}", have.keys), false);
        let shape = |m: &BTreeMap<String, Index>| {
            m.iter()
                .map(|(k, i)| format!("{k}:{:?}:{}:{:?}", i.keys, i.projection, i.non_key))
                .collect::<Vec<_>>()
                .join(";")
        };
        diff(&mut d, "global_secondary_indexes", shape(&want.gsis), shape(&have.gsis), false);
        diff(&mut d, "local_secondary_indexes", shape(&want.lsis), shape(&have.lsis), false);
        diff(&mut d, "stream", format!("{:?}", want.stream), format!("{:?}", have.stream), false);
        diff(&mut d, "table_class", &want.table_class, &have.table_class, false);
        let billing = |t: &TableDescription| {
            t.billing_mode_summary().and_then(|b| b.billing_mode()).map_or("PROVISIONED", |b| b.as_str()).to_owned()
        };
        diff(&mut d, "billing_mode", billing(&dev.table), billing(&prod), billing(&prod) == billing_of(ctx).as_str());
        if ctx.cfg.dynamodb.billing_mode == BillingMode::Provisioned && table_throughput(&dev.table).is_some() {
            diff(
                &mut d,
                "provisioned_throughput",
                format!("{:?}", table_throughput(&dev.table)),
                format!("{:?}", table_throughput(&prod)),
                false,
            );
        }
        let ttl = ddb.describe_time_to_live().table_name(&name).send().await.on(&name, "DescribeTimeToLive")?;
        let ttl = ttl
            .time_to_live_description()
            .filter(|d| d.time_to_live_status().is_some_and(|s| matches!(s.as_str(), "ENABLED" | "ENABLING")))
            .and_then(|d| d.attribute_name().map(str::to_owned));
        diff(&mut d, "time_to_live", format!("{:?}", dev.ttl_attribute), format!("{ttl:?}"), false);
        let sse = prod.sse_description().and_then(|s| s.kms_master_key_arn()).unwrap_or("AWS owned key").to_owned();
        let dev_sse =
            dev.table.sse_description().and_then(|s| s.kms_master_key_arn()).unwrap_or("AWS owned key").to_owned();
        diff(&mut d, "encryption", dev_sse, &sse, sse == key);
        f.resources.push(Resource::compared("dynamodb_table", dev_name, &name, d));
        let pitr =
            ddb.describe_continuous_backups().table_name(&name).send().await.on(&name, "DescribeContinuousBackups")?;
        let pitr_on = pitr
            .continuous_backups_description()
            .and_then(|c| c.point_in_time_recovery_description())
            .and_then(|p| p.point_in_time_recovery_status())
            .is_some_and(|s| s.as_str() == "ENABLED");
        let pitr_state = if pitr_on { "enabled" } else { "disabled" };
        f.checks.push(Check::setting("dynamodb.pitr", &name, pitr_on, "point-in-time recovery", pitr_state));
        let encryption = if sse == key { "the prod key" } else { sse.as_str() };
        f.checks.push(Check::setting("dynamodb.cmk", &name, sse == key, "encryption", encryption));
        let protected = prod.deletion_protection_enabled() == Some(true);
        f.checks.push(Check::setting(
            "dynamodb.deletion_protection_off",
            &name,
            !protected,
            "deletion protection",
            crate::report::on_off(protected),
        ));
        let tags = table_tags(ctx, &name, prod.table_arn().unwrap_or_default()).await?;
        f.checks.extend(super::common::common_checks(ctx, &name, &tags));
    }
    Ok(f)
}

async fn delete_table(ctx: &Ctx, name: &str) -> Result<bool, StepError> {
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
async fn on_table<F, Fut>(name: &str, call: F) -> Result<(), StepError>
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
enum Prev {
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
    /// Point-in-time recovery was off.
    Pitr { pitr: bool },
    /// The TTL attribute before (`null`: none).
    Ttl {
        #[serde(deserialize_with = "present")]
        ttl: Option<String>,
    },
}

async fn undo(ctx: &Ctx, r: &Record) -> Result<(), StepError> {
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
async fn at_risk(ctx: &Ctx, resources: &[(String, String)]) -> Result<Vec<AtRisk>, StepError> {
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

async fn sweep(ctx: &Ctx, look: bool) -> Result<Vec<Swept>, StepError> {
    let mut removed = Vec::new();
    for dev in &ctx.cfg.source.dynamodb_tables {
        let name = ctx.cfg.names.prod(dev);
        let Some(t) = describe_prod(ctx, &name).await? else { continue };
        let arn = t.table_arn().unwrap_or_default();
        let tags = table_tags(ctx, &name, arn).await?;
        let ours = super::common::is_ours(ctx, tags.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        if ours && (look || delete_table(ctx, &name).await?) {
            removed.push(Swept::new("dynamodb_table", name));
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::types::{
        GlobalSecondaryIndexDescription, KeyType, LocalSecondaryIndexDescription, ProjectionType, ScalarAttributeType,
    };

    #[test]
    fn previous_values_keep_their_journal_shapes_and_a_null_setting_is_not_another_variant() {
        let cases = [
            (json!({"gsi": "by-merchant"}), Prev::Gsi { gsi: "by-merchant".into() }),
            (json!({"stream": null}), Prev::Stream { stream: None }),
            (
                json!({"billing": "PROVISIONED", "throughput": [5, 5]}),
                Prev::Billing { billing: "PROVISIONED".into(), throughput: Some((5, 5)) },
            ),
            (json!({"deletion_protection": true}), Prev::DeletionProtection { deletion_protection: true }),
            (
                json!({"tags": {}, "set": ["Environment"], "arn": "arn:t"}),
                Prev::Tags(TagsBefore {
                    tags: BTreeMap::new(),
                    set: vec!["Environment".into()],
                    arn: Some("arn:t".into()),
                }),
            ),
            (json!({"pitr": false}), Prev::Pitr { pitr: false }),
            (json!({"ttl": null}), Prev::Ttl { ttl: None }),
            (json!({"ttl": "expires_at"}), Prev::Ttl { ttl: Some("expires_at".into()) }),
        ];
        for (json, prev) in cases {
            assert_eq!(serde_json::from_value::<Prev>(json.clone()).unwrap(), prev, "{json}");
            assert_eq!(serde_json::to_value(&prev).unwrap(), json);
        }
        assert!(
            serde_json::from_value::<Prev>(json!({"unknown": 1})).is_err(),
            "an unknown shape is an error, never a guess"
        );
    }

    fn kse(n: &str, t: KeyType) -> KeySchemaElement {
        KeySchemaElement::builder().attribute_name(n).key_type(t).build().unwrap()
    }

    fn table(lsi: bool, gsi: &[&str]) -> TableDescription {
        let mut b = TableDescription::builder()
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("pk")
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .unwrap(),
            )
            .key_schema(kse("pk", KeyType::Hash))
            .key_schema(kse("sk", KeyType::Range));
        for g in gsi {
            b = b.global_secondary_indexes(
                GlobalSecondaryIndexDescription::builder()
                    .index_name(*g)
                    .key_schema(kse("gk", KeyType::Hash))
                    .projection(
                        Projection::builder().projection_type(ProjectionType::Include).non_key_attributes("a").build(),
                    )
                    .build(),
            );
        }
        if lsi {
            b = b.local_secondary_indexes(
                LocalSecondaryIndexDescription::builder()
                    .index_name("by-date")
                    .key_schema(kse("pk", KeyType::Hash))
                    .key_schema(kse("d", KeyType::Range))
                    .build(),
            );
        }
        b.build()
    }

    #[test]
    fn missing_gsis_are_added_in_place_but_lsi_and_key_changes_are_refused() {
        let dev = Schema::of(&table(true, &["g1", "g2"]));
        let prod = Schema::of(&table(true, &["g1"]));
        assert!(dev.incompatible(&prod).is_empty());
        assert_eq!(dev.missing_gsis(&prod).iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["g2"]);
        let no_lsi = Schema::of(&table(false, &["g1", "g2"]));
        assert!(dev.incompatible(&no_lsi)[0].contains("local secondary"));
        let mut other_keys = prod.clone();
        other_keys.keys.pop();
        assert!(dev.incompatible(&other_keys)[0].contains("key schema"));
    }

    #[test]
    fn projections_keep_non_key_attributes() {
        let s = Schema::of(&table(false, &["g1"]));
        assert_eq!(s.gsis["g1"].projection, "INCLUDE");
        assert_eq!(s.gsis["g1"].non_key, BTreeSet::from(["a".to_owned()]));
        let p = projection(&s.gsis["g1"]);
        assert_eq!(p.non_key_attributes(), ["a"]);
    }
}
