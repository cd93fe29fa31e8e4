//! network: the prod VPC mirrored from the dev VPC — identical CIDR blocks and
//! DNS attributes, private subnets in (at least) three AZs mirroring dev's
//! CIDRs, a route table per subnet, S3 and DynamoDB gateway endpoints on
//! every route table (no internet gateway, no NAT), and the ALB, compute and
//! database security groups with least-privilege rules.
//!
//! This file holds the step's declaration, the published [`Vpc`] and the
//! converge that runs the parts in order; each part is a file of its own:
//! `dev.rs` (the dev read), `layout.rs` (the desired layout, pure),
//! `vpc.rs` (VPC, subnets, route tables), `gateway.rs` (gateway
//! endpoints), `groups.rs` (security groups and their rules),
//! `teardown.rs` (undo and sweep), `validate.rs`, `observed.rs` (one
//! describe per kind), `interface.rs` (the `endpoints` step).

use crate::aws::Call;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{
    AttributeBooleanValue, Filter, IpPermission, IpRange, PrefixListId, ResourceType, RouteTable, SecurityGroup,
    Subnet, Tag, TagSpecification, UserIdGroupPair, VpcAttributeName, VpcEndpoint, VpcEndpointType,
};
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::config::{GATEWAY_SERVICES, TAG_MIGRATION, TAG_SUFFIX};
use crate::engine::journal::{Op, Record};
use crate::engine::{
    is_planned, planned_id, retry_eventual, retry_until, About, Created, Ctx, Declared, Outcome, Res, Step, StepError,
    Swept,
};
use crate::steps::common::arns;

mod dev;
mod gateway;
mod groups;
pub mod interface;
mod layout;
mod observed;
mod teardown;
mod validate;
mod vpc;
pub use dev::*;
pub use gateway::*;
pub use groups::*;
pub use layout::*;
pub use teardown::*;
use validate::*;
use vpc::*;

pub use observed::{Kind, Observed};

/// The network step. The dev VPC is read once per command and shared by
/// preflight and the run.
#[derive(Default)]
pub struct Network {
    dev: tokio::sync::OnceCell<DevVpc>,
}

impl Network {
    async fn dev(&self, ctx: &Ctx) -> Result<&DevVpc, StepError> {
        self.dev.get_or_try_init(|| read_dev(ctx)).await
    }
}

/// What the network step publishes for the steps that place resources in
/// the prod VPC (placeholders in a plan that creates them).
#[derive(Debug, Clone, Default)]
pub struct Vpc {
    pub id: String,
    /// `(availability zone, subnet id)`, sorted by zone.
    pub subnets: Vec<(String, String)>,
    pub sg_alb: String,
    pub sg_compute: String,
    pub sg_db: String,
    /// Empty when no interface endpoints are configured.
    pub sg_endpoints: String,
    /// Subnet ids by CIDR (dev's subnets map to prod's by CIDR).
    pub by_cidr: BTreeMap<String, String>,
}

impl Vpc {
    /// The prod network, as the network step published it.
    pub fn of(ctx: &Ctx) -> Vpc {
        ctx.outputs.get::<Vpc>()
    }
}

/// The prod network for mapping dev's ids: what the network step publishes
/// in this run (waited for), or what exists (read) when the run does not
/// schedule it; `None` when there is none.
pub async fn prod_network(ctx: &Ctx) -> Result<Option<Vpc>, StepError> {
    if let Some(v) = ctx.outputs.wait::<Vpc>(STEP).await {
        return Ok(Some(v));
    }
    let dev = read_dev(ctx).await?;
    let names = &ctx.cfg.names;
    let vpc_name = dev.name.as_deref().map_or_else(|| names.own("vpc"), |n| names.prod(n));
    let o = Observed::of_vpc(ctx, &vpc_name).await?;
    let Some(id) = o.vpc_id().map(str::to_owned) else { return Ok(None) };
    let group = |g: Group| o.group(&names.own(g.kind())).and_then(|s| s.group_id()).unwrap_or_default().to_owned();
    let subnets: Vec<&Subnet> = o.own_subnets(ctx).collect();
    Ok(Some(Vpc {
        id,
        subnets: subnets
            .iter()
            .filter_map(|s| Some((s.availability_zone()?.to_owned(), s.subnet_id()?.to_owned())))
            .collect(),
        sg_alb: group(Group::Alb),
        sg_compute: group(Group::Compute),
        sg_db: group(Group::Db),
        sg_endpoints: group(Group::Endpoints),
        by_cidr: subnets.iter().filter_map(|s| Some((s.cidr_block()?.to_owned(), s.subnet_id()?.to_owned()))).collect(),
    }))
}

