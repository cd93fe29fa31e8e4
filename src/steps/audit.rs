//! audit: for each `[source] audit_buckets` entry, a prod bucket in `region`
//! and a replica in `replica_region`. Both: versioning, SSE-S3 default
//! encryption, all four public-access blocks, a TLS-only bucket policy, and a
//! lifecycle moving current and noncurrent versions to GLACIER after
//! `[audit] glacier_after_days` and aborting incomplete uploads. Prod
//! replicates to the replica (delete markers too) through a least-privilege
//! role. Undo empties a bucket completely — every version, delete marker and
//! multipart upload, in batches of 1,000 — before deleting it.

use crate::aws::call::Named;
use crate::aws::Call;
use std::collections::BTreeMap;
use std::time::Instant;

use aws_sdk_s3::types::{
    AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, BucketLocationConstraint, BucketVersioningStatus,
    CreateBucketConfiguration, Delete, DeleteMarkerReplication, DeleteMarkerReplicationStatus, Destination,
    ExpirationStatus, LifecycleRule, LifecycleRuleFilter, NoncurrentVersionTransition, ObjectIdentifier,
    PublicAccessBlockConfiguration, ReplicationConfiguration, ReplicationRule, ReplicationRuleFilter,
    ReplicationRuleStatus, ServerSideEncryption, ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration,
    ServerSideEncryptionRule, Tag, Tagging, Transition, TransitionStorageClass, VersioningConfiguration,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::aws::Clients;
use crate::engine::journal::{Op, Record};
use crate::engine::step::thousands;
use crate::engine::{About, AtRisk, Created, Ctx, Declared, Outcome, Res, Step, StepError, Swept};
use crate::steps::common::arns;

pub struct Audit;

const STEP: &str = "audit";
const LIFECYCLE_RULE: &str = "paymig-glacier";
const REPLICATION_RULE: &str = "paymig-replica";
const ROLE_POLICY: &str = "paymig-s3-replication";
/// DeleteObjects takes at most this many keys.
const DELETE_BATCH: usize = 1000;

static ABOUT: About = About {
    id: STEP,
    deps: &[],
    undo_apart: &[],
    early: &[],
    kinds: &["iam_role", "s3_bucket", "s3_replica_bucket"],
    actions: &[
        "s3:ListBucket",
        "s3:CreateBucket",
        "s3:DeleteBucket",
        "s3:GetBucketTagging",
        "s3:PutBucketTagging",
        "s3:GetBucketVersioning",
        "s3:PutBucketVersioning",
        "s3:GetEncryptionConfiguration",
        "s3:PutEncryptionConfiguration",
        "s3:GetBucketPublicAccessBlock",
        "s3:PutBucketPublicAccessBlock",
        "s3:GetLifecycleConfiguration",
        "s3:PutLifecycleConfiguration",
        "s3:GetBucketPolicy",
        "s3:PutBucketPolicy",
        "s3:DeleteBucketPolicy",
        "s3:GetReplicationConfiguration",
        "s3:PutReplicationConfiguration",
        "s3:ListBucketVersions",
        "s3:DeleteObjectVersion",
        "s3:DeleteObject",
        "s3:ListBucketMultipartUploads",
        "s3:AbortMultipartUpload",
        "iam:GetRole",
        "iam:CreateRole",
        "iam:DeleteRole",
        "iam:GetRolePolicy",
        "iam:PutRolePolicy",
        "iam:DeleteRolePolicy",
        "iam:ListRolePolicies",
        // delete_role detaches managed policies before deleting.
        "iam:ListAttachedRolePolicies",
        "iam:DetachRolePolicy",
        "iam:TagRole",
        "iam:PassRole",
    ],
    source_actions: &["s3:ListBucket"],
    scopes: &[("s3", arns::audit_buckets), ("iam", arns::replication_role)],
    sweeps: "the audit buckets and replicas this configuration names, when tagged for the migration, and the replication role",
    waits: &[],
    undo_waits: &[],
};

impl Declared for Audit {
    fn about(&self) -> &'static About {
        &ABOUT
    }

    fn grant(&self, cfg: &crate::config::Config, account: &str, action: &str) -> Option<crate::engine::Grant> {
        // The replication role, passed to S3 only.
        (action == "iam:PassRole").then(|| {
            crate::engine::Grant::passed_to(
                "PassReplicationRole",
                crate::steps::common::arns::replication_role(cfg, account),
                "s3.amazonaws.com",
            )
        })
    }
}

impl Step for Audit {
    crate::step_functions!(
        preflight => preflight,
        run => converge,
        undo => undo,
        sweep => sweep,
        validate => validate,
        at_risk => at_risk,
    );
}

/// Which client serves a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Prod,
    Replica,
}

fn client(ctx: &Ctx, place: Place) -> &Clients {
    match place {
        Place::Prod => &ctx.aws.target,
        Place::Replica => &ctx.aws.replica,
    }
}

fn place_of(kind: &str) -> Place {
    if kind.ends_with("replica_bucket") {
        Place::Replica
    } else {
        Place::Prod
    }
}

