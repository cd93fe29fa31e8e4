//! kms: the prod customer-managed key (rotation on) and its alias
//! `alias/<migration>-<suffix>`. Its key policy names no wildcard action and
//! lets RDS, DynamoDB, Lambda, SNS, CloudWatch and CloudWatch Logs of this
//! account use it. Keys cannot be deleted at once: undo schedules deletion
//! with the 7-day minimum, so a re-apply after destroy creates a new key
//! behind the same alias.

use crate::aws::Call;
use std::collections::BTreeMap;

use aws_sdk_kms::types::{KeyMetadata, KeySpec, KeyState, KeyUsageType, Tag};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::engine::journal::{Op, Record};
use crate::engine::{planned_id, retry_eventual, About, Created, Ctx, Declared, Outcome, Res, Step, StepError, Swept};
use crate::steps::common::arns;
use crate::steps::common::settings::{self, Setting, SettingBefore};
use crate::steps::common::TagsBefore;

pub struct Kms;

/// What the kms step publishes for the steps that encrypt with the key.
#[derive(Debug, Clone, Default)]
pub struct Key {
    /// The prod key's ARN (a placeholder in a plan that creates it).
    pub arn: String,
}

/// The prod key's ARN; empty before the kms step has run or observed it.
pub fn key_arn(ctx: &Ctx) -> String {
    ctx.outputs.get::<Key>().arn
}

const STEP: &str = "kms";
/// KMS's minimum deletion window.
pub const PENDING_WINDOW_DAYS: i32 = 7;

/// The resource kinds this step records in the journal (what undo matches on).
pub mod kind {
    pub const KMS_KEY: &str = "kms_key";
    pub const KMS_ALIAS: &str = "kms_alias";
}

static ABOUT: About = About {
    id: STEP,
    deps: &[],
    kinds: &[kind::KMS_KEY, kind::KMS_ALIAS],
    actions: &[
        "kms:DescribeKey",
        "kms:CreateKey",
        "kms:GetKeyPolicy",
        "kms:PutKeyPolicy",
        "kms:GetKeyRotationStatus",
        "kms:EnableKeyRotation",
        "kms:DisableKeyRotation",
        "kms:ListResourceTags",
        "kms:TagResource",
        "kms:UntagResource",
        "kms:CreateAlias",
        "kms:UpdateAlias",
        "kms:DeleteAlias",
        "kms:ListKeys",
        "kms:ScheduleKeyDeletion",
    ],
    scopes: &[("kms", arns::kms_keys)],
    sweeps: "keys tagged for the migration (scheduled for deletion, 7-day window) and the alias",
    ..About::NONE
};

impl Declared for Kms {
    fn about(&self) -> &'static About {
        &ABOUT
    }
}

impl Step for Kms {
    crate::step_functions!(run => converge, undo => undo, sweep => sweep, validate => validate);

    /// The existing key, which several checks compare against. A key that
    /// is not there is a finding of validate; one that could not be read is
    /// a failure (exit 1), never reported as drift.
    async fn observe(&self, ctx: &Ctx) -> Result<(), StepError> {
        let alias = ctx.cfg.names.kms_alias();
        let found = ctx.aws.target.kms.describe_key().key_id(&alias).send().await;
        if let Some(arn) = found.found(&alias, "DescribeKey")?.and_then(|k| k.key_metadata).and_then(|m| m.arn) {
            ctx.outputs.publish(Key { arn });
        }
        Ok(())
    }
}

fn key_res(ctx: &Ctx) -> Res {
    Res::new(STEP, kind::KMS_KEY, "key", ctx.cfg.names.kms_alias())
}

fn alias_res(ctx: &Ctx) -> Res {
    Res::new(STEP, kind::KMS_ALIAS, "alias", ctx.cfg.names.kms_alias())
}

