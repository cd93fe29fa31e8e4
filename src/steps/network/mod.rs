//! network: the prod VPC mirrored from the dev VPC — identical CIDR blocks and
//! DNS attributes, private subnets in (at least) three AZs mirroring dev's
//! CIDRs, a route table per subnet, S3 and DynamoDB gateway endpoints on
//! every route table (no internet gateway, no NAT), and the ALB, compute and
//! database security groups with least-privilege rules.

use crate::aws::Call;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
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

pub mod interface;
mod observed;

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

static ABOUT: About = About {
    id: STEP,
    deps: &[],
    undo_apart: &[],
    early: &[],
    kinds: &["vpc", "subnet", "route_table", "vpc_endpoint", "security_group"],
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

/// What the migration reads of the dev VPC.
#[derive(Debug, Clone)]
pub struct DevVpc {
    pub id: String,
    pub name: Option<String>,
    /// Primary first, then secondary blocks in association order.
    pub cidrs: Vec<String>,
    pub dns_support: bool,
    pub dns_hostnames: bool,
    pub subnets: Vec<DevSubnet>,
    /// Routes dev has that prod deliberately does not copy (internet or NAT
    /// gateways, peering…), for the plan.
    pub skipped_routes: Vec<String>,
    /// The port of dev's Aurora cluster, which the prod cluster is restored
    /// on (5432 without a database tier): the database group admits it.
    pub db_port: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevSubnet {
    pub az: String,
    pub cidr: String,
    pub name: Option<String>,
}

/// One subnet per Availability Zone, as the ALB and interface endpoints
/// take them: the prod network mirrors every dev subnet, and these use the
/// first of each zone (`subnets` is sorted by zone).
pub fn one_per_zone(subnets: &[(String, String)]) -> Vec<String> {
    let mut seen = BTreeSet::new();
    subnets.iter().filter(|(zone, _)| seen.insert(zone.clone())).map(|(_, id)| id.clone()).collect()
}

fn name_tag(tags: &[Tag]) -> Option<String> {
    tags.iter().find(|t| t.key() == Some("Name")).and_then(|t| t.value()).map(str::to_owned)
}

fn filter(name: &str, value: impl Into<String>) -> Filter {
    Filter::builder().name(name).values(value).build()
}

async fn dev_attr(ctx: &Ctx, vpc: &str, attr: VpcAttributeName) -> Result<bool, StepError> {
    let out = ctx
        .aws
        .source
        .ec2
        .describe_vpc_attribute()
        .vpc_id(vpc)
        .attribute(attr.clone())
        .send()
        .await
        .on(format!("dev vpc {vpc}"), "DescribeVpcAttribute")?;
    let v = match attr {
        VpcAttributeName::EnableDnsHostnames => out.enable_dns_hostnames,
        _ => out.enable_dns_support,
    };
    Ok(v.and_then(|b| b.value).unwrap_or(false))
}

/// The port of dev's cluster (the restore keeps it); 5432 without one. A
/// cluster that does not exist is the database step's preflight error.
async fn dev_db_port(ctx: &Ctx) -> Result<i32, StepError> {
    let cluster = &ctx.cfg.source.db_cluster;
    if cluster.is_empty() {
        return Ok(POSTGRES_PORT);
    }
    let out = ctx.aws.source.rds.describe_db_clusters().db_cluster_identifier(cluster).send().await;
    let found = out.found(format!("dev cluster {cluster}"), "DescribeDBClusters")?;
    Ok(found.and_then(|o| o.db_clusters().first().and_then(|c| c.port())).unwrap_or(POSTGRES_PORT))
}

/// Reads the dev VPC through the read-only source clients.
pub async fn read_dev(ctx: &Ctx) -> Result<DevVpc, StepError> {
    let ec2 = &ctx.aws.source.ec2;
    let id = &ctx.cfg.source.vpc_id;
    let vpc = match ec2.describe_vpcs().vpc_ids(id).send().await {
        Ok(out) => out.vpcs.unwrap_or_default().into_iter().next(),
        Err(e) if crate::aws::call::code(&e) == Some("InvalidVpcID.NotFound") => None,
        Err(e) => return Err(StepError::sdk(format!("dev vpc {id}"), "DescribeVpcs", &e)),
    };
    let vpc = vpc.ok_or_else(|| {
        StepError::Invalid(format!(
            "[source] vpc_id: the dev VPC {id} does not exist in {} (check the id and the source credentials)",
            ctx.cfg.migration.region
        ))
    })?;
    let mut cidrs: Vec<String> = observed::cidrs(&vpc, &["associated"]);
    if let Some(primary) = vpc.cidr_block() {
        cidrs.retain(|c| c != primary);
        cidrs.insert(0, primary.to_owned());
    }
    let dns_support = dev_attr(ctx, id, VpcAttributeName::EnableDnsSupport).await?;
    let dns_hostnames = dev_attr(ctx, id, VpcAttributeName::EnableDnsHostnames).await?;
    let Observed { subnets, route_tables: tables, .. } = Observed::of_dev_vpc(ctx, id).await?;
    let mut subnets: Vec<DevSubnet> = subnets
        .iter()
        .filter_map(|s| {
            Some(DevSubnet {
                az: s.availability_zone()?.to_owned(),
                cidr: s.cidr_block()?.to_owned(),
                name: name_tag(s.tags()),
            })
        })
        .collect();
    subnets.sort_by(|a, b| (&a.az, &a.cidr).cmp(&(&b.az, &b.cidr)));
    let mut skipped_routes = Vec::new();
    for rt in &tables {
        for r in rt.routes() {
            let dest = r.destination_cidr_block().or(r.destination_prefix_list_id()).unwrap_or("?");
            let via = r
                .gateway_id()
                .filter(|g| *g != "local")
                .map(String::from)
                .or_else(|| r.nat_gateway_id().map(String::from))
                .or_else(|| r.vpc_peering_connection_id().map(String::from))
                .or_else(|| r.transit_gateway_id().map(String::from));
            if let Some(via) = via.filter(|v| !v.starts_with("vpce-")) {
                skipped_routes.push(format!("{dest} via {via} ({})", rt.route_table_id().unwrap_or("?")));
            }
        }
    }
    Ok(DevVpc {
        id: id.clone(),
        name: name_tag(vpc.tags()),
        cidrs,
        dns_support,
        dns_hostnames,
        subnets,
        skipped_routes,
        db_port: dev_db_port(ctx).await?,
    })
}

// ---------------------------------------------------------------------------
// Desired prod layout (pure)

/// One prod subnet to have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubnetSpec {
    pub az: String,
    pub cidr: String,
    pub name: String,
    /// Derived (dev had fewer than three AZs), not mirrored.
    pub derived: bool,
}

/// A subnet is known by its CIDR (its lane in the call log).
impl std::fmt::Display for SubnetSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.cidr)
    }
}