/// Whether a bucket exists: `Some(true)` ours to manage, `Some(false)` taken
/// by another account, `None` free.
pub(crate) async fn bucket_state(c: &Clients, bucket: &str) -> Result<Option<bool>, StepError> {
    match c.s3.head_bucket().bucket(bucket).send().await {
        Ok(_) => Ok(Some(true)),
        Err(e) if StepError::sdk(bucket, "HeadBucket", &e).is_not_found() => Ok(None),
        Err(aws_smithy_runtime_api::client::result::SdkError::ServiceError(se))
            if se.raw().status().as_u16() == 403 =>
        {
            Ok(Some(false))
        }
        Err(e) => Err(StepError::sdk(bucket, "HeadBucket", &e)),
    }
}

async fn preflight(ctx: &Ctx) -> Vec<StepError> {
    let mut problems = Vec::new();
    for dev in &ctx.cfg.source.audit_buckets {
        match bucket_state(&ctx.aws.source, dev).await {
            Ok(Some(true)) => {}
            Ok(_) => problems.push(StepError::Invalid(format!("[source] audit_buckets: the dev bucket {dev:?} does not exist or is not readable with the source credentials"))),
            Err(e) => problems.push(e),
        }
        for (place, name) in
            [(Place::Prod, ctx.cfg.names.prod(dev)), (Place::Replica, ctx.cfg.names.replica_bucket(dev))]
        {
            match bucket_state(client(ctx, place), &name).await {
                Ok(Some(false)) => problems.push(StepError::Invalid(format!(
                    "[source] audit_buckets: the prod bucket name {name:?} (from {dev:?}) is taken by another account; S3 names are global — rename the dev bucket or change environment_suffix"
                ))),
                Ok(_) => {}
                Err(e) => problems.push(e),
            }
        }
    }
    problems
}

fn tls_only_policy(bucket: &str) -> Value {
    // A Deny needs every action to be complete; the no-wildcard rule is about
    // what a policy allows.
    json!({"Version": "2012-10-17", "Statement": [{
        "Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
        "Resource": [format!("arn:aws:s3:::{bucket}"), format!("arn:aws:s3:::{bucket}/*")],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]})
}

/// The replication role's permissions (AWS_FACTS §5): exactly these actions
/// on exactly these buckets.
pub fn replication_policy(pairs: &[(String, String)]) -> Value {
    let sources: Vec<String> = pairs.iter().map(|(s, _)| format!("arn:aws:s3:::{s}")).collect();
    let source_objects: Vec<String> = pairs.iter().map(|(s, _)| format!("arn:aws:s3:::{s}/*")).collect();
    let dest_objects: Vec<String> = pairs.iter().map(|(_, d)| format!("arn:aws:s3:::{d}/*")).collect();
    json!({"Version": "2012-10-17", "Statement": [
        {"Sid": "ReadSourceConfiguration", "Effect": "Allow", "Action": ["s3:GetReplicationConfiguration", "s3:ListBucket"], "Resource": sources},
        {"Sid": "ReadSourceObjects", "Effect": "Allow", "Action": ["s3:GetObjectVersionForReplication", "s3:GetObjectVersionAcl", "s3:GetObjectVersionTagging"], "Resource": source_objects},
        {"Sid": "WriteReplicas", "Effect": "Allow", "Action": ["s3:ReplicateObject", "s3:ReplicateDelete", "s3:ReplicateTags"], "Resource": dest_objects}
    ]})
}

/// Whether a bucket's tags (as [`Setting::Tags`] reads them) mark it ours.
fn is_ours(ctx: &Ctx, tags: &Value) -> bool {
    tags.as_object()
        .is_some_and(|t| super::common::is_ours(ctx, t.iter().filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)))))
}

async fn converge_role(ctx: &Ctx, pairs: &[(String, String)]) -> Result<String, StepError> {
    let name = ctx.cfg.names.own("s3-replication");
    let res = Res::new(STEP, "iam_role", "replication-role", &name);
    let description = format!("paymig {}: S3 audit-log replication", ctx.cfg.migration.name);
    super::common::roles::converge_role(
        ctx,
        &res,
        "s3.amazonaws.com",
        description,
        ROLE_POLICY,
        &replication_policy(pairs),
    )
    .await
}

async fn converge(ctx: &Ctx) -> Result<Outcome, StepError> {
    let buckets = &ctx.cfg.source.audit_buckets;
    if buckets.is_empty() {
        return Ok(Outcome::Skipped("no [source] audit_buckets configured".into()));
    }
    let pairs: Vec<(String, String)> =
        buckets.iter().map(|b| (ctx.cfg.names.prod(b), ctx.cfg.names.replica_bucket(b))).collect();
    let names: Vec<String> = pairs.iter().map(|(p, _)| p.clone()).collect();
    let replica_of = |prod: &str| pairs.iter().find(|(p, _)| p == prod).map(|(_, r)| r.clone()).unwrap_or_default();
    ctx.each(names.clone(), |prod| {
        let replica = replica_of(&prod);
        async move {
            // The replica first: replication needs its destination versioned.
            converge_bucket(ctx, Place::Replica, &replica).await?;
            converge_bucket(ctx, Place::Prod, &prod).await
        }
    })
    .await?;
    let role = converge_role(ctx, &pairs).await?;
    let role = &role;
    ctx.each(names, |prod| {
        let replica = replica_of(&prod);
        async move { converge_replication(ctx, &prod, &replica, role).await }
    })
    .await?;
    Ok(Outcome::Done)
}

fn kind_of(place: Place) -> &'static str {
    match place {
        Place::Prod => "s3_bucket",
        Place::Replica => "s3_replica_bucket",
    }
}

