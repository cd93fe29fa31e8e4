//! The prod network as AWS reports it: one describe per resource kind, every
//! page, shared by converge, validate, undo and destroy's sweep (as
//! `dynamodb.rs` shares `describe_prod`). A step never re-reads a kind it
//! already holds; the one place that knows the five EC2 describe calls is
//! [`Observed::read`].

use crate::aws::Call;
use aws_sdk_ec2::types::{Filter, RouteTable, SecurityGroup, Subnet, Tag, Vpc, VpcEndpoint};

use crate::engine::{Ctx, StepError};

use super::{filter, ours};

/// The EC2 resource kinds the network steps create, by their journal names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Vpc,
    Subnet,
    RouteTable,
    Endpoint,
    Group,
}

impl Kind {
    /// Destroy's order: dependents first (endpoints and groups hold
    /// interfaces in subnets, route tables are associated with subnets, the
    /// VPC goes last).
    pub const TEARDOWN: [Kind; 5] = [Kind::Endpoint, Kind::Group, Kind::RouteTable, Kind::Subnet, Kind::Vpc];

    /// The kind a journal record names (`vpc`, `subnet`, `route_table`,
    /// `vpc_endpoint`, `security_group`).
    pub fn of(kind: &str) -> Option<Kind> {
        Kind::TEARDOWN.into_iter().find(|k| k.as_str() == kind)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Vpc => "vpc",
            Kind::Subnet => "subnet",
            Kind::RouteTable => "route_table",
            Kind::Endpoint => "vpc_endpoint",
            Kind::Group => "security_group",
        }
    }
}

/// Which resources of a kind to describe.
#[derive(Clone, Debug)]
pub enum Select {
    /// Every resource matching these EC2 filters.
    Filters(Vec<Filter>),
    /// One resource by id; one that is gone reads as none.
    Id(String),
}

/// What a describe found; endpoints already `deleted` are left out (one
/// `failed` or `rejected` is still there to delete).
#[derive(Clone, Debug, Default)]
pub struct Observed {
    pub vpcs: Vec<Vpc>,
    pub subnets: Vec<Subnet>,
    pub route_tables: Vec<RouteTable>,
    pub endpoints: Vec<VpcEndpoint>,
    pub groups: Vec<SecurityGroup>,
}

impl Observed {
    /// Describes the prod resources of one kind that `select` picks, every
    /// page.
    pub async fn read(ctx: &Ctx, kind: Kind, select: Select) -> Result<Observed, StepError> {
        Observed::read_with(&ctx.aws.target.ec2, "prod", kind, select).await
    }

    /// The same through `ec2`, one side's client; `side` names what was
    /// read in an error.
    async fn read_with(
        ec2: &aws_sdk_ec2::Client,
        side: &str,
        kind: Kind,
        select: Select,
    ) -> Result<Observed, StepError> {
        let (filters, ids, what) = match select {
            Select::Filters(f) => (Some(f), None, format!("{side} {}s", kind.as_str().replace('_', " "))),
            Select::Id(id) => (None, Some(vec![id.clone()]), id),
        };
        let mut o = Observed::default();
        match kind {
            Kind::Vpc => {
                let r = ec2.describe_vpcs().set_filters(filters).set_vpc_ids(ids).into_paginator().items().send();
                o.vpcs = r.try_collect().await.found(what, "DescribeVpcs")?.unwrap_or_default();
            }
            Kind::Subnet => {
                let r = ec2.describe_subnets().set_filters(filters).set_subnet_ids(ids).into_paginator().items().send();
                o.subnets = r.try_collect().await.found(what, "DescribeSubnets")?.unwrap_or_default();
            }
            Kind::RouteTable => {
                let r = ec2
                    .describe_route_tables()
                    .set_filters(filters)
                    .set_route_table_ids(ids)
                    .into_paginator()
                    .items()
                    .send();
                o.route_tables = r.try_collect().await.found(what, "DescribeRouteTables")?.unwrap_or_default();
            }
            Kind::Endpoint => {
                let r = ec2
                    .describe_vpc_endpoints()
                    .set_filters(filters)
                    .set_vpc_endpoint_ids(ids)
                    .into_paginator()
                    .items()
                    .send();
                let all: Vec<VpcEndpoint> =
                    r.try_collect().await.found(what, "DescribeVpcEndpoints")?.unwrap_or_default();
                o.endpoints = all.into_iter().filter(|e| !is_deleted(e)).collect();
            }
            Kind::Group => {
                let r = ec2
                    .describe_security_groups()
                    .set_filters(filters)
                    .set_group_ids(ids)
                    .into_paginator()
                    .items()
                    .send();
                o.groups = r.try_collect().await.found(what, "DescribeSecurityGroups")?.unwrap_or_default();
            }
        }
        Ok(o)
    }