/// The prod subnets: every dev subnet mirrored (same CIDR, same AZ), plus
/// derived subnets in further AZs until at least [`MIN_AZS`] are covered.
pub fn plan_subnets(
    dev: &[DevSubnet],
    vpc_cidrs: &[String],
    zones: &[String],
    name_of: impl Fn(&DevSubnet, usize) -> String,
    own_name: impl Fn(&str) -> String,
) -> Result<Vec<SubnetSpec>, String> {
    let mut out: Vec<SubnetSpec> = dev
        .iter()
        .enumerate()
        .map(|(i, s)| SubnetSpec { az: s.az.clone(), cidr: s.cidr.clone(), name: name_of(s, i), derived: false })
        .collect();
    let used_azs: BTreeSet<String> = out.iter().map(|s| s.az.clone()).collect();
    let missing: Vec<&String> =
        zones.iter().filter(|z| !used_azs.contains(*z)).take(MIN_AZS.saturating_sub(used_azs.len())).collect();
    if used_azs.len() + missing.len() < MIN_AZS {
        return Err(format!("the region offers only {} availability zones; {MIN_AZS} are needed", zones.len()));
    }
    let blocks: Vec<Ipv4Net> = vpc_cidrs.iter().filter_map(|c| c.parse().ok()).collect();
    let mut taken: Vec<Ipv4Net> = out.iter().filter_map(|s| s.cidr.parse().ok()).collect();
    let prefix = taken
        .iter()
        .map(|n| n.prefix_len())
        .max()
        .unwrap_or_else(|| blocks.first().map_or(24, |b| (b.prefix_len() + 4).clamp(24, 28)));
    for az in missing {
        let free = blocks
            .iter()
            .filter(|b| b.prefix_len() <= prefix)
            .flat_map(|b| b.subnets(prefix).into_iter().flatten())
            .find(|cand| !taken.iter().any(|t| t.contains(&cand.network()) || cand.contains(&t.network())));
        let Some(net) = free else {
            return Err(format!("no free /{prefix} left in the VPC CIDR blocks for a subnet in {az}"));
        };
        taken.push(net);
        out.push(SubnetSpec { az: az.clone(), cidr: net.to_string(), name: own_name(az), derived: true });
    }
    Ok(out)
}