async fn converge_bucket(ctx: &Ctx, place: Place, bucket: &str) -> Result<(), StepError> {
    let c = client(ctx, place);
    let res = Res::new(STEP, kind_of(place), format!("bucket/{bucket}"), bucket);
    // Whether to read the settings back: not for a bucket just created.
    let exists = match bucket_state(c, bucket).await? {
        Some(true) => {
            let tags = Setting::Tags.read(c, bucket).await?;
            let ours = is_ours(ctx, &tags);
            ctx.existing(&res, bucket, Some(&format!("arn:aws:s3:::{bucket}")), crate::engine::Ownership::of(ours))?;
            true
        }
        Some(false) => return Err(StepError::Invalid(format!("bucket {bucket} is owned by another account"))),
        None => {
            let region = c.region.clone();
            ctx.create(&res, format!("in {region}"), json!({"region": region}), || async {
                let mut req = c.s3.create_bucket().bucket(bucket);
                // us-east-1 takes no LocationConstraint.
                if region != "us-east-1" {
                    req = req.create_bucket_configuration(
                        CreateBucketConfiguration::builder()
                            .location_constraint(BucketLocationConstraint::from(region.as_str()))
                            .build(),
                    );
                }
                req.send().await.on(bucket, "CreateBucket")?;
                Ok(Created {
                    value: (),
                    id: bucket.to_owned(),
                    arn: Some(format!("arn:aws:s3:::{bucket}")),
                    data: Value::Null,
                })
            })
            .await?;
            false
        }
    };
    for setting in Setting::ALL {
        let have = if exists { setting.read(c, bucket).await? } else { Value::Null };
        let want = setting.desired(ctx, bucket, &have);
        if have != want {
            ctx.update(
                &res,
                bucket,
                crate::engine::Detail::between(setting.name(), &have, &want),
                SettingBefore { setting: setting.name().into(), value: have.clone() },
                || propagated(setting.name(), || setting.write(c, bucket, &want)),
            )
            .await?;
        }
    }
    Ok(())
}

/// How long S3 may take to show a new bucket to every call (terraform's
/// `s3BucketPropagationTimeout`: two minutes).
pub(crate) const BUCKET_PROPAGATION: std::time::Duration = std::time::Duration::from_secs(120);

/// Whether S3 has not caught up with a bucket just created or just
/// versioned: right after CreateBucket, settings calls may answer
/// `NoSuchBucket` (more often in the replica region), and
/// PutBucketReplication "Versioning must be 'Enabled' on the bucket".
pub(crate) fn is_not_propagated(e: &StepError) -> bool {
    e.is_code("NoSuchBucket") || (e.is_code("InvalidRequest") && e.message_contains("Versioning must be"))
}

/// `write`, retried while S3 has not caught up with the bucket.
pub(crate) async fn propagated<F, Fut>(what: &str, write: F) -> Result<(), StepError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), StepError>>,
{
    crate::engine::retry_until(what, BUCKET_PROPAGATION, is_not_propagated, write).await
}

/// A bucket setting before an update (its JSON as [`Setting::read`] gives
/// it, `null`: unset), as its intent records it for rollback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SettingBefore {
    setting: String,
    value: Value,
}

async fn converge_replication(ctx: &Ctx, prod: &str, replica: &str, role: &str) -> Result<(), StepError> {
    let c = &ctx.aws.target;
    let res = Res::new(STEP, "s3_bucket", format!("bucket/{prod}"), prod);
    let exists = !ctx.is_plan() || bucket_state(c, prod).await?.is_some();
    let have = if exists { read_replication(c, prod).await? } else { Value::Null };
    let want = json!({"role": role, "rules": [{"id": REPLICATION_RULE, "status": "Enabled", "destination": format!("arn:aws:s3:::{replica}")}]});
    if have != want {
        ctx.update(
            &res,
            prod,
            "replication",
            SettingBefore { setting: "replication".into(), value: have.clone() },
            || propagated("replication", || write_replication(c, prod, &want)),
        )
        .await?;
    }
    Ok(())
}

/// Replication as compared: role and (id, status, destination) per rule.
/// Delete-marker replication is sent Enabled but not compared: moto reports
/// it Disabled whatever was sent.
async fn read_replication(c: &Clients, bucket: &str) -> Result<Value, StepError> {
    match c
        .s3
        .get_bucket_replication()
        .bucket(bucket)
        .send()
        .await
        .unless(bucket, "GetBucketReplication", |e| e.is_code("ReplicationConfigurationNotFoundError"))?
    {
        Some(out) => {
            let Some(cfg) = out.replication_configuration else { return Ok(Value::Null) };
            let rules: Vec<Value> = cfg
                .rules()
                .iter()
                .map(|r| {
                    json!({
                        "id": r.id(), "status": r.status().as_str(), "destination": r.destination().map(|d| d.bucket()),
                    })
                })
                .collect();
            Ok(json!({"role": cfg.role(), "rules": rules}))
        }
        None => Ok(Value::Null),
    }
}

