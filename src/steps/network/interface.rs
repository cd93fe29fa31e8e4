//! Interface VPC endpoints. Prod subnets are private with no NAT: S3 and
//! DynamoDB are reached through gateway endpoints, every other AWS service a
//! function calls (SSM for its parameters, KMS for its key, …) only through an
//! interface endpoint — one network interface per Availability Zone in the
//! endpoints security group (443 from the compute group only), with private
//! DNS so the SDK's default service names resolve to it.
//!
//! A step of its own (`endpoints`, after `network`): AWS takes a minute or
//! two to make an interface endpoint `available`, and nothing else waits for
//! that — the database and the functions go on beside it.
//!
//! The services are `[network] interface_endpoints`, or, when that key is
//! absent, those the execution roles grant (minus EC2 and CloudWatch Logs:
//! the Lambda service calls those for the function, outside its VPC). Each
//! endpoint's policy admits exactly the actions and resources the execution
//! roles are granted for that service.

use crate::aws::Call;
use crate::engine::estimate::{Compose, Wait};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use aws_sdk_ec2::types::{Filter, ResourceType, VpcEndpoint, VpcEndpointType};
use serde_json::{json, Value};

use super::observed::Select;
use super::{converge_tags, filter, is_planned, ours, tag_spec, Kind, Observed};
use crate::config::GATEWAY_SERVICES;
use crate::engine::journal::Record;
use crate::engine::{retry_eventual, About, Ctx, Declared, Outcome, Res, Step, StepError, Swept};
use crate::steps::common::arns;
use crate::steps::common::{statements, strings};

const STEP: &str = "endpoints";

/// Availability Zones each interface endpoint service is offered in.
type Offered = BTreeMap<String, BTreeSet<String>>;

/// The interface endpoints step. The offered services are read once per
/// command and shared by preflight, the run and validate.
#[derive(Default)]
pub struct Endpoints {
    offered: tokio::sync::OnceCell<Offered>,
}

impl Endpoints {
    async fn offered(&self, ctx: &Ctx) -> Result<&Offered, StepError> {
        self.offered.get_or_try_init(|| async { offered(ctx).await.map_err(|mut e| e.remove(0)) }).await
    }
}

static ABOUT: About = About {
    id: STEP,
    deps: &["network"],
    kinds: &["vpc_endpoint"],
    actions: &[
        "ec2:DescribeVpcEndpointServices",
        "ec2:DescribeVpcEndpoints",
        "ec2:DescribeVpcs",
        "ec2:DescribeSubnets",
        "ec2:DescribeSecurityGroups",
        "ec2:CreateVpcEndpoint",
        "ec2:ModifyVpcEndpoint",
        "ec2:DeleteVpcEndpoints",
        "ec2:CreateTags",
        "ec2:DeleteTags",
    ],
    scopes: &[("ec2", arns::ec2)],
    sweeps: "interface endpoints tagged for the migration",
    waits: &[("vpc_endpoint", Wait::InterfaceEndpoint, Compose::Side)],
    undo_waits: &[("vpc_endpoint", Wait::InterfaceEndpointDeleted, Compose::Side)],
    ..About::NONE
};

impl Declared for Endpoints {
    fn about(&self) -> &'static About {
        &ABOUT
    }
}

impl Step for Endpoints {
    async fn preflight(&self, ctx: &Ctx) -> Vec<StepError> {
        // Every unknown service is named, not only the first; what is found
        // serves the run too (one read per command).
        match offered(ctx).await {
            Ok(zones) => {
                let _ = self.offered.set(zones);
                vec![]
            }
            Err(errors) => errors,
        }
    }