/// What the data services and the administrators do with the key's data.
const CRYPTO: [&str; 6] = [
    "kms:Encrypt",
    "kms:Decrypt",
    "kms:ReEncryptFrom",
    "kms:ReEncryptTo",
    "kms:GenerateDataKey",
    "kms:GenerateDataKeyWithoutPlaintext",
];

/// The key policy: explicit actions only (no `kms:*`), the account root for
/// administration, the data services through `kms:ViaService`, and the
/// service principals of CloudWatch (alarms to an encrypted SNS topic) and
/// CloudWatch Logs.
pub fn key_policy(account: &str, region: &str) -> Value {
    // Administration: whatever this step does to the key (not to the
    // account: creating keys, listing them), and the rest of its life cycle.
    let admin: Vec<&str> = Kms
        .actions()
        .iter()
        .copied()
        .filter(|a| !matches!(*a, "kms:CreateKey" | "kms:ListKeys"))
        .chain([
            "kms:CancelKeyDeletion",
            "kms:EnableKey",
            "kms:DisableKey",
            "kms:UpdateKeyDescription",
            "kms:CreateGrant",
            "kms:ListGrants",
            "kms:RevokeGrant",
            "kms:RetireGrant",
        ])
        .chain(CRYPTO)
        .collect();
    let use_key: Vec<&str> = CRYPTO.into_iter().chain(["kms:DescribeKey", "kms:CreateGrant"]).collect();
    let via: Vec<String> =
        ["rds", "dynamodb", "lambda", "sns"].iter().map(|s| format!("{s}.{region}.amazonaws.com")).collect();
    json!({
        "Version": "2012-10-17",
        "Id": "paymig-key-policy",
        "Statement": [
            {
                "Sid": "AccountAdministration",
                "Effect": "Allow",
                "Principal": {"AWS": format!("arn:aws:iam::{account}:root")},
                "Action": admin,
                "Resource": "*"
            },
            {
                "Sid": "AllowDataServicesOfThisAccount",
                "Effect": "Allow",
                "Principal": {"AWS": "*"},
                "Action": use_key,
                "Resource": "*",
                "Condition": {
                    "StringEquals": {"kms:CallerAccount": account, "kms:ViaService": via}
                }
            },
            {
                "Sid": "AllowCloudWatchAlarmsToEncryptedTopics",
                "Effect": "Allow",
                "Principal": {"Service": "cloudwatch.amazonaws.com"},
                "Action": ["kms:Decrypt", "kms:GenerateDataKey", "kms:GenerateDataKeyWithoutPlaintext"],
                "Resource": "*",
                "Condition": {"StringEquals": {"aws:SourceAccount": account}}
            },
            {
                "Sid": "AllowCloudWatchLogs",
                "Effect": "Allow",
                "Principal": {"Service": format!("logs.{region}.amazonaws.com")},
                "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncryptFrom", "kms:ReEncryptTo", "kms:GenerateDataKey", "kms:GenerateDataKeyWithoutPlaintext", "kms:DescribeKey"],
                "Resource": "*",
                "Condition": {"ArnLike": {"kms:EncryptionContext:aws:logs:arn": format!("arn:aws:logs:{region}:{account}:log-group:*")}}
            }
        ]
    })
}

fn kms_tags(tags: &BTreeMap<String, String>) -> Result<Vec<Tag>, StepError> {
    tags.iter()
        .map(|(k, v)| Tag::builder().tag_key(k).tag_value(v).build().map_err(|e| StepError::Invalid(e.to_string())))
        .collect()
}

/// The key the alias points at, if the alias exists.
/// The prod key as `(id, ARN, alias)`, for mapping dev's key references:
/// what the kms step publishes in this run (waited for), or what exists
/// (read) when the run does not schedule it. Placeholders in a plan that
/// creates the key.
pub async fn prod_key(ctx: &Ctx) -> Result<Option<(String, String, String)>, StepError> {
    let arn = match ctx.outputs.wait::<Key>(STEP).await {
        Some(k) => Some(k.arn),
        None => describe_alias_target(ctx).await?.and_then(|m| m.arn),
    };
    Ok(arn.filter(|a| !a.is_empty()).map(|arn| {
        let id = if crate::engine::is_planned(&arn) {
            planned_id("kms key")
        } else {
            arn.rsplit('/').next().unwrap_or_default().to_owned()
        };
        (id, arn, ctx.cfg.names.kms_alias())
    }))
}

