//! database: the prod Aurora PostgreSQL cluster restored from a dev snapshot —
//! `[source] db_snapshot`, or the newest available snapshot of
//! `[source] db_cluster` — into the prod network (DB subnet group over the
//! private subnets, the database security group), re-encrypted with the prod
//! key, with dev's engine settings and non-default cluster parameters, the
//! Serverless v2 range from `[database]`, backup retention 1, deletion
//! protection off, and `instances` db.serverless instances in different AZs
//! with distinct promotion tiers. The snapshot prod came from is journaled.

use crate::aws::Call;
use crate::engine::estimate::{Compose, Wait};
use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_rds::types::{
    CloudwatchLogsExportConfiguration, DbCluster, DbClusterSnapshot, Parameter, ServerlessV2ScalingConfiguration, Tag,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::engine::journal::{Op, Record};
use crate::engine::{
    is_planned, planned_id, poll_until, About, AtRisk, Created, Ctx, Declared, Outcome, Res, Step, StepError, Swept,
};
use crate::report::or_none;
use crate::steps::common::arns;

const STEP: &str = "database";
/// Aurora Serverless v2 instances.
const INSTANCE_CLASS: &str = "db.serverless";
const ENGINE: &str = "aurora-postgresql";
/// Most parameters ModifyDBClusterParameterGroup takes in one call.
const PARAMETER_BATCH: usize = 20;

/// The database step; dev's cluster and snapshot are read once per command.
#[derive(Default)]
pub struct Database {
    dev: tokio::sync::OnceCell<Option<DevCluster>>,
}

/// What the migration reads of dev.
#[derive(Debug, Clone)]
pub struct DevCluster {
    pub cluster: DbCluster,
    pub snapshot: DbClusterSnapshot,
    /// `(family, non-default parameters)` of dev's cluster parameter group.
    pub parameters: Option<(String, Vec<Parameter>)>,
    pub source_account: String,
}

impl Database {
    async fn dev(&self, ctx: &Ctx) -> Result<Option<&DevCluster>, StepError> {
        self.dev.get_or_try_init(|| read_dev(ctx)).await.map(Option::as_ref)
    }
}

static ABOUT: About = About {
    id: STEP,
    deps: &["kms", "network"],
    undo_apart: &[],
    early: &["network"],
    kinds: &["db_subnet_group", "db_cluster_parameter_group", "db_cluster", "db_instance"],
    actions: &[
        "rds:DescribeDBClusters",
        "rds:DescribeDBClusterSnapshots",
        // The engine catalogue of the prod region, before the restore.
        "rds:DescribeDBEngineVersions",
        "rds:DescribeOrderableDBInstanceOptions",
        "rds:DescribeDBClusterParameterGroups",
        "rds:DescribeDBClusterParameters",
        "rds:DescribeDBSubnetGroups",
        "rds:DescribeDBInstances",
        "rds:CreateDBSubnetGroup",
        "rds:DeleteDBSubnetGroup",
        "rds:CreateDBClusterParameterGroup",
        "rds:ModifyDBClusterParameterGroup",
        "rds:DeleteDBClusterParameterGroup",
        "rds:RestoreDBClusterFromSnapshot",
        "rds:ModifyDBCluster",
        "rds:DeleteDBCluster",
        "rds:CreateDBInstance",
        "rds:ModifyDBInstance",
        // A member whose new cluster parameter group is pending a reboot.
        "rds:RebootDBInstance",
        "rds:DeleteDBInstance",
        "rds:AddTagsToResource",
        // The first cluster of an account creates RDS's service-linked role.
        "iam:CreateServiceLinkedRole",
        "kms:CreateGrant",
        "kms:DescribeKey",
        // RDS-managed master credentials (ManageMasterUserPassword): RDS
        // creates, rotates and deletes the secret with the caller's rights,
        // encrypted with the prod key (RDS User Guide, "Password management
        // with Amazon RDS and AWS Secrets Manager").
        "secretsmanager:CreateSecret",
        "secretsmanager:RotateSecret",
        "secretsmanager:DescribeSecret",
        "secretsmanager:UpdateSecret",
        "secretsmanager:DeleteSecret",
        "secretsmanager:TagResource",
        "secretsmanager:GetRandomPassword",
        "kms:Decrypt",
        "kms:GenerateDataKey",
    ],
    source_actions: &[
        "rds:DescribeDBClusters",
        "rds:DescribeDBClusterSnapshots",
        // Dev in another account: is the snapshot shared, is its key?
        "rds:DescribeDBClusterSnapshotAttributes",
        "kms:DescribeKey",
        "kms:GetKeyPolicy",
        "rds:DescribeDBClusterParameterGroups",
        "rds:DescribeDBClusterParameters",
        // Dev's instance endpoints, where copied values name them.
        "rds:DescribeDBInstances",
    ],
    scopes: &[("rds", arns::rds), ("kms", arns::kms_keys), ("secretsmanager", arns::rds_secrets)],
    sweeps: "the Aurora cluster this configuration names, when tagged for the migration, its instances, subnet group and parameter group",
    waits: &[("db_cluster", Wait::AuroraRestore, Compose::Chain), ("db_instance", Wait::AuroraInstance, Compose::Side)],
    undo_waits: &[("db_instance", Wait::AuroraInstanceDeleted, Compose::Side), ("db_cluster", Wait::AuroraClusterDeleted, Compose::Chain)],
};

impl Declared for Database {
    fn about(&self) -> &'static About {
        &ABOUT
    }

    fn grant(&self, _cfg: &crate::config::Config, account: &str, action: &str) -> Option<crate::engine::Grant> {
        (action == "iam:CreateServiceLinkedRole")
            .then(|| crate::engine::Grant::service_linked_role(account, "rds.amazonaws.com"))
    }
}

impl Step for Database {
    async fn preflight(&self, ctx: &Ctx) -> Vec<StepError> {
        match self.dev(ctx).await {
            Ok(_) => vec![],
            Err(e) => vec![e],
        }
    }

    async fn run(&self, ctx: &Ctx) -> Result<Outcome, StepError> {
        match self.dev(ctx).await? {
            Some(dev) => converge(ctx, dev).await,
            None => Ok(Outcome::Skipped("no [source] db_cluster configured".into())),
        }
    }

    crate::step_functions!(undo => undo, sweep => sweep, at_risk => at_risk);

    async fn validate(&self, ctx: &Ctx) -> Result<crate::report::Findings, StepError> {
        match self.dev(ctx).await? {
            Some(dev) => validate(ctx, dev).await,
            None => Ok(crate::report::Findings::default()),
        }
    }
}

/// What the database step publishes as soon as the restore is accepted (the
/// cluster's endpoints exist from then on, long before it is available):
/// steps that copy dev's references to the cluster map them to these
/// without waiting for the restore to end. Instance endpoints are added as
/// the instances are created.
#[derive(Debug, Clone, Default)]
pub struct Endpoints(pub crate::steps::common::references::ProdEndpoints);

impl Endpoints {
    /// The cluster's endpoints; instances' are added as they are created.
    fn of(c: &DbCluster) -> Endpoints {
        Endpoints(crate::steps::common::references::ProdEndpoints {
            writer: c.endpoint().map(str::to_owned),
            reader: c.reader_endpoint().map(str::to_owned),
            instances: vec![],
        })
    }

    /// Records instance `i`'s endpoint.
    fn instance(ctx: &Ctx, i: usize, endpoint: Option<&str>) {
        let Some(e) = endpoint else { return };
        ctx.outputs.update(|all: &mut Endpoints| {
            let list = &mut all.0.instances;
            if list.len() <= i {
                list.resize(i + 1, String::new());
            }
            list[i] = e.to_owned();
        });
    }
}

/// The ARN of the secret holding the prod cluster's master credentials
/// (RDS manages it), published once RDS manages them: what a function's
/// environment override `{{database.master_user_secret_arn}}` becomes.
#[derive(Debug, Clone, Default)]
pub struct MasterSecret(pub Option<String>);

