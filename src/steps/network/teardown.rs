//! Undo and sweep: every resource in reverse, the functions' lingering
//! network interfaces waited for, endpoints' `Unsuccessful` answers taken
//! as failures. Never a dev identifier: every name here is a prod name.

use super::*;

/// Runs a delete, treating "not found" as done and retrying while a
/// dependency is still being released (EC2 deletes are eventually consistent).
pub(super) async fn delete_ec2<F, Fut, T, E>(
    what: &str,
    op: &'static str,
    bound: Duration,
    call: F,
) -> Result<bool, StepError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<
        Output = Result<T, aws_smithy_runtime_api::client::result::SdkError<E, aws_smithy_runtime_api::http::Response>>,
    >,
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    // DependencyViolation lasts as long as what uses the resource: Lambda's
    // network interfaces stay 20–45 minutes after their function is gone.
    let r = retry_until(op, bound, StepError::is_dependency_violation, || async {
        match call().await {
            Ok(_) => Ok(true),
            Err(e)
                if crate::aws::call::code(&e)
                    .is_some_and(|c| c.ends_with(".NotFound") || c == "InvalidVpcEndpointId.NotFound") =>
            {
                Ok(false)
            }
            Err(e) => Err(StepError::sdk(what, op, &e)),
        }
    })
    .await?;
    Ok(r)
}

/// Deletes an endpoint and waits until EC2 lists it `deleted`.
/// DeleteVpcEndpoints answers 200 and lists what it could not delete in
/// `Unsuccessful` (an endpoint still in use, or in a state that cannot be
/// deleted yet): that is a failure, retried like a `DependencyViolation`,
/// never counted as deleted.
pub(super) async fn delete_endpoint(ctx: &Ctx, id: &str) -> Result<bool, StepError> {
    if Observed::endpoint_deleted(ctx, id).await? {
        return Ok(false);
    }
    let ec2 = &ctx.aws.target.ec2;
    let deleted = retry_until("DeleteVpcEndpoints", ctx.max_wait(), endpoint_busy, || async {
        let out = match ec2.delete_vpc_endpoints().vpc_endpoint_ids(id).send().await {
            Ok(out) => out,
            Err(e) if crate::aws::call::code(&e).is_some_and(|c| c.ends_with(".NotFound")) => return Ok(false),
            Err(e) => return Err(StepError::sdk(id, "DeleteVpcEndpoints", &e)),
        };
        match out.unsuccessful().iter().find_map(|u| u.error()) {
            None => Ok(true),
            Some(e) if e.code().is_some_and(|c| c.ends_with(".NotFound")) => Ok(false),
            Some(e) => Err(StepError::Aws {
                resource: id.to_owned(),
                op: "DeleteVpcEndpoints".into(),
                failure: Box::new(crate::aws::AwsFailure {
                    code: e.code().map(str::to_owned),
                    message: format!("listed as unsuccessful: {}", e.message().unwrap_or("no reason given")),
                    status: Some(200),
                    request_id: None,
                }),
            }),
        }
    })
    .await?;
    if deleted {
        crate::engine::poll_until(ctx, STEP, id, "deleted", || async {
            let out = ec2.describe_vpc_endpoints().vpc_endpoint_ids(id).send().await;
            let found = out.found(id, "DescribeVpcEndpoints")?;
            Ok(found.is_none_or(|o| o.vpc_endpoints().iter().all(observed::is_deleted)).then_some(()))
        })
        .await?;
    }
    Ok(deleted)
}

/// An endpoint that cannot be deleted yet: in use, or in a state that
/// passes (`Unsuccessful` entries carry EC2's codes).
pub(super) fn endpoint_busy(e: &StepError) -> bool {
    e.is_dependency_violation()
        || e.is_in_progress()
        || e.failure().is_some_and(|f| f.status == Some(200) && !f.code.as_deref().unwrap_or("").ends_with(".NotFound"))
}

