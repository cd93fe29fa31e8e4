//! The cluster restored from the snapshot and its instances (created side
//! by side once it is available), their settings, and the waits for
//! `available`.

use super::*;

pub(super) async fn describe_cluster(ctx: &Ctx, id: &str) -> Result<Option<DbCluster>, StepError> {
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

pub(super) fn scaling(ctx: &Ctx) -> ServerlessV2ScalingConfiguration {
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
pub(super) struct ClusterBefore {
    pub(super) min_capacity: Option<f64>,
    pub(super) max_capacity: Option<f64>,
    pub(super) backup_retention: Option<i32>,
    pub(super) deletion_protection: Option<bool>,
    pub(super) security_groups: Option<Vec<String>>,
    pub(super) iam_auth: Option<bool>,
    pub(super) log_exports: Option<Vec<String>>,
    pub(super) parameter_group: Option<String>,
    /// Whether RDS managed the master credentials (absent in journals of
    /// versions before it did).
    #[serde(default)]
    pub(super) managed_master_password: Option<bool>,
}

impl ClusterBefore {
    pub(super) fn of(c: &DbCluster) -> ClusterBefore {
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
pub(super) struct TierBefore {
    #[serde(deserialize_with = "crate::engine::journal::present")]
    pub(super) promotion_tier: Option<i32>,
}

/// What an instance update replaced (untagged: the journal's own shapes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub(super) enum InstanceBefore {
    /// Its promotion tier.
    Tier(TierBefore),
    /// A reboot to put the cluster parameter group in effect: nothing to
    /// restore.
    Rebooted { rebooted: bool },
}

/// A cluster parameter group's values before an update (`null`: unset).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct ParametersBefore {
    pub(super) parameters: BTreeMap<String, Option<String>>,
}

/// States from which a cluster or an instance never becomes available (the
/// SDK waiters' failure states).
pub(super) const NEVER_AVAILABLE: [&str; 5] =
    ["deleted", "deleting", "failed", "incompatible-restore", "incompatible-parameters"];

/// Whether a cluster or instance in `status` is available; an error for a
/// state it cannot leave.
pub(super) fn available(id: &str, status: Option<&str>) -> Result<bool, StepError> {
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
pub(super) async fn wait_cluster_available(ctx: &Ctx, id: &str) -> Result<DbCluster, StepError> {
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

pub(super) async fn describe_instance(
    ctx: &Ctx,
    id: &str,
) -> Result<Option<aws_sdk_rds::types::DbInstance>, StepError> {
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

pub(super) async fn wait_instance_available(ctx: &Ctx, id: &str) -> Result<aws_sdk_rds::types::DbInstance, StepError> {
    poll_until(ctx, STEP, id, "available", || async {
        match describe_instance(ctx, id).await? {
            Some(i) if available(id, i.db_instance_status())? => Ok(Some(i)),
            _ => Ok(None),
        }
    })
    .await
}

pub(super) async fn converge_cluster(
    ctx: &Ctx,
    dev: &DevCluster,
    n: &Names,
    sg_db: &str,
    parameter_group: Option<&str>,
) -> Result<DbCluster, StepError> {
    let rds = &ctx.aws.target.rds;
    let res = Res::new(STEP, kind::DB_CLUSTER, "cluster", &n.cluster);
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
pub(super) async fn converge_cluster_settings(
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

pub(super) async fn converge_instance(
    ctx: &Ctx,
    cluster: &str,
    i: usize,
    az: &str,
    c: &DbCluster,
) -> Result<(), StepError> {
    let rds = &ctx.aws.target.rds;
    let id = instance_id(cluster, i);
    let res = Res::new(STEP, kind::DB_INSTANCE, format!("instance/{}", i + 1), &id);
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
