//! The desired prod layout, pure: subnets per zone from dev's, the rules of
//! each security group, and what an update replaced (`Prev`).

use super::*;

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
    pub(super) fn tcp(port: i32, peer: String) -> Self {
        Rule { protocol: "tcp".into(), from: port, to: port, peer }
    }

    pub(super) fn to_permission(&self) -> IpPermission {
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
pub(super) fn rules_text(rules: &BTreeSet<Rule>) -> String {
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
pub(super) enum Group {
    Alb,
    Compute,
    Db,
    Endpoints,
}

impl Group {
    pub(super) const ALL: [Group; 4] = [Group::Alb, Group::Compute, Group::Db, Group::Endpoints];

    /// The groups this configuration needs, in [`Group::ALL`]'s order: the
    /// endpoints group only with interface endpoints.
    pub(super) fn wanted(ctx: &Ctx) -> Vec<Group> {
        let endpoints = !interface::services(ctx).is_empty();
        Self::ALL.into_iter().filter(|g| *g != Group::Endpoints || endpoints).collect()
    }

    pub(super) fn kind(self) -> &'static str {
        match self {
            Group::Alb => "alb-sg",
            Group::Compute => "compute-sg",
            Group::Db => "db-sg",
            Group::Endpoints => "endpoints-sg",
        }
    }

    pub(super) fn description(self) -> &'static str {
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
    Tags(crate::steps::common::TagsBefore),
    /// A secondary CIDR block associated (the block is in the intent's key).
    Nothing,
}

// Converge