async fn describe_alias_target(ctx: &Ctx) -> Result<Option<KeyMetadata>, StepError> {
    let alias = ctx.cfg.names.kms_alias();
    match ctx.aws.target.kms.describe_key().key_id(&alias).send().await.found(alias, "DescribeKey")? {
        Some(out) => Ok(out.key_metadata),
        None => Ok(None),
    }
}

async fn key_tags(ctx: &Ctx, key_id: &str) -> Result<BTreeMap<String, String>, StepError> {
    let tags: Vec<Tag> = ctx
        .aws
        .target
        .kms
        .list_resource_tags()
        .key_id(key_id)
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .on(key_id, "ListResourceTags")?;
    Ok(tags.into_iter().map(|t| (t.tag_key, t.tag_value)).collect())
}

/// Keys tagged for this migration that are not pending deletion: what a
/// killed run may have created before its alias existed.
async fn find_tagged_keys(ctx: &Ctx) -> Result<Vec<KeyMetadata>, StepError> {
    let kms = &ctx.aws.target.kms;
    let keys: Vec<_> =
        kms.list_keys().into_paginator().items().send().try_collect().await.on("kms keys", "ListKeys")?;
    let mut found = Vec::new();
    let mut unreadable = Vec::new();
    for k in keys {
        let Some(id) = k.key_id else { continue };
        let tags = match key_tags(ctx, &id).await {
            Ok(t) => t,
            // Deleted since the list.
            Err(e) if e.is_not_found() => continue,
            // Another team's key whose policy does not admit this account's
            // principals — never one of paymig's, whose policy does. Said,
            // not hidden: a policy lacking kms:ListResourceTags reads the same.
            Err(e) if e.is_access_denied() => {
                unreadable.push(id);
                continue;
            }
            Err(e) => return Err(e),
        };
        if !super::common::is_ours(ctx, tags.iter().map(|(k, v)| (k.as_str(), v.as_str()))) {
            continue;
        }
        let md = kms.describe_key().key_id(&id).send().await.on(&id, "DescribeKey")?.key_metadata;
        if let Some(md) = md.filter(|m| {
            !matches!(m.key_state, Some(KeyState::PendingDeletion) | Some(KeyState::PendingReplicaDeletion))
        }) {
            found.push(md);
        }
    }
    if !unreadable.is_empty() {
        tracing::warn!(
            "the tags of {} KMS key(s) could not be read (access denied: {}); a key of this migration among them would be missed — check that paymig's policy grants kms:ListResourceTags",
            unreadable.len(),
            unreadable.join(", ")
        );
    }
    Ok(found)
}