impl Vpc {
    pub fn subnet_ids(&self) -> Vec<String> {
        self.subnets.iter().map(|(_, id)| id.clone()).collect()
    }
}

const STEP: &str = "network";
/// Prod subnets span at least this many availability zones.
const MIN_AZS: usize = 3;
/// The database port when there is no dev cluster to read it from (the
/// database security group still admits compute on it).
const POSTGRES_PORT: i32 = 5432;
const HTTPS_PORT: i32 = 443;

/// The resource kinds this step records in the journal (what undo matches on).
pub mod kind {
    pub const VPC: &str = "vpc";
    pub const SUBNET: &str = "subnet";
    pub const ROUTE_TABLE: &str = "route_table";
    pub const VPC_ENDPOINT: &str = "vpc_endpoint";
    pub const SECURITY_GROUP: &str = "security_group";
}

static ABOUT: About = About {
    id: STEP,
    deps: &[],
    undo_apart: &[],
    early: &[],
    kinds: &[kind::VPC, kind::SUBNET, kind::ROUTE_TABLE, kind::VPC_ENDPOINT, kind::SECURITY_GROUP],
    actions: &[
        "ec2:DescribeVpcs",
        "ec2:DescribeVpcAttribute",
        "ec2:DescribeNetworkInterfaces",
        "ec2:DescribeSubnets",
        "ec2:DescribeRouteTables",
        "ec2:DescribeAvailabilityZones",
        "ec2:DescribeVpcEndpoints",
        "ec2:DescribeSecurityGroups",
        "ec2:DescribePrefixLists",
        "ec2:DescribeNatGateways",
        "ec2:DescribeInternetGateways",
        "ec2:CreateVpc",
        "ec2:AssociateVpcCidrBlock",
        "ec2:DisassociateVpcCidrBlock",
        "ec2:ModifyVpcAttribute",
        "ec2:CreateSubnet",
        "ec2:CreateRouteTable",
        "ec2:AssociateRouteTable",
        "ec2:DisassociateRouteTable",
        "ec2:CreateVpcEndpoint",
        "ec2:ModifyVpcEndpoint",
        "ec2:DeleteVpcEndpoints",
        "ec2:CreateSecurityGroup",
        "ec2:AuthorizeSecurityGroupIngress",
        "ec2:AuthorizeSecurityGroupEgress",
        "ec2:RevokeSecurityGroupIngress",
        "ec2:RevokeSecurityGroupEgress",
        "ec2:DeleteSecurityGroup",
        "ec2:DeleteRouteTable",
        "ec2:DeleteSubnet",
        "ec2:DeleteVpc",
        "ec2:CreateTags",
        "ec2:DeleteTags",
    ],
    source_actions: &[
        "ec2:DescribeVpcs",
        "ec2:DescribeVpcAttribute",
        "ec2:DescribeSubnets",
        "ec2:DescribeRouteTables",
        // The database group admits dev's cluster port, which the restore keeps.
        "rds:DescribeDBClusters",
    ],
    scopes: &[("ec2", arns::ec2)],
    sweeps: "the VPC, subnets, route tables, gateway endpoints and security groups tagged for the migration",
    waits: &[],
    undo_waits: &[],
};

impl Declared for Network {
    fn about(&self) -> &'static About {
        &ABOUT
    }
}

impl Step for Network {
    async fn preflight(&self, ctx: &Ctx) -> Vec<StepError> {
        match self.dev(ctx).await {
            Ok(_) => vec![],
            Err(e) => vec![e],
        }
    }

    async fn run(&self, ctx: &Ctx) -> Result<Outcome, StepError> {
        let dev = self.dev(ctx).await?;
        converge(ctx, dev).await
    }

    crate::step_functions!(undo => undo, sweep => sweep);

    async fn validate(&self, ctx: &Ctx) -> Result<crate::report::Findings, StepError> {
        let dev = self.dev(ctx).await?;
        validate(ctx, dev).await
    }
}

// ---------------------------------------------------------------------------
// Dev

fn tag_spec(ctx: &Ctx, rt: ResourceType, name: &str) -> TagSpecification {
    let mut tags = vec![Tag::builder().key("Name").value(name).build()];
    tags.extend(super::common::prod_tags_as(ctx, |k, v| Tag::builder().key(k).value(v).build()));
    TagSpecification::builder().resource_type(rt).set_tags(Some(tags)).build()
}