/// The prod master credentials' secret ARN: published by the database step
/// in this run (waited for: it exists only once the restore is done and
/// RDS manages the credentials), or read from the cluster.
pub async fn master_secret_arn(ctx: &Ctx) -> Result<Option<String>, StepError> {
    if let Some(MasterSecret(arn)) = ctx.outputs.wait::<MasterSecret>(STEP).await {
        return Ok(arn);
    }
    let n = names(ctx);
    Ok(describe_cluster(ctx, &n.cluster).await?.and_then(|c| c.master_user_secret()?.secret_arn().map(str::to_owned)))
}

/// Dev's cluster, read through the source client (`None` without a
/// database tier or when it does not exist: preflight names that).
pub async fn dev_cluster(ctx: &Ctx) -> Result<Option<DbCluster>, StepError> {
    let id = &ctx.cfg.source.db_cluster;
    if id.is_empty() {
        return Ok(None);
    }
    let out = ctx.aws.source.rds.describe_db_clusters().db_cluster_identifier(id).send().await;
    Ok(out
        .found(format!("dev cluster {id}"), "DescribeDBClusters")?
        .and_then(|o| o.db_clusters.unwrap_or_default().into_iter().next()))
}

/// The endpoints of dev's instances, writer first, then by identifier (the
/// order prod's `<cluster>-1`, `-2`… follow).
pub async fn dev_instance_endpoints(ctx: &Ctx, cluster: &DbCluster) -> Result<Vec<String>, StepError> {
    let mut members: Vec<(bool, String)> = cluster
        .db_cluster_members()
        .iter()
        .filter_map(|m| Some((!m.is_cluster_writer().unwrap_or(false), m.db_instance_identifier()?.to_owned())))
        .collect();
    members.sort();
    let mut out = Vec::new();
    for (_, id) in members {
        let found = ctx.aws.source.rds.describe_db_instances().db_instance_identifier(&id).send().await;
        let found = found.found(format!("dev instance {id}"), "DescribeDBInstances")?;
        out.extend(
            found.and_then(|o| o.db_instances().first().and_then(|i| i.endpoint()?.address().map(str::to_owned))),
        );
    }
    Ok(out)
}

/// The prod cluster's endpoints: what the database step publishes in this
/// run (waited for: the restore is accepted quickly, available much later),
/// or what exists (read) when the run does not schedule it.
pub async fn prod_endpoints(ctx: &Ctx) -> Result<crate::steps::common::references::ProdEndpoints, StepError> {
    if let Some(Endpoints(e)) = ctx.outputs.wait::<Endpoints>(STEP).await {
        return Ok(e);
    }
    let n = names(ctx);
    match describe_cluster(ctx, &n.cluster).await? {
        Some(c) => observed_endpoints(ctx, &c).await,
        None => Ok(Default::default()),
    }
}

/// A cluster's endpoints as RDS reports them, its instances' in order.
async fn observed_endpoints(
    ctx: &Ctx,
    c: &DbCluster,
) -> Result<crate::steps::common::references::ProdEndpoints, StepError> {
    let cluster = c.db_cluster_identifier().unwrap_or_default();
    let mut instances = Vec::new();
    for i in 0..ctx.cfg.database.instances as usize {
        let found = describe_instance(ctx, &instance_id(cluster, i)).await?;
        match found.and_then(|i| i.endpoint().and_then(|e| e.address()).map(str::to_owned)) {
            Some(e) => instances.push(e),
            None => break,
        }
    }
    Ok(crate::steps::common::references::ProdEndpoints {
        writer: c.endpoint().map(str::to_owned),
        reader: c.reader_endpoint().map(str::to_owned),
        instances,
    })
}

/// Names of the prod database resources.
struct Names {
    cluster: String,
    subnet_group: String,
    parameter_group: String,
}

fn names(ctx: &Ctx) -> Names {
    let cluster = ctx.cfg.names.prod(&ctx.cfg.source.db_cluster);
    Names { subnet_group: format!("{cluster}-subnets"), parameter_group: format!("{cluster}-params"), cluster }
}

fn instance_id(cluster: &str, i: usize) -> String {
    format!("{cluster}-{}", i + 1)
}

/// Whether RDS tags mark a resource as this migration's.
fn is_ours(ctx: &Ctx, tags: &[Tag]) -> bool {
    super::common::is_ours(ctx, tags.iter().filter_map(|t| Some((t.key()?, t.value()?))))
}

fn tags(ctx: &Ctx) -> Vec<Tag> {
    super::common::prod_tags_as(ctx, |k, v| Tag::builder().key(k).value(v).build())
}

/// The snapshot to restore: the newest `available` one.
pub fn newest_available(snapshots: &[DbClusterSnapshot]) -> Option<&DbClusterSnapshot> {
    snapshots.iter().filter(|s| s.status() == Some("available")).max_by(|a, b| {
        a.snapshot_create_time().map(|t| t.as_nanos()).cmp(&b.snapshot_create_time().map(|t| t.as_nanos()))
    })
}

/// How the restore names the snapshot: its id in the same account (moto and
/// AWS both accept it), its ARN when it was shared from another account.
pub fn snapshot_reference(snapshot: &DbClusterSnapshot, source_account: &str, target_account: &str) -> String {
    if source_account != target_account {
        snapshot.db_cluster_snapshot_arn().unwrap_or_default().to_owned()
    } else {
        snapshot.db_cluster_snapshot_identifier().unwrap_or_default().to_owned()
    }
}

