//! The VPC (CIDR blocks, DNS attributes), its subnets and route tables.

use super::*;

pub(super) async fn converge_vpc(
    ctx: &Ctx,
    dev: &DevVpc,
    name: &str,
    found: Option<&aws_sdk_ec2::types::Vpc>,
) -> Result<String, StepError> {
    let ec2 = &ctx.aws.target.ec2;
    let res = Res::new(STEP, kind::VPC, "vpc", name);
    let (vpc_id, current_cidrs, tags) = match found {
        Some(v) => {
            let id = v.vpc_id().unwrap_or_default().to_owned();
            ctx.adopt(&res, &id, None)?;
            let cidrs = observed::cidrs(v, &["associated", "associating"]);
            (id, cidrs, v.tags().to_vec())
        }
        None => {
            let primary = dev
                .cidrs
                .first()
                .cloned()
                .ok_or_else(|| StepError::Invalid(format!("dev VPC {} has no CIDR block", dev.id)))?;
            let spec = tag_spec(ctx, ResourceType::Vpc, name);
            let id = ctx
                .create(&res, format!("cidr {primary}"), json!({"dev_vpc": dev.id}), || async {
                    let out = ec2
                        .create_vpc()
                        .cidr_block(&primary)
                        .tag_specifications(spec)
                        .send()
                        .await
                        .on(name, "CreateVpc")?;
                    Created::returned(out.vpc.and_then(|v| v.vpc_id), "CreateVpc")
                })
                .await?
                .unwrap_or_else(|| planned_id("vpc"));
            (id.clone(), if is_planned(&id) { vec![] } else { vec![primary] }, vec![])
        }
    };
    if !is_planned(&vpc_id) && !tags.is_empty() {
        converge_tags(ctx, &res, &vpc_id, &tags).await?;
    }
    // Secondary CIDR blocks.
    let mut settling = !is_planned(&vpc_id) && found.is_some_and(observed::is_associating);
    for cidr in dev.cidrs.iter().skip(1) {
        if current_cidrs.contains(cidr) {
            continue;
        }
        settling = true;
        ctx.update(&res, &vpc_id, format!("cidr {cidr}"), Prev::Nothing, || async {
            retry_eventual("AssociateVpcCidrBlock", is_not_found_yet, || async {
                ec2.associate_vpc_cidr_block()
                    .vpc_id(&vpc_id)
                    .cidr_block(cidr)
                    .send()
                    .await
                    .on(name, "AssociateVpcCidrBlock")
            })
            .await?;
            Ok(())
        })
        .await?;
    }
    // A block stays `associating` for a moment: a subnet in it is refused
    // until it is `associated`.
    if settling && !ctx.is_plan() {
        wait_cidrs_associated(ctx, &vpc_id, name).await?;
    }
    // DNS attributes, as in dev — both on where interface endpoints need
    // them for private DNS.
    let private_dns = !interface::services(ctx).is_empty();
    for (attr, want) in [
        (VpcAttributeName::EnableDnsSupport, dev.dns_support || private_dns),
        (VpcAttributeName::EnableDnsHostnames, dev.dns_hostnames || private_dns),
    ] {
        let have = if is_planned(&vpc_id) {
            // A new VPC starts with DNS support on and hostnames off.
            attr == VpcAttributeName::EnableDnsSupport
        } else {
            vpc_attr(ec2, &vpc_id, attr.clone(), name).await?
        };
        if have != want {
            let label = attr.as_str().to_owned();
            ctx.update(
                &res,
                &vpc_id,
                format!("{label}={want}"),
                Prev::Dns { attribute: label.clone(), value: have },
                || async { set_dns_attr(ctx, &vpc_id, &label, want).await },
            )
            .await?;
        }
    }
    Ok(vpc_id)
}

/// Waits until no CIDR block of the VPC is `associating`.
pub(super) async fn wait_cidrs_associated(ctx: &Ctx, vpc_id: &str, name: &str) -> Result<(), StepError> {
    crate::engine::poll_until(ctx, STEP, name, "associated with its CIDR blocks", || async {
        let found = Observed::by_id(ctx, Kind::Vpc, vpc_id).await?;
        Ok(found.vpcs.first().is_some_and(|v| !observed::is_associating(v)).then_some(()))
    })
    .await
}

pub(super) async fn set_dns_attr(ctx: &Ctx, vpc_id: &str, attr: &str, value: bool) -> Result<(), StepError> {
    let v = AttributeBooleanValue::builder().value(value).build();
    let b = ctx.aws.target.ec2.modify_vpc_attribute().vpc_id(vpc_id);
    let b = if attr == "enableDnsHostnames" { b.enable_dns_hostnames(v) } else { b.enable_dns_support(v) };
    b.send().await.on(vpc_id, "ModifyVpcAttribute")?;
    Ok(())
}