async fn converge(ctx: &Ctx) -> Result<Outcome, StepError> {
    let kms = &ctx.aws.target.kms;
    let key = key_res(ctx);
    let alias = alias_res(ctx);
    let desired_tags = ctx.cfg.prod_tags();
    let policy = key_policy(&ctx.account, &ctx.cfg.migration.region);

    let current = describe_alias_target(ctx).await?;
    let usable = current.clone().filter(|m| matches!(m.key_state, Some(KeyState::Enabled)));
    let alias_exists = current.is_some();

    // The key: behind the alias, or left by a killed run before its alias,
    // or new.
    let (key_id, key_arn) = match usable {
        Some(md) => (md.key_id.clone(), md.arn.clone().unwrap_or_default()),
        None => {
            // A key the journal records whose alias a killed run never
            // created, or — only after a run killed between CreateKey and its
            // `done` — an unrecorded key found by its tags. (Searching every
            // key otherwise would cost a call per key in the account.)
            let orphan = match recorded_key(ctx).await? {
                Some(md) => Some(md),
                None if has_open_key_intent(ctx) => find_tagged_keys(ctx).await?.into_iter().next(),
                None => None,
            };
            match orphan {
                Some(md) => (md.key_id.clone(), md.arn.clone().unwrap_or_default()),
                None => {
                    let tags = kms_tags(&desired_tags)?;
                    let policy_text = policy.to_string();
                    let description = format!("paymig {} production key ({})", ctx.cfg.migration.name, ctx.suffix());
                    let created = ctx
                        .create(&key, "symmetric customer-managed key, rotation on", Value::Null, || async {
                            let out = kms
                                .create_key()
                                .description(description)
                                .key_usage(KeyUsageType::EncryptDecrypt)
                                .key_spec(KeySpec::SymmetricDefault)
                                .policy(policy_text)
                                .set_tags(Some(tags))
                                .send()
                                .await
                                .on(&key.name, "CreateKey")?;
                            let md = out
                                .key_metadata
                                .ok_or_else(|| StepError::Invalid("CreateKey returned no key".into()))?;
                            Ok(Created {
                                value: (md.key_id.clone(), md.arn.clone().unwrap_or_default()),
                                id: md.key_id,
                                arn: md.arn,
                                data: Value::Null,
                            })
                        })
                        .await?;
                    let (id, arn) = created.unwrap_or_else(|| (planned_id("kms key"), planned_id("kms key arn")));
                    if !ctx.is_plan() {
                        // Part of creating the key: its undo (scheduled
                        // deletion) covers it.
                        let of = KeyRef::new(&id, &key.name);
                        KeySetting::Rotation.write(ctx, &of, &json!("off"), &json!("on")).await?;
                    }
                    converge_alias(ctx, &alias, alias_exists, current.as_ref(), &id).await?;
                    ctx.outputs.publish(Key { arn });
                    return Ok(Outcome::Done);
                }
            }
        }
    };

    // An existing key: converge its settings.
    ctx.adopt(&key, &key_id, Some(&key_arn))?;
    settings::converge::<KeySetting>(ctx, &key, &key_id, &KeyRef::new(&key_id, &key.name), true).await?;
    let tags = key_tags(ctx, &key_id).await?;
    let missing: BTreeMap<String, String> = desired_tags.into_iter().filter(|(k, v)| tags.get(k) != Some(v)).collect();
    if !missing.is_empty() {
        let detail = format!("tags {}", missing.keys().cloned().collect::<Vec<_>>().join(", "));
        let t = kms_tags(&missing)?;
        let before = TagsBefore::new(tags.iter().map(|(k, v)| (k.as_str(), v.as_str())), missing.keys().cloned());
        ctx.update(&key, &key_id, detail, Prev::Tags(before), || async {
            kms.tag_resource().key_id(&key_id).set_tags(Some(t)).send().await.on(&key.name, "TagResource")?;
            Ok(())
        })
        .await?;
    }
    converge_alias(ctx, &alias, alias_exists, current.as_ref(), &key_id).await?;
    ctx.outputs.publish(Key { arn: key_arn });
    Ok(Outcome::Done)
}

/// The enabled key a live journal record names, if any.
async fn recorded_key(ctx: &Ctx) -> Result<Option<KeyMetadata>, StepError> {
    let Some(id) =
        ctx.journal.as_ref().and_then(|j| j.latest(&key_res(ctx).key)).filter(|r| !r.undone).and_then(|r| r.id)
    else {
        return Ok(None);
    };
    match ctx.aws.target.kms.describe_key().key_id(&id).send().await.found(id, "DescribeKey")? {
        Some(out) => Ok(out.key_metadata.filter(|m| matches!(m.key_state, Some(KeyState::Enabled)))),
        None => Ok(None),
    }
}

