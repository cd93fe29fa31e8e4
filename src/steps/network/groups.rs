//! The security groups (compute, database, endpoints, load balancer) and their
//! rules, and the rules that name a group being deleted (revoked first: AWS
//! refuses to delete a group another group's rule references).

use super::*;

/// Whether the ALB's targets are IP addresses in the compute group.
pub(super) fn ip_targets(ctx: &Ctx) -> bool {
    ctx.cfg.blue_green.target_type == crate::config::TargetType::Ip
}

/// Desired (ingress, egress) rules of each group. With `ip` targets (in
/// the compute group) the ALB must reach them on the target port, which is
/// also the health-check port (`traffic-port`): egress from the ALB group
/// and ingress to the compute group on that port, from and to each other
/// only; Lambda targets are invoked by the service and need neither. With
/// interface endpoints, compute reaches the endpoints group on 443 and the
/// endpoints group admits 443 from compute only (and sends nothing). The
/// result is in [`Group::ALL`]'s order, the endpoints group last when there
/// is one.
#[allow(clippy::too_many_arguments)]
pub fn desired_rules(
    listener_port: u16,
    ip_targets: bool,
    db_port: i32,
    vpc_cidrs: &[String],
    alb: &str,
    compute: &str,
    db: &str,
    endpoints: Option<&str>,
    prefix_lists: &[String],
) -> Vec<(BTreeSet<Rule>, BTreeSet<Rule>)> {
    let port = i32::from(listener_port);
    let alb_in = vpc_cidrs.iter().map(|c| Rule::tcp(port, format!("cidr:{c}"))).collect();
    let mut alb_out = BTreeSet::new();
    let mut compute_in = BTreeSet::new();
    if ip_targets {
        alb_out.insert(Rule::tcp(port, format!("sg:{compute}")));
        compute_in.insert(Rule::tcp(port, format!("sg:{alb}")));
    }
    let mut compute_out: BTreeSet<Rule> = [Rule::tcp(db_port, format!("sg:{db}"))].into();
    compute_out.extend(prefix_lists.iter().map(|p| Rule::tcp(HTTPS_PORT, format!("pl:{p}"))));
    if let Some(e) = endpoints {
        compute_out.insert(Rule::tcp(HTTPS_PORT, format!("sg:{e}")));
    }
    let db_in = [Rule::tcp(db_port, format!("sg:{compute}"))].into();
    let mut out = vec![(alb_in, alb_out), (compute_in, compute_out), (db_in, BTreeSet::new())];
    if endpoints.is_some() {
        out.push(([Rule::tcp(HTTPS_PORT, format!("sg:{compute}"))].into(), BTreeSet::new()));
    }
    out
}