    async fn run(&self, ctx: &Ctx) -> Result<Outcome, StepError> {
        if services(ctx).is_empty() {
            return Ok(Outcome::Skipped("no interface endpoints ([network] interface_endpoints = [])".into()));
        }
        let zones = self.offered(ctx).await?;
        let super::Vpc { id: vpc, subnets, sg_endpoints: group, .. } = super::Vpc::of(ctx);
        let existing =
            if is_planned(&vpc) { vec![] } else { Observed::inside(ctx, &vpc, &[Kind::Endpoint]).await?.endpoints };
        let ids = converge(ctx, &vpc, &existing, &subnets, &group, zones).await?;
        let created = ctx.changes().iter().any(|c| c.step == self.id() && c.action == crate::engine::Action::Create);
        if created {
            ctx.timed(self.id(), Wait::InterfaceEndpoint, &vpc, wait_available(ctx, &ids)).await?;
        } else if !ctx.is_plan() {
            wait_available(ctx, &ids).await?;
        }
        Ok(Outcome::Done)
    }

    async fn undo(&self, ctx: &Ctx, record: &Record) -> Result<(), StepError> {
        // The network step's undo knows every endpoint record.
        super::undo(ctx, record).await
    }

    async fn sweep(&self, ctx: &Ctx, look: bool) -> Result<Vec<Swept>, StepError> {
        let mut interface: Vec<Filter> = ours(ctx).into();
        interface.push(filter("vpc-endpoint-type", "Interface"));
        let tagged = Observed::read(ctx, Kind::Endpoint, Select::Filters(interface)).await?;
        let ids =
            tagged.endpoints.iter().filter(|e| live(e)).filter_map(|e| e.vpc_endpoint_id().map(String::from)).collect();
        super::delete_each(ctx, "vpc_endpoint", ids, look).await
    }

    async fn validate(&self, ctx: &Ctx) -> Result<crate::report::Findings, StepError> {
        validate(ctx, self.offered(ctx).await?).await
    }
}

/// Services a function's execution role grants that the Lambda service calls
/// on the function's behalf from outside the VPC: no endpoint needed.
const CALLED_BY_LAMBDA: [&str; 2] = ["ec2", "logs"];

/// The services that get an interface endpoint, sorted.
pub fn services(ctx: &Ctx) -> Vec<String> {
    let mut list: Vec<String> = match &ctx.cfg.network.interface_endpoints {
        Some(list) => list.clone(),
        None => role_statements(ctx)
            .iter()
            .flat_map(|s| strings(&s["Action"]))
            .filter_map(|a| a.split_once(':').map(|(service, _)| service.to_owned()))
            .filter(|s| !GATEWAY_SERVICES.contains(&s.as_str()) && !CALLED_BY_LAMBDA.contains(&s.as_str()))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect(),
    };
    list.sort();
    list
}

/// Whether `services` came from the configuration or was derived.
fn origin(ctx: &Ctx) -> &'static str {
    if ctx.cfg.network.interface_endpoints.is_some() {
        "[network] interface_endpoints"
    } else {
        "the execution roles' grants (no [network] interface_endpoints set)"
    }
}

/// The endpoint service's name in the prod region.
pub fn service_name(ctx: &Ctx, service: &str) -> String {
    format!("com.amazonaws.{}.{service}", ctx.cfg.migration.region)
}

/// Every statement of every prod function's execution policy (the key ARN
/// is the account's key pattern: the key may not exist yet).
fn role_statements(ctx: &Ctx) -> Vec<Value> {
    let key = format!("arn:aws:kms:{}:{}:key/*", ctx.cfg.migration.region, ctx.account);
    ctx.cfg
        .source
        .lambda_functions
        .iter()
        .flat_map(|f| {
            let policy = crate::steps::iam::execution_policy(ctx, f, &key);
            statements(&policy).into_iter().cloned().collect::<Vec<_>>()
        })
        .collect()
}

/// The endpoint policy of `service`: the execution roles' statements for it,
/// each with `Principal: *` — named actions only. `None` when no role grants
/// the service anything (AWS's default policy applies; the callers' own IAM
/// policies decide).
pub fn endpoint_policy(ctx: &Ctx, service: &str) -> Option<Value> {
    let prefix = format!("{service}:");
    let mut grants: BTreeSet<(Vec<String>, Vec<String>)> = BTreeSet::new();
    for s in role_statements(ctx) {
        let mut actions: Vec<String> = strings(&s["Action"]).into_iter().filter(|a| a.starts_with(&prefix)).collect();
        if actions.is_empty() {
            continue;
        }
        actions.sort();
        let mut resources = strings(&s["Resource"]);
        resources.sort();
        grants.insert((actions, resources));
    }
    if grants.is_empty() {
        return None;
    }
    let statements: Vec<Value> = grants
        .into_iter()
        .enumerate()
        .map(|(i, (actions, resources))| {
            json!({"Sid": format!("FunctionGrants{}", i + 1), "Effect": "Allow", "Principal": "*",
                   "Action": actions, "Resource": resources})
        })
        .collect();
    Some(json!({"Version": "2012-10-17", "Statement": statements}))
}