/// Whether a run left a key intent without its outcome (killed mid-create).
fn has_open_key_intent(ctx: &Ctx) -> bool {
    ctx.journal.as_ref().and_then(|j| j.latest(&key_res(ctx).key)).is_some_and(|r| !r.undone && r.id.is_none())
}

/// Whether KMS does not see a key yet: right after CreateKey,
/// EnableKeyRotation, TagResource and CreateAlias may answer
/// `NotFoundException` for a moment (terraform-provider-aws retries them).
fn is_new_key_not_found(e: &StepError) -> bool {
    e.is_code("NotFoundException")
}

/// A key: what its settings belong to.
struct KeyRef {
    id: String,
    /// Its alias, for messages.
    name: String,
}

impl KeyRef {
    fn new(id: &str, name: &str) -> KeyRef {
        KeyRef { id: id.to_owned(), name: name.to_owned() }
    }
}

/// The key's settings, as a table of settings.
#[derive(Debug, Clone, Copy)]
enum KeySetting {
    /// `"on"`/`"off"`.
    Rotation,
    /// The default key policy's document (`null`: none read).
    Policy,
}

impl Setting for KeySetting {
    type Of = KeyRef;

    const ALL: &'static [KeySetting] = &[KeySetting::Rotation, KeySetting::Policy];

    fn name(self) -> &'static str {
        match self {
            KeySetting::Rotation => "rotation",
            KeySetting::Policy => "key policy",
        }
    }

    async fn read(self, ctx: &Ctx, of: &Self::Of) -> Result<Value, StepError> {
        let kms = &ctx.aws.target.kms;
        Ok(match self {
            KeySetting::Rotation => {
                let out =
                    kms.get_key_rotation_status().key_id(&of.id).send().await.on(&of.name, "GetKeyRotationStatus")?;
                json!(if out.key_rotation_enabled { "on" } else { "off" })
            }
            KeySetting::Policy => {
                let out = kms
                    .get_key_policy()
                    .key_id(&of.id)
                    .policy_name("default")
                    .send()
                    .await
                    .on(&of.name, "GetKeyPolicy")?;
                out.policy.as_deref().and_then(|p| serde_json::from_str(p).ok()).unwrap_or(Value::Null)
            }
        })
    }

    fn desired(self, ctx: &Ctx, _of: &Self::Of, _have: &Value) -> Value {
        match self {
            KeySetting::Rotation => json!("on"),
            KeySetting::Policy => key_policy(&ctx.account, &ctx.cfg.migration.region),
        }
    }

    async fn write(self, ctx: &Ctx, of: &Self::Of, _have: &Value, want: &Value) -> Result<(), StepError> {
        let kms = &ctx.aws.target.kms;
        match self {
            KeySetting::Rotation if want == "on" => {
                retry_eventual("EnableKeyRotation", is_new_key_not_found, || async {
                    kms.enable_key_rotation().key_id(&of.id).send().await.on(&of.name, "EnableKeyRotation")?;
                    Ok(())
                })
                .await
            }
            KeySetting::Rotation => {
                kms.disable_key_rotation().key_id(&of.id).send().await.on(&of.name, "DisableKeyRotation")?;
                Ok(())
            }
            // A key always has a policy: `null` (none read) leaves it.
            KeySetting::Policy if want.is_null() => Ok(()),
            KeySetting::Policy => {
                kms.put_key_policy()
                    .key_id(&of.id)
                    .policy_name("default")
                    .policy(want.to_string())
                    .send()
                    .await
                    .on(&of.name, "PutKeyPolicy")?;
                Ok(())
            }
        }
    }
}