/// Waits until no Lambda network interface is left on a security group or
/// subnet (`filter` is `group-id` or `subnet-id`): after DeleteFunction a VPC
/// function's hyperplane ENIs stay 20–45 minutes, and the group, subnet and
/// VPC cannot be deleted meanwhile. Bounded by `[migration]
/// max_wait_minutes`; a destroy stopped during the wait resumes it.
pub(super) async fn wait_for_lambda_enis(ctx: &Ctx, filter_name: &str, id: &str) -> Result<(), StepError> {
    use aws_sdk_ec2::types::NetworkInterfaceType;
    let ec2 = &ctx.aws.target.ec2;
    let started = std::time::Instant::now();
    let mut last = 0;
    loop {
        let pages = ec2.describe_network_interfaces().filters(filter(filter_name, id)).into_paginator().items().send();
        let enis: Vec<_> = pages.try_collect().await.on(id, "DescribeNetworkInterfaces")?;
        let lambda = enis
            .iter()
            .filter(|e| {
                e.interface_type() == Some(&NetworkInterfaceType::Lambda)
                    || e.description().is_some_and(|d| d.starts_with("AWS Lambda VPC ENI"))
            })
            .count();
        if lambda == 0 {
            return Ok(());
        }
        if lambda != last {
            tracing::warn!(
                resource = id,
                "waiting for {lambda} Lambda network interface(s) to be released from {id} (AWS takes 20–45 minutes after a function is deleted)"
            );
            last = lambda;
        }
        crate::progress::counter(
            STEP,
            &format!("s waiting for {lambda} Lambda network interface(s) on {id}"),
            started.elapsed().as_secs(),
            None,
        );
        if started.elapsed() >= ctx.max_wait() {
            return Err(StepError::Timeout {
                resource: id.to_owned(),
                what: format!("release of {lambda} Lambda network interface(s)"),
                waited: ctx.max_wait(),
            });
        }
        // Every wait's rule (elapsed/20, 1–15 s): the release is seen within
        // 5% of the time waited, not up to 30 s late.
        let elapsed = started.elapsed();
        tokio::time::sleep(crate::engine::poll_delay(elapsed).min(ctx.max_wait().saturating_sub(elapsed))).await;
    }
}

/// Waits until the Lambda network interfaces in the migration's compute
/// group are released. Lambda deletes a deleted function's interfaces with
/// that function's execution role and its `ec2:DeleteNetworkInterface`
/// permission: a role deleted first leaves them for ever, and the group,
/// subnets and VPC can then never be deleted. The iam step's undo calls
/// this before deleting an execution role. Nothing to wait for when the
/// group is gone (its interfaces went first).
pub async fn wait_for_function_interfaces(ctx: &Ctx) -> Result<(), StepError> {
    let compute = ctx.cfg.names.own(Group::Compute.kind());
    let tagged = Observed::tagged(ctx, &[Kind::Group]).await?;
    match tagged.group(&compute).and_then(|g| g.group_id()) {
        Some(id) => wait_for_lambda_enis(ctx, "group-id", id).await,
        None => Ok(()),
    }
}

pub(super) async fn delete_resource(ctx: &Ctx, kind: &str, id: &str) -> Result<bool, StepError> {
    let ec2 = &ctx.aws.target.ec2;
    match kind {
        kind::VPC_ENDPOINT => delete_endpoint(ctx, id).await,
        kind::SECURITY_GROUP => {
            // Every rule naming the group, in any group of the VPC, and the
            // group's own rules (they may name another group, which could
            // then not be deleted).
            if let Some(sg) = Observed::by_id(ctx, Kind::Group, id).await?.groups.first() {
                drop_references(ctx, sg).await?;
                drop_rules(ctx, sg).await?;
            }
            wait_for_lambda_enis(ctx, "group-id", id).await?;
            delete_ec2(id, "DeleteSecurityGroup", ctx.max_wait(), || ec2.delete_security_group().group_id(id).send())
                .await
        }
        kind::ROUTE_TABLE => {
            disassociate_subnets(ctx, id, |_| true).await?;
            delete_ec2(id, "DeleteRouteTable", ctx.max_wait(), || ec2.delete_route_table().route_table_id(id).send())
                .await
        }
        kind::SUBNET => {
            wait_for_lambda_enis(ctx, "subnet-id", id).await?;
            delete_ec2(id, "DeleteSubnet", ctx.max_wait(), || ec2.delete_subnet().subnet_id(id).send()).await
        }
        kind::VPC => delete_ec2(id, "DeleteVpc", ctx.max_wait(), || ec2.delete_vpc().vpc_id(id).send()).await,
        other => Err(StepError::Invalid(format!("network cannot delete {other}"))),
    }
}