    /// The resources of several kinds matching the same filters, read
    /// concurrently.
    async fn read_all(ctx: &Ctx, kinds: &[Kind], filters: &[Filter]) -> Result<Observed, StepError> {
        let reads = kinds.iter().map(|&k| Observed::read(ctx, k, Select::Filters(filters.to_vec())));
        let mut o = Observed::default();
        for part in futures::future::try_join_all(reads).await? {
            o.absorb(part);
        }
        Ok(o)
    }

    /// The prod VPC tagged as ours and called `name`, and every subnet,
    /// route table, live endpoint and security group in it (including the
    /// ones AWS made: the main route table, the default group). Empty when
    /// there is no such VPC.
    pub async fn of_vpc(ctx: &Ctx, name: &str) -> Result<Observed, StepError> {
        let mut named: Vec<Filter> = ours(ctx).into();
        named.push(filter("tag:Name", name));
        let mut o = Observed::read(ctx, Kind::Vpc, Select::Filters(named)).await?;
        if let Some(id) = o.vpc_id().map(String::from) {
            let kinds = [Kind::Subnet, Kind::RouteTable, Kind::Endpoint, Kind::Group];
            o.absorb(Observed::inside(ctx, &id, &kinds).await?);
        }
        Ok(o)
    }

    /// The subnets and route tables of dev's VPC `vpc_id`, read through the
    /// read-only source client.
    pub async fn of_dev_vpc(ctx: &Ctx, vpc_id: &str) -> Result<Observed, StepError> {
        let (ec2, side) = (&ctx.aws.source.ec2, format!("dev vpc {vpc_id}"));
        let select = || Select::Filters(vec![filter("vpc-id", vpc_id)]);
        let (subnets, tables) = futures::try_join!(
            Observed::read_with(ec2, &side, Kind::Subnet, select()),
            Observed::read_with(ec2, &side, Kind::RouteTable, select()),
        )?;
        Ok(Observed { subnets: subnets.subnets, route_tables: tables.route_tables, ..Observed::default() })
    }

    /// Every resource of `kinds` in the VPC `vpc_id`, ours or not.
    pub async fn inside(ctx: &Ctx, vpc_id: &str, kinds: &[Kind]) -> Result<Observed, StepError> {
        Observed::read_all(ctx, kinds, &[filter("vpc-id", vpc_id)]).await
    }

    /// Every resource of `kinds` tagged as this migration's, in any VPC.
    pub async fn tagged(ctx: &Ctx, kinds: &[Kind]) -> Result<Observed, StepError> {
        Observed::read_all(ctx, kinds, &ours(ctx)).await
    }

    /// One resource of `kind` by id (`None`: gone).
    pub async fn by_id(ctx: &Ctx, kind: Kind, id: &str) -> Result<Observed, StepError> {
        Observed::read(ctx, kind, Select::Id(id.to_owned())).await
    }

    /// Whether EC2 lists the endpoint `id` as `deleted` already. An id it
    /// does not find is not "deleted": right after CreateVpcEndpoint a
    /// describe by id can miss it (eventual consistency), and the delete
    /// must still be sent.
    pub async fn endpoint_deleted(ctx: &Ctx, id: &str) -> Result<bool, StepError> {
        let out = ctx.aws.target.ec2.describe_vpc_endpoints().vpc_endpoint_ids(id).send().await;
        Ok(out
            .found(id, "DescribeVpcEndpoints")?
            .is_some_and(|o| !o.vpc_endpoints().is_empty() && o.vpc_endpoints().iter().all(is_deleted)))
    }

