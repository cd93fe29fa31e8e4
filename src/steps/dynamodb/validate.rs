//! validate: the prod tables against dev's and the compliance checks.

use super::*;

pub(super) async fn validate(ctx: &Ctx) -> Result<crate::report::Findings, StepError> {
    use crate::report::{diff, Check, Findings, Resource};
    let ddb = &ctx.aws.target.dynamodb;
    let key = crate::steps::kms::key_arn(ctx);
    let mut f = Findings::default();
    for dev_name in &ctx.cfg.source.dynamodb_tables {
        let dev = read_dev(ctx, dev_name).await?;
        let name = ctx.cfg.names.prod(dev_name);
        let Some(prod) = describe_prod(ctx, &name).await? else {
            f.resources.push(Resource::missing("dynamodb_table", dev_name, &name));
            continue;
        };
        let (want, have) = (Schema::of(&dev.table), Schema::of(&prod));
        let mut d = Vec::new();
        diff(&mut d, "name", dev_name, &name, true);
        diff(
            &mut d,
            "attribute_definitions",
            format!("{:?}", want.attributes),
            format!("{:?}", have.attributes),
            false,
        );
        diff(&mut d, "key_schema", format!("{:?}", want.keys), format!("{:?}", have.keys), false);
        let shape = |m: &BTreeMap<String, Index>| {
            m.iter()
                .map(|(k, i)| format!("{k}:{:?}:{}:{:?}", i.keys, i.projection, i.non_key))
                .collect::<Vec<_>>()
                .join(";")
        };
        diff(&mut d, "global_secondary_indexes", shape(&want.gsis), shape(&have.gsis), false);
        diff(&mut d, "local_secondary_indexes", shape(&want.lsis), shape(&have.lsis), false);
        diff(&mut d, "stream", format!("{:?}", want.stream), format!("{:?}", have.stream), false);
        diff(&mut d, "table_class", &want.table_class, &have.table_class, false);
        let billing = |t: &TableDescription| {
            t.billing_mode_summary().and_then(|b| b.billing_mode()).map_or("PROVISIONED", |b| b.as_str()).to_owned()
        };
        diff(&mut d, "billing_mode", billing(&dev.table), billing(&prod), billing(&prod) == billing_of(ctx).as_str());
        if ctx.cfg.dynamodb.billing_mode == BillingMode::Provisioned && table_throughput(&dev.table).is_some() {
            diff(
                &mut d,
                "provisioned_throughput",
                format!("{:?}", table_throughput(&dev.table)),
                format!("{:?}", table_throughput(&prod)),
                false,
            );
        }
        let ttl = ddb.describe_time_to_live().table_name(&name).send().await.on(&name, "DescribeTimeToLive")?;
        let ttl = ttl
            .time_to_live_description()
            .filter(|d| d.time_to_live_status().is_some_and(|s| matches!(s.as_str(), "ENABLED" | "ENABLING")))
            .and_then(|d| d.attribute_name().map(str::to_owned));
        diff(&mut d, "time_to_live", format!("{:?}", dev.ttl_attribute), format!("{ttl:?}"), false);
        let sse = prod.sse_description().and_then(|s| s.kms_master_key_arn()).unwrap_or("AWS owned key").to_owned();
        let dev_sse =
            dev.table.sse_description().and_then(|s| s.kms_master_key_arn()).unwrap_or("AWS owned key").to_owned();
        diff(&mut d, "encryption", dev_sse, &sse, sse == key);
        f.resources.push(Resource::compared("dynamodb_table", dev_name, &name, d));
        let pitr =
            ddb.describe_continuous_backups().table_name(&name).send().await.on(&name, "DescribeContinuousBackups")?;
        let pitr_on = pitr
            .continuous_backups_description()
            .and_then(|c| c.point_in_time_recovery_description())
            .and_then(|p| p.point_in_time_recovery_status())
            .is_some_and(|s| s.as_str() == "ENABLED");
        let pitr_state = if pitr_on { "enabled" } else { "disabled" };
        f.checks.push(Check::setting("dynamodb.pitr", &name, pitr_on, "point-in-time recovery", pitr_state));
        let encryption = if sse == key { "the prod key" } else { sse.as_str() };
        f.checks.push(Check::setting("dynamodb.cmk", &name, sse == key, "encryption", encryption));
        let protected = prod.deletion_protection_enabled() == Some(true);
        f.checks.push(Check::setting(
            "dynamodb.deletion_protection_off",
            &name,
            !protected,
            "deletion protection",
            crate::report::on_off(protected),
        ));
        let tags = table_tags(ctx, &name, prod.table_arn().unwrap_or_default()).await?;
        f.checks.extend(crate::steps::common::common_checks(ctx, &name, &tags));
    }
    Ok(f)
}