async fn read_dev(ctx: &Ctx) -> Result<Option<DevCluster>, StepError> {
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
            let params: Vec<Parameter> = rds
                .describe_db_cluster_parameters()
                .db_cluster_parameter_group_name(group)
                .source("user")
                .into_paginator()
                .items()
                .send()
                .try_collect()
                .await
                .on(format!("dev parameter group {group}"), "DescribeDBClusterParameters")?;
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
async fn check_engine(ctx: &Ctx, snapshot: &DbClusterSnapshot, dev_family: Option<&str>) -> Result<(), StepError> {
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
async fn check_shared(ctx: &Ctx, snap: &DbClusterSnapshot, dev_account: &str) -> Result<(), StepError> {
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
struct SnapshotKey {
    arn: String,
    aws_managed: bool,
    policy: Value,
}

/// What decides whether another account may restore a snapshot.
struct Sharing {
    id: String,
    arn: String,
    automated: bool,
    /// The `restore` attribute: account ids, or `all`.
    shared_with: Vec<String>,
    key: Option<SnapshotKey>,
}

/// What a restore in `prod` needs of KMS on the snapshot's key.
const RESTORE_KEY_ACTIONS: [&str; 3] = ["kms:CreateGrant", "kms:Decrypt", "kms:DescribeKey"];

/// Why `prod` cannot restore the snapshot, each with the fix (empty: it can).
fn sharing_problems(s: &Sharing, dev: &str, prod: &str) -> Vec<String> {
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
                .filter(|a| !super::common::policy::grants(&k.policy, prod, a))
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

async fn converge(ctx: &Ctx, dev: &DevCluster) -> Result<Outcome, StepError> {
    let n = names(ctx);
    // Started beside the network step (`early`): the subnets and groups are
    // all the restore needs of it.
    let Some(network) = ctx.outputs.wait::<crate::steps::network::Vpc>("network").await else {
        return Err(StepError::Invalid(
            "the network step ended without the prod subnets and security groups; nothing was restored (fix the network step's failure and re-run)".into(),
        ));
    };
    let subnets = network.subnet_ids();
    let zones: Vec<String> = {
        let mut z: Vec<String> = network.subnets.iter().map(|(az, _)| az.clone()).collect();
        z.dedup();
        z
    };
    converge_subnet_group(ctx, &n, &subnets).await?;
    let parameter_group = match &dev.parameters {
        Some((family, params)) => Some(converge_parameter_group(ctx, &n, family, params).await?),
        None => None,
    };
    let cluster = converge_cluster(ctx, dev, &n, &network.sg_db, parameter_group.as_deref()).await?;
    // AWS takes instances once the restored cluster is available, then
    // creates them side by side: the chain is the restore plus one
    // instance, however many there are.
    let (cluster, zones, id) = (&cluster, &zones, n.cluster.as_str());
    ctx.each(0..ctx.cfg.database.instances as usize, |i| async move {
        let az = zones.get(i % zones.len().max(1)).cloned().unwrap_or_default();
        converge_instance(ctx, id, i, &az, cluster).await
    })
    .await?;
    if parameter_group.is_some() {
        converge_parameters_in_effect(ctx, &n.cluster).await?;
    }
    Ok(Outcome::Done)
}

/// The members of `cluster` whose cluster parameter group is not in effect
/// (`DBClusterParameterGroupStatus` other than `in-sync`), with that status.
fn members_out_of_sync(cluster: &DbCluster) -> Vec<(String, String)> {
    cluster
        .db_cluster_members()
        .iter()
        .filter_map(|m| {
            let status = m.db_cluster_parameter_group_status().unwrap_or("in-sync");
            (status != "in-sync")
                .then(|| (m.db_instance_identifier().unwrap_or_default().to_owned(), status.to_owned()))
        })
        .collect()
}

/// AWS asks for five minutes between creating a cluster parameter group and
/// the first cluster that uses it, or its parameters may not take effect
/// (CreateDBClusterParameterGroup reference). paymig does not hold the
/// restore back for it — the restore and its instances take far longer —
/// but checks what the cluster actually runs once its instances are
/// available: a member whose parameter group status is `pending-reboot` is
/// rebooted (a new cluster holds no traffic yet), and the step ends once
/// every member is `in-sync`. `validate` checks the same.
async fn converge_parameters_in_effect(ctx: &Ctx, cluster: &str) -> Result<(), StepError> {
    if ctx.is_plan() {
        // A cluster not restored yet has no members; an existing one shows
        // what a reboot would fix.
        if let Some(c) = describe_cluster(ctx, cluster).await? {
            for (id, status) in members_out_of_sync(&c) {
                let res = Res::new(STEP, "db_instance", instance_key(cluster, &id), &id);
                ctx.update(
                    &res,
                    &id,
                    format!("reboot (parameter group {status})"),
                    InstanceBefore::Rebooted { rebooted: false },
                    || async { Ok(()) },
                )
                .await?;
            }
        }
        return Ok(());
    }
    let Some(c) = describe_cluster(ctx, cluster).await? else { return Ok(()) };
    let rds = &ctx.aws.target.rds;
    for (id, status) in members_out_of_sync(&c) {
        if status != "pending-reboot" {
            continue;
        }
        let res = Res::new(STEP, "db_instance", instance_key(cluster, &id), &id);
        ctx.update(
            &res,
            &id,
            format!("reboot (parameter group {status})"),
            InstanceBefore::Rebooted { rebooted: false },
            || async {
                rds.reboot_db_instance().db_instance_identifier(&id).send().await.on(&id, "RebootDBInstance")?;
                Ok(())
            },
        )
        .await?;
    }
    poll_until(ctx, STEP, cluster, "running its cluster parameter group (in-sync)", || async {
        let Some(c) = describe_cluster(ctx, cluster).await? else { return Ok(Some(())) };
        if !members_out_of_sync(&c).is_empty() {
            return Ok(None);
        }
        for m in c.db_cluster_members() {
            let id = m.db_instance_identifier().unwrap_or_default();
            let ready = describe_instance(ctx, id).await?.is_none_or(|i| i.db_instance_status() == Some("available"));
            if !ready {
                return Ok(None);
            }
        }
        Ok(Some(()))
    })
    .await
}

/// The journal key of the instance `id` of `cluster` (`instance/<n>`).
fn instance_key(cluster: &str, id: &str) -> String {
    format!("instance/{}", id.strip_prefix(&format!("{cluster}-")).unwrap_or(id))
}

async fn converge_subnet_group(ctx: &Ctx, n: &Names, subnets: &[String]) -> Result<(), StepError> {
    let rds = &ctx.aws.target.rds;
    let res = Res::new(STEP, "db_subnet_group", "subnet-group", &n.subnet_group);
    let found = rds
        .describe_db_subnet_groups()
        .db_subnet_group_name(&n.subnet_group)
        .send()
        .await
        .found(&n.subnet_group, "DescribeDBSubnetGroups")?
        .and_then(|out| out.db_subnet_groups.unwrap_or_default().into_iter().next());
    match found {
        Some(g) => {
            ctx.adopt(&res, &n.subnet_group, g.db_subnet_group_arn())?;
            let have: std::collections::BTreeSet<&str> =
                g.subnets().iter().filter_map(|s| s.subnet_identifier()).collect();
            let want: std::collections::BTreeSet<&str> =
                subnets.iter().map(String::as_str).filter(|s| !is_planned(s)).collect();
            if have != want && !want.is_empty() {
                return Err(StepError::Invalid(format!(
                    "DB subnet group {} spans other subnets than the prod network ({have:?}); delete it or run destroy",
                    n.subnet_group
                )));
            }
        }
        None => {
            ctx.create(&res, format!("over {} private subnets", subnets.len()), Value::Null, || async {
                let out = rds
                    .create_db_subnet_group()
                    .db_subnet_group_name(&n.subnet_group)
                    .db_subnet_group_description(format!("paymig {}: private subnets", ctx.cfg.migration.name))
                    .set_subnet_ids(Some(subnets.to_vec()))
                    .set_tags(Some(tags(ctx)))
                    .send()
                    .await
                    .on(&n.subnet_group, "CreateDBSubnetGroup")?;
                let arn = out.db_subnet_group.and_then(|g| g.db_subnet_group_arn);
                Ok(Created { value: (), id: n.subnet_group.clone(), arn, data: Value::Null })
            })
            .await?;
        }
    }
    Ok(())
}

async fn converge_parameter_group(
    ctx: &Ctx,
    n: &Names,
    family: &str,
    params: &[Parameter],
) -> Result<String, StepError> {
    let rds = &ctx.aws.target.rds;
    let name = &n.parameter_group;
    let res = Res::new(STEP, "db_cluster_parameter_group", "parameter-group", name);
    let exists = match rds
        .describe_db_cluster_parameter_groups()
        .db_cluster_parameter_group_name(name)
        .send()
        .await
        .found(name, "DescribeDBClusterParameterGroups")?
    {
        Some(out) => {
            out.db_cluster_parameter_groups().first().map(|g| g.db_cluster_parameter_group_arn().map(str::to_owned))
        }
        None => None,
    };
    let have: BTreeMap<String, String> = match &exists {
        Some(arn) => {
            ctx.adopt(&res, name, arn.as_deref())?;
            let current: Vec<Parameter> = rds
                .describe_db_cluster_parameters()
                .db_cluster_parameter_group_name(name)
                .source("user")
                .into_paginator()
                .items()
                .send()
                .try_collect()
                .await
                .on(name, "DescribeDBClusterParameters")?;
            current
                .iter()
                .filter_map(|p| Some((p.parameter_name()?.to_owned(), p.parameter_value()?.to_owned())))
                .collect()
        }
        None => {
            ctx.create(
                &res,
                format!("family {family}, {} parameters from dev", params.len()),
                json!({"family": family}),
                || async {
                    let out = rds
                        .create_db_cluster_parameter_group()
                        .db_cluster_parameter_group_name(name)
                        .db_parameter_group_family(family)
                        .description(format!("paymig {}: dev's non-default parameters", ctx.cfg.migration.name))
                        .set_tags(Some(tags(ctx)))
                        .send()
                        .await
                        .on(name, "CreateDBClusterParameterGroup")?;
                    let arn = out.db_cluster_parameter_group.and_then(|g| g.db_cluster_parameter_group_arn);
                    Ok(Created { value: (), id: name.clone(), arn, data: Value::Null })
                },
            )
            .await?;
            BTreeMap::new()
        }
    };
    let changed: Vec<Parameter> = params
        .iter()
        .filter(|p| p.parameter_name().is_some() && p.parameter_value().is_some())
        .filter(|p| have.get(p.parameter_name().unwrap_or_default()).map(String::as_str) != p.parameter_value())
        .map(|p| {
            Parameter::builder()
                .parameter_name(p.parameter_name().unwrap_or_default())
                .parameter_value(p.parameter_value().unwrap_or_default())
                .apply_method(p.apply_method().cloned().unwrap_or(aws_sdk_rds::types::ApplyMethod::PendingReboot))
                .build()
        })
        .collect();
    if !changed.is_empty() {
        let names: Vec<String> = changed.iter().filter_map(|p| p.parameter_name().map(str::to_owned)).collect();
        let prev = ParametersBefore { parameters: names.iter().map(|k| (k.clone(), have.get(k).cloned())).collect() };
        ctx.update(&res, name, format!("parameters {}", names.join(", ")), prev, || async {
            for batch in changed.chunks(PARAMETER_BATCH) {
                rds.modify_db_cluster_parameter_group()
                    .db_cluster_parameter_group_name(name)
                    .set_parameters(Some(batch.to_vec()))
                    .send()
                    .await
                    .on(name, "ModifyDBClusterParameterGroup")?;
            }
            Ok(())
        })
        .await?;
    }
    Ok(name.clone())
}

async fn describe_cluster(ctx: &Ctx, id: &str) -> Result<Option<DbCluster>, StepError> {
    match ctx
        .aws
        .target
        .rds
        .describe_db_clusters()
        .db_cluster_identifier(id)
        .send()
        .await
        .found(id, "DescribeDBClusters")?
    {
        Some(out) => Ok(out.db_clusters.unwrap_or_default().into_iter().next()),
        None => Ok(None),
    }
}

fn scaling(ctx: &Ctx) -> ServerlessV2ScalingConfiguration {
    ServerlessV2ScalingConfiguration::builder()
        .min_capacity(ctx.cfg.database.min_capacity)
        .max_capacity(ctx.cfg.database.max_capacity)
        .build()
}

/// The settings paymig owns on the prod cluster, as journaled on update.
/// A cluster's settings before an update, as its intent records them;
/// rollback restores capacity, backup retention, deletion protection and
/// groups (the rest is recorded for the report).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ClusterBefore {
    min_capacity: Option<f64>,
    max_capacity: Option<f64>,
    backup_retention: Option<i32>,
    deletion_protection: Option<bool>,
    security_groups: Option<Vec<String>>,
    iam_auth: Option<bool>,
    log_exports: Option<Vec<String>>,
    parameter_group: Option<String>,
    /// Whether RDS managed the master credentials (absent in journals of
    /// versions before it did).
    #[serde(default)]
    managed_master_password: Option<bool>,
}

impl ClusterBefore {
    fn of(c: &DbCluster) -> ClusterBefore {
        ClusterBefore {
            min_capacity: c.serverless_v2_scaling_configuration().and_then(|s| s.min_capacity()),
            max_capacity: c.serverless_v2_scaling_configuration().and_then(|s| s.max_capacity()),
            backup_retention: c.backup_retention_period(),
            deletion_protection: c.deletion_protection(),
            security_groups: Some(
                c.vpc_security_groups().iter().filter_map(|g| g.vpc_security_group_id().map(String::from)).collect(),
            ),
            iam_auth: c.iam_database_authentication_enabled(),
            log_exports: Some(c.enabled_cloudwatch_logs_exports().to_vec()),
            parameter_group: c.db_cluster_parameter_group().map(String::from),
            managed_master_password: Some(c.master_user_secret().is_some()),
        }
    }
}

/// An instance's promotion tier before an update.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct TierBefore {
    #[serde(deserialize_with = "crate::engine::journal::present")]
    promotion_tier: Option<i32>,
}

/// What an instance update replaced (untagged: the journal's own shapes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
enum InstanceBefore {
    /// Its promotion tier.
    Tier(TierBefore),
    /// A reboot to put the cluster parameter group in effect: nothing to
    /// restore.
    Rebooted { rebooted: bool },
}

/// A cluster parameter group's values before an update (`null`: unset).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ParametersBefore {
    parameters: BTreeMap<String, Option<String>>,
}

/// States from which a cluster or an instance never becomes available (the
/// SDK waiters' failure states).
const NEVER_AVAILABLE: [&str; 5] = ["deleted", "deleting", "failed", "incompatible-restore", "incompatible-parameters"];

/// Whether a cluster or instance in `status` is available; an error for a
/// state it cannot leave.
fn available(id: &str, status: Option<&str>) -> Result<bool, StepError> {
    match status {
        Some("available") => Ok(true),
        Some(s) if NEVER_AVAILABLE.contains(&s) => {
            Err(StepError::Invalid(format!("{id} is {s}: it cannot become available")))
        }
        _ => Ok(false),
    }
}

/// Waits until the cluster is available (read every 1–15 s: see
/// [`poll_until`]); returns it.
async fn wait_cluster_available(ctx: &Ctx, id: &str) -> Result<DbCluster, StepError> {
    poll_until(ctx, STEP, id, "available", || async {
        let c = describe_cluster(ctx, id).await?;
        match c {
            Some(c) if available(id, c.status())? => Ok(Some(c)),
            // Just restored, a describe may not find it yet.
            _ => Ok(None),
        }
    })
    .await
}

async fn describe_instance(ctx: &Ctx, id: &str) -> Result<Option<aws_sdk_rds::types::DbInstance>, StepError> {
    match ctx
        .aws
        .target
        .rds
        .describe_db_instances()
        .db_instance_identifier(id)
        .send()
        .await
        .found(id, "DescribeDBInstances")?
    {
        Some(out) => Ok(out.db_instances.unwrap_or_default().into_iter().next()),
        None => Ok(None),
    }
}

async fn wait_instance_available(ctx: &Ctx, id: &str) -> Result<aws_sdk_rds::types::DbInstance, StepError> {
    poll_until(ctx, STEP, id, "available", || async {
        match describe_instance(ctx, id).await? {
            Some(i) if available(id, i.db_instance_status())? => Ok(Some(i)),
            _ => Ok(None),
        }
    })
    .await
}

async fn converge_cluster(
    ctx: &Ctx,
    dev: &DevCluster,
    n: &Names,
    sg_db: &str,
    parameter_group: Option<&str>,
) -> Result<DbCluster, StepError> {
    let rds = &ctx.aws.target.rds;
    let res = Res::new(STEP, "db_cluster", "cluster", &n.cluster);
    let key_arn = crate::steps::kms::key_arn(ctx);
    let snap = &dev.snapshot;
    let snapshot_ref = snapshot_reference(snap, &dev.source_account, &ctx.account);

    let existing = describe_cluster(ctx, &n.cluster).await?;
    let cluster = match existing {
        Some(c) => {
            ctx.existing(
                &res,
                &n.cluster,
                c.db_cluster_arn(),
                crate::engine::Ownership::of(is_ours(ctx, c.tag_list())),
            )?;
            ctx.outputs.publish(Endpoints::of(&c));
            // A run stopped during the restore (or a change still applying)
            // finds it creating or modifying: ModifyDBCluster would answer
            // InvalidDBClusterStateFault, so wait for it first.
            if !ctx.is_plan() && c.status().is_some_and(|s| s != "available") {
                tracing::info!(cluster = %n.cluster, status = c.status().unwrap_or(""), "waiting for the cluster to become available");
                wait_cluster_available(ctx, &n.cluster).await?
            } else {
                c
            }
        }
        None => {
            let data = json!({
                "snapshot": snap.db_cluster_snapshot_identifier(),
                "snapshot_arn": snap.db_cluster_snapshot_arn(),
                "snapshot_created": snap.snapshot_create_time().map(|t| t.to_string()),
                "engine_version": snap.engine_version(),
            });
            let detail = format!(
                "from snapshot {} ({}), encrypted with the prod key, master credentials then managed by RDS",
                snapshot_ref,
                snap.engine_version().unwrap_or("?")
            );
            let created = ctx
                .create(&res, detail, data, || async {
                    let dc = &dev.cluster;
                    let out = rds
                        .restore_db_cluster_from_snapshot()
                        .db_cluster_identifier(&n.cluster)
                        .snapshot_identifier(&snapshot_ref)
                        .engine(ENGINE)
                        .set_engine_version(snap.engine_version().map(str::to_owned))
                        .set_port(dc.port())
                        .db_subnet_group_name(&n.subnet_group)
                        .vpc_security_group_ids(sg_db)
                        .kms_key_id(&key_arn)
                        .set_enable_iam_database_authentication(dc.iam_database_authentication_enabled())
                        .set_enable_cloudwatch_logs_exports(Some(dc.enabled_cloudwatch_logs_exports().to_vec()))
                        .serverless_v2_scaling_configuration(scaling(ctx))
                        .set_db_cluster_parameter_group_name(parameter_group.map(str::to_owned))
                        .deletion_protection(false)
                        .copy_tags_to_snapshot(true)
                        .set_tags(Some(tags(ctx)))
                        .send()
                        .await
                        .on(&n.cluster, "RestoreDBClusterFromSnapshot")?;
                    let c = out
                        .db_cluster
                        .ok_or_else(|| StepError::Invalid("RestoreDBClusterFromSnapshot returned no cluster".into()))?;
                    let arn = c.db_cluster_arn().map(str::to_owned);
                    Ok(Created { value: c, id: n.cluster.clone(), arn, data: Value::Null })
                })
                .await?;
            match created {
                None => {
                    ctx.outputs.publish(Endpoints(crate::steps::common::references::ProdEndpoints {
                        writer: Some(planned_id("cluster's writer endpoint")),
                        reader: Some(planned_id("cluster's reader endpoint")),
                        instances: vec![],
                    }));
                    ctx.outputs.publish(MasterSecret(Some(planned_id("master user secret"))));
                    return Ok(DbCluster::builder().db_cluster_identifier(planned_id("db cluster")).build());
                }
                Some(accepted) => {
                    // The endpoints exist once the restore is accepted: the
                    // functions need not wait for the restore to end.
                    let accepted = match accepted.endpoint() {
                        Some(_) => accepted,
                        None => describe_cluster(ctx, &n.cluster).await?.unwrap_or(accepted),
                    };
                    ctx.outputs.publish(Endpoints::of(&accepted));
                    ctx.timed(STEP, Wait::AuroraRestore, &n.cluster, wait_cluster_available(ctx, &n.cluster)).await?
                }
            }
        }
    };
    // Data integrity: prod runs exactly the snapshot's engine and version.
    if cluster.engine() != Some(ENGINE)
        || (snap.engine_version().is_some() && cluster.engine_version() != snap.engine_version())
    {
        return Err(StepError::Invalid(format!(
            "{}: engine {:?} {:?} does not match the snapshot's {ENGINE} {:?}",
            n.cluster,
            cluster.engine(),
            cluster.engine_version(),
            snap.engine_version()
        )));
    }
    converge_cluster_settings(ctx, &res, &cluster, &dev.cluster, sg_db, parameter_group).await?;
    if !ctx.is_plan() {
        // The secret RDS now manages, for functions that ask for its ARN.
        let now = describe_cluster(ctx, &n.cluster).await?;
        let secret = now.as_ref().and_then(|c| c.master_user_secret()).and_then(|s| s.secret_arn());
        ctx.outputs.publish(MasterSecret(secret.map(str::to_owned)));
    } else {
        let secret = cluster.master_user_secret().and_then(|s| s.secret_arn()).map(str::to_owned);
        ctx.outputs.publish(MasterSecret(Some(secret.unwrap_or_else(|| planned_id("master user secret")))));
    }
    Ok(cluster)
}

/// Restore copies settings from the snapshot's cluster and ignores falsy
/// overrides (moto does; AWS may keep the snapshot's retention), so the
/// settings paymig owns are read back and fixed with ModifyDBCluster.
async fn converge_cluster_settings(
    ctx: &Ctx,
    res: &Res,
    c: &DbCluster,
    dev: &DbCluster,
    sg_db: &str,
    parameter_group: Option<&str>,
) -> Result<(), StepError> {
    let rds = &ctx.aws.target.rds;
    let id = c.db_cluster_identifier().unwrap_or_default().to_owned();
    // (setting, from, to) of each setting that differs.
    let mut diffs: Vec<(&str, String, String)> = Vec::new();
    let sc = c.serverless_v2_scaling_configuration();
    let (min, max) = (sc.and_then(|s| s.min_capacity()), sc.and_then(|s| s.max_capacity()));
    if min != Some(ctx.cfg.database.min_capacity) || max != Some(ctx.cfg.database.max_capacity) {
        let want = format!("{}–{} ACU", ctx.cfg.database.min_capacity, ctx.cfg.database.max_capacity);
        diffs.push(("scaling", format!("{}–{} ACU", or_none(min), or_none(max)), want));
    }
    if c.backup_retention_period() != Some(1) {
        diffs.push(("backup retention", format!("{} days", or_none(c.backup_retention_period())), "1 day".into()));
    }
    if c.deletion_protection() == Some(true) {
        diffs.push(("deletion protection", "on".into(), "off".into()));
    }
    let sgs: Vec<&str> = c.vpc_security_groups().iter().filter_map(|g| g.vpc_security_group_id()).collect();
    if !is_planned(sg_db) && sgs != [sg_db] {
        diffs.push(("security groups", sgs.join(" "), sg_db.to_owned()));
    }
    let on_off = |b: Option<bool>| if b == Some(true) { "on" } else { "off" }.to_owned();
    if c.iam_database_authentication_enabled() != dev.iam_database_authentication_enabled()
        && dev.iam_database_authentication_enabled().is_some()
    {
        let (from, to) =
            (on_off(c.iam_database_authentication_enabled()), on_off(dev.iam_database_authentication_enabled()));
        diffs.push(("IAM authentication", from, to));
    }
    let mut want_logs: Vec<String> = dev.enabled_cloudwatch_logs_exports().to_vec();
    let mut have_logs: Vec<String> = c.enabled_cloudwatch_logs_exports().to_vec();
    want_logs.sort();
    have_logs.sort();
    if want_logs != have_logs {
        let list = |l: &[String]| if l.is_empty() { "none".to_owned() } else { l.join(" ") };
        diffs.push(("log exports", list(&have_logs), list(&want_logs)));
    }
    if let Some(pg) = parameter_group {
        if c.db_cluster_parameter_group() != Some(pg) {
            diffs.push(("parameter group", or_none(c.db_cluster_parameter_group()), pg.to_owned()));
        }
    }
    // A restore copies the snapshot's master user and password: dev's would
    // open prod. RDS generates prod's own and keeps it in Secrets Manager
    // under the prod key; nobody, paymig included, reads it. Once managed,
    // never again: a resumed run does not rotate it a second time.
    let key = crate::steps::kms::key_arn(ctx);
    let manage = c.master_user_secret().is_none();
    if manage {
        diffs.push((
            "master credentials managed by RDS (Secrets Manager, prod key)",
            "the password the restore copied from dev".into(),
            "RDS-managed, in Secrets Manager under the prod key".into(),
        ));
    }
    if diffs.is_empty() || is_planned(&id) {
        return Ok(());
    }
    let setting = diffs.iter().map(|d| d.0).collect::<Vec<_>>().join(", ");
    let from = diffs.iter().map(|d| format!("{} {}", d.0, d.1)).collect::<Vec<_>>().join("; ");
    let to = diffs.iter().map(|d| format!("{} {}", d.0, d.2)).collect::<Vec<_>>().join("; ");
    let detail = crate::engine::Detail { setting, values: Some((from, to)) };
    let prev = ClusterBefore::of(c);
    ctx.update(res, &id, detail, prev, || async {
        let enable: Vec<String> = want_logs.iter().filter(|l| !have_logs.contains(l)).cloned().collect();
        let disable: Vec<String> = have_logs.iter().filter(|l| !want_logs.contains(l)).cloned().collect();
        let mut m = rds
            .modify_db_cluster()
            .db_cluster_identifier(&id)
            .serverless_v2_scaling_configuration(scaling(ctx))
            .backup_retention_period(1)
            .deletion_protection(false)
            .set_enable_iam_database_authentication(dev.iam_database_authentication_enabled())
            .set_db_cluster_parameter_group_name(parameter_group.map(str::to_owned))
            .apply_immediately(true);
        if manage {
            m = m.manage_master_user_password(true).master_user_secret_kms_key_id(&key);
        }
        if !is_planned(sg_db) {
            m = m.vpc_security_group_ids(sg_db);
        }
        if !enable.is_empty() || !disable.is_empty() {
            m = m.cloudwatch_logs_export_configuration(
                CloudwatchLogsExportConfiguration::builder()
                    .set_enable_log_types(Some(enable))
                    .set_disable_log_types(Some(disable))
                    .build(),
            );
        }
        m.send().await.on(&id, "ModifyDBCluster")?;
        Ok(())
    })
    .await
}

async fn converge_instance(ctx: &Ctx, cluster: &str, i: usize, az: &str, c: &DbCluster) -> Result<(), StepError> {
    let rds = &ctx.aws.target.rds;
    let id = instance_id(cluster, i);
    let res = Res::new(STEP, "db_instance", format!("instance/{}", i + 1), &id);
    let tier = i as i32;
    match describe_instance(ctx, &id).await? {
        Some(inst) => {
            ctx.existing(
                &res,
                &id,
                inst.db_instance_arn(),
                crate::engine::Ownership::of(is_ours(ctx, inst.tag_list())),
            )?;
            Endpoints::instance(ctx, i, inst.endpoint().and_then(|e| e.address()));
            if inst.promotion_tier() != Some(tier) {
                let prev = inst.promotion_tier();
                let detail = crate::engine::Detail::change("promotion tier", or_none(prev), tier);
                let prev = InstanceBefore::Tier(TierBefore { promotion_tier: prev });
                ctx.update(&res, &id, detail, prev, || async {
                    rds.modify_db_instance()
                        .db_instance_identifier(&id)
                        .promotion_tier(tier)
                        .apply_immediately(true)
                        .send()
                        .await
                        .on(&id, "ModifyDBInstance")?;
                    Ok(())
                })
                .await?;
            }
        }
        None => {
            let created = ctx
                .create(
                    &res,
                    format!("db.serverless in {az}, promotion tier {tier}"),
                    json!({"cluster": cluster, "az": az}),
                    || async {
                        let out = rds
                            .create_db_instance()
                            .db_instance_identifier(&id)
                            .db_cluster_identifier(cluster)
                            .engine(c.engine().unwrap_or(ENGINE))
                            .db_instance_class(INSTANCE_CLASS)
                            .availability_zone(az)
                            .promotion_tier(tier)
                            .publicly_accessible(false)
                            .set_tags(Some(tags(ctx)))
                            .send()
                            .await
                            .on(&id, "CreateDBInstance")?;
                        let arn = out.db_instance.and_then(|d| d.db_instance_arn);
                        Ok(Created { value: (), id: id.clone(), arn, data: Value::Null })
                    },
                )
                .await?;
            if created.is_some() {
                let inst = ctx.timed(STEP, Wait::AuroraInstance, &id, wait_instance_available(ctx, &id)).await?;
                Endpoints::instance(ctx, i, inst.endpoint().and_then(|e| e.address()));
            }
        }
    }
    Ok(())
}

async fn validate(ctx: &Ctx, dev: &DevCluster) -> Result<crate::report::Findings, StepError> {
    use crate::report::{diff, or_none, Check, Findings, Resource};
    let n = names(ctx);
    let mut f = Findings::default();
    let dev_id = ctx.cfg.source.db_cluster.as_str();
    let Some(c) = describe_cluster(ctx, &n.cluster).await? else {
        f.resources.push(Resource::missing("db_cluster", dev_id, &n.cluster));
        return Ok(f);
    };
    let dc = &dev.cluster;
    let key = crate::steps::kms::key_arn(ctx);
    let mut d = Vec::new();
    diff(&mut d, "engine", dc.engine().unwrap_or_default(), c.engine().unwrap_or_default(), false);
    diff(
        &mut d,
        "engine_version",
        dev.snapshot.engine_version().unwrap_or_default(),
        c.engine_version().unwrap_or_default(),
        false,
    );
    diff(&mut d, "port", or_none(dc.port()), or_none(c.port()), false);
    diff(
        &mut d,
        "iam_database_authentication",
        or_none(dc.iam_database_authentication_enabled()),
        or_none(c.iam_database_authentication_enabled()),
        false,
    );
    let (mut dl, mut pl) =
        (dc.enabled_cloudwatch_logs_exports().to_vec(), c.enabled_cloudwatch_logs_exports().to_vec());
    dl.sort();
    pl.sort();
    diff(&mut d, "log_exports", dl.join(","), pl.join(","), false);
    diff(
        &mut d,
        "kms_key",
        dc.kms_key_id().unwrap_or("none"),
        c.kms_key_id().unwrap_or("none"),
        c.kms_key_id() == Some(key.as_str()),
    );
    diff(
        &mut d,
        "backup_retention",
        or_none(dc.backup_retention_period()),
        or_none(c.backup_retention_period()),
        c.backup_retention_period() == Some(1),
    );
    diff(
        &mut d,
        "deletion_protection",
        or_none(dc.deletion_protection()),
        or_none(c.deletion_protection()),
        c.deletion_protection() != Some(true),
    );
    let sc = |x: &DbCluster| {
        x.serverless_v2_scaling_configuration()
            .map(|s| format!("{}–{} ACU", or_none(s.min_capacity()), or_none(s.max_capacity())))
            .unwrap_or_default()
    };
    let want = format!("{}–{} ACU", ctx.cfg.database.min_capacity, ctx.cfg.database.max_capacity);
    diff(&mut d, "serverless_v2_scaling", sc(dc), sc(&c), sc(&c) == want);
    let members = c.db_cluster_members().len();
    diff(&mut d, "instances", dc.db_cluster_members().len(), members, members == ctx.cfg.database.instances as usize);
    diff(&mut d, "name", dev_id, &n.cluster, true);
    f.resources.push(Resource::compared("db_cluster", dev_id, &n.cluster, d));
    if let Some((_, params)) = &dev.parameters {
        let rds = &ctx.aws.target.rds;
        let have: Vec<Parameter> = rds
            .describe_db_cluster_parameters()
            .db_cluster_parameter_group_name(&n.parameter_group)
            .source("user")
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .unwrap_or_default();
        let as_map = |p: &[Parameter]| -> BTreeMap<String, String> {
            p.iter().filter_map(|p| Some((p.parameter_name()?.to_owned(), p.parameter_value()?.to_owned()))).collect()
        };
        let mut d = Vec::new();
        let listed =
            |m: BTreeMap<String, String>| m.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ");
        diff(&mut d, "parameters", listed(as_map(params)), listed(as_map(&have)), false);
        f.resources.push(Resource::compared(
            "db_cluster_parameter_group",
            dc.db_cluster_parameter_group().unwrap_or_default(),
            &n.parameter_group,
            d,
        ));
        // What the cluster runs, not only what the group says.
        let out_of_sync = members_out_of_sync(&c);
        f.checks.push(Check::new(
            "database.parameters_in_sync",
            &n.cluster,
            out_of_sync.is_empty() && c.db_cluster_parameter_group() == Some(n.parameter_group.as_str()),
            if out_of_sync.is_empty() {
                format!("every member runs {}", c.db_cluster_parameter_group().unwrap_or("no parameter group"))
            } else {
                let members: Vec<String> = out_of_sync.iter().map(|(id, s)| format!("{id}: {s}")).collect();
                format!("parameter group not in effect on {}", members.join(", "))
            },
        ));
    }
    let encrypted = c.kms_key_id() == Some(key.as_str());
    let storage = if encrypted { "the prod key" } else { c.kms_key_id().unwrap_or("not encrypted") };
    f.checks.push(Check::setting("database.cmk", &n.cluster, encrypted, "storage encryption", storage));
    let secret = c.master_user_secret();
    let managed = secret.is_some_and(|s| s.secret_status() == Some("active") && s.kms_key_id() == Some(key.as_str()));
    f.checks.push(Check::new(
        "database.master_credentials",
        &n.cluster,
        managed,
        match secret {
            None => "the master password is the one the restore copied from dev's snapshot".to_owned(),
            Some(s) => format!(
                "managed by RDS in Secrets Manager: {}, key {}",
                s.secret_status().unwrap_or("unknown status"),
                if s.kms_key_id() == Some(key.as_str()) { "the prod key" } else { s.kms_key_id().unwrap_or("none") }
            ),
        },
    ));
    f.checks.push(Check::new(
        "database.backup_retention",
        &n.cluster,
        c.backup_retention_period() == Some(1),
        match c.backup_retention_period() {
            Some(1) => "1 day".to_owned(),
            Some(n) => format!("{n} days"),
            None => "no backup retention reported".to_owned(),
        },
    ));
    let protected = c.deletion_protection() == Some(true);
    f.checks.push(Check::setting(
        "database.deletion_protection_off",
        &n.cluster,
        !protected,
        "deletion protection",
        crate::report::on_off(protected),
    ));
    let rds = &ctx.aws.target.rds;
    let mut zones = BTreeSet::new();
    for m in c.db_cluster_members() {
        if let Some(id) = m.db_instance_identifier() {
            let out =
                rds.describe_db_instances().db_instance_identifier(id).send().await.found(id, "DescribeDBInstances")?;
            if let Some(out) = out {
                zones.extend(out.db_instances().iter().filter_map(|i| i.availability_zone().map(str::to_owned)));
            }
        }
    }
    f.checks.push(Check::new(
        "database.multi_az",
        &n.cluster,
        zones.len() >= 2,
        format!("instances in {} AZ(s)", zones.len()),
    ));
    let tags: BTreeMap<String, String> =
        c.tag_list().iter().filter_map(|t| Some((t.key()?.to_owned(), t.value()?.to_owned()))).collect();
    f.checks.extend(super::common::common_checks(ctx, &n.cluster, &tags));
    Ok(f)
}

// ---------------------------------------------------------------------------
// Undo and sweep. Never a dev identifier: every name here is a prod name.

async fn delete_instance(ctx: &Ctx, id: &str) -> Result<bool, StepError> {
    // A destroy resumed after one killed mid-deletion: the instance is
    // already `deleting` (AWS answers InvalidDBInstanceState "is already
    // being deleted"); what is left is the wait.
    let deleting = |e: &StepError| e.is_code("InvalidDBInstanceState") && e.message_contains("already being deleted");
    let sent = ctx.aws.target.rds.delete_db_instance().db_instance_identifier(id).send().await;
    match sent.on(id, "DeleteDBInstance") {
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) if deleting(&e) => until_gone(ctx, id, || describe_instance(ctx, id)).await,
        Err(e) => Err(e),
        Ok(_) => {
            ctx.timed(STEP, Wait::AuroraInstanceDeleted, id, until_gone(ctx, id, || describe_instance(ctx, id))).await
        }
    }
}