/// An undo call on a resource that no longer exists has nothing left to do.
pub(super) fn gone_is_done<T>(result: Result<T, StepError>) -> Result<(), StepError> {
    match result {
        Ok(_) => Ok(()),
        Err(e) if is_not_found_yet(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

pub(super) fn is_not_found_yet(e: &StepError) -> bool {
    e.is_not_found()
}

pub(super) async fn converge_subnets(
    ctx: &Ctx,
    vpc_id: &str,
    specs: &[SubnetSpec],
    existing: &[Subnet],
) -> Result<Vec<(SubnetSpec, String)>, StepError> {
    let ec2 = &ctx.aws.target.ec2;
    // One lane per subnet.
    let mut out = ctx
        .map_bounded(specs.iter().cloned(), |spec: SubnetSpec| async move {
        let res = Res::new(STEP, kind::SUBNET, format!("subnet/{}", spec.cidr), &spec.name);
        let found = existing.iter().find(|s| s.cidr_block() == Some(spec.cidr.as_str()));
        let id = match found {
            Some(s) if s.availability_zone() != Some(spec.az.as_str()) => {
                return Err(StepError::Invalid(format!(
                    "prod subnet {} ({}) is in {} but should be in {}; AWS cannot move a subnet: delete it or run destroy",
                    s.subnet_id().unwrap_or("?"), spec.cidr, s.availability_zone().unwrap_or("?"), spec.az)));
            }
            Some(s) => {
                let id = s.subnet_id().unwrap_or_default().to_owned();
                ctx.adopt(&res, &id, None)?;
                converge_tags(ctx, &res, &id, s.tags()).await?;
                id
            }
            None => {
                let detail = format!("{} in {}{}", spec.cidr, spec.az, if spec.derived { " (derived)" } else { "" });
                let spec_tags = tag_spec(ctx, ResourceType::Subnet, &spec.name);
                ctx.create(&res, detail, json!({"vpc": vpc_id, "az": spec.az}), || async {
                    let out = retry_eventual("CreateSubnet", is_not_found_yet, || async {
                        ec2.create_subnet()
                            .vpc_id(vpc_id)
                            .cidr_block(&spec.cidr)
                            .availability_zone(&spec.az)
                            .tag_specifications(spec_tags.clone())
                            .send()
                            .await
                            .on(&spec.name, "CreateSubnet")
                    })
                    .await?;
                    Created::returned(out.subnet.and_then(|s| s.subnet_id), "CreateSubnet")
                })
                .await?
                .unwrap_or_else(|| planned_id("subnet"))
            }
        };
        Ok((spec, id))
    })
        .await?;
    out.sort_by(|a, b| (&a.0.az, &a.0.cidr).cmp(&(&b.0.az, &b.0.cidr)));
    Ok(out)
}

pub(super) async fn converge_route_tables(
    ctx: &Ctx,
    vpc_id: &str,
    subnets: &[(SubnetSpec, String)],
    existing: &[RouteTable],
) -> Result<Vec<String>, StepError> {
    let ec2 = &ctx.aws.target.ec2;
    // One lane per subnet's route table (create, then associate).
    let specs: Vec<SubnetSpec> = subnets.iter().map(|(spec, _)| spec.clone()).collect();
    ctx.map_bounded(specs, |spec: SubnetSpec| async move {
        let subnet_id = subnets.iter().find(|(s, _)| *s == spec).map_or("", |(_, id)| id.as_str());
        let name = format!("{}-rt", spec.name);
        let res = Res::new(STEP, kind::ROUTE_TABLE, format!("route-table/{}", spec.cidr), &name);
        let found = existing.iter().find(|rt| name_tag(rt.tags()).as_deref() == Some(name.as_str()));
        let (rt_id, associated) = match found {
            Some(rt) => {
                let id = rt.route_table_id().unwrap_or_default().to_owned();
                ctx.adopt(&res, &id, None)?;
                converge_tags(ctx, &res, &id, rt.tags()).await?;
                let assoc = rt.associations().iter().any(|a| a.subnet_id() == Some(subnet_id));
                (id, assoc)
            }
            None => {
                let token = ctx.client_token(&res);
                let spec_tags = tag_spec(ctx, ResourceType::RouteTable, &name);
                let id = ctx
                    .create(
                        &res,
                        format!("for subnet {}", spec.name),
                        json!({"vpc": vpc_id, "subnet": subnet_id, "client_token": token}),
                        || async {
                            let out = retry_eventual("CreateRouteTable", is_not_found_yet, || async {
                                ec2.create_route_table()
                                    .vpc_id(vpc_id)
                                    .client_token(&token)
                                    .tag_specifications(spec_tags.clone())
                                    .send()
                                    .await
                                    .on(&name, "CreateRouteTable")
                            })
                            .await?;
                            Created::returned(out.route_table.and_then(|r| r.route_table_id), "CreateRouteTable")
                        },
                    )
                    .await?
                    .unwrap_or_else(|| planned_id("route table"));
                (id, false)
            }
        };
        if !associated {
            let prev = Prev::Association { subnet: subnet_id.to_owned() };
            ctx.update(&res, &rt_id, format!("associate with {}", spec.name), prev, || async {
                ec2.associate_route_table()
                    .route_table_id(&rt_id)
                    .subnet_id(subnet_id)
                    .send()
                    .await
                    .on(&name, "AssociateRouteTable")?;
                Ok(())
            })
            .await?;
        }
        Ok(rt_id)
    })
    .await
}