/// A security-group rule in a comparable form.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Rule {
    pub protocol: String,
    pub from: i32,
    pub to: i32,
    /// `cidr:…`, `sg:…` or `pl:…`.
    pub peer: String,
}

impl Rule {
    fn tcp(port: i32, peer: String) -> Self {
        Rule { protocol: "tcp".into(), from: port, to: port, peer }
    }

    fn to_permission(&self) -> IpPermission {
        let mut b = IpPermission::builder().ip_protocol(&self.protocol);
        if self.protocol != "-1" {
            b = b.from_port(self.from).to_port(self.to);
        }
        match self.peer.split_once(':') {
            Some(("cidr", c)) => b.ip_ranges(IpRange::builder().cidr_ip(c).build()),
            Some(("sg", g)) => b.user_id_group_pairs(UserIdGroupPair::builder().group_id(g).build()),
            Some(("pl", p)) => b.prefix_list_ids(PrefixListId::builder().prefix_list_id(p).build()),
            _ => b,
        }
        .build()
    }
}

/// Rules as plan and rollback show them: `tcp 443 sg-…, all 0.0.0.0/0`.
fn rules_text(rules: &BTreeSet<Rule>) -> String {
    if rules.is_empty() {
        return "none".into();
    }
    let one = |r: &Rule| {
        let peer = r.peer.split_once(':').map_or(r.peer.as_str(), |(_, p)| p);
        match (r.protocol.as_str(), r.from == r.to) {
            ("-1", _) => format!("all {peer}"),
            (p, true) => format!("{p} {} {peer}", r.from),
            (p, false) => format!("{p} {}-{} {peer}", r.from, r.to),
        }
    };
    rules.iter().map(one).collect::<Vec<_>>().join(", ")
}

/// Flattens EC2's permissions into one rule per peer.
pub fn rules_of(perms: &[IpPermission]) -> BTreeSet<Rule> {
    let mut out = BTreeSet::new();
    for p in perms {
        let protocol = p.ip_protocol().unwrap_or("-1").to_owned();
        let (from, to) =
            if protocol == "-1" { (-1, -1) } else { (p.from_port().unwrap_or(-1), p.to_port().unwrap_or(-1)) };
        let mk = |peer: String| Rule { protocol: protocol.clone(), from, to, peer };
        out.extend(p.ip_ranges().iter().filter_map(|r| r.cidr_ip()).map(|c| mk(format!("cidr:{c}"))));
        out.extend(p.ipv6_ranges().iter().filter_map(|r| r.cidr_ipv6()).map(|c| mk(format!("cidr:{c}"))));
        out.extend(p.user_id_group_pairs().iter().filter_map(|g| g.group_id()).map(|g| mk(format!("sg:{g}"))));
        out.extend(p.prefix_list_ids().iter().filter_map(|l| l.prefix_list_id()).map(|l| mk(format!("pl:{l}"))));
    }
    out
}

/// The three security groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Group {
    Alb,
    Compute,
    Db,
    Endpoints,
}

impl Group {
    const ALL: [Group; 4] = [Group::Alb, Group::Compute, Group::Db, Group::Endpoints];

    /// The groups this configuration needs, in [`Group::ALL`]'s order: the
    /// endpoints group only with interface endpoints.
    fn wanted(ctx: &Ctx) -> Vec<Group> {
        let endpoints = !interface::services(ctx).is_empty();
        Self::ALL.into_iter().filter(|g| *g != Group::Endpoints || endpoints).collect()
    }