pub(super) async fn converge_security_groups(
    ctx: &Ctx,
    vpc_id: &str,
    vpc_cidrs: &[String],
    db_port: i32,
    existing: &[SecurityGroup],
) -> Result<Vec<String>, StepError> {
    let ec2 = &ctx.aws.target.ec2;
    let mut ids = Vec::new();
    let mut current: Vec<(BTreeSet<Rule>, BTreeSet<Rule>)> = Vec::new();
    let groups = Group::wanted(ctx);
    for &g in &groups {
        let name = ctx.cfg.names.own(g.kind());
        let res = Res::new(STEP, kind::SECURITY_GROUP, format!("sg/{}", g.kind()), &name);
        match existing.iter().find(|s| s.group_name() == Some(name.as_str())) {
            Some(sg) => {
                let id = sg.group_id().unwrap_or_default().to_owned();
                ctx.adopt(&res, &id, None)?;
                converge_tags(ctx, &res, &id, sg.tags()).await?;
                current.push((rules_of(sg.ip_permissions()), rules_of(sg.ip_permissions_egress())));
                ids.push(id);
            }
            None => {
                let spec_tags = tag_spec(ctx, ResourceType::SecurityGroup, &name);
                let id = ctx
                    .create(&res, g.description(), json!({"vpc": vpc_id}), || async {
                        let out = retry_eventual("CreateSecurityGroup", is_not_found_yet, || async {
                            ec2.create_security_group()
                                .group_name(&name)
                                .description(g.description())
                                .vpc_id(vpc_id)
                                .tag_specifications(spec_tags.clone())
                                .send()
                                .await
                                .on(&name, "CreateSecurityGroup")
                        })
                        .await?;
                        Created::returned(out.group_id, "CreateSecurityGroup")
                    })
                    .await?
                    .unwrap_or_else(|| planned_id(g.kind()));
                // A new group allows all egress until told otherwise.
                let default_egress: BTreeSet<Rule> =
                    [Rule { protocol: "-1".into(), from: -1, to: -1, peer: "cidr:0.0.0.0/0".into() }].into();
                current.push((BTreeSet::new(), default_egress));
                ids.push(id);
            }
        }
    }
    let prefix_lists = endpoint_prefix_lists(ctx).await?;
    if prefix_lists.is_empty() {
        ctx.notice(
            STEP,
            "no S3/DynamoDB prefix lists found: the compute group gets no HTTPS egress to the gateway endpoints",
        );
    }
    let desired = desired_rules(
        ctx.cfg.blue_green.listener_port,
        ip_targets(ctx),
        db_port,
        vpc_cidrs,
        &ids[0],
        &ids[1],
        &ids[2],
        ids.get(3).map(String::as_str),
        &prefix_lists,
    );
    for (i, g) in groups.iter().enumerate() {
        let name = ctx.cfg.names.own(g.kind());
        let res = Res::new(STEP, kind::SECURITY_GROUP, format!("sg/{}", g.kind()), &name);
        for (egress, have, want) in [(false, &current[i].0, &desired[i].0), (true, &current[i].1, &desired[i].1)] {
            if have == want {
                continue;
            }
            let direction = if egress { "egress" } else { "ingress" };
            let id = ids[i].clone();
            ctx.update(
                &res,
                &id,
                crate::engine::Detail::change(format!("{direction} rules"), rules_text(have), rules_text(want)),
                Prev::Rules { direction: direction.into(), rules: have.clone() },
                || async { set_rules(ctx, &id, egress, have, want, Settled::Fail).await },
            )
            .await?;
        }
    }
    Ok(ids)
}

/// Whether `e`, from changing `group`'s rules, says a rule's *peer* group
/// no longer exists (not `group` itself).
pub(super) fn peer_gone(e: &StepError, group: &str) -> bool {
    e.is_code("InvalidGroup.NotFound") && !e.message_contains(group)
}

/// Whether a rule change failed only because it is already made: the rule
/// to add exists, the rule to revoke does not, or the rule's peer group is
/// gone (then it cannot be revoked or restored and no longer matters; the
/// emulator lets a referenced group be deleted, AWS refuses with a
/// DependencyViolation, which is retried).
pub(super) fn rule_settled(e: &StepError, group: &str) -> bool {
    peer_gone(e, group) || e.is_code("InvalidPermission.Duplicate") || e.is_code("InvalidPermission.NotFound")
}

/// Revokes every rule of a group before it is deleted (sibling groups are
/// deleted side by side and reference each other).
pub(super) async fn drop_rules(ctx: &Ctx, sg: &SecurityGroup) -> Result<(), StepError> {
    let Some(id) = sg.group_id() else { return Ok(()) };
    for (egress, rules) in [(false, rules_of(sg.ip_permissions())), (true, rules_of(sg.ip_permissions_egress()))] {
        set_rules(ctx, id, egress, &rules, &BTreeSet::new(), Settled::Skip).await?;
    }
    Ok(())
}

/// The rules of `group` (ingress, egress) that name `peer` as their source
/// or destination.
pub fn rules_naming(group: &SecurityGroup, peer: &str) -> (BTreeSet<Rule>, BTreeSet<Rule>) {
    let peer = format!("sg:{peer}");
    let naming = |perms: &[IpPermission]| rules_of(perms).into_iter().filter(|r| r.peer == peer).collect();
    (naming(group.ip_permissions()), naming(group.ip_permissions_egress()))
}