fn ours(ctx: &Ctx) -> [Filter; 2] {
    [
        filter(&format!("tag:{TAG_MIGRATION}"), &ctx.cfg.migration.name),
        filter(&format!("tag:{TAG_SUFFIX}"), ctx.suffix()),
    ]
}

fn missing_tags(ctx: &Ctx, tags: &[Tag], name: &str) -> BTreeMap<String, String> {
    let have: BTreeMap<&str, &str> = tags.iter().filter_map(|t| Some((t.key()?, t.value()?))).collect();
    let mut want = ctx.cfg.prod_tags();
    want.insert("Name".into(), name.into());
    want.into_iter().filter(|(k, v)| have.get(k.as_str()) != Some(&v.as_str())).collect()
}

/// Re-tags an adopted EC2 resource whose tags drifted.
async fn converge_tags(ctx: &Ctx, res: &Res, id: &str, tags: &[Tag]) -> Result<(), StepError> {
    let missing = missing_tags(ctx, tags, &res.name);
    if missing.is_empty() {
        return Ok(());
    }
    let prev: BTreeMap<&str, &str> = tags.iter().filter_map(|t| Some((t.key()?, t.value()?))).collect();
    let setting = format!("tags {}", missing.keys().cloned().collect::<Vec<_>>().join(", "));
    let from = missing
        .keys()
        .map(|k| format!("{k} {}", prev.get(k.as_str()).copied().unwrap_or("unset")))
        .collect::<Vec<_>>()
        .join(", ");
    let to = missing.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ");
    let detail = crate::engine::Detail::change(setting, from, to);
    let before = super::common::TagsBefore::new(prev, missing.keys().cloned());
    ctx.update(res, id, detail, Prev::Tags(before), || async {
        let t: Vec<Tag> = missing.iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect();
        ctx.aws.target.ec2.create_tags().resources(id).set_tags(Some(t)).send().await.on(&res.name, "CreateTags")?;
        Ok(())
    })
    .await
}

async fn converge(ctx: &Ctx, dev: &DevVpc) -> Result<Outcome, StepError> {
    for r in &dev.skipped_routes {
        ctx.notice(
            STEP,
            format!("dev route {r} is not copied: prod subnets are private and reach AWS through VPC endpoints only"),
        );
    }
    let names = &ctx.cfg.names;
    let vpc_name = dev.name.as_deref().map_or_else(|| names.own("vpc"), |n| names.prod(n));
    // One read of what prod has; a VPC created now has nothing in it yet.
    let observed = Observed::of_vpc(ctx, &vpc_name).await?;
    let vpc_id = converge_vpc(ctx, dev, &vpc_name, observed.vpcs.first()).await?;
    let own_tables: Vec<RouteTable> = observed.own_route_tables(ctx).cloned().collect();

    // Subnets: mirrored, plus derived ones when dev spans fewer than 3 AZs.
    let distinct_azs: BTreeSet<&str> = dev.subnets.iter().map(|s| s.az.as_str()).collect();
    let zones = if distinct_azs.len() < MIN_AZS { target_zones(ctx).await? } else { vec![] };
    let specs = plan_subnets(
        &dev.subnets,
        &dev.cidrs,
        &zones,
        |s, i| match &s.name {
            Some(n) => names.prod(n),
            None => names.own(&format!("subnet-{}-{}", s.az, i + 1)),
        },
        |az| names.own(&format!("subnet-{az}")),
    )
    .map_err(|e| StepError::Invalid(format!("network: {e}")))?;
    for s in specs.iter().filter(|s| s.derived) {
        ctx.notice(
            STEP,
            format!("dev has subnets in {} AZ(s) only: deriving {} in {} for prod", distinct_azs.len(), s.cidr, s.az),
        );
    }
    // Subnets -> route tables -> endpoints is one chain; the security
    // groups need only the VPC, so they converge beside it. The subnets and
    // the groups are published the moment both exist: the database step
    // (which starts beside this one) needs nothing else to restore, and the
    // restore is the migration's longest wait.
    let (subnets_ready, subnets_known) = futures::channel::oneshot::channel();
    let routing = async {
        let subnets = converge_subnets(ctx, &vpc_id, &specs, &observed.subnets).await?;
        let _ = subnets_ready.send(subnets.clone());
        let route_tables = converge_route_tables(ctx, &vpc_id, &subnets, &own_tables).await?;
        converge_endpoints(ctx, &vpc_id, &observed.endpoints, &route_tables).await?;
        Ok::<_, StepError>(())
    };
    let placement = async {
        let groups = converge_security_groups(ctx, &vpc_id, &dev.cidrs, dev.db_port, &observed.groups).await?;
        // Dropped unsent when the subnets failed: nothing to publish.
        let Ok(subnets) = subnets_known.await else { return Ok(()) };
        ctx.outputs.publish(Vpc {
            id: vpc_id.clone(),
            subnets: subnets.iter().map(|(s, id)| (s.az.clone(), id.clone())).collect(),
            by_cidr: subnets.iter().map(|(s, id)| (s.cidr.clone(), id.clone())).collect(),
            sg_alb: groups[0].clone(),
            sg_compute: groups[1].clone(),
            sg_db: groups[2].clone(),
            sg_endpoints: groups.get(3).cloned().unwrap_or_default(),
        });
        Ok::<_, StepError>(())
    };
    // join, not try_join: a failure on one side never drops a create in
    // flight on the other.
    let (routing, placement) = futures::join!(routing, placement);
    routing?;
    placement?;
    Ok(Outcome::Done)
}