    fn kind(self) -> &'static str {
        match self {
            Group::Alb => "alb-sg",
            Group::Compute => "compute-sg",
            Group::Db => "db-sg",
            Group::Endpoints => "endpoints-sg",
        }
    }

    fn description(self) -> &'static str {
        match self {
            Group::Alb => "paymig: internal ALB, listener port from the VPC only",
            Group::Compute => "paymig: Lambda functions; egress to the database and the VPC endpoints only",
            Group::Db => "paymig: Aurora PostgreSQL; the database port from compute only",
            Group::Endpoints => "paymig: interface VPC endpoints; 443 from compute only",
        }
    }
}

/// What a network update replaced, as its intent records it for rollback.
/// Untagged: each variant's JSON shape is the journal's own, so a journal
/// written by an earlier version reads back the same.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Prev {
    /// A VPC DNS attribute (`enableDnsSupport`, `enableDnsHostnames`) and its value.
    Dns { attribute: String, value: bool },
    /// A route table associated with this subnet: undo disassociates it.
    Association { subnet: String },
    /// A security group's rules in one direction (`ingress`, `egress`).
    Rules { direction: String, rules: BTreeSet<Rule> },
    /// A gateway endpoint's route tables.
    RouteTables { route_tables: BTreeSet<String> },
    /// An interface endpoint's subnets.
    Subnets { subnets: BTreeSet<String> },
    /// An interface endpoint's security groups.
    Groups { security_groups: BTreeSet<String> },
    /// An interface endpoint's private DNS setting.
    PrivateDns { private_dns: bool },
    /// An endpoint policy (`null`: the AWS default).
    Policy { policy: Value },
    /// Re-tagged.
    Tags(super::common::TagsBefore),
    /// A secondary CIDR block associated (the block is in the intent's key).
    Nothing,
}

// ---------------------------------------------------------------------------
// Converge

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