async fn converge_alias(
    ctx: &Ctx,
    alias: &Res,
    exists: bool,
    current: Option<&KeyMetadata>,
    key_id: &str,
) -> Result<(), StepError> {
    let kms = &ctx.aws.target.kms;
    match current {
        Some(md) if md.key_id == key_id => ctx.adopt(alias, &alias.name, None),
        Some(md) if exists => {
            let prev = md.key_id.clone();
            let detail = crate::engine::Detail::change("alias target", &prev, key_id);
            ctx.update(alias, &alias.name, detail, Prev::AliasTarget { target_key_id: prev }, || async {
                kms.update_alias()
                    .alias_name(&alias.name)
                    .target_key_id(key_id)
                    .send()
                    .await
                    .on(&alias.name, "UpdateAlias")?;
                Ok(())
            })
            .await
        }
        _ => ctx
            .create(alias, format!("-> {key_id}"), json!({"target_key_id": key_id}), || async {
                retry_eventual("CreateAlias", is_new_key_not_found, || async {
                    kms.create_alias()
                        .alias_name(&alias.name)
                        .target_key_id(key_id)
                        .send()
                        .await
                        .on(&alias.name, "CreateAlias")
                })
                .await?;
                Ok(Created::id(alias.name.clone()))
            })
            .await
            .map(|_| ()),
    }
}

async fn schedule_deletion(ctx: &Ctx, key_id: &str) -> Result<bool, StepError> {
    Ok(ctx
        .aws
        .target
        .kms
        .schedule_key_deletion()
        .key_id(key_id)
        .pending_window_in_days(PENDING_WINDOW_DAYS)
        .send()
        .await
        .unless(key_id, "ScheduleKeyDeletion", key_gone)?
        .is_some())
}

/// A key already gone, or pending deletion (KMSInvalidStateException): what
/// an undo of it wanted is already so.
fn key_gone(e: &StepError) -> bool {
    e.is_not_found() || e.is_code("KMSInvalidStateException")
}

async fn delete_alias(ctx: &Ctx, alias: &str) -> Result<bool, StepError> {
    Ok(ctx.aws.target.kms.delete_alias().alias_name(alias).send().await.found(alias, "DeleteAlias")?.is_some())
}

/// What a KMS update replaced, as its intent records it for rollback
/// (untagged: the journal's own JSON shapes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
enum Prev {
    /// A setting of the key's [`KeySetting`] table, as it was.
    Setting(SettingBefore),
    /// Rotation was off (journals before the settings table).
    Rotation { rotation: bool },
    /// The key policy before (`null`: none read).
    Policy { policy: Value },
    /// Re-tagged.
    Tags(TagsBefore),
    /// The key the alias pointed at.
    AliasTarget { target_key_id: String },
}

async fn undo(ctx: &Ctx, r: &Record) -> Result<(), StepError> {
    let kms = &ctx.aws.target.kms;
    match (r.intent.kind.as_str(), r.intent.op) {
        (kind::KMS_ALIAS, Op::Create | Op::Adopt) => {
            delete_alias(ctx, &r.intent.name).await?;
        }
        (kind::KMS_KEY, Op::Create | Op::Adopt) => match &r.id {
            Some(id) => {
                schedule_deletion(ctx, id).await?;
            }
            // The create may or may not have happened: find it by its tags.
            None => {
                for md in find_tagged_keys(ctx).await? {
                    schedule_deletion(ctx, &md.key_id).await?;
                }
            }
        },
        (kind::KMS_KEY, Op::Update) => {
            let id = r.intent.data["id"].as_str().unwrap_or_default();
            match r.prev::<Prev>()? {
                Prev::Setting(before) => {
                    // A key already gone (or pending deletion) keeps nothing
                    // to restore.
                    match settings::restore::<KeySetting>(ctx, &KeyRef::new(id, id), &before).await {
                        Err(e) if key_gone(&e) => {}
                        other => other?,
                    }
                }
                Prev::Rotation { rotation: false } => {
                    kms.disable_key_rotation().key_id(id).send().await.unless(id, "DisableKeyRotation", key_gone)?;
                }
                Prev::Policy { policy } if !policy.is_null() => {
                    kms.put_key_policy()
                        .key_id(id)
                        .policy_name("default")
                        .policy(policy.to_string())
                        .send()
                        .await
                        .unless(id, "PutKeyPolicy", key_gone)?;
                }
                Prev::Tags(before) => {
                    // Restore the previous tag values; remove tags that were
                    // added. A key already gone (or pending deletion) has no
                    // tags to restore; any other failure is the undo's.
                    let added = before.added();
                    if !added.is_empty() {
                        kms.untag_resource().key_id(id).set_tag_keys(Some(added)).send().await.unless(
                            id,
                            "UntagResource",
                            key_gone,
                        )?;
                    }
                    let restore = before.changed();
                    if !restore.is_empty() {
                        kms.tag_resource().key_id(id).set_tags(Some(kms_tags(&restore)?)).send().await.unless(
                            id,
                            "TagResource",
                            key_gone,
                        )?;
                    }
                }
                _ => {}
            }
        }
        (kind::KMS_ALIAS, Op::Update) => {
            if let Prev::AliasTarget { target_key_id } = r.prev::<Prev>()? {
                {
                    kms.update_alias().alias_name(&r.intent.name).target_key_id(target_key_id).send().await.unless(
                        &r.intent.name,
                        "UpdateAlias",
                        key_gone,
                    )?;
                }
            }
        }
        (kind, op) => return Err(StepError::Invalid(format!("kms cannot undo {op:?} of {kind}"))),
    }
    Ok(())
}