/// The Availability Zones each service is offered in
/// (`DescribeVpcEndpointServices`). A service AWS does not offer as an
/// interface endpoint in the region is an error naming it.
async fn offered(ctx: &Ctx) -> Result<Offered, Vec<StepError>> {
    let services = services(ctx);
    if services.is_empty() {
        return Ok(BTreeMap::new());
    }
    let ec2 = &ctx.aws.target.ec2;
    let names: Vec<String> = services.iter().map(|s| service_name(ctx, s)).collect();
    let all = ec2.describe_vpc_endpoint_services().set_service_names(Some(names.clone())).send().await;
    let details = match all {
        Ok(out) => out.service_details().to_vec(),
        Err(e) => {
            let e = StepError::sdk("interface endpoint services", "DescribeVpcEndpointServices", &e);
            if !e.is_code("InvalidServiceName") {
                return Err(vec![e]);
            }
            // Find which: ask for each alone.
            let mut errors = Vec::new();
            let mut details = Vec::new();
            for (service, name) in services.iter().zip(&names) {
                match ec2.describe_vpc_endpoint_services().service_names(name).send().await {
                    Ok(out) => details.extend(out.service_details().iter().cloned()),
                    Err(e) => {
                        let e = StepError::sdk(name, "DescribeVpcEndpointServices", &e);
                        if !e.is_code("InvalidServiceName") {
                            return Err(vec![e]);
                        }
                        errors.push(StepError::Invalid(format!(
                            "network: {service:?} (from {}) is not an endpoint service in {}: {name} does not exist\nhelp: set [network] interface_endpoints to services AWS offers there (aws ec2 describe-vpc-endpoint-services --region {} --query ServiceNames)",
                            origin(ctx),
                            ctx.cfg.migration.region,
                            ctx.cfg.migration.region
                        )));
                    }
                }
            }
            if !errors.is_empty() {
                return Err(errors);
            }
            details
        }
    };
    let mut zones = BTreeMap::new();
    let mut errors = Vec::new();
    for (service, name) in services.iter().zip(&names) {
        let detail = details.iter().find(|d| d.service_name() == Some(name.as_str()));
        let interface = detail.is_some_and(|d| {
            d.service_type().iter().any(|t| t.service_type() == Some(&aws_sdk_ec2::types::ServiceType::Interface))
        });
        if !interface {
            errors.push(StepError::Invalid(format!(
                "network: {service:?} (from {}) is not offered as an interface endpoint in {}\nhelp: remove it from [network] interface_endpoints",
                origin(ctx),
                ctx.cfg.migration.region
            )));
            continue;
        }
        let azs: BTreeSet<String> =
            detail.map(|d| d.availability_zones().iter().cloned().collect()).unwrap_or_default();
        zones.insert(service.clone(), azs);
    }
    if errors.is_empty() {
        Ok(zones)
    } else {
        Err(errors)
    }
}

/// The subnets of one endpoint: the first prod subnet of each zone the
/// service is offered in (AWS takes one per zone).
pub fn subnets_for(subnets: &[(String, String)], zones: &BTreeSet<String>) -> Vec<String> {
    let eligible: Vec<(String, String)> =
        subnets.iter().filter(|(zone, _)| zones.is_empty() || zones.contains(zone)).cloned().collect();
    let mut ids = super::one_per_zone(&eligible);
    ids.sort();
    ids
}

/// Whether an endpoint still counts (AWS lists deleted ones for a while).
pub fn live(e: &VpcEndpoint) -> bool {
    !e.state().is_some_and(|s| {
        matches!(s.as_str().to_ascii_lowercase().as_str(), "deleted" | "deleting" | "failed" | "rejected")
    })
}

