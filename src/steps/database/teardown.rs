//! Undo and sweep. Never a dev identifier: every name here is a prod name.
//! RDS deletes that resume (an instance already `deleting`), groups RDS
//! still counts as used right after their cluster, data at risk.

use super::*;

// Undo and sweep. Never a dev identifier: every name here is a prod name.

pub(super) async fn delete_instance(ctx: &Ctx, id: &str) -> Result<bool, StepError> {
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
pub(super) async fn until_gone<T, Fut>(ctx: &Ctx, id: &str, describe: impl Fn() -> Fut) -> Result<bool, StepError>
where
    Fut: std::future::Future<Output = Result<Option<T>, StepError>>,
{
    poll_until(ctx, STEP, id, "deleted", || async { Ok(describe().await?.is_none().then_some(())) }).await?;
    Ok(true)
}

pub(super) async fn delete_cluster(ctx: &Ctx, id: &str) -> Result<bool, StepError> {
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
pub(super) fn is_group_still_in_use(e: &StepError) -> bool {
    e.is_code("InvalidDBParameterGroupState") || e.is_code("InvalidDBSubnetGroupStateFault")
}

pub(super) async fn delete_subnet_group(ctx: &Ctx, name: &str) -> Result<bool, StepError> {
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

pub(super) async fn delete_parameter_group(ctx: &Ctx, name: &str) -> Result<bool, StepError> {
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

pub(super) async fn undo(ctx: &Ctx, r: &Record) -> Result<(), StepError> {
    let rds = &ctx.aws.target.rds;
    let name = r.intent.name.as_str();
    match (r.intent.kind.as_str(), r.intent.op) {
        (kind::DB_INSTANCE, Op::Create | Op::Adopt) => {
            delete_instance(ctx, name).await?;
        }
        (kind::DB_CLUSTER, Op::Create | Op::Adopt) => {
            delete_cluster(ctx, name).await?;
        }
        (kind::DB_SUBNET_GROUP, Op::Create | Op::Adopt) => {
            delete_subnet_group(ctx, name).await?;
        }
        (kind::DB_CLUSTER_PARAMETER_GROUP, Op::Create | Op::Adopt) => {
            delete_parameter_group(ctx, name).await?;
        }
        (kind::DB_CLUSTER, Op::Update) => {
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
        (kind::DB_INSTANCE, Op::Update) => {
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
        (kind::DB_CLUSTER_PARAMETER_GROUP, Op::Update) => {
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
pub(super) async fn at_risk(ctx: &Ctx, resources: &[(String, String)]) -> Result<Vec<AtRisk>, StepError> {
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

pub(super) async fn sweep(ctx: &Ctx, look: bool) -> Result<Vec<Swept>, StepError> {
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