async fn write_replication(c: &Clients, bucket: &str, v: &Value) -> Result<(), StepError> {
    if v.is_null() {
        c.s3.delete_bucket_replication().bucket(bucket).send().await.on(bucket, "DeleteBucketReplication")?;
        return Ok(());
    }
    let mut rules = Vec::new();
    for r in v["rules"].as_array().cloned().unwrap_or_default() {
        let rule = ReplicationRule::builder()
            .id(r["id"].as_str().unwrap_or(REPLICATION_RULE))
            .priority(1)
            .status(ReplicationRuleStatus::from(r["status"].as_str().unwrap_or("Enabled")))
            .filter(ReplicationRuleFilter::builder().prefix("").build())
            .delete_marker_replication(
                DeleteMarkerReplication::builder().status(DeleteMarkerReplicationStatus::Enabled).build(),
            )
            .destination(
                Destination::builder()
                    .bucket(r["destination"].as_str().unwrap_or_default())
                    .build()
                    .map_err(|e| StepError::Invalid(e.to_string()))?,
            )
            .build()
            .map_err(|e| StepError::Invalid(e.to_string()))?;
        rules.push(rule);
    }
    let cfg = ReplicationConfiguration::builder()
        .role(v["role"].as_str().unwrap_or_default())
        .set_rules(Some(rules))
        .build()
        .map_err(|e| StepError::Invalid(e.to_string()))?;
    c.s3.put_bucket_replication()
        .bucket(bucket)
        .replication_configuration(cfg)
        .send()
        .await
        .on(bucket, "PutBucketReplication")?;
    Ok(())
}

/// One bucket setting paymig owns, read and written in a comparable JSON form.
#[derive(Debug, Clone, Copy)]
enum Setting {
    Tags,
    Versioning,
    Encryption,
    PublicAccess,
    Lifecycle,
    Policy,
}

impl Setting {
    const ALL: [Setting; 6] = [
        Setting::Tags,
        Setting::Versioning,
        Setting::Encryption,
        Setting::PublicAccess,
        Setting::Lifecycle,
        Setting::Policy,
    ];