    /// The resource of `kind` tagged as ours and called `name`, if any: how
    /// undo finds a create whose `done` record was never written.
    pub async fn named(ctx: &Ctx, kind: Kind, name: &str) -> Result<Option<String>, StepError> {
        let mut named: Vec<Filter> = ours(ctx).into();
        named.push(filter("tag:Name", name));
        Ok(Observed::read(ctx, kind, Select::Filters(named)).await?.ids(kind).into_iter().next())
    }

    fn absorb(&mut self, other: Observed) {
        self.vpcs.extend(other.vpcs);
        self.subnets.extend(other.subnets);
        self.route_tables.extend(other.route_tables);
        self.endpoints.extend(other.endpoints);
        self.groups.extend(other.groups);
    }

    /// The first VPC's id.
    pub fn vpc_id(&self) -> Option<&str> {
        self.vpcs.first().and_then(|v| v.vpc_id())
    }

    /// The ids of every resource of `kind` held.
    pub fn ids(&self, kind: Kind) -> Vec<String> {
        let ids: Vec<Option<&str>> = match kind {
            Kind::Vpc => self.vpcs.iter().map(|v| v.vpc_id()).collect(),
            Kind::Subnet => self.subnets.iter().map(|s| s.subnet_id()).collect(),
            Kind::RouteTable => self.route_tables.iter().map(|r| r.route_table_id()).collect(),
            Kind::Endpoint => self.endpoints.iter().map(|e| e.vpc_endpoint_id()).collect(),
            Kind::Group => self.groups.iter().map(|g| g.group_id()).collect(),
        };
        ids.into_iter().flatten().map(String::from).collect()
    }

    /// The route tables tagged as ours (not the VPC's main table).
    pub fn own_route_tables<'a>(&'a self, ctx: &'a Ctx) -> impl Iterator<Item = &'a RouteTable> + 'a {
        self.route_tables.iter().filter(move |r| is_ours(ctx, r.tags()))
    }

    /// The subnets tagged as ours.
    pub fn own_subnets<'a>(&'a self, ctx: &'a Ctx) -> impl Iterator<Item = &'a Subnet> + 'a {
        self.subnets.iter().filter(move |s| is_ours(ctx, s.tags()))
    }

    /// The security group called `name`.
    pub fn group(&self, name: &str) -> Option<&SecurityGroup> {
        self.groups.iter().find(|g| g.group_name() == Some(name))
    }
}

fn is_ours(ctx: &Ctx, tags: &[Tag]) -> bool {
    crate::steps::common::is_ours(ctx, tags.iter().filter_map(|t| Some((t.key()?, t.value()?))))
}

/// An endpoint EC2 still lists for a while after deleting it.
pub fn is_deleted(e: &VpcEndpoint) -> bool {
    e.state().is_some_and(|s| s.as_str().eq_ignore_ascii_case("deleted"))
}

/// A VPC's CIDR blocks whose association is in one of `states`
/// (`associated`, `associating`); a block without a state counts.
pub fn cidrs(vpc: &Vpc, states: &[&str]) -> Vec<String> {
    vpc.cidr_block_association_set()
        .iter()
        .filter(|a| a.cidr_block_state().and_then(|s| s.state()).is_none_or(|s| states.contains(&s.as_str())))
        .filter_map(|a| a.cidr_block().map(str::to_owned))
        .collect()
}

/// Whether a CIDR block of the VPC is still `associating` (a subnet in it
/// is refused until it is `associated`).
pub fn is_associating(vpc: &Vpc) -> bool {
    vpc.cidr_block_association_set()
        .iter()
        .any(|a| a.cidr_block_state().and_then(|s| s.state()).is_some_and(|s| s.as_str() == "associating"))
}