async fn validate(ctx: &Ctx) -> Result<crate::report::Findings, StepError> {
    use crate::report::{Check, Findings, Resource};
    let alias = ctx.cfg.names.kms_alias();
    let mut f = Findings::default();
    let Some(md) = describe_alias_target(ctx).await?.filter(|m| matches!(m.key_state, Some(KeyState::Enabled))) else {
        f.resources.push(Resource::missing("kms_key", "(prod only)", &alias));
        return Ok(f);
    };
    f.resources.push(Resource::compared("kms_key", "(prod only)", &alias, vec![]));
    let kms = &ctx.aws.target.kms;
    let rotation = kms.get_key_rotation_status().key_id(&md.key_id).send().await.on(&alias, "GetKeyRotationStatus")?;
    let on = rotation.key_rotation_enabled;
    f.checks.push(Check::setting("kms.rotation", &alias, on, "automatic key rotation", crate::report::on_off(on)));
    let manager = md.key_manager.as_ref().map_or("unknown", |m| m.as_str());
    f.checks.push(Check::setting("kms.customer_managed", &alias, manager == "CUSTOMER", "key manager", manager));
    let policy =
        kms.get_key_policy().key_id(&md.key_id).policy_name("default").send().await.on(&alias, "GetKeyPolicy")?.policy;
    let policy: Value = policy.as_deref().and_then(|p| serde_json::from_str(p).ok()).unwrap_or(Value::Null);
    let wild = super::common::wildcard_actions(&policy);
    f.checks.push(Check::new(
        "iam.no_wildcard_action",
        &format!("{alias} key policy"),
        wild.is_empty(),
        if wild.is_empty() { "no wildcard action".into() } else { format!("wildcards: {}", wild.join(", ")) },
    ));
    let tags = key_tags(ctx, &md.key_id).await?;
    f.checks.extend(super::common::common_checks(ctx, &alias, &tags));
    Ok(f)
}

async fn sweep(ctx: &Ctx, look: bool) -> Result<Vec<Swept>, StepError> {
    let mut removed = Vec::new();
    let alias = ctx.cfg.names.kms_alias();
    // Describe first: a sweep of a clean account sends no mutating call.
    if describe_alias_target(ctx).await?.is_some() && (look || delete_alias(ctx, &alias).await?) {
        removed.push(Swept::new("kms_alias", alias));
    }
    for md in find_tagged_keys(ctx).await? {
        if look || schedule_deletion(ctx, &md.key_id).await? {
            let note = format!("deletion scheduled, {PENDING_WINDOW_DAYS}-day window");
            removed.push(Swept::new("kms_key", md.key_id).noted(note));
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests;