    fn name(self) -> &'static str {
        match self {
            Setting::Tags => "tags",
            Setting::Versioning => "versioning",
            Setting::Encryption => "encryption",
            Setting::PublicAccess => "public access block",
            Setting::Lifecycle => "lifecycle",
            Setting::Policy => "policy",
        }
    }

    fn from_name(n: &str) -> Option<Setting> {
        Setting::ALL.into_iter().find(|s| s.name() == n)
    }

    fn desired(self, ctx: &Ctx, bucket: &str, have: &Value) -> Value {
        match self {
            Setting::Tags => {
                let mut t: BTreeMap<String, String> = serde_json::from_value(have.clone()).unwrap_or_default();
                t.extend(ctx.cfg.prod_tags());
                json!(t)
            }
            Setting::Versioning => json!("Enabled"),
            Setting::Encryption => json!("AES256"),
            Setting::PublicAccess => json!([true, true, true, true]),
            Setting::Lifecycle => {
                let d = ctx.cfg.audit.glacier_after_days;
                json!([{"id": LIFECYCLE_RULE, "status": "Enabled", "transition": [d, "GLACIER"], "noncurrent": [d, "GLACIER"], "abort_days": 7}])
            }
            Setting::Policy => tls_only_policy(bucket),
        }
    }

    async fn read(self, c: &Clients, bucket: &str) -> Result<Value, StepError> {
        let s3 = &c.s3;
        Ok(match self {
            Setting::Tags => match s3.get_bucket_tagging().bucket(bucket).send().await.unless(bucket, "GetBucketTagging", |e| e.is_code("NoSuchTagSet"))? {
                Some(out) => json!(out.tag_set().iter().map(|t| (t.key().to_owned(), t.value().to_owned())).collect::<BTreeMap<_, _>>()),
                None => json!({}),
            },
            Setting::Versioning => match s3.get_bucket_versioning().bucket(bucket).send().await {
                Ok(out) => out.status().map_or(Value::Null, |s| json!(s.as_str())),
                // moto names the root element GetBucketVersioningResponse
                // (AWS: VersioningConfiguration), which the SDK cannot
                // deserialize: read <Status> from the raw 200 body instead.
                Err(aws_smithy_runtime_api::client::result::SdkError::ServiceError(se)) if se.raw().status().as_u16() == 200 => {
                    let body = se.raw().body().bytes().map(String::from_utf8_lossy).unwrap_or_default();
                    xml_status(&body).map_or(Value::Null, |s| json!(s))
                }
                Err(e) => return Err(StepError::sdk(bucket, "GetBucketVersioning", &e)),
            },
            Setting::Encryption => match s3.get_bucket_encryption().bucket(bucket).send().await.unless(bucket, "GetBucketEncryption", |e| e.is_code("ServerSideEncryptionConfigurationNotFoundError"))? {
                Some(out) => out
                    .server_side_encryption_configuration()
                    .and_then(|c| c.rules().first())
                    .and_then(|r| r.apply_server_side_encryption_by_default())
                    .map_or(Value::Null, |d| json!(d.sse_algorithm().as_str())),
                None => Value::Null,
            },
            Setting::PublicAccess => match s3.get_public_access_block().bucket(bucket).send().await.unless(bucket, "GetPublicAccessBlock", |e| e.is_code("NoSuchPublicAccessBlockConfiguration"))? {
                Some(out) => out.public_access_block_configuration().map_or(Value::Null, |p| {
                    json!([p.block_public_acls() == Some(true), p.ignore_public_acls() == Some(true), p.block_public_policy() == Some(true), p.restrict_public_buckets() == Some(true)])
                }),
                None => Value::Null,
            },
            Setting::Lifecycle => match s3.get_bucket_lifecycle_configuration().bucket(bucket).send().await.unless(bucket, "GetBucketLifecycleConfiguration", |e| e.is_code("NoSuchLifecycleConfiguration"))? {
                Some(out) => json!(out.rules().iter().map(|r| json!({
                    "id": r.id(),
                    "status": r.status().as_str(),
                    "transition": r.transitions().first().map(|t| json!([t.days(), t.storage_class().map(|c| c.as_str())])),
                    "noncurrent": r.noncurrent_version_transitions().first().map(|t| json!([t.noncurrent_days(), t.storage_class().map(|c| c.as_str())])),
                    "abort_days": r.abort_incomplete_multipart_upload().and_then(|a| a.days_after_initiation()),
                })).collect::<Vec<_>>()),
                None => Value::Null,
            },
            Setting::Policy => match s3.get_bucket_policy().bucket(bucket).send().await.unless(bucket, "GetBucketPolicy", |e| e.is_code("NoSuchBucketPolicy"))? {
                Some(out) => out.policy().and_then(|p| serde_json::from_str(p).ok()).unwrap_or(Value::Null),
                None => Value::Null,
            },
        })
    }

    /// Writes `v` (the comparable form); `null` removes the setting.
    async fn write(self, c: &Clients, bucket: &str, v: &Value) -> Result<(), StepError> {
        let s3 = &c.s3;
        let inv = |e: aws_smithy_types::error::operation::BuildError| StepError::Invalid(e.to_string());
        match self {
            Setting::Tags => {
                let tags: BTreeMap<String, String> = serde_json::from_value(v.clone()).unwrap_or_default();
                if tags.is_empty() {
                    s3.delete_bucket_tagging().bucket(bucket).send().await.on(bucket, "DeleteBucketTagging")?;
                } else {
                    let set = tags
                        .iter()
                        .map(|(k, v)| Tag::builder().key(k).value(v).build())
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(inv)?;
                    s3.put_bucket_tagging()
                        .bucket(bucket)
                        .tagging(Tagging::builder().set_tag_set(Some(set)).build().map_err(inv)?)
                        .send()
                        .await
                        .on(bucket, "PutBucketTagging")?;
                }
            }
            Setting::Versioning => {
                // A versioned bucket can only be suspended, never unversioned.
                let status = if v.as_str() == Some("Enabled") {
                    BucketVersioningStatus::Enabled
                } else {
                    BucketVersioningStatus::Suspended
                };
                s3.put_bucket_versioning()
                    .bucket(bucket)
                    .versioning_configuration(VersioningConfiguration::builder().status(status).build())
                    .send()
                    .await
                    .on(bucket, "PutBucketVersioning")?;
            }
            Setting::Encryption => match v.as_str() {
                Some(alg) => {
                    let rule = ServerSideEncryptionRule::builder()
                        .apply_server_side_encryption_by_default(
                            ServerSideEncryptionByDefault::builder()
                                .sse_algorithm(ServerSideEncryption::from(alg))
                                .build()
                                .map_err(inv)?,
                        )
                        .build();
                    s3.put_bucket_encryption()
                        .bucket(bucket)
                        .server_side_encryption_configuration(
                            ServerSideEncryptionConfiguration::builder().rules(rule).build().map_err(inv)?,
                        )
                        .send()
                        .await
                        .on(bucket, "PutBucketEncryption")?;
                }
                None => {
                    s3.delete_bucket_encryption().bucket(bucket).send().await.on(bucket, "DeleteBucketEncryption")?;
                }
            },
            Setting::PublicAccess => match v.as_array() {
                Some(f) => {
                    let b = |i: usize| f.get(i).and_then(Value::as_bool).unwrap_or(false);
                    s3.put_public_access_block()
                        .bucket(bucket)
                        .public_access_block_configuration(
                            PublicAccessBlockConfiguration::builder()
                                .block_public_acls(b(0))
                                .ignore_public_acls(b(1))
                                .block_public_policy(b(2))
                                .restrict_public_buckets(b(3))
                                .build(),
                        )
                        .send()
                        .await
                        .on(bucket, "PutPublicAccessBlock")?;
                }
                None => {
                    s3.delete_public_access_block()
                        .bucket(bucket)
                        .send()
                        .await
                        .on(bucket, "DeletePublicAccessBlock")?;
                }
            },
            Setting::Lifecycle => match v.as_array().filter(|r| !r.is_empty()) {
                Some(rules) => {
                    let mut out = Vec::new();
                    for r in rules {
                        let mut b = LifecycleRule::builder()
                            .set_id(r["id"].as_str().map(String::from))
                            .status(ExpirationStatus::from(r["status"].as_str().unwrap_or("Enabled")))
                            .filter(LifecycleRuleFilter::builder().prefix("").build());
                        if let Some(t) = r["transition"].as_array() {
                            b = b.transitions(
                                Transition::builder()
                                    .set_days(t[0].as_i64().map(|d| d as i32))
                                    .storage_class(TransitionStorageClass::from(t[1].as_str().unwrap_or("GLACIER")))
                                    .build(),
                            );
                        }
                        if let Some(t) = r["noncurrent"].as_array() {
                            b = b.noncurrent_version_transitions(
                                NoncurrentVersionTransition::builder()
                                    .set_noncurrent_days(t[0].as_i64().map(|d| d as i32))
                                    .storage_class(TransitionStorageClass::from(t[1].as_str().unwrap_or("GLACIER")))
                                    .build(),
                            );
                        }
                        if let Some(d) = r["abort_days"].as_i64() {
                            b = b.abort_incomplete_multipart_upload(
                                AbortIncompleteMultipartUpload::builder().days_after_initiation(d as i32).build(),
                            );
                        }
                        out.push(b.build().map_err(inv)?);
                    }
                    s3.put_bucket_lifecycle_configuration()
                        .bucket(bucket)
                        .lifecycle_configuration(
                            BucketLifecycleConfiguration::builder().set_rules(Some(out)).build().map_err(inv)?,
                        )
                        .send()
                        .await
                        .on(bucket, "PutBucketLifecycleConfiguration")?;
                }
                None => {
                    s3.delete_bucket_lifecycle().bucket(bucket).send().await.on(bucket, "DeleteBucketLifecycle")?;
                }
            },
            Setting::Policy => {
                if v.is_null() {
                    s3.delete_bucket_policy().bucket(bucket).send().await.on(bucket, "DeleteBucketPolicy")?;
                } else {
                    s3.put_bucket_policy()
                        .bucket(bucket)
                        .policy(v.to_string())
                        .send()
                        .await
                        .on(bucket, "PutBucketPolicy")?;
                }
            }
        }
        Ok(())
    }
}