/// Waits until `describe` no longer finds `id` (an RDS delete takes
/// minutes); `true`: it was deleted.
async fn until_gone<T, Fut>(ctx: &Ctx, id: &str, describe: impl Fn() -> Fut) -> Result<bool, StepError>
where
    Fut: std::future::Future<Output = Result<Option<T>, StepError>>,
{
    poll_until(ctx, STEP, id, "deleted", || async { Ok(describe().await?.is_none().then_some(())) }).await?;
    Ok(true)
}

async fn delete_cluster(ctx: &Ctx, id: &str) -> Result<bool, StepError> {
    let rds = &ctx.aws.target.rds;
    let Some(c) = describe_cluster(ctx, id).await? else { return Ok(false) };
    // Instances first; the writer last.
    let mut members: Vec<_> = c.db_cluster_members().to_vec();
    members.sort_by_key(|m| m.is_cluster_writer().unwrap_or(false));
    for m in members {
        if let Some(inst) = m.db_instance_identifier() {
            delete_instance(ctx, inst).await?;
        }
    }
    if c.deletion_protection() == Some(true) {
        rds.modify_db_cluster()
            .db_cluster_identifier(id)
            .deletion_protection(false)
            .apply_immediately(true)
            .send()
            .await
            .on(id, "ModifyDBCluster")?;
    }
    let delete = rds.delete_db_cluster().db_cluster_identifier(id).skip_final_snapshot(true);
    match delete.delete_automated_backups(true).send().await.found(id, "DeleteDBCluster")? {
        None => Ok(false),
        Some(_) => {
            ctx.timed(STEP, Wait::AuroraClusterDeleted, id, until_gone(ctx, id, || describe_cluster(ctx, id))).await
        }
    }
}