/// Removes the route table's subnet associations that `which` selects
/// (never the main one).
pub(super) async fn disassociate_subnets(
    ctx: &Ctx,
    table: &str,
    which: impl Fn(&aws_sdk_ec2::types::RouteTableAssociation) -> bool,
) -> Result<(), StepError> {
    let found = Observed::by_id(ctx, Kind::RouteTable, table).await?;
    for a in found.route_tables.iter().flat_map(|t| t.associations()).filter(|a| !a.main().unwrap_or(false) && which(a))
    {
        if let Some(aid) = a.route_table_association_id() {
            let ec2 = &ctx.aws.target.ec2;
            delete_ec2(aid, "DisassociateRouteTable", ctx.max_wait(), || {
                ec2.disassociate_route_table().association_id(aid).send()
            })
            .await?;
        }
    }
    Ok(())
}

/// Puts a resource's tags back as they were: removes those paymig added,
/// restores the values it changed.
pub(super) async fn restore_tags(
    ctx: &Ctx,
    id: &str,
    before: &crate::steps::common::TagsBefore,
) -> Result<(), StepError> {
    let ec2 = &ctx.aws.target.ec2;
    let added: Vec<Tag> = before.added().iter().map(|k| Tag::builder().key(k).build()).collect();
    if !added.is_empty() {
        let removed = ec2.delete_tags().resources(id).set_tags(Some(added)).send().await;
        removed.on(id, "DeleteTags")?;
    }
    let changed: Vec<Tag> = before.changed().iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect();
    if !changed.is_empty() {
        let restored = ec2.create_tags().resources(id).set_tags(Some(changed)).send().await;
        restored.on(id, "CreateTags")?;
    }
    Ok(())
}

pub(super) async fn undo(ctx: &Ctx, r: &Record) -> Result<(), StepError> {
    let ec2 = &ctx.aws.target.ec2;
    match r.intent.op {
        Op::Create | Op::Adopt => {
            let id = match &r.id {
                Some(id) => Some(id.clone()),
                // A create whose `done` was never written: find it by its Name tag.
                None => match Kind::of(&r.intent.kind) {
                    Some(kind) => Observed::named(ctx, kind, &r.intent.name).await?,
                    None => None,
                },
            };
            if let Some(id) = id {
                delete_resource(ctx, &r.intent.kind, &id).await?;
            }
        }
        Op::Update => {
            let id = r.intent.data["id"].as_str().unwrap_or_default();
            match r.prev::<Prev>()? {
                Prev::Dns { attribute, value } => gone_is_done(set_dns_attr(ctx, id, &attribute, value).await)?,
                Prev::Nothing => {
                    let Some(cidr) = r.intent.key.split("#cidr ").nth(1) else { return Ok(()) };
                    let found = Observed::by_id(ctx, Kind::Vpc, id).await?;
                    for a in found.vpcs.iter().flat_map(|v| v.cidr_block_association_set()) {
                        if let (Some(aid), true) = (a.association_id(), a.cidr_block() == Some(cidr)) {
                            delete_ec2(aid, "DisassociateVpcCidrBlock", ctx.max_wait(), || {
                                ec2.disassociate_vpc_cidr_block().association_id(aid).send()
                            })
                            .await?;
                        }
                    }
                }
                Prev::Association { subnet } => {
                    disassociate_subnets(ctx, id, |a| a.subnet_id() == Some(subnet.as_str())).await?
                }
                Prev::Rules { direction, rules } => {
                    if let Some(sg) = Observed::by_id(ctx, Kind::Group, id).await?.groups.first() {
                        let egress = direction == "egress";
                        let now = rules_of(if egress { sg.ip_permissions_egress() } else { sg.ip_permissions() });
                        set_rules(ctx, id, egress, &now, &rules, Settled::Skip).await?;
                    }
                }
                Prev::RouteTables { route_tables: before } => {
                    restore_members(ctx, id, Member::RouteTables, before).await?
                }
                Prev::Subnets { subnets: before } => restore_members(ctx, id, Member::Subnets, before).await?,
                Prev::Groups { security_groups: before } => restore_members(ctx, id, Member::Groups, before).await?,
                Prev::PrivateDns { private_dns } => {
                    gone_is_done(interface::set_private_dns(ctx, id, private_dns).await)?
                }
                Prev::Policy { policy: Value::Null } => {}
                Prev::Policy { policy } => {
                    let restored = ec2
                        .modify_vpc_endpoint()
                        .vpc_endpoint_id(id)
                        .policy_document(policy.to_string())
                        .send()
                        .await
                        .on(id, "ModifyVpcEndpoint");
                    gone_is_done(restored)?;
                }
                // An error (a denial above all) is never swallowed; a
                // resource already gone has no tags to restore.
                Prev::Tags(before) => gone_is_done(restore_tags(ctx, id, &before).await)?,
            }
        }
    }
    Ok(())
}