/// The `<Status>` of a versioning document, if any.
fn xml_status(body: &str) -> Option<String> {
    let start = body.find("<Status>")? + "<Status>".len();
    let end = body[start..].find("</Status>")? + start;
    Some(body[start..end].trim().to_owned())
}

/// Deletes every object version, delete marker and multipart upload, in
/// batches of 1,000, logging progress; returns how many were removed.
pub async fn empty_bucket(c: &Clients, bucket: &str) -> Result<u64, StepError> {
    let s3 = &c.s3;
    // A TLS-only policy (Deny with a Condition) would block this over plain
    // HTTP endpoints; AWS lets the owner remove it first.
    match s3.delete_bucket_policy().bucket(bucket).send().await {
        Ok(_) => {}
        Err(e) if crate::aws::call::code(&e).is_some_and(|c| c == "NoSuchBucketPolicy" || c == "NoSuchBucket") => {}
        Err(e) => return Err(StepError::sdk(bucket, "DeleteBucketPolicy", &e)),
    }
    let started = Instant::now();
    let mut removed = 0u64;
    let mut batch: Vec<ObjectIdentifier> = Vec::with_capacity(DELETE_BATCH);
    let inv = |e: aws_smithy_types::error::operation::BuildError| StepError::Invalid(e.to_string());
    // Each round lists the first page of what is left (at most 1,000
    // versions and delete markers) and deletes exactly that, until nothing
    // is left: constant memory, and no pagination marker can point at a
    // version an earlier batch already deleted.
    loop {
        let page = s3
            .list_object_versions()
            .bucket(bucket)
            .max_keys(DELETE_BATCH as i32)
            .send()
            .await
            .on(bucket, "ListObjectVersions")?;
        let versions = page.versions().iter().map(|v| (v.key(), v.version_id()));
        let markers = page.delete_markers().iter().map(|m| (m.key(), m.version_id()));
        for (key, version) in versions.chain(markers) {
            let Some(key) = key else { continue };
            batch.push(
                ObjectIdentifier::builder().key(key).set_version_id(version.map(str::to_owned)).build().map_err(inv)?,
            );
            if batch.len() == DELETE_BATCH {
                removed += delete_batch(c, bucket, &mut batch).await?;
            }
        }
        if batch.is_empty() && page.versions().is_empty() && page.delete_markers().is_empty() {
            break;
        }
        if !batch.is_empty() {
            removed += delete_batch(c, bucket, &mut batch).await?;
        }
        tracing::debug!(bucket, removed, "emptying bucket");
        crate::progress::counter(STEP, &format!("versions deleted from {bucket}"), removed, None);
    }
    if !batch.is_empty() {
        removed += delete_batch(c, bucket, &mut batch).await?;
    }
    // Uploads the same way: abort the first page of what is left until none
    // is (ListMultipartUploads has no generated paginator).
    loop {
        let page = s3.list_multipart_uploads().bucket(bucket).send().await.on(bucket, "ListMultipartUploads")?;
        let uploads: Vec<(String, String)> =
            page.uploads().iter().filter_map(|u| Some((u.key()?.to_owned(), u.upload_id()?.to_owned()))).collect();
        if uploads.is_empty() {
            break;
        }
        for (key, id) in uploads {
            s3.abort_multipart_upload()
                .bucket(bucket)
                .key(key)
                .upload_id(id)
                .send()
                .await
                .on(bucket, "AbortMultipartUpload")?;
            removed += 1;
        }
    }
    tracing::debug!(bucket, removed, elapsed_ms = started.elapsed().as_millis() as u64, "bucket emptied");
    Ok(removed)
}