/// A group RDS still counts as used by a cluster that was just deleted:
/// DeleteDBClusterParameterGroup answers InvalidDBParameterGroupState, and
/// DeleteDBSubnetGroup InvalidDBSubnetGroupStateFault, for a while
/// (terraform-provider-aws retries them for minutes).
fn is_group_still_in_use(e: &StepError) -> bool {
    e.is_code("InvalidDBParameterGroupState") || e.is_code("InvalidDBSubnetGroupStateFault")
}

async fn delete_subnet_group(ctx: &Ctx, name: &str) -> Result<bool, StepError> {
    crate::engine::retry_until("DeleteDBSubnetGroup", ctx.max_wait(), is_group_still_in_use, || async {
        match ctx
            .aws
            .target
            .rds
            .delete_db_subnet_group()
            .db_subnet_group_name(name)
            .send()
            .await
            .found(name, "DeleteDBSubnetGroup")?
        {
            Some(_) => Ok(true),
            None => Ok(false),
        }
    })
    .await
}

async fn delete_parameter_group(ctx: &Ctx, name: &str) -> Result<bool, StepError> {
    crate::engine::retry_until("DeleteDBClusterParameterGroup", ctx.max_wait(), is_group_still_in_use, || async {
        match ctx
            .aws
            .target
            .rds
            .delete_db_cluster_parameter_group()
            .db_cluster_parameter_group_name(name)
            .send()
            .await
            .found(name, "DeleteDBClusterParameterGroup")?
        {
            Some(_) => Ok(true),
            None => Ok(false),
        }
    })
    .await
}

