//! database: the prod Aurora PostgreSQL cluster restored from a dev snapshot —
//! `[source] db_snapshot`, or the newest available snapshot of
//! `[source] db_cluster` — into the prod network (DB subnet group over the
//! private subnets, the database security group), re-encrypted with the prod
//! key, with dev's engine settings and non-default cluster parameters, the
//! Serverless v2 range from `[database]`, backup retention 1, deletion
//! protection off, and `instances` db.serverless instances in different AZs
//! with distinct promotion tiers. The snapshot prod came from is journaled.
//!
//! This file holds the declaration, the names, the published endpoints and
//! the converge that runs the parts in order: `dev.rs` (the dev cluster and
//! its snapshot, checked), `groups.rs` (subnet and parameter groups),
//! `cluster.rs` (the restore and its instances), `validate.rs`,
//! `teardown.rs` (undo, sweep, data at risk).

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

mod cluster;
mod dev;
mod groups;
mod teardown;
mod validate;
use cluster::*;
use dev::*;
use groups::*;
use teardown::*;
use validate::*;

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

/// The resource kinds this step records in the journal (what undo matches on).
pub mod kind {
    pub const DB_SUBNET_GROUP: &str = "db_subnet_group";
    pub const DB_CLUSTER_PARAMETER_GROUP: &str = "db_cluster_parameter_group";
    pub const DB_CLUSTER: &str = "db_cluster";
    pub const DB_INSTANCE: &str = "db_instance";
}

static ABOUT: About = About {
    id: STEP,
    deps: &["kms", "network"],
    undo_apart: &[],
    early: &["network"],
    kinds: &[kind::DB_SUBNET_GROUP, kind::DB_CLUSTER_PARAMETER_GROUP, kind::DB_CLUSTER, kind::DB_INSTANCE],
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

/// The parameters set in a cluster parameter group (`source=user`: the
/// ones that differ from the family's defaults).
async fn user_parameters(
    rds: &aws_sdk_rds::Client,
    group: &str,
    resource: impl Into<String>,
) -> Result<Vec<Parameter>, StepError> {
    rds.describe_db_cluster_parameters()
        .db_cluster_parameter_group_name(group)
        .source("user")
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .on(resource, "DescribeDBClusterParameters")
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