async fn converge_vpc(
    ctx: &Ctx,
    dev: &DevVpc,
    name: &str,
    found: Option<&aws_sdk_ec2::types::Vpc>,
) -> Result<String, StepError> {
    let ec2 = &ctx.aws.target.ec2;
    let res = Res::new(STEP, "vpc", "vpc", name);
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
            let out = ec2
                .describe_vpc_attribute()
                .vpc_id(&vpc_id)
                .attribute(attr.clone())
                .send()
                .await
                .on(name, "DescribeVpcAttribute")?;
            let v = if attr == VpcAttributeName::EnableDnsHostnames {
                out.enable_dns_hostnames
            } else {
                out.enable_dns_support
            };
            v.and_then(|b| b.value).unwrap_or(false)
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
async fn wait_cidrs_associated(ctx: &Ctx, vpc_id: &str, name: &str) -> Result<(), StepError> {
    crate::engine::poll_until(ctx, STEP, name, "associated with its CIDR blocks", || async {
        let found = Observed::by_id(ctx, Kind::Vpc, vpc_id).await?;
        Ok(found.vpcs.first().is_some_and(|v| !observed::is_associating(v)).then_some(()))
    })
    .await
}

async fn set_dns_attr(ctx: &Ctx, vpc_id: &str, attr: &str, value: bool) -> Result<(), StepError> {
    let v = AttributeBooleanValue::builder().value(value).build();
    let b = ctx.aws.target.ec2.modify_vpc_attribute().vpc_id(vpc_id);
    let b = if attr == "enableDnsHostnames" { b.enable_dns_hostnames(v) } else { b.enable_dns_support(v) };
    b.send().await.on(vpc_id, "ModifyVpcAttribute")?;
    Ok(())
}

/// An undo call on a resource that no longer exists has nothing left to do.
fn gone_is_done<T>(result: Result<T, StepError>) -> Result<(), StepError> {
    match result {
        Ok(_) => Ok(()),
        Err(e) if is_not_found_yet(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

fn is_not_found_yet(e: &StepError) -> bool {
    e.is_not_found()
}

async fn converge_subnets(
    ctx: &Ctx,
    vpc_id: &str,
    specs: &[SubnetSpec],
    existing: &[Subnet],
) -> Result<Vec<(SubnetSpec, String)>, StepError> {
    let ec2 = &ctx.aws.target.ec2;
    // One lane per subnet.
    let mut out = ctx
        .map_bounded(specs.iter().cloned(), |spec: SubnetSpec| async move {
        let res = Res::new(STEP, "subnet", format!("subnet/{}", spec.cidr), &spec.name);
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

async fn converge_route_tables(
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
        let res = Res::new(STEP, "route_table", format!("route-table/{}", spec.cidr), &name);
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

/// Endpoint policies: named actions on the migration's own buckets and
/// tables only — never `"Action": "*"` (the AWS default).
pub fn endpoint_policy(ctx: &Ctx, service: &str) -> Value {
    let n = &ctx.cfg.names;
    let (m, s) = (&ctx.cfg.migration.name, ctx.suffix());
    if service == "s3" {
        let mut buckets: Vec<String> = ctx.cfg.source.audit_buckets.iter().map(|b| n.prod(b)).collect();
        if buckets.is_empty() {
            buckets.push(format!("{m}-*-{s}"));
        }
        let resources: Vec<String> =
            buckets.iter().flat_map(|b| [format!("arn:aws:s3:::{b}"), format!("arn:aws:s3:::{b}/*")]).collect();
        json!({"Version": "2012-10-17", "Statement": [{
            "Sid": "MigrationBucketsOnly", "Effect": "Allow", "Principal": "*",
            "Action": ["s3:GetObject", "s3:GetObjectVersion", "s3:PutObject", "s3:ListBucket", "s3:ListBucketVersions",
                       "s3:GetBucketLocation", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
            "Resource": resources}]})
    } else {
        let region = &ctx.cfg.migration.region;
        let account = &ctx.account;
        let mut tables: Vec<String> = ctx.cfg.source.dynamodb_tables.iter().map(|t| n.prod(t)).collect();
        if tables.is_empty() {
            tables.push(format!("{m}-*-{s}"));
        }
        let resources: Vec<String> = tables
            .iter()
            .flat_map(|t| {
                [
                    format!("arn:aws:dynamodb:{region}:{account}:table/{t}"),
                    format!("arn:aws:dynamodb:{region}:{account}:table/{t}/index/*"),
                ]
            })
            .collect();
        json!({"Version": "2012-10-17", "Statement": [{
            "Sid": "MigrationTablesOnly", "Effect": "Allow", "Principal": "*",
            "Action": ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:Query",
                       "dynamodb:Scan", "dynamodb:BatchGetItem", "dynamodb:BatchWriteItem", "dynamodb:ConditionCheckItem",
                       "dynamodb:DescribeTable"],
            "Resource": resources}]})
    }
}

async fn converge_endpoints(
    ctx: &Ctx,
    vpc_id: &str,
    existing: &[VpcEndpoint],
    route_tables: &[String],
) -> Result<(), StepError> {
    let ec2 = &ctx.aws.target.ec2;
    let region = &ctx.cfg.migration.region;
    for service in GATEWAY_SERVICES {
        let service_name = format!("com.amazonaws.{region}.{service}");
        let name = ctx.cfg.names.own(&format!("{service}-endpoint"));
        let res = Res::new(STEP, "vpc_endpoint", format!("endpoint/{service}"), &name);
        let policy = endpoint_policy(ctx, service);
        let found = existing.iter().find(|e| e.service_name() == Some(service_name.as_str()) && interface::live(e));
        match found {
            Some(e) => {
                let id = e.vpc_endpoint_id().unwrap_or_default().to_owned();
                ctx.adopt(&res, &id, None)?;
                converge_tags(ctx, &res, &id, e.tags()).await?;
                let have: BTreeSet<&str> = e.route_table_ids().iter().map(String::as_str).collect();
                let want: BTreeSet<&str> = route_tables.iter().map(String::as_str).filter(|r| !is_planned(r)).collect();
                let add: Vec<String> = want.difference(&have).map(|s| s.to_string()).collect();
                let remove: Vec<String> = have.difference(&want).map(|s| s.to_string()).collect();
                let current_policy: Value =
                    e.policy_document().and_then(|p| serde_json::from_str(p).ok()).unwrap_or(Value::Null);
                if !add.is_empty() || !remove.is_empty() {
                    let prev = Prev::RouteTables { route_tables: have.iter().map(|s| s.to_string()).collect() };
                    ctx.update(&res, &id, "route tables", prev, || async {
                        ec2.modify_vpc_endpoint()
                            .vpc_endpoint_id(&id)
                            .set_add_route_table_ids(Some(add.clone()))
                            .set_remove_route_table_ids(Some(remove.clone()))
                            .send()
                            .await
                            .on(&name, "ModifyVpcEndpoint")?;
                        Ok(())
                    })
                    .await?;
                }
                if current_policy != policy {
                    ctx.update(&res, &id, "endpoint policy", Prev::Policy { policy: current_policy }, || async {
                        ec2.modify_vpc_endpoint()
                            .vpc_endpoint_id(&id)
                            .policy_document(policy.to_string())
                            .send()
                            .await
                            .on(&name, "ModifyVpcEndpoint")?;
                        Ok(())
                    })
                    .await?;
                }
            }
            None => {
                let token = ctx.client_token(&res);
                let spec_tags = tag_spec(ctx, ResourceType::VpcEndpoint, &name);
                let rts: Vec<String> = route_tables.to_vec();
                ctx.create(
                    &res,
                    format!("gateway {service_name} on {} route tables", rts.len()),
                    json!({"vpc": vpc_id, "client_token": token}),
                    || {
                        create_endpoint(
                            &name,
                            ec2.create_vpc_endpoint()
                                .vpc_id(vpc_id)
                                .vpc_endpoint_type(VpcEndpointType::Gateway)
                                .service_name(&service_name)
                                .set_route_table_ids(Some(rts))
                                .policy_document(policy.to_string())
                                .client_token(token)
                                .tag_specifications(spec_tags),
                        )
                    },
                )
                .await?;
            }
        }
    }
    Ok(())
}

/// Sends a CreateVpcEndpoint, retried while the subnets, route tables or
/// group it names are too new for EC2 to find (eventual consistency; its
/// ClientToken makes a retry return the same endpoint); the new id.
async fn create_endpoint(
    name: &str,
    request: aws_sdk_ec2::operation::create_vpc_endpoint::builders::CreateVpcEndpointFluentBuilder,
) -> Result<Created<String>, StepError> {
    let out = retry_eventual("CreateVpcEndpoint", is_not_found_yet, || {
        let request = request.clone();
        async move { request.send().await.on(name, "CreateVpcEndpoint") }
    })
    .await?;
    Created::returned(out.vpc_endpoint.and_then(|e| e.vpc_endpoint_id), "CreateVpcEndpoint")
}

/// The prefix lists of the S3 and DynamoDB gateway endpoints (the compute
/// group's HTTPS egress goes to them and nowhere else).
async fn endpoint_prefix_lists(ctx: &Ctx) -> Result<Vec<String>, StepError> {
    let region = &ctx.cfg.migration.region;
    let names = [format!("com.amazonaws.{region}.s3"), format!("com.amazonaws.{region}.dynamodb")];
    let out = ctx
        .aws
        .target
        .ec2
        .describe_prefix_lists()
        .filters(Filter::builder().name("prefix-list-name").set_values(Some(names.to_vec())).build())
        .send()
        .await
        .on("gateway endpoint prefix lists", "DescribePrefixLists")?;
    let mut ids: Vec<String> = out
        .prefix_lists()
        .iter()
        .filter(|p| p.prefix_list_name().is_some_and(|n| names.iter().any(|x| x == n)))
        .filter_map(|p| p.prefix_list_id().map(str::to_owned))
        .collect();
    ids.sort();
    Ok(ids)
}

/// Whether the ALB's targets are IP addresses in the compute group.
fn ip_targets(ctx: &Ctx) -> bool {
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

async fn converge_security_groups(
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
        let res = Res::new(STEP, "security_group", format!("sg/{}", g.kind()), &name);
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
        let res = Res::new(STEP, "security_group", format!("sg/{}", g.kind()), &name);
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
                || async { set_rules(ctx, &id, egress, have, want).await },
            )
            .await?;
        }
    }
    Ok(ids)
}

/// Whether `e`, from changing `group`'s rules, says a rule's *peer* group
/// no longer exists (not `group` itself).
fn peer_gone(e: &StepError, group: &str) -> bool {
    e.is_code("InvalidGroup.NotFound") && !e.message_contains(group)
}

/// Whether a rule change failed only because it is already made: the rule
/// to add exists, the rule to revoke does not, or the rule's peer group is
/// gone (then it cannot be revoked or restored and no longer matters; the
/// emulator lets a referenced group be deleted, AWS refuses with a
/// DependencyViolation, which is retried).
fn rule_settled(e: &StepError, group: &str) -> bool {
    peer_gone(e, group) || e.is_code("InvalidPermission.Duplicate") || e.is_code("InvalidPermission.NotFound")
}

/// [`set_rules`] for undo, which must finish whatever state it meets: when
/// the batched change fails on a rule that is already settled (see
/// [`rule_settled`]), the rules are changed one at a time and the settled
/// ones are left.
async fn set_rules_for_undo(
    ctx: &Ctx,
    group: &str,
    egress: bool,
    have: &BTreeSet<Rule>,
    want: &BTreeSet<Rule>,
) -> Result<(), StepError> {
    match set_rules(ctx, group, egress, have, want).await {
        Err(e) if rule_settled(&e, group) => {
            let one = |r: &Rule| BTreeSet::from([r.clone()]);
            let changes = want
                .difference(have)
                .map(|r| (BTreeSet::new(), one(r)))
                .chain(have.difference(want).map(|r| (one(r), BTreeSet::new())));
            for (from, to) in changes {
                match set_rules(ctx, group, egress, &from, &to).await {
                    Err(e) if rule_settled(&e, group) => tracing::debug!(group, "rule already settled: {e}"),
                    other => other?,
                }
            }
            Ok(())
        }
        other => other,
    }
}

/// Revokes every rule of a group before it is deleted (sibling groups are
/// deleted side by side and reference each other).
async fn drop_rules(ctx: &Ctx, sg: &SecurityGroup) -> Result<(), StepError> {
    let Some(id) = sg.group_id() else { return Ok(()) };
    for (egress, rules) in [(false, rules_of(sg.ip_permissions())), (true, rules_of(sg.ip_permissions_egress()))] {
        set_rules_for_undo(ctx, id, egress, &rules, &BTreeSet::new()).await?;
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
async fn drop_references(ctx: &Ctx, sg: &SecurityGroup) -> Result<(), StepError> {
    let (Some(id), Some(vpc)) = (sg.group_id(), sg.vpc_id()) else { return Ok(()) };
    let others = Observed::inside(ctx, vpc, &[Kind::Group]).await?.groups;
    for g in others.iter().filter(|g| g.group_id() != Some(id)) {
        let Some(gid) = g.group_id() else { continue };
        let (ingress, egress) = rules_naming(g, id);
        for (is_egress, naming) in [(false, ingress), (true, egress)] {
            if naming.is_empty() {
                continue;
            }
            match set_rules_for_undo(ctx, gid, is_egress, &naming, &BTreeSet::new()).await {
                // That group was deleted meanwhile (siblings go side by
                // side): its rules went with it.
                Err(e) if e.is_code("InvalidGroup.NotFound") => break,
                other => other?,
            }
        }
    }
    Ok(())
}

/// Makes a group's rules in one direction exactly `want`.
async fn set_rules(
    ctx: &Ctx,
    group: &str,
    egress: bool,
    have: &BTreeSet<Rule>,
    want: &BTreeSet<Rule>,
) -> Result<(), StepError> {
    let ec2 = &ctx.aws.target.ec2;
    let add: Vec<IpPermission> = want.difference(have).map(Rule::to_permission).collect();
    let remove: Vec<IpPermission> = have.difference(want).map(Rule::to_permission).collect();
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

// ---------------------------------------------------------------------------
// Undo and sweep

/// Runs a delete, treating "not found" as done and retrying while a
/// dependency is still being released (EC2 deletes are eventually consistent).
async fn delete_ec2<F, Fut, T, E>(what: &str, op: &'static str, bound: Duration, call: F) -> Result<bool, StepError>
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
async fn delete_endpoint(ctx: &Ctx, id: &str) -> Result<bool, StepError> {
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
fn endpoint_busy(e: &StepError) -> bool {
    e.is_dependency_violation()
        || e.is_in_progress()
        || e.failure().is_some_and(|f| f.status == Some(200) && !f.code.as_deref().unwrap_or("").ends_with(".NotFound"))
}

/// Waits until no Lambda network interface is left on a security group or
/// subnet (`filter` is `group-id` or `subnet-id`): after DeleteFunction a VPC
/// function's hyperplane ENIs stay 20–45 minutes, and the group, subnet and
/// VPC cannot be deleted meanwhile. Bounded by `[migration]
/// max_wait_minutes`; a destroy stopped during the wait resumes it.
async fn wait_for_lambda_enis(ctx: &Ctx, filter_name: &str, id: &str) -> Result<(), StepError> {
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

async fn delete_resource(ctx: &Ctx, kind: &str, id: &str) -> Result<bool, StepError> {
    let ec2 = &ctx.aws.target.ec2;
    match kind {
        "vpc_endpoint" => delete_endpoint(ctx, id).await,
        "security_group" => {
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
        "route_table" => {
            disassociate_subnets(ctx, id, |_| true).await?;
            delete_ec2(id, "DeleteRouteTable", ctx.max_wait(), || ec2.delete_route_table().route_table_id(id).send())
                .await
        }
        "subnet" => {
            wait_for_lambda_enis(ctx, "subnet-id", id).await?;
            delete_ec2(id, "DeleteSubnet", ctx.max_wait(), || ec2.delete_subnet().subnet_id(id).send()).await
        }
        "vpc" => delete_ec2(id, "DeleteVpc", ctx.max_wait(), || ec2.delete_vpc().vpc_id(id).send()).await,
        other => Err(StepError::Invalid(format!("network cannot delete {other}"))),
    }
}

/// Removes the route table's subnet associations that `which` selects
/// (never the main one).
async fn disassociate_subnets(
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
async fn restore_tags(ctx: &Ctx, id: &str, before: &crate::steps::common::TagsBefore) -> Result<(), StepError> {
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

async fn undo(ctx: &Ctx, r: &Record) -> Result<(), StepError> {
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
                        set_rules_for_undo(ctx, id, egress, &now, &rules).await?;
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
enum Member {
    RouteTables,
    Subnets,
    Groups,
}

/// Puts an endpoint's route tables, subnets or groups back to `before`.
async fn restore_members(ctx: &Ctx, id: &str, member: Member, before: BTreeSet<String>) -> Result<(), StepError> {
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
async fn delete_each(ctx: &Ctx, kind: &'static str, ids: Vec<String>, look: bool) -> Result<Vec<Swept>, StepError> {
    let mut removed = Vec::new();
    for id in ids {
        if look || delete_resource(ctx, kind, &id).await? {
            removed.push(Swept::new(kind, id));
        }
    }
    Ok(removed)
}

async fn sweep(ctx: &Ctx, look: bool) -> Result<Vec<Swept>, StepError> {
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

async fn validate(ctx: &Ctx, dev: &DevVpc) -> Result<crate::report::Findings, StepError> {
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
        let out = ec2
            .describe_vpc_attribute()
            .vpc_id(&vpc_id)
            .attribute(attr.clone())
            .send()
            .await
            .on(&vpc_name, "DescribeVpcAttribute")?;
        let v = if attr == VpcAttributeName::EnableDnsHostnames {
            out.enable_dns_hostnames
        } else {
            out.enable_dns_support
        };
        let have = v.and_then(|b| b.value).unwrap_or(false);
        // On in prod though off in dev: private DNS of the interface endpoints needs it.
        diff(&mut d, attr.as_str(), want, have, private_dns && have);
    }
    if !dev.skipped_routes.is_empty() {
        diff(&mut d, "routes via gateways", dev.skipped_routes.len(), 0, true);
    }
    f.resources.push(Resource::compared("vpc", &dev.id, &vpc_name, d));
    let tags: BTreeMap<String, String> =
        vpc.tags().iter().filter_map(|t| Some((t.key()?.to_owned(), t.value()?.to_owned()))).collect();
    f.checks.extend(super::common::common_checks(ctx, &vpc_name, &tags));

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
            let wild = super::common::wildcard_actions(&policy);
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

/// Parses an IPv4 CIDR's network address (for tests and diagnostics).
pub fn network_of(cidr: &str) -> Option<Ipv4Addr> {
    cidr.parse::<Ipv4Net>().ok().map(|n| n.network())
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
