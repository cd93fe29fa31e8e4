//! The DB subnet group and the cluster parameter group, and the parameters
//! in effect on every member (rebooted until in sync).

use super::*;

/// The members of `cluster` whose cluster parameter group is not in effect
/// (`DBClusterParameterGroupStatus` other than `in-sync`), with that status.
pub(super) fn members_out_of_sync(cluster: &DbCluster) -> Vec<(String, String)> {
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
pub(super) async fn converge_parameters_in_effect(ctx: &Ctx, cluster: &str) -> Result<(), StepError> {
    // A cluster not restored yet has no members. A plan shows what a reboot
    // would fix; apply reboots the members waiting for one (`ctx.update`
    // makes no call in plan mode).
    let Some(c) = describe_cluster(ctx, cluster).await? else { return Ok(()) };
    let rds = &ctx.aws.target.rds;
    for (id, status) in members_out_of_sync(&c) {
        if status != "pending-reboot" && !ctx.is_plan() {
            continue;
        }
        let res = Res::new(STEP, kind::DB_INSTANCE, instance_key(cluster, &id), &id);
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
    if ctx.is_plan() {
        return Ok(());
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
pub(super) fn instance_key(cluster: &str, id: &str) -> String {
    format!("instance/{}", id.strip_prefix(&format!("{cluster}-")).unwrap_or(id))
}

pub(super) async fn converge_subnet_group(ctx: &Ctx, n: &Names, subnets: &[String]) -> Result<(), StepError> {
    let rds = &ctx.aws.target.rds;
    let res = Res::new(STEP, kind::DB_SUBNET_GROUP, "subnet-group", &n.subnet_group);
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

pub(super) async fn converge_parameter_group(
    ctx: &Ctx,
    n: &Names,
    family: &str,
    params: &[Parameter],
) -> Result<String, StepError> {
    let rds = &ctx.aws.target.rds;
    let name = &n.parameter_group;
    let res = Res::new(STEP, kind::DB_CLUSTER_PARAMETER_GROUP, "parameter-group", name);
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
            let current: Vec<Parameter> = user_parameters(rds, name, name).await?;
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
