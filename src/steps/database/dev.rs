//! The dev cluster and the snapshot to restore, checked before anything
//! changes: the engine and its family against RDS's catalogue, a shared
//! snapshot's grants and its key's policy for the prod account.

use super::*;

pub(super) async fn read_dev(ctx: &Ctx) -> Result<Option<DevCluster>, StepError> {
    let s = &ctx.cfg.source;
    if s.db_cluster.is_empty() {
        return Ok(None);
    }
    let rds = &ctx.aws.source.rds;
    let cluster = rds
        .describe_db_clusters()
        .db_cluster_identifier(&s.db_cluster)
        .send()
        .await
        .found(format!("dev cluster {}", s.db_cluster), "DescribeDBClusters")?
        .and_then(|out| out.db_clusters.unwrap_or_default().into_iter().next());
    let cluster = cluster.ok_or_else(|| {
        StepError::Invalid(format!(
            "[source] db_cluster: the dev Aurora cluster {:?} does not exist (check the name and the source account/region)",
            s.db_cluster
        ))
    })?;
    if cluster.engine() != Some(ENGINE) {
        return Err(StepError::Invalid(format!(
            "[source] db_cluster: {:?} runs engine {:?}; paymig migrates {ENGINE} only",
            s.db_cluster,
            cluster.engine().unwrap_or("?")
        )));
    }
    let snapshot = if s.db_snapshot.is_empty() {
        let all: Vec<DbClusterSnapshot> = rds
            .describe_db_cluster_snapshots()
            .db_cluster_identifier(&s.db_cluster)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .on(format!("dev cluster {}", s.db_cluster), "DescribeDBClusterSnapshots")?;
        newest_available(&all).cloned().ok_or_else(|| {
            StepError::Invalid(format!(
                "[source] db_cluster: the dev cluster {:?} has no available snapshot to restore from; take one (or set [source] db_snapshot)",
                s.db_cluster
            ))
        })?
    } else {
        let found = rds
            .describe_db_cluster_snapshots()
            .db_cluster_snapshot_identifier(&s.db_snapshot)
            .include_shared(true)
            .send()
            .await
            .found(format!("dev snapshot {}", s.db_snapshot), "DescribeDBClusterSnapshots")?
            .and_then(|out| out.db_cluster_snapshots.unwrap_or_default().into_iter().next());
        let snap = found.ok_or_else(|| {
            StepError::Invalid(format!("[source] db_snapshot: the snapshot {:?} does not exist", s.db_snapshot))
        })?;
        if snap.status() != Some("available") {
            return Err(StepError::Invalid(format!(
                "[source] db_snapshot: the snapshot {:?} is {:?}, not available",
                s.db_snapshot,
                snap.status().unwrap_or("?")
            )));
        }
        snap
    };
    if snapshot.engine().is_some_and(|e| e != ENGINE) {
        return Err(StepError::Invalid(format!(
            "[source] db_snapshot: {:?} is a {:?} snapshot; paymig migrates {ENGINE} only",
            snapshot.db_cluster_snapshot_identifier().unwrap_or("?"),
            snapshot.engine().unwrap_or("?")
        )));
    }
    let parameters = match cluster.db_cluster_parameter_group().filter(|g| !g.starts_with("default.")) {
        None => None,
        Some(group) => {
            let family = rds
                .describe_db_cluster_parameter_groups()
                .db_cluster_parameter_group_name(group)
                .send()
                .await
                .on(format!("dev parameter group {group}"), "DescribeDBClusterParameterGroups")?
                .db_cluster_parameter_groups()
                .first()
                .and_then(|g| g.db_parameter_group_family().map(str::to_owned))
                .unwrap_or_default();
            let params: Vec<Parameter> = user_parameters(rds, group, format!("dev parameter group {group}")).await?;
            Some((family, params))
        }
    };
    let source_account = ctx.aws.source.account_id().await.map_err(StepError::Invalid)?;
    if source_account != ctx.account {
        check_shared(ctx, &snapshot, &source_account).await?;
    }
    check_engine(ctx, &snapshot, parameters.as_ref().map(|(family, _)| family.as_str())).await?;
    Ok(Some(DevCluster { cluster, snapshot, parameters, source_account }))
}