fn sorted(v: &[String]) -> Vec<String> {
    let mut v = v.to_vec();
    v.sort();
    v.dedup();
    v
}

/// Creates each missing interface endpoint and brings an existing one to its
/// subnets, group, private DNS and policy, journaling each previous value.
/// Returns the endpoints' ids (none for a plan's new ones).
async fn converge(
    ctx: &Ctx,
    vpc_id: &str,
    existing: &[VpcEndpoint],
    subnets: &[(String, String)],
    group: &str,
    zones: &Offered,
) -> Result<Vec<String>, StepError> {
    let ec2 = &ctx.aws.target.ec2;
    let mut ids = Vec::new();
    for service in services(ctx) {
        let sn = service_name(ctx, &service);
        let name = ctx.cfg.names.own(&format!("{service}-endpoint"));
        let res = Res::new(STEP, "vpc_endpoint", format!("endpoint/{service}"), &name);
        let want_subnets = subnets_for(subnets, zones.get(&service).unwrap_or(&BTreeSet::new()));
        if want_subnets.is_empty() {
            return Err(StepError::Invalid(format!(
                "network: no prod subnet is in an Availability Zone where {sn} is offered\nhelp: remove {service:?} from [network] interface_endpoints"
            )));
        }
        let policy = endpoint_policy(ctx, &service);
        let found = existing.iter().find(|e| e.service_name() == Some(sn.as_str()) && live(e));
        let Some(e) = found else {
            let token = ctx.client_token(&res);
            let spec_tags = tag_spec(ctx, ResourceType::VpcEndpoint, &name);
            let detail = format!("interface {sn} in {} subnets, private DNS", want_subnets.len());
            let created = ctx
                .create(&res, detail, json!({"vpc": vpc_id, "client_token": token}), || {
                    super::create_endpoint(
                        &name,
                        ec2.create_vpc_endpoint()
                            .vpc_id(vpc_id)
                            .vpc_endpoint_type(VpcEndpointType::Interface)
                            .service_name(&sn)
                            .set_subnet_ids(Some(want_subnets.clone()))
                            .security_group_ids(group)
                            .private_dns_enabled(true)
                            .set_policy_document(policy.as_ref().map(Value::to_string))
                            .client_token(token)
                            .tag_specifications(spec_tags),
                    )
                })
                .await?;
            ids.extend(created);
            continue;
        };
        let id = e.vpc_endpoint_id().unwrap_or_default().to_owned();
        ids.push(id.clone());
        ctx.adopt(&res, &id, None)?;
        converge_tags(ctx, &res, &id, e.tags()).await?;
        let have_subnets = sorted(e.subnet_ids());
        if have_subnets != want_subnets {
            let add: Vec<String> = want_subnets.iter().filter(|s| !have_subnets.contains(s)).cloned().collect();
            let remove: Vec<String> = have_subnets.iter().filter(|s| !want_subnets.contains(s)).cloned().collect();
            ctx.update(
                &res,
                &id,
                "subnets",
                super::Prev::Subnets { subnets: have_subnets.iter().cloned().collect() },
                || async { set_subnets(ctx, &id, add.clone(), remove.clone()).await },
            )
            .await?;
        }
        let have_groups: Vec<String> =
            sorted(&e.groups().iter().filter_map(|g| g.group_id().map(String::from)).collect::<Vec<_>>());
        if have_groups != [group.to_owned()] && !is_planned(group) {
            let remove: Vec<String> = have_groups.iter().filter(|g| *g != group).cloned().collect();
            let add: Vec<String> = if have_groups.iter().any(|g| g == group) { vec![] } else { vec![group.to_owned()] };
            ctx.update(
                &res,
                &id,
                "security groups",
                super::Prev::Groups { security_groups: have_groups.iter().cloned().collect() },
                || async { set_groups(ctx, &id, add.clone(), remove.clone()).await },
            )
            .await?;
        }
        if e.private_dns_enabled() != Some(true) {
            ctx.update(&res, &id, "private DNS", super::Prev::PrivateDns { private_dns: false }, || async {
                set_private_dns(ctx, &id, true).await
            })
            .await?;
        }
        if let Some(policy) = &policy {
            let current: Value = e.policy_document().and_then(|p| serde_json::from_str(p).ok()).unwrap_or(Value::Null);
            super::converge_endpoint_policy(ctx, &res, &id, &name, current, policy).await?;
        }
    }
    Ok(ids)
}