async fn delete_batch(c: &Clients, bucket: &str, batch: &mut Vec<ObjectIdentifier>) -> Result<u64, StepError> {
    let objects = std::mem::take(batch);
    let n = objects.len() as u64;
    let delete = Delete::builder()
        .set_objects(Some(objects))
        .quiet(true)
        .build()
        .map_err(|e| StepError::Invalid(e.to_string()))?;
    let out = c.s3.delete_objects().bucket(bucket).delete(delete).send().await.on(bucket, "DeleteObjects")?;
    if let Some(err) = out.errors().first() {
        return Err(StepError::Invalid(format!(
            "{bucket}: DeleteObjects left {} object(s), e.g. {:?}: {:?}",
            out.errors().len(),
            err.key(),
            err.message()
        )));
    }
    Ok(n)
}

async fn delete_bucket(ctx: &Ctx, place: Place, bucket: &str) -> Result<bool, StepError> {
    let c = client(ctx, place);
    if bucket_state(c, bucket).await? != Some(true) {
        return Ok(false);
    }
    let removed = empty_bucket(c, bucket).await?;
    match c
        .s3
        .delete_bucket()
        .bucket(bucket)
        .send()
        .await
        .unless(bucket, "DeleteBucket", |e| e.is_code("NoSuchBucket"))?
    {
        Some(_) => {}
        None => return Ok(false),
    }
    tracing::debug!(bucket, removed, "bucket deleted");
    Ok(true)
}

async fn undo(ctx: &Ctx, r: &Record) -> Result<(), StepError> {
    let name = r.intent.name.as_str();
    match (r.intent.kind.as_str(), r.intent.op) {
        ("iam_role", Op::Create | Op::Adopt) => {
            super::common::roles::delete_role(ctx, name).await?;
        }
        ("iam_role", Op::Update) => super::common::roles::restore_role_policy(ctx, r, r.prev()?, ROLE_POLICY).await?,
        (kind, Op::Create | Op::Adopt) => {
            delete_bucket(ctx, place_of(kind), name).await?;
        }
        (kind, Op::Update) => {
            // A bucket created in the same run is deleted by this same undo
            // (rollback undoes whole runs, destroy all of them): restoring its
            // settings first would only cost calls.
            let bucket_key = r.intent.key.split('#').next().unwrap_or_default();
            let created_same_run = ctx.journal.as_ref().is_some_and(|j| {
                j.records()
                    .iter()
                    .any(|c| c.intent.key == bucket_key && c.run == r.run && c.intent.op != Op::Update && !c.undone)
            });
            if created_same_run {
                return Ok(());
            }
            let c = client(ctx, place_of(kind));
            if bucket_state(c, name).await? != Some(true) {
                return Ok(());
            }
            let SettingBefore { setting: field, value } = r.prev()?;
            let prev = &value;
            if field == "replication" {
                write_replication(c, name, prev).await.gone()?;
            } else if field == "versioning" && !prev.is_string() {
                // A versioned bucket can never be unversioned again; suspending
                // is a different state, so it is left enabled.
                tracing::debug!(bucket = name, "versioning stays enabled: a bucket cannot return to never-versioned");
            } else if let Some(setting) = Setting::from_name(&field) {
                match setting.write(c, name, prev).await {
                    Err(e) if e.is_not_found() => {}
                    other => other?,
                }
            }
        }
    }
    Ok(())
}

async fn validate(ctx: &Ctx) -> Result<crate::report::Findings, StepError> {
    use crate::report::{diff, Check, Findings, Resource};
    let mut f = Findings::default();
    let role = ctx.cfg.names.own("s3-replication");
    let role_arn = ctx
        .aws
        .target
        .iam
        .get_role()
        .role_name(&role)
        .send()
        .await
        .found(&role, "GetRole")?
        .and_then(|o| o.role.map(|r| r.arn));
    for dev in &ctx.cfg.source.audit_buckets {
        let (prod, replica) = (ctx.cfg.names.prod(dev), ctx.cfg.names.replica_bucket(dev));
        for (place, name) in [(Place::Prod, &prod), (Place::Replica, &replica)] {
            let c = client(ctx, place);
            if bucket_state(c, name).await? != Some(true) {
                f.resources.push(Resource::missing(kind_of(place), dev, name));
                continue;
            }
            let mut d = Vec::new();
            diff(&mut d, "name", dev, name, true);
            f.resources.push(Resource::compared(kind_of(place), dev, name, d));
            let mut values = BTreeMap::new();
            for setting in Setting::ALL {
                values.insert(setting.name(), setting.read(c, name).await?);
            }
            let is = |s: Setting| values[s.name()] == s.desired(ctx, name, &values[s.name()]);
            // A failed check names what the bucket has instead.
            let check = |id: &str, s: Setting, wanted: &str| {
                Check::wanted(id, name, is(s), wanted, found_text(&values[s.name()]))
            };
            f.checks.push(check("s3.versioning", Setting::Versioning, "versioning enabled"));
            f.checks.push(check("s3.encryption", Setting::Encryption, "SSE-S3 (AES256) default encryption"));
            f.checks.push(check("s3.public_access_block", Setting::PublicAccess, "all four public-access blocks"));
            let lifecycle =
                format!("GLACIER after {} days, incomplete uploads aborted", ctx.cfg.audit.glacier_after_days);
            f.checks.push(check("s3.lifecycle", Setting::Lifecycle, &lifecycle));
            f.checks.push(check("s3.tls_only", Setting::Policy, "bucket policy denies non-TLS access"));
            let tags: BTreeMap<String, String> = serde_json::from_value(values["tags"].clone()).unwrap_or_default();
            f.checks.extend(super::common::common_checks(ctx, name, &tags));
        }
        if bucket_state(&ctx.aws.target, &prod).await? == Some(true) {
            let rep = read_replication(&ctx.aws.target, &prod).await?;
            let want = json!({"role": role_arn, "rules": [{"id": REPLICATION_RULE, "status": "Enabled", "destination": format!("arn:aws:s3:::{replica}")}]});
            f.checks.push(Check::new(
                "s3.replication",
                &prod,
                role_arn.is_some() && rep == want,
                format!("replicates to {replica}"),
            ));
        }
    }
    if role_arn.is_some() {
        let doc = super::common::roles::role_policy(ctx, &role, ROLE_POLICY).await?;
        let wild = super::common::wildcard_actions(&doc);
        f.checks.push(Check::new(
            "iam.no_wildcard_action",
            &role,
            wild.is_empty() && !doc.is_null(),
            if wild.is_empty() { "exact replication actions".to_owned() } else { wild.join(", ") },
        ));
    }
    Ok(f)
}