async fn target_zones(ctx: &Ctx) -> Result<Vec<String>, StepError> {
    let out = ctx
        .aws
        .target
        .ec2
        .describe_availability_zones()
        .filters(filter("state", "available"))
        .send()
        .await
        .on(format!("region {}", ctx.cfg.migration.region), "DescribeAvailabilityZones")?;
    let mut zones: Vec<String> = out
        .availability_zones()
        .iter()
        .filter(|z| z.zone_type().is_none_or(|t| t == "availability-zone"))
        .filter_map(|z| z.zone_name().map(str::to_owned))
        .collect();
    zones.sort();
    Ok(zones)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_previous_value_reads_back_from_the_journal_shape_it_was_written_in() {
        let rule = Rule { protocol: "tcp".into(), from: 443, to: 443, peer: "sg:sg-1".into() };
        let cases = [
            (
                json!({"attribute": "enableDnsHostnames", "value": false}),
                Prev::Dns { attribute: "enableDnsHostnames".into(), value: false },
            ),
            (json!({"subnet": "subnet-1"}), Prev::Association { subnet: "subnet-1".into() }),
            (
                json!({"direction": "egress", "rules": [rule.clone()]}),
                Prev::Rules { direction: "egress".into(), rules: BTreeSet::from([rule.clone()]) },
            ),
            (json!({"route_tables": ["rtb-1"]}), Prev::RouteTables { route_tables: BTreeSet::from(["rtb-1".into()]) }),
            (json!({"subnets": ["subnet-1"]}), Prev::Subnets { subnets: BTreeSet::from(["subnet-1".into()]) }),
            (json!({"security_groups": ["sg-1"]}), Prev::Groups { security_groups: BTreeSet::from(["sg-1".into()]) }),
            (json!({"private_dns": false}), Prev::PrivateDns { private_dns: false }),
            (json!({"policy": null}), Prev::Policy { policy: Value::Null }),
            (
                json!({"tags": {"Name": "x"}, "set": ["Environment"]}),
                Prev::Tags(crate::steps::common::TagsBefore::new([("Name", "x")], ["Environment".to_owned()])),
            ),
            (Value::Null, Prev::Nothing),
        ];
        for (json, prev) in cases {
            assert_eq!(serde_json::from_value::<Prev>(json.clone()).unwrap(), prev, "{json}");
            assert_eq!(serde_json::to_value(&prev).unwrap(), json);
        }
    }

    fn dev(az: &str, cidr: &str) -> DevSubnet {
        DevSubnet { az: az.into(), cidr: cidr.into(), name: None }
    }

    fn zones() -> Vec<String> {
        ["us-east-1a", "us-east-1b", "us-east-1c", "us-east-1d"].map(String::from).to_vec()
    }

    fn plan(d: &[DevSubnet], cidrs: &[&str]) -> Result<Vec<SubnetSpec>, String> {
        let cidrs: Vec<String> = cidrs.iter().map(|s| s.to_string()).collect();
        plan_subnets(d, &cidrs, &zones(), |s, _| format!("n-{}", s.cidr), |az| format!("d-{az}"))
    }

    #[test]
    fn three_dev_azs_are_mirrored_exactly() {
        let d = [dev("us-east-1a", "10.0.1.0/24"), dev("us-east-1b", "10.0.2.0/24"), dev("us-east-1c", "10.0.3.0/24")];
        let p = plan(&d, &["10.0.0.0/16"]).unwrap();
        assert_eq!(p.len(), 3);
        assert!(p.iter().all(|s| !s.derived));
        assert_eq!(
            p.iter().map(|s| s.cidr.as_str()).collect::<Vec<_>>(),
            ["10.0.1.0/24", "10.0.2.0/24", "10.0.3.0/24"]
        );
    }

    #[test]
    fn missing_azs_get_derived_non_overlapping_cidrs() {
        let d = [dev("us-east-1a", "10.0.0.0/24"), dev("us-east-1b", "10.0.1.0/24")];
        let p = plan(&d, &["10.0.0.0/16"]).unwrap();
        assert_eq!(p.len(), 3);
        let derived: Vec<_> = p.iter().filter(|s| s.derived).collect();
        assert_eq!(derived.len(), 1);
        assert_eq!(derived[0].az, "us-east-1c");
        assert_eq!(derived[0].cidr, "10.0.2.0/24");
        assert_eq!(derived[0].name, "d-us-east-1c");
    }

    #[test]
    fn a_full_vpc_cannot_derive() {
        let d = [dev("us-east-1a", "10.0.0.0/25"), dev("us-east-1b", "10.0.0.128/25")];
        assert!(plan(&d, &["10.0.0.0/24"]).unwrap_err().contains("no free /25"));
    }

    #[test]
    fn no_dev_subnets_derives_three() {
        let p = plan(&[], &["10.9.0.0/16"]).unwrap();
        assert_eq!(
            p.iter().map(|s| s.cidr.as_str()).collect::<Vec<_>>(),
            ["10.9.0.0/24", "10.9.1.0/24", "10.9.2.0/24"]
        );
    }

    #[test]
    fn rules_round_trip_and_database_only_admits_compute() {
        let [alb, compute, db]: [_; 3] =
            desired_rules(443, false, 5432, &["10.0.0.0/16".into()], "sg-a", "sg-c", "sg-d", None, &["pl-1".into()])
                .try_into()
                .unwrap();
        assert_eq!(alb.0.iter().map(|r| r.peer.as_str()).collect::<Vec<_>>(), ["cidr:10.0.0.0/16"]);
        assert!(alb.1.is_empty() && db.1.is_empty() && compute.0.is_empty());
        assert_eq!(db.0.iter().cloned().collect::<Vec<_>>(), [Rule::tcp(5432, "sg:sg-c".into())]);
        let perms: Vec<IpPermission> = compute.1.iter().map(Rule::to_permission).collect();
        assert_eq!(rules_of(&perms), compute.1);
    }

    #[test]
    fn interface_endpoints_admit_443_from_compute_only() {
        let rules = desired_rules(80, false, 5432, &["10.0.0.0/16".into()], "sg-a", "sg-c", "sg-d", Some("sg-e"), &[]);
        assert_eq!(rules.len(), 4);
        assert!(rules[1].1.contains(&Rule::tcp(443, "sg:sg-e".into())), "compute reaches the endpoints");
        assert_eq!(rules[3].0.iter().cloned().collect::<Vec<_>>(), [Rule::tcp(443, "sg:sg-c".into())]);
        assert!(rules[3].1.is_empty(), "the endpoints group sends nothing");
        assert!(!rules[2].0.iter().any(|r| r.peer == "sg:sg-e"), "the database admits compute only");
    }

    #[test]
    fn ip_targets_are_reached_from_the_alb_on_the_target_port_only() {
        let [alb, compute, db]: [_; 3] =
            desired_rules(8080, true, 6543, &["10.0.0.0/16".into()], "sg-a", "sg-c", "sg-d", None, &[])
                .try_into()
                .unwrap();
        assert_eq!(alb.1.iter().cloned().collect::<Vec<_>>(), [Rule::tcp(8080, "sg:sg-c".into())]);
        assert_eq!(compute.0.iter().cloned().collect::<Vec<_>>(), [Rule::tcp(8080, "sg:sg-a".into())]);
        // The database is reached on its own port (dev's, which the restore keeps).
        assert_eq!(db.0.iter().cloned().collect::<Vec<_>>(), [Rule::tcp(6543, "sg:sg-c".into())]);
        assert!(compute.1.contains(&Rule::tcp(6543, "sg:sg-d".into())), "{:?}", compute.1);
    }
}