/// Waits until every endpoint is `available` (AWS: a minute or two after
/// create; `pending` meanwhile), bounded by `[migration] max_wait_minutes`.
/// `failed` or `rejected` is an error naming the endpoint.
async fn wait_available(ctx: &Ctx, ids: &[String]) -> Result<(), StepError> {
    let ids: Vec<String> = ids.iter().filter(|i| !is_planned(i)).cloned().collect();
    if ids.is_empty() {
        return Ok(());
    }
    let started = Instant::now();
    let mut delay = Duration::from_secs(1);
    loop {
        // Right after CreateVpcEndpoint a describe by id may not find it yet
        // (EC2 is eventually consistent).
        let out = retry_eventual("DescribeVpcEndpoints", StepError::is_not_found, || async {
            ctx.aws
                .target
                .ec2
                .describe_vpc_endpoints()
                .set_vpc_endpoint_ids(Some(ids.clone()))
                .send()
                .await
                .on(ids.join(","), "DescribeVpcEndpoints")
        })
        .await?;
        let mut waiting = Vec::new();
        for e in out.vpc_endpoints() {
            let id = e.vpc_endpoint_id().unwrap_or_default();
            match e.state().map(|s| s.as_str().to_ascii_lowercase()).as_deref() {
                Some("available") => {}
                Some(s @ ("failed" | "rejected" | "expired" | "deleted" | "deleting")) => {
                    let reason = e.last_error().and_then(|l| l.message()).unwrap_or("no reason given");
                    return Err(StepError::Invalid(format!(
                        "interface endpoint {id} ({}) is {s}: {reason}\nhelp: run `paymig rollback` and check the service's availability in the region",
                        e.service_name().unwrap_or("?")
                    )));
                }
                _ => waiting.push(id.to_owned()),
            }
        }
        if waiting.is_empty() {
            return Ok(());
        }
        crate::progress::counter(
            STEP,
            &format!("s waiting for {} interface endpoint(s) to become available", waiting.len()),
            started.elapsed().as_secs(),
            None,
        );
        if started.elapsed() >= ctx.max_wait() {
            return Err(StepError::Timeout {
                resource: waiting.join(", "),
                what: "interface endpoint state available".into(),
                waited: ctx.max_wait(),
            });
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(15));
    }
}

/// validate: the VPC, subnets and endpoints group found by the migration's
/// tags and names.
async fn validate(ctx: &Ctx, zones: &Offered) -> Result<crate::report::Findings, StepError> {
    let mut f = crate::report::Findings::default();
    if services(ctx).is_empty() {
        return Ok(f);
    }
    let Some(vpc) = Observed::tagged(ctx, &[Kind::Vpc]).await?.vpc_id().map(String::from) else {
        // The network step reports the VPC missing.
        return Ok(f);
    };
    let inside = Observed::inside(ctx, &vpc, &[Kind::Subnet, Kind::Endpoint, Kind::Group]).await?;
    // Sorted as the run sorts them (zone, then CIDR).
    let mut by_zone: Vec<(&str, &str, &str)> = inside
        .own_subnets(ctx)
        .filter_map(|s| Some((s.availability_zone()?, s.cidr_block()?, s.subnet_id()?)))
        .collect();
    by_zone.sort();
    let zoned: Vec<(String, String)> = by_zone.iter().map(|(z, _, id)| (z.to_string(), id.to_string())).collect();
    let name = ctx.cfg.names.own("endpoints-sg");
    let group = inside.group(&name).and_then(|g| g.group_id()).unwrap_or_default().to_owned();
    f.checks.extend(checks(ctx, &inside.endpoints, &zoned, &group, zones));
    Ok(f)
}