async fn undo(ctx: &Ctx, r: &Record) -> Result<(), StepError> {
    let rds = &ctx.aws.target.rds;
    let name = r.intent.name.as_str();
    match (r.intent.kind.as_str(), r.intent.op) {
        ("db_instance", Op::Create | Op::Adopt) => {
            delete_instance(ctx, name).await?;
        }
        ("db_cluster", Op::Create | Op::Adopt) => {
            delete_cluster(ctx, name).await?;
        }
        ("db_subnet_group", Op::Create | Op::Adopt) => {
            delete_subnet_group(ctx, name).await?;
        }
        ("db_cluster_parameter_group", Op::Create | Op::Adopt) => {
            delete_parameter_group(ctx, name).await?;
        }
        ("db_cluster", Op::Update) => {
            let p: ClusterBefore = r.prev()?;
            if describe_cluster(ctx, name).await?.is_none() {
                return Ok(());
            }
            let mut m = rds.modify_db_cluster().db_cluster_identifier(name).apply_immediately(true);
            if let (Some(min), Some(max)) = (p.min_capacity, p.max_capacity) {
                m = m.serverless_v2_scaling_configuration(
                    ServerlessV2ScalingConfiguration::builder().min_capacity(min).max_capacity(max).build(),
                );
            }
            m = m.set_backup_retention_period(p.backup_retention).set_deletion_protection(p.deletion_protection);
            if let Some(sgs) = p.security_groups {
                m = m.set_vpc_security_group_ids(Some(sgs));
            }
            m.send().await.on(name, "ModifyDBCluster")?;
        }
        ("db_instance", Op::Update) => {
            if let InstanceBefore::Tier(TierBefore { promotion_tier: Some(t) }) = r.prev::<InstanceBefore>()? {
                rds.modify_db_instance()
                    .db_instance_identifier(name)
                    .promotion_tier(t)
                    .apply_immediately(true)
                    .send()
                    .await
                    .gone(name, "ModifyDBInstance")?;
            }
        }
        ("db_cluster_parameter_group", Op::Update) => {
            // The group goes with its create; restoring parameter values
            // of a group paymig keeps is done by re-applying the previous ones.
            let prev: ParametersBefore = r.prev()?;
            let restore: Vec<Parameter> = prev
                .parameters
                .iter()
                .filter_map(|(k, v)| {
                    v.as_ref().map(|v| {
                        Parameter::builder()
                            .parameter_name(k)
                            .parameter_value(v)
                            .apply_method(aws_sdk_rds::types::ApplyMethod::PendingReboot)
                            .build()
                    })
                })
                .collect();
            for batch in restore.chunks(PARAMETER_BATCH) {
                match rds
                    .modify_db_cluster_parameter_group()
                    .db_cluster_parameter_group_name(name)
                    .set_parameters(Some(batch.to_vec()))
                    .send()
                    .await
                    .found(name, "ModifyDBClusterParameterGroup")?
                {
                    Some(_) => {}
                    None => break,
                }
            }
        }
        (kind, op) => return Err(StepError::Invalid(format!("database cannot undo {op:?} of {kind}"))),
    }
    Ok(())
}