/// Before a restore, from the prod region's engine catalogue (reads only):
/// the snapshot's engine version is offered there, runs `db.serverless`
/// (Serverless v2) within `[database]`'s capacity range, and its
/// parameter-group family is that of dev's cluster parameter group (which
/// paymig copies). AWS would otherwise refuse the restore or the first
/// instance — after the restore's 10 minutes or more.
pub(super) async fn check_engine(
    ctx: &Ctx,
    snapshot: &DbClusterSnapshot,
    dev_family: Option<&str>,
) -> Result<(), StepError> {
    let rds = &ctx.aws.target.rds;
    let region = &ctx.cfg.migration.region;
    let id = snapshot.db_cluster_snapshot_identifier().unwrap_or("?");
    let Some(version) = snapshot.engine_version() else { return Ok(()) };
    let versions: Result<Vec<_>, _> = rds
        .describe_db_engine_versions()
        .engine(ENGINE)
        .engine_version(version)
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await;
    let versions = match versions {
        Ok(v) => v,
        Err(e) => {
            let failure = crate::aws::AwsFailure::of(&e);
            // An endpoint without the engine catalogue (moto answers 500
            // with no AWS error at all) is said once, quietly, and the
            // checks are left to the restore; anything else (a denial above
            // all) is a preflight failure naming the call.
            if failure.status == Some(500) && failure.code.is_none() {
                tracing::debug!("this endpoint has no RDS engine catalogue (DescribeDBEngineVersions): the snapshot's engine version is not checked for Serverless v2 and its parameter-group family");
                return Ok(());
            }
            return Err(StepError::sdk(format!("{ENGINE} {version}"), "DescribeDBEngineVersions", &e));
        }
    };
    let Some(v) = versions.first() else {
        return Err(StepError::Invalid(format!(
            "[source] db_snapshot: snapshot {id} is {ENGINE} {version}, which {region} does not offer\nhelp: upgrade the dev cluster to a version offered in {region} and take a new snapshot"
        )));
    };
    let mut problems = Vec::new();
    let family = v.db_parameter_group_family().unwrap_or_default();
    if let Some(dev) = dev_family.filter(|f| *f != family) {
        problems.push(format!(
            "[source] db_cluster: dev's cluster parameter group is family {dev}, but snapshot {id} ({ENGINE} {version}) needs {family}: the restore would refuse the copied group\nhelp: take a new snapshot of the dev cluster (it runs {dev}), or set [source] db_snapshot to a snapshot of a {dev} version"
        ));
    }
    let orderable: Vec<_> = rds
        .describe_orderable_db_instance_options()
        .engine(ENGINE)
        .engine_version(version)
        .db_instance_class(INSTANCE_CLASS)
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .on(format!("{ENGINE} {version}"), "DescribeOrderableDBInstanceOptions")?;
    if !orderable.iter().any(|o| o.db_instance_class() == Some(INSTANCE_CLASS)) {
        problems.push(format!(
            "[source] db_snapshot: snapshot {id} is {ENGINE} {version}, which does not run {INSTANCE_CLASS} (Aurora Serverless v2) in {region}\nhelp: upgrade the dev cluster to 13.6, 14.3, 15.2, 16.1 or later and take a new snapshot"
        ));
    } else if let Some(range) = v.serverless_v2_features_support() {
        let db = &ctx.cfg.database;
        let (min, max) = (range.min_capacity().unwrap_or(0.0), range.max_capacity().unwrap_or(f64::MAX));
        if db.min_capacity < min {
            problems.push(format!(
                "[database] min_capacity = {}: {ENGINE} {version} (snapshot {id}) runs Serverless v2 from {min} ACU\nhelp: set min_capacity to {min} or more, or restore a snapshot of a version that scales to {}",
                db.min_capacity, db.min_capacity
            ));
        }
        if db.max_capacity > max {
            problems.push(format!(
                "[database] max_capacity = {}: {ENGINE} {version} (snapshot {id}) runs Serverless v2 up to {max} ACU\nhelp: set max_capacity to {max} or less",
                db.max_capacity
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(StepError::Invalid(problems.join("\n")))
    }
}

/// What dev must have done for prod (another account) to restore its
/// snapshot, read from dev (reads only): the snapshot is manual, shared with
/// the prod account, and — when encrypted — under a customer-managed key
/// whose policy grants the prod account what a restore needs. Every gap is
/// refused before anything changes, with the dev team's exact fix.
pub(super) async fn check_shared(ctx: &Ctx, snap: &DbClusterSnapshot, dev_account: &str) -> Result<(), StepError> {
    let id = snap.db_cluster_snapshot_identifier().unwrap_or_default();
    let rds = &ctx.aws.source.rds;
    let shared_with: Vec<String> = rds
        .describe_db_cluster_snapshot_attributes()
        .db_cluster_snapshot_identifier(id)
        .send()
        .await
        .on(format!("dev snapshot {id}"), "DescribeDBClusterSnapshotAttributes")?
        .db_cluster_snapshot_attributes_result()
        .map(|r| {
            r.db_cluster_snapshot_attributes()
                .iter()
                .filter(|a| a.attribute_name() == Some("restore"))
                .flat_map(|a| a.attribute_values().iter().cloned())
                .collect()
        })
        .unwrap_or_default();
    let key = match snap.kms_key_id().filter(|_| snap.storage_encrypted() == Some(true)) {
        None => None,
        Some(key) => {
            let kms = &ctx.aws.source.kms;
            let md =
                kms.describe_key().key_id(key).send().await.on(format!("dev key {key}"), "DescribeKey")?.key_metadata;
            let aws_managed =
                md.as_ref().and_then(|m| m.key_manager()) == Some(&aws_sdk_kms::types::KeyManagerType::Aws);
            let policy = if aws_managed {
                Value::Null
            } else {
                let doc = kms
                    .get_key_policy()
                    .key_id(key)
                    .policy_name("default")
                    .send()
                    .await
                    .on(format!("dev key {key}"), "GetKeyPolicy")?
                    .policy;
                doc.and_then(|d| serde_json::from_str(&d).ok()).unwrap_or(Value::Null)
            };
            Some(SnapshotKey { arn: key.to_owned(), aws_managed, policy })
        }
    };
    let facts = Sharing {
        id: id.to_owned(),
        arn: snap.db_cluster_snapshot_arn().unwrap_or(id).to_owned(),
        automated: snap.snapshot_type() == Some("automated"),
        shared_with,
        key,
    };
    let problems = sharing_problems(&facts, dev_account, &ctx.account);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(StepError::Invalid(problems.join("\n")))
    }
}

/// The key of an encrypted dev snapshot.
pub(super) struct SnapshotKey {
    pub(super) arn: String,
    pub(super) aws_managed: bool,
    pub(super) policy: Value,
}

/// What decides whether another account may restore a snapshot.
pub(super) struct Sharing {
    pub(super) id: String,
    pub(super) arn: String,
    pub(super) automated: bool,
    /// The `restore` attribute: account ids, or `all`.
    pub(super) shared_with: Vec<String>,
    pub(super) key: Option<SnapshotKey>,
}

/// What a restore in `prod` needs of KMS on the snapshot's key.
pub(super) const RESTORE_KEY_ACTIONS: [&str; 3] = ["kms:CreateGrant", "kms:Decrypt", "kms:DescribeKey"];

/// Why `prod` cannot restore the snapshot, each with the fix (empty: it can).
pub(super) fn sharing_problems(s: &Sharing, dev: &str, prod: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (id, arn) = (&s.id, &s.arn);
    // An automated snapshot's id is `rds:<cluster>-<date>`: not a valid new id.
    let name = id.trim_start_matches("rds:");
    if s.automated {
        out.push(format!(
            "[source] db_snapshot: {id} is an automated snapshot of account {dev}; AWS does not share automated snapshots with another account (prod is {prod})\nhelp: the dev team copies it to a manual snapshot (`aws rds copy-db-cluster-snapshot --source-db-cluster-snapshot-identifier {arn} --target-db-cluster-snapshot-identifier {name}-for-prod`), shares that, and [source] db_snapshot names it"
        ));
    } else if !s.shared_with.iter().any(|a| a == prod || a == "all") {
        out.push(format!(
            "[source] db_snapshot: {id} (account {dev}) is not shared with the prod account {prod}\nhelp: the dev team runs `aws rds modify-db-cluster-snapshot-attribute --db-cluster-snapshot-identifier {id} --attribute-name restore --values-to-add {prod}`"
        ));
    }
    if let Some(k) = &s.key {
        if k.aws_managed {
            out.push(format!(
                "[source] db_snapshot: {id} is encrypted with the AWS-managed key aws/rds ({}), which AWS does not let another account use, so it cannot be shared\nhelp: the dev team copies it under a customer-managed key (`aws rds copy-db-cluster-snapshot --source-db-cluster-snapshot-identifier {arn} --target-db-cluster-snapshot-identifier {name}-for-prod --kms-key-id <customer-managed key>`), then shares the copy and that key",
                k.arn
            ));
        } else {
            let missing: Vec<&str> = RESTORE_KEY_ACTIONS
                .iter()
                .copied()
                .filter(|a| !crate::steps::common::policy::grants(&k.policy, prod, a))
                .collect();
            if !missing.is_empty() {
                out.push(format!(
                    "[source] db_snapshot: {id} is encrypted with {}, whose key policy does not grant the prod account {prod} {}\nhelp: the dev team adds to that key's policy a statement allowing principal arn:aws:iam::{prod}:root the actions {} on resource *",
                    k.arn,
                    missing.join(", "),
                    RESTORE_KEY_ACTIONS.join(", ")
                ));
            }
        }
    }
    out
}