async fn set_subnets(ctx: &Ctx, id: &str, add: Vec<String>, remove: Vec<String>) -> Result<(), StepError> {
    ctx.aws
        .target
        .ec2
        .modify_vpc_endpoint()
        .vpc_endpoint_id(id)
        .set_add_subnet_ids(Some(add).filter(|v| !v.is_empty()))
        .set_remove_subnet_ids(Some(remove).filter(|v| !v.is_empty()))
        .send()
        .await
        .on(id, "ModifyVpcEndpoint")?;
    Ok(())
}

async fn set_groups(ctx: &Ctx, id: &str, add: Vec<String>, remove: Vec<String>) -> Result<(), StepError> {
    ctx.aws
        .target
        .ec2
        .modify_vpc_endpoint()
        .vpc_endpoint_id(id)
        .set_add_security_group_ids(Some(add).filter(|v| !v.is_empty()))
        .set_remove_security_group_ids(Some(remove).filter(|v| !v.is_empty()))
        .send()
        .await
        .on(id, "ModifyVpcEndpoint")?;
    Ok(())
}

pub async fn set_private_dns(ctx: &Ctx, id: &str, on: bool) -> Result<(), StepError> {
    ctx.aws
        .target
        .ec2
        .modify_vpc_endpoint()
        .vpc_endpoint_id(id)
        .private_dns_enabled(on)
        .send()
        .await
        .on(id, "ModifyVpcEndpoint")?;
    Ok(())
}

/// The validate checks of the interface endpoints.
fn checks(
    ctx: &Ctx,
    eps: &[VpcEndpoint],
    subnets: &[(String, String)],
    group: &str,
    zones: &Offered,
) -> Vec<crate::report::Check> {
    use crate::report::Check;
    let mut out = Vec::new();
    for service in services(ctx) {
        let sn = service_name(ctx, &service);
        let label = ctx.cfg.names.own(&format!("{service}-endpoint"));
        let Some(e) = eps.iter().find(|e| e.service_name() == Some(sn.as_str()) && live(e)) else {
            out.push(Check::new(
                "network.interface_endpoints",
                &label,
                false,
                format!("no interface endpoint for {sn}"),
            ));
            continue;
        };
        let want_subnets = subnets_for(subnets, zones.get(&service).unwrap_or(&BTreeSet::new()));
        let mut problems = Vec::new();
        if e.vpc_endpoint_type() != Some(&VpcEndpointType::Interface) {
            problems.push("not an interface endpoint".to_owned());
        }
        if let Some(state) = e.state().map(|s| s.as_str().to_ascii_lowercase()).filter(|s| s != "available") {
            problems.push(format!("state {state}"));
        }
        if e.private_dns_enabled() != Some(true) {
            problems.push("private DNS off".to_owned());
        }
        if sorted(e.subnet_ids()) != want_subnets {
            problems.push(format!("subnets {} (want {})", e.subnet_ids().join(","), want_subnets.join(",")));
        }
        let groups: Vec<&str> = e.groups().iter().filter_map(|g| g.group_id()).collect();
        if groups != [group] {
            problems.push(format!("security groups {} (want {group})", groups.join(",")));
        }
        let detail = if problems.is_empty() {
            format!("available in {} zones, private DNS, 443 from compute only", want_subnets.len())
        } else {
            problems.join("; ")
        };
        out.push(Check::new("network.interface_endpoints", &label, problems.is_empty(), detail));
        if let Some(want) = endpoint_policy(ctx, &service) {
            let policy: Value = e.policy_document().and_then(|p| serde_json::from_str(p).ok()).unwrap_or(Value::Null);
            let wild = crate::steps::common::wildcard_actions(&policy);
            out.push(Check::new(
                "iam.no_wildcard_action",
                &format!("{service} endpoint policy"),
                wild.is_empty() && policy == want,
                if !wild.is_empty() {
                    wild.join(", ")
                } else if policy != want {
                    "differs from the execution roles' grants".into()
                } else {
                    "the execution roles' grants only".into()
                },
            ));
        }
    }
    out
}
