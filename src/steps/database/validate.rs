//! validate: the prod cluster against dev's and the compliance checks
//! (encryption with the prod key, no deletion protection, credentials
//! managed by RDS, parameters in sync).

use super::*;
use crate::aws::call::Named;

pub(super) async fn validate(ctx: &Ctx, dev: &DevCluster) -> Result<crate::report::Findings, StepError> {
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
        let have: Vec<Parameter> =
            user_parameters(rds, &n.parameter_group, &n.parameter_group).await.found()?.unwrap_or_default();
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
    f.checks.extend(crate::steps::common::common_checks(ctx, &n.cluster, &tags));
    Ok(f)
}