/// The Aurora cluster: a database, however old (its age and members say
/// how much may have been written since the restore).
async fn at_risk(ctx: &Ctx, resources: &[(String, String)]) -> Result<Vec<AtRisk>, StepError> {
    let mut out = Vec::new();
    for (kind, name) in resources.iter().filter(|(k, _)| k == "db_cluster") {
        let Some(c) = describe_cluster(ctx, name).await? else { continue };
        let age = c
            .cluster_create_time()
            .and_then(|t| std::time::SystemTime::try_from(*t).ok())
            .and_then(|t| t.elapsed().ok())
            .map_or_else(String::new, |d| format!("restored {} ago, ", crate::engine::step::age(d)));
        let members = c.db_cluster_members().len();
        let holds = format!("Aurora cluster, {age}{members} instance{}", if members == 1 { "" } else { "s" });
        out.push(AtRisk { kind: kind.clone(), name: name.clone(), holds });
    }
    Ok(out)
}

async fn sweep(ctx: &Ctx, look: bool) -> Result<Vec<Swept>, StepError> {
    if ctx.cfg.source.db_cluster.is_empty() {
        return Ok(vec![]);
    }
    let n = names(ctx);
    let mut removed = Vec::new();
    if let Some(c) = describe_cluster(ctx, &n.cluster).await? {
        if is_ours(ctx, c.tag_list()) && (look || delete_cluster(ctx, &n.cluster).await?) {
            removed.push(Swept::new("db_cluster", &n.cluster));
        }
    }
    let rds = &ctx.aws.target.rds;
    if rds.describe_db_subnet_groups().db_subnet_group_name(&n.subnet_group).send().await.is_ok()
        && (look || delete_subnet_group(ctx, &n.subnet_group).await?)
    {
        removed.push(Swept::new("db_subnet_group", &n.subnet_group));
    }
    if rds
        .describe_db_cluster_parameter_groups()
        .db_cluster_parameter_group_name(&n.parameter_group)
        .send()
        .await
        .is_ok()
        && (look || delete_parameter_group(ctx, &n.parameter_group).await?)
    {
        removed.push(Swept::new("db_cluster_parameter_group", &n.parameter_group));
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_account_restores_only_a_shared_manual_snapshot_under_a_granting_key() {
        let grant = |account: &str| {
            json!({"Statement": [
                {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111111111111:root"}, "Action": "kms:*", "Resource": "*"},
                {"Effect": "Allow", "Principal": {"AWS": [format!("arn:aws:iam::{account}:root")]},
                 "Action": ["kms:CreateGrant", "kms:Decrypt", "kms:DescribeKey"], "Resource": "*"}]})
        };
        let key = |aws_managed, policy| {
            Some(SnapshotKey { arn: "arn:aws:kms:us-east-1:111111111111:key/k".into(), aws_managed, policy })
        };
        let ok = Sharing {
            id: "s".into(),
            arn: "arn:s".into(),
            automated: false,
            shared_with: vec!["222222222222".into()],
            key: key(false, grant("222222222222")),
        };
        assert!(sharing_problems(&ok, "111111111111", "222222222222").is_empty());
        let all = Sharing { shared_with: vec!["all".into()], key: None, ..ok };
        assert!(sharing_problems(&all, "111111111111", "222222222222").is_empty());

        let automated = Sharing { automated: true, shared_with: vec![], key: None, ..all };
        let p = sharing_problems(&automated, "111111111111", "222222222222");
        assert!(p.len() == 1 && p[0].contains("automated") && p[0].contains("copy-db-cluster-snapshot"), "{p:?}");

        let unshared = Sharing { automated: false, key: key(false, grant("333333333333")), ..automated };
        let p = sharing_problems(&unshared, "111111111111", "222222222222");
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].contains("--values-to-add 222222222222"), "{p:?}");
        assert!(
            p[1].contains("kms:CreateGrant, kms:Decrypt, kms:DescribeKey")
                && p[1].contains("arn:aws:iam::222222222222:root"),
            "{p:?}"
        );

        let managed = Sharing { shared_with: vec!["222222222222".into()], key: key(true, Value::Null), ..unshared };
        let p = sharing_problems(&managed, "111111111111", "222222222222");
        assert!(p.len() == 1 && p[0].contains("aws/rds") && p[0].contains("--kms-key-id"), "{p:?}");
    }
    use aws_smithy_types::DateTime;

    fn snap(id: &str, status: &str, secs: i64) -> DbClusterSnapshot {
        DbClusterSnapshot::builder()
            .db_cluster_snapshot_identifier(id)
            .db_cluster_snapshot_arn(format!("arn:aws:rds:us-east-1:111111111111:cluster-snapshot:{id}"))
            .status(status)
            .snapshot_create_time(DateTime::from_secs(secs))
            .build()
    }

    #[test]
    fn newest_available_snapshot_wins() {
        let s =
            [snap("old", "available", 10), snap("newest-but-creating", "creating", 30), snap("new", "available", 20)];
        assert_eq!(newest_available(&s).and_then(|s| s.db_cluster_snapshot_identifier()), Some("new"));
        assert!(newest_available(&[snap("x", "creating", 1)]).is_none());
    }

    #[test]
    fn shared_snapshots_are_named_by_arn() {
        let s = snap("nightly", "available", 1);
        assert_eq!(snapshot_reference(&s, "111111111111", "111111111111"), "nightly");
        assert!(snapshot_reference(&s, "111111111111", "222222222222").starts_with("arn:aws:rds:"));
    }
}
