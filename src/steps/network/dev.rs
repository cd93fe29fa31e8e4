//! The dev VPC as paymig reads it: its CIDRs, subnets per zone, DNS attributes
//! and the database's port. Read only.

use super::*;

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

pub(super) fn name_tag(tags: &[Tag]) -> Option<String> {
    tags.iter().find(|t| t.key() == Some("Name")).and_then(|t| t.value()).map(str::to_owned)
}

pub(super) fn filter(name: &str, value: impl Into<String>) -> Filter {
    Filter::builder().name(name).values(value).build()
}

pub(super) async fn dev_attr(ctx: &Ctx, vpc: &str, attr: VpcAttributeName) -> Result<bool, StepError> {
    vpc_attr(&ctx.aws.source.ec2, vpc, attr, format!("dev vpc {vpc}")).await
}

/// A VPC's DNS attribute (support or hostnames), on either side.
pub(super) async fn vpc_attr(
    ec2: &aws_sdk_ec2::Client,
    vpc: &str,
    attr: VpcAttributeName,
    resource: impl Into<String>,
) -> Result<bool, StepError> {
    let out = ec2
        .describe_vpc_attribute()
        .vpc_id(vpc)
        .attribute(attr.clone())
        .send()
        .await
        .on(resource, "DescribeVpcAttribute")?;
    let v = match attr {
        VpcAttributeName::EnableDnsHostnames => out.enable_dns_hostnames,
        _ => out.enable_dns_support,
    };
    Ok(v.and_then(|b| b.value).unwrap_or(false))
}

/// The port of dev's cluster (the restore keeps it); 5432 without one. A
/// cluster that does not exist is the database step's preflight error.
pub(super) async fn dev_db_port(ctx: &Ctx) -> Result<i32, StepError> {
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

// Desired prod layout (pure)