/// Buckets with objects: their versions and delete markers, counted up to
/// [`COUNT_AT_MOST`] (a deletion removes every one of them).
async fn at_risk(ctx: &Ctx, resources: &[(String, String)]) -> Result<Vec<AtRisk>, StepError> {
    let mut out = Vec::new();
    for (kind, name) in resources.iter().filter(|(k, _)| k == "s3_bucket" || k == "s3_replica_bucket") {
        let c = client(ctx, place_of(kind));
        if bucket_state(c, name).await? != Some(true) {
            continue;
        }
        // ListObjectVersions has no paginator in the SDK: its two markers.
        let (mut count, mut key, mut version) = (0u64, None::<String>, None::<String>);
        loop {
            let page =
                c.s3.list_object_versions()
                    .bucket(name)
                    .set_key_marker(key.take())
                    .set_version_id_marker(version.take())
                    .send()
                    .await
                    .on(name, "ListObjectVersions")?;
            count += (page.versions().len() + page.delete_markers().len()) as u64;
            if count >= COUNT_AT_MOST || page.is_truncated() != Some(true) {
                break;
            }
            key = page.next_key_marker().map(str::to_owned);
            version = page.next_version_id_marker().map(str::to_owned);
        }
        if count > 0 {
            let holds = if count >= COUNT_AT_MOST {
                format!("S3 bucket, over {} object versions", thousands(COUNT_AT_MOST))
            } else {
                format!("S3 bucket, {} object version{}", thousands(count), if count == 1 { "" } else { "s" })
            };
            out.push(AtRisk { kind: kind.clone(), name: name.clone(), holds });
        }
    }
    Ok(out)
}

/// A bucket setting as a failed check names it: `none`, a word, or its
/// compact JSON (cut at 160 characters).
fn found_text(v: &Value) -> String {
    let text = match v {
        Value::Null => "none".to_owned(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => crate::report::on_off(*b).to_owned(),
        other => other.to_string(),
    };
    if text.chars().count() > 160 {
        text.chars().take(159).chain(std::iter::once('…')).collect()
    } else {
        text
    }
}

/// Where counting a bucket's objects for the prompt stops.
const COUNT_AT_MOST: u64 = 10_000;

async fn sweep(ctx: &Ctx, look: bool) -> Result<Vec<Swept>, StepError> {
    let mut removed = Vec::new();
    for dev in &ctx.cfg.source.audit_buckets {
        for (place, name) in
            [(Place::Prod, ctx.cfg.names.prod(dev)), (Place::Replica, ctx.cfg.names.replica_bucket(dev))]
        {
            let c = client(ctx, place);
            if bucket_state(c, &name).await? != Some(true) {
                continue;
            }
            let tags = Setting::Tags.read(c, &name).await?;
            if is_ours(ctx, &tags) && (look || delete_bucket(ctx, place, &name).await?) {
                let kind = if place == Place::Replica { "s3_replica_bucket" } else { "s3_bucket" };
                removed.push(Swept::new(kind, name));
            }
        }
    }
    let role = ctx.cfg.names.own("s3-replication");
    if ctx.aws.target.iam.get_role().role_name(&role).send().await.is_ok()
        && (look || super::common::roles::delete_role(ctx, &role).await?)
    {
        removed.push(Swept::new("iam_role", role));
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replication_policy_names_exact_actions_on_exact_buckets() {
        let p = replication_policy(&[("a-prod".into(), "a-prod-replica".into())]);
        let st = p["Statement"].as_array().unwrap();
        assert_eq!(st[0]["Resource"], json!(["arn:aws:s3:::a-prod"]));
        assert_eq!(st[1]["Resource"], json!(["arn:aws:s3:::a-prod/*"]));
        assert_eq!(st[2]["Resource"], json!(["arn:aws:s3:::a-prod-replica/*"]));
        for s in st {
            for a in s["Action"].as_array().unwrap() {
                assert!(!a.as_str().unwrap().contains('*'));
            }
        }
    }

    #[test]
    fn versioning_status_from_a_raw_body() {
        assert_eq!(xml_status("<X><Status>Enabled</Status></X>").as_deref(), Some("Enabled"));
        assert_eq!(xml_status("<X/>"), None);
    }
}
