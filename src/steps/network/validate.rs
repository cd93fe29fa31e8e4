//! validate: the prod network against dev's and the compliance checks
//! (no NAT gateways, gateway endpoints, no public database, rule ports).

use super::*;

pub(super) async fn validate(ctx: &Ctx, dev: &DevVpc) -> Result<crate::report::Findings, StepError> {
    use crate::report::{diff, Check, Findings, Resource};
    let ec2 = &ctx.aws.target.ec2;
    let names = &ctx.cfg.names;
    let mut f = Findings::default();
    let vpc_name = dev.name.as_deref().map_or_else(|| names.own("vpc"), |n| names.prod(n));
    let observed = Observed::of_vpc(ctx, &vpc_name).await?;
    let Some(vpc) = observed.vpcs.first() else {
        f.resources.push(Resource::missing("vpc", &dev.id, &vpc_name));
        return Ok(f);
    };
    let vpc_id = vpc.vpc_id().unwrap_or_default().to_owned();
    let mut d = Vec::new();
    let mut prod_cidrs: Vec<String> = observed::cidrs(vpc, &["associated"]);
    prod_cidrs.sort();
    let mut dev_cidrs = dev.cidrs.clone();
    dev_cidrs.sort();
    diff(&mut d, "cidr_blocks", dev_cidrs.join(","), prod_cidrs.join(","), false);
    diff(&mut d, "name", dev.name.clone().unwrap_or_default(), &vpc_name, true);
    let private_dns = !interface::services(ctx).is_empty();
    for (attr, want) in [
        (VpcAttributeName::EnableDnsSupport, dev.dns_support),
        (VpcAttributeName::EnableDnsHostnames, dev.dns_hostnames),
    ] {
        let have = vpc_attr(ec2, &vpc_id, attr.clone(), &vpc_name).await?;
        // On in prod though off in dev: private DNS of the interface endpoints needs it.
        diff(&mut d, attr.as_str(), want, have, private_dns && have);
    }
    if !dev.skipped_routes.is_empty() {
        diff(&mut d, "routes via gateways", dev.skipped_routes.len(), 0, true);
    }
    f.resources.push(Resource::compared("vpc", &dev.id, &vpc_name, d));
    let tags: BTreeMap<String, String> =
        vpc.tags().iter().filter_map(|t| Some((t.key()?.to_owned(), t.value()?.to_owned()))).collect();
    f.checks.extend(crate::steps::common::common_checks(ctx, &vpc_name, &tags));

    let subnets = &observed.subnets;
    for s in &dev.subnets {
        let label = s.name.clone().unwrap_or_else(|| s.cidr.clone());
        match subnets.iter().find(|p| p.cidr_block() == Some(s.cidr.as_str())) {
            None => f.resources.push(Resource::missing("subnet", &label, &s.cidr)),
            Some(p) => {
                let mut d = Vec::new();
                diff(&mut d, "availability_zone", &s.az, p.availability_zone().unwrap_or_default(), false);
                let pname = name_tag(p.tags()).unwrap_or_default();
                diff(&mut d, "name", s.name.clone().unwrap_or_default(), &pname, true);
                f.resources.push(Resource::compared("subnet", &label, &pname, d));
            }
        }
    }
    let azs: BTreeSet<&str> = subnets.iter().filter_map(|s| s.availability_zone()).collect();
    f.checks.push(Check::new(
        "network.three_azs",
        &vpc_name,
        azs.len() >= MIN_AZS,
        format!("{} availability zones", azs.len()),
    ));

    let pages = ec2.describe_nat_gateways().filter(filter("vpc-id", &vpc_id)).into_paginator().items().send();
    let nats: Vec<aws_sdk_ec2::types::NatGateway> = pages.try_collect().await.on(&vpc_name, "DescribeNatGateways")?;
    let live_nats = nats
        .iter()
        .filter(|n| !n.state().is_some_and(|s| matches!(s.as_str(), "deleted" | "deleting" | "failed")))
        .count();
    f.checks.push(Check::new(
        "network.no_nat_gateway",
        &vpc_name,
        live_nats == 0,
        format!("{live_nats} NAT gateway(s)"),
    ));
    let pages =
        ec2.describe_internet_gateways().filters(filter("attachment.vpc-id", &vpc_id)).into_paginator().items().send();
    let igws: Vec<aws_sdk_ec2::types::InternetGateway> =
        pages.try_collect().await.on(&vpc_name, "DescribeInternetGateways")?;
    f.checks.push(Check::new(
        "network.no_internet_gateway",
        &vpc_name,
        igws.is_empty(),
        format!("{} internet gateway(s)", igws.len()),
    ));

    let rt_ids: BTreeSet<&str> = observed.own_route_tables(ctx).filter_map(|r| r.route_table_id()).collect();
    for service in ["s3", "dynamodb"] {
        let sn = format!("com.amazonaws.{}.{service}", ctx.cfg.migration.region);
        let ep = observed.endpoints.iter().find(|e| e.service_name() == Some(sn.as_str()));
        let attached = ep.is_some_and(|e| rt_ids.iter().all(|r| e.route_table_ids().iter().any(|x| x == r)));
        f.checks.push(Check::new(
            "network.gateway_endpoints",
            &format!("{vpc_name} {service}"),
            attached,
            "gateway endpoint on every prod route table",
        ));
        if let Some(e) = ep {
            let policy: Value = e.policy_document().and_then(|p| serde_json::from_str(p).ok()).unwrap_or(Value::Null);
            let wild = crate::steps::common::wildcard_actions(&policy);
            f.checks.push(Check::new(
                "iam.no_wildcard_action",
                &format!("{service} endpoint policy"),
                wild.is_empty(),
                if wild.is_empty() { "no wildcard action".into() } else { wild.join(", ") },
            ));
        }
    }
    let id_of =
        |g: Group| observed.group(&names.own(g.kind())).and_then(|s| s.group_id()).unwrap_or_default().to_owned();
    let (alb, compute, db) = (id_of(Group::Alb), id_of(Group::Compute), id_of(Group::Db));
    let groups = Group::wanted(ctx);
    let endpoints = groups.contains(&Group::Endpoints).then(|| id_of(Group::Endpoints));
    let prefix_lists = endpoint_prefix_lists(ctx).await?;
    let desired = desired_rules(
        ctx.cfg.blue_green.listener_port,
        ip_targets(ctx),
        dev.db_port,
        &dev.cidrs,
        &alb,
        &compute,
        &db,
        endpoints.as_deref(),
        &prefix_lists,
    );
    for (i, g) in groups.iter().enumerate() {
        let name = names.own(g.kind());
        match observed.group(&name) {
            None => f.resources.push(Resource::missing("security_group", "(prod only)", &name)),
            Some(sg) => {
                let ok = rules_of(sg.ip_permissions()) == desired[i].0
                    && rules_of(sg.ip_permissions_egress()) == desired[i].1;
                f.checks.push(Check::new("network.security_group_rules", &name, ok, g.description()));
            }
        }
    }
    Ok(f)
}
