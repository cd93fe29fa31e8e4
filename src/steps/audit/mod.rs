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

use serde_json::{json, Value};

use crate::aws::Clients;
use crate::engine::journal::{Op, Record};
use crate::engine::step::thousands;
use crate::engine::{About, AtRisk, Created, Ctx, Declared, Outcome, Res, Step, StepError, Swept};
use crate::steps::common::arns;
mod settings;
mod teardown;
mod validate;
use crate::steps::common::settings::{Setting, SettingBefore};
pub(crate) use settings::*;
pub use teardown::*;
use validate::*;

pub struct Audit;

const STEP: &str = "audit";
const LIFECYCLE_RULE: &str = "paymig-glacier";
const REPLICATION_RULE: &str = "paymig-replica";
const ROLE_POLICY: &str = "paymig-s3-replication";
/// DeleteObjects takes at most this many keys.
const DELETE_BATCH: usize = 1000;

/// The resource kinds this step records in the journal (what undo matches on).
pub mod kind {
    pub const IAM_ROLE: &str = "iam_role";
    pub const S3_BUCKET: &str = "s3_bucket";
    pub const S3_REPLICA_BUCKET: &str = "s3_replica_bucket";
}

static ABOUT: About = About {
    id: STEP,
    deps: &[],
    undo_apart: &[],
    early: &[],
    kinds: &[kind::IAM_ROLE, kind::S3_BUCKET, kind::S3_REPLICA_BUCKET],
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
pub(super) enum Place {
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

/// Whether a bucket's tags (as [`BucketSetting::Tags`] reads them) mark it ours.
fn is_ours(ctx: &Ctx, tags: &Value) -> bool {
    tags.as_object()
        .is_some_and(|t| super::common::is_ours(ctx, t.iter().filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)))))
}

async fn converge_role(ctx: &Ctx, pairs: &[(String, String)]) -> Result<String, StepError> {
    let name = ctx.cfg.names.own("s3-replication");
    let res = Res::new(STEP, kind::IAM_ROLE, "replication-role", &name);
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
            let tags = BucketSetting::Tags.read(ctx, &Bucket::new(place, bucket)).await?;
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
    crate::steps::common::settings::converge::<BucketSetting>(ctx, &res, bucket, &Bucket::new(place, bucket), exists)
        .await
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
