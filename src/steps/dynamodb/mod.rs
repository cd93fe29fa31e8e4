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
use crate::steps::common::settings::{Setting, SettingBefore};
use crate::steps::common::TagsBefore;
mod schema;
mod table;
mod teardown;
mod validate;
pub use schema::*;
use table::*;
use teardown::*;
use validate::*;

pub struct DynamoDb;

const STEP: &str = "dynamodb";

/// The resource kinds this step records in the journal (what undo matches on).
pub mod kind {
    pub const DYNAMODB_TABLE: &str = "dynamodb_table";
}

static ABOUT: About = About {
    id: STEP,
    deps: &["kms"],
    undo_apart: &[],
    early: &[],
    kinds: &[kind::DYNAMODB_TABLE],
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
            (
                json!({"setting": "time to live", "value": null}),
                Prev::Setting(SettingBefore { setting: "time to live".into(), value: Value::Null }),
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

    // Step logic against the SDK's own clients over a scripted HTTP client
    // (crate::aws::replay): what DynamoDB answers, what the step asks.

    use crate::aws::replay::{self, Answer, Script};
    use crate::engine::Mode;

    fn replaying(script: &std::sync::Arc<Script>, mode: Mode) -> Ctx {
        let cfg = crate::engine::test_config();
        let aws = replay::aws(script, &cfg.migration.region);
        crate::engine::test_ctx_with(mode, cfg, aws)
    }

    fn pitr(status: &str) -> Answer {
        Answer::json(
            "DescribeContinuousBackups",
            json!({"ContinuousBackupsDescription": {"ContinuousBackupsStatus": "ENABLED",
                "PointInTimeRecoveryDescription": {"PointInTimeRecoveryStatus": status}}}),
        )
    }

    fn ttl(status: &str, attribute: Option<&str>) -> Answer {
        let mut d = json!({"TimeToLiveStatus": status});
        if let Some(a) = attribute {
            d["AttributeName"] = json!(a);
        }
        Answer::json("DescribeTimeToLive", json!({"TimeToLiveDescription": d}))
    }

    fn prod_table(name: &str, dev_ttl: Option<&str>) -> Table {
        Table { name: name.into(), dev_ttl: dev_ttl.map(str::to_owned) }
    }

    #[tokio::test]
    async fn settings_that_differ_are_written_after_being_read_and_journaled_with_their_values() {
        let script = Script::new([
            pitr("DISABLED"),
            Answer::json("UpdateContinuousBackups", json!({})),
            // An attribute being switched on counts as on.
            ttl("ENABLING", Some("old_ttl")),
            Answer::json("UpdateTimeToLive", json!({})),
            Answer::json("UpdateTimeToLive", json!({})),
        ]);
        let ctx = replaying(&script, Mode::Apply);
        let res = Res::new(STEP, kind::DYNAMODB_TABLE, "table/t-prod", "t-prod");
        crate::steps::common::settings::converge::<TableSetting>(
            &ctx,
            &res,
            "t-prod",
            &prod_table("t-prod", Some("expires_at")),
            true,
        )
        .await
        .unwrap();
        // TTL moves attribute: the old one off first, then the new one on.
        assert_eq!(
            script.asked(),
            [
                "DescribeContinuousBackups",
                "UpdateContinuousBackups",
                "DescribeTimeToLive",
                "UpdateTimeToLive",
                "UpdateTimeToLive"
            ]
        );
        assert_eq!(script.left(), 0);
        let prevs: Vec<Prev> = ctx.journal.as_ref().unwrap().records().iter().map(|r| r.prev().unwrap()).collect();
        assert_eq!(
            prevs,
            [
                Prev::Setting(SettingBefore { setting: "point-in-time recovery".into(), value: json!("off") }),
                Prev::Setting(SettingBefore { setting: "time to live".into(), value: json!("old_ttl") }),
            ]
        );
        let shown: Vec<String> = ctx.changes().iter().map(|c| c.detail.to_string()).collect();
        assert_eq!(shown, ["point-in-time recovery: off → on; time to live: on old_ttl → on expires_at"]);
    }

    #[tokio::test]
    async fn settings_already_so_are_read_and_nothing_is_written() {
        let script = Script::new([pitr("ENABLED"), ttl("ENABLED", Some("expires_at"))]);
        let ctx = replaying(&script, Mode::Apply);
        let res = Res::new(STEP, kind::DYNAMODB_TABLE, "table/t-prod", "t-prod");
        let of = prod_table("t-prod", Some("expires_at"));
        crate::steps::common::settings::converge::<TableSetting>(&ctx, &res, "t-prod", &of, true).await.unwrap();
        assert_eq!(script.asked(), ["DescribeContinuousBackups", "DescribeTimeToLive"]);
        assert!(ctx.journal.as_ref().unwrap().records().is_empty());
    }

    #[tokio::test]
    async fn pitr_refused_on_a_new_table_is_asked_again_and_a_denial_is_not() {
        // Right after ACTIVE, AWS answers ContinuousBackupsUnavailable for a
        // while: asked again (after the 1 s first backoff).
        let script = Script::new([
            Answer::json_error("UpdateContinuousBackups", 400, "ContinuousBackupsUnavailableException"),
            Answer::json("UpdateContinuousBackups", json!({})),
        ]);
        let ctx = replaying(&script, Mode::Apply);
        set_pitr(&ctx, "t-prod", true).await.unwrap();
        assert_eq!(script.asked(), ["UpdateContinuousBackups", "UpdateContinuousBackups"]);
        // A denial is the caller's to see, at once.
        let script = Script::new([Answer::json_error("UpdateContinuousBackups", 400, "AccessDeniedException")]);
        let ctx = replaying(&script, Mode::Apply);
        let e = set_pitr(&ctx, "t-prod", true).await.unwrap_err();
        assert!(e.is_code("AccessDeniedException"), "{e}");
        assert_eq!(script.asked().len(), 1);
    }

    #[tokio::test]
    async fn undo_restores_the_recorded_ttl_from_what_is_there_now() {
        let script = Script::new([
            ttl("ENABLED", Some("expires_at")),
            Answer::json("UpdateTimeToLive", json!({})),
            Answer::json("UpdateTimeToLive", json!({})),
        ]);
        let ctx = replaying(&script, Mode::Apply);
        let before = SettingBefore { setting: "time to live".into(), value: json!("old_ttl") };
        crate::steps::common::settings::restore::<TableSetting>(&ctx, &prod_table("t-prod", None), &before)
            .await
            .unwrap();
        assert_eq!(script.asked(), ["DescribeTimeToLive", "UpdateTimeToLive", "UpdateTimeToLive"]);
    }
}