/// What an endpoint's update changed: its route tables (gateway), subnets
/// or security groups (interface).
#[derive(Clone, Copy)]
pub(super) enum Member {
    RouteTables,
    Subnets,
    Groups,
}

/// Puts an endpoint's route tables, subnets or groups back to `before`.
pub(super) async fn restore_members(
    ctx: &Ctx,
    id: &str,
    member: Member,
    before: BTreeSet<String>,
) -> Result<(), StepError> {
    let Some(e) = Observed::by_id(ctx, Kind::Endpoint, id).await?.endpoints.into_iter().next() else {
        return Ok(());
    };
    let now: BTreeSet<String> = match member {
        Member::RouteTables => e.route_table_ids().iter().cloned().collect(),
        Member::Subnets => e.subnet_ids().iter().cloned().collect(),
        Member::Groups => e.groups().iter().filter_map(|g| g.group_id().map(String::from)).collect(),
    };
    let add: Vec<String> = before.difference(&now).cloned().collect();
    let remove: Vec<String> = now.difference(&before).cloned().collect();
    let b = ctx.aws.target.ec2.modify_vpc_endpoint().vpc_endpoint_id(id);
    let b = match member {
        Member::RouteTables => b.set_add_route_table_ids(Some(add)).set_remove_route_table_ids(Some(remove)),
        Member::Subnets => b.set_add_subnet_ids(Some(add)).set_remove_subnet_ids(Some(remove)),
        Member::Groups => b.set_add_security_group_ids(Some(add)).set_remove_security_group_ids(Some(remove)),
    };
    gone_is_done(b.send().await.on(id, "ModifyVpcEndpoint"))
}

/// Deletes each resource of `kind` by id; returns a line per one removed.
/// Deletes each resource of `kind` (unless `look`); those it removed.
pub(super) async fn delete_each(
    ctx: &Ctx,
    kind: &'static str,
    ids: Vec<String>,
    look: bool,
) -> Result<Vec<Swept>, StepError> {
    let mut removed = Vec::new();
    for id in ids {
        if look || delete_resource(ctx, kind, &id).await? {
            removed.push(Swept::new(kind, id));
        }
    }
    Ok(removed)
}

pub(super) async fn sweep(ctx: &Ctx, look: bool) -> Result<Vec<Swept>, StepError> {
    let tagged = Observed::tagged(ctx, &Kind::TEARDOWN).await?;
    // Drop every group's rules before deleting any: the groups reference each other.
    for g in tagged.groups.iter().filter(|_| !look) {
        drop_rules(ctx, g).await?;
    }
    let mut removed = Vec::new();
    for kind in Kind::TEARDOWN {
        removed.extend(delete_each(ctx, kind.as_str(), tagged.ids(kind), look).await?);
    }
    Ok(removed)
}