/// Revokes, in every other group of its VPC, each rule that names `sg`:
/// DeleteSecurityGroup answers `DependencyViolation` while any group's rule
/// references the group (compute's egress names the database and endpoint
/// groups, the database's ingress names compute), whatever order the
/// groups are deleted in.
pub(super) async fn drop_references(ctx: &Ctx, sg: &SecurityGroup) -> Result<(), StepError> {
    let (Some(id), Some(vpc)) = (sg.group_id(), sg.vpc_id()) else { return Ok(()) };
    let others = Observed::inside(ctx, vpc, &[Kind::Group]).await?.groups;
    for g in others.iter().filter(|g| g.group_id() != Some(id)) {
        let Some(gid) = g.group_id() else { continue };
        let (ingress, egress) = rules_naming(g, id);
        for (is_egress, naming) in [(false, ingress), (true, egress)] {
            if naming.is_empty() {
                continue;
            }
            match set_rules(ctx, gid, is_egress, &naming, &BTreeSet::new(), Settled::Skip).await {
                // That group was deleted meanwhile (siblings go side by
                // side): its rules went with it.
                Err(e) if e.is_code("InvalidGroup.NotFound") => break,
                other => other?,
            }
        }
    }
    Ok(())
}

/// What a rule change does when it meets a rule already so (added, or
/// revoked, or naming a group that is gone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Settled {
    /// Fails: converge changes only what it read.
    Fail,
    /// Leaves it: undo finishes whatever state it meets. When the batched
    /// change fails on a settled rule ([`rule_settled`]), the rules are
    /// changed one at a time and the settled ones left.
    Skip,
}

/// Makes a group's rules in one direction exactly `want`.
pub(super) async fn set_rules(
    ctx: &Ctx,
    group: &str,
    egress: bool,
    have: &BTreeSet<Rule>,
    want: &BTreeSet<Rule>,
    settled: Settled,
) -> Result<(), StepError> {
    match change_rules(ctx, group, egress, want.difference(have), have.difference(want)).await {
        Err(e) if settled == Settled::Skip && rule_settled(&e, group) => {
            let adds = want.difference(have).map(|r| (Some(r), None));
            for (add, remove) in adds.chain(have.difference(want).map(|r| (None, Some(r)))) {
                match change_rules(ctx, group, egress, add.into_iter(), remove.into_iter()).await {
                    Err(e) if rule_settled(&e, group) => tracing::debug!(group, "rule already settled: {e}"),
                    other => other?,
                }
            }
            Ok(())
        }
        other => other,
    }
}

/// Adds `add` to and revokes `remove` from a group's rules in one direction.
async fn change_rules<'r>(
    ctx: &Ctx,
    group: &str,
    egress: bool,
    add: impl Iterator<Item = &'r Rule>,
    remove: impl Iterator<Item = &'r Rule>,
) -> Result<(), StepError> {
    let ec2 = &ctx.aws.target.ec2;
    let add: Vec<IpPermission> = add.map(Rule::to_permission).collect();
    let remove: Vec<IpPermission> = remove.map(Rule::to_permission).collect();
    if !add.is_empty() {
        if egress {
            ec2.authorize_security_group_egress()
                .group_id(group)
                .set_ip_permissions(Some(add))
                .send()
                .await
                .on(group, "AuthorizeSecurityGroupEgress")?;
        } else {
            ec2.authorize_security_group_ingress()
                .group_id(group)
                .set_ip_permissions(Some(add))
                .send()
                .await
                .on(group, "AuthorizeSecurityGroupIngress")?;
        }
    }
    if !remove.is_empty() {
        let r = if egress {
            ec2.revoke_security_group_egress()
                .group_id(group)
                .set_ip_permissions(Some(remove))
                .send()
                .await
                .map(|_| ())
                .on(group, "RevokeSecurityGroupEgress")
        } else {
            ec2.revoke_security_group_ingress()
                .group_id(group)
                .set_ip_permissions(Some(remove))
                .send()
                .await
                .map(|_| ())
                .on(group, "RevokeSecurityGroupIngress")
        };
        r?;
    }
    Ok(())
}

// Undo and sweep
