//! Dev identifiers inside the values paymig copies (function environments,
//! parameter values, dashboard bodies, alarm dimensions): each one becomes
//! its prod counterpart by structure, or is named — never copied silently.
//!
//! - Aurora endpoints: dev's writer, reader and instance endpoints → the
//!   prod cluster's own, as RDS reports them (the cluster's exist as soon as
//!   the restore is accepted; an instance's only once it is created: until
//!   then it is named, not guessed).
//! - ARNs of the dev account: the account and the resource through the name
//!   map (tables with their indexes and streams, functions and aliases,
//!   buckets, the key and its alias, the functions' roles, parameters, the
//!   alarm topic, the cluster, log groups).
//! - The dev key by id, ARN, alias or alias ARN → the prod key in the same
//!   form.
//! - Dev VPC, subnet and security-group ids → the prod ids (subnets by CIDR;
//!   the functions' groups → compute, the cluster's → the database group).
//! - Dev names the name map knows, and the dev parameter path.
//!
//! Anything else that is dev's (a word with the dev suffix, an identifier of
//! dev's VPC or account without a prod twin) is copied unchanged and named
//! unless `[references] keep` accepts it. [`Counterparts::rewrite`] is pure;
//! [`gather`] reads what it needs (dev reads only for the kinds of
//! identifier the values contain, so a stack without them costs no call).

use crate::aws::Call;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use regex::Regex;
use serde::Serialize;

use crate::engine::{is_planned, Ctx, StepError};
use crate::naming::NameMap;

/// A dev identifier found in a value, and what it became.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Found {
    /// The dev identifier as it appeared.
    pub dev: String,
    /// Its prod counterpart; `None`: copied unchanged (see `why`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prod: Option<String>,
    /// Why it has no prod counterpart.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

impl Found {
    fn mapped(dev: &str, prod: impl Into<String>) -> Found {
        Found { dev: dev.to_owned(), prod: Some(prod.into()), why: None }
    }

    fn named(dev: &str, why: impl Into<String>) -> Found {
        Found { dev: dev.to_owned(), prod: None, why: Some(why.into()) }
    }

    pub fn is_mapped(&self) -> bool {
        self.prod.is_some()
    }
}

/// A reference as reported: where it was found and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reference {
    /// `"<dev function>:<VARIABLE>"`, a dev parameter name, `"dashboard:<dev name>"`.
    #[serde(rename = "where")]
    pub place: String,
    #[serde(flatten)]
    pub found: Found,
    /// Accepted by `[references] keep` (named, silenced).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub kept: bool,
}

/// What a dev identifier becomes, for identifiers known exactly (endpoints,
/// ids, keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Prod(String),
    /// Dev's, with no prod counterpart (yet): why.
    Missing(String),
}

/// Dev's identifiers and their prod counterparts.
#[derive(Debug, Clone)]
pub struct Counterparts {
    pub names: NameMap,
    pub dev_account: String,
    pub prod_account: String,
    pub region: String,
    /// Exact identifiers: endpoints, EC2 ids, key ids and aliases.
    pub exact: BTreeMap<String, Target>,
    /// EC2 ids and endpoints that are prod's own (never dev's, even in one
    /// account).
    pub prod_ids: BTreeSet<String>,
    /// Dev role names → prod role names (the functions' execution roles).
    pub roles: BTreeMap<String, String>,
    /// Dev SNS topic ARNs → the prod alarm topic's.
    pub topics: BTreeMap<String, String>,
    /// Dev tables → the prod table's stream ARN, when it has one.
    pub streams: BTreeMap<String, Target>,
    /// The prod key: (id, ARN, alias).
    pub key: Option<(String, String, String)>,
    /// The ARN of the secret holding the prod cluster's master credentials,
    /// when a function's environment asks for it.
    pub master_secret: Option<String>,
}

impl Counterparts {
    /// An empty map over `names` (only names and the parameter path).
    pub fn new(names: NameMap, dev_account: &str, prod_account: &str, region: &str) -> Counterparts {
        Counterparts {
            names,
            dev_account: dev_account.to_owned(),
            prod_account: prod_account.to_owned(),
            region: region.to_owned(),
            exact: BTreeMap::new(),
            prod_ids: BTreeSet::new(),
            roles: BTreeMap::new(),
            topics: BTreeMap::new(),
            streams: BTreeMap::new(),
            key: None,
            master_secret: None,
        }
    }

    /// `value` with every dev identifier that has a prod counterpart
    /// replaced by it, and every dev identifier found (mapped or not).
    pub fn rewrite(&self, value: &str) -> (String, Vec<Found>) {
        let mut out = String::with_capacity(value.len());
        let mut found = Vec::new();
        // The dev parameter path, where the value begins with it.
        let (source, target) = (self.names.source_path(), self.names.target_path());
        let value = match value.strip_prefix(source).filter(|_| !source.is_empty() && source != target) {
            Some(rest) => {
                out.push_str(target);
                found.push(Found::mapped(source, target));
                rest
            }
            None => value,
        };
        let mut last = 0;
        for m in pattern().find_iter(value) {
            self.rewrite_words(&value[last..m.start()], &mut out, &mut found);
            let token = m.as_str();
            match self.resolve(token) {
                Some(f) => {
                    out.push_str(f.prod.as_deref().unwrap_or(token));
                    found.push(f);
                }
                None => out.push_str(token),
            }
            last = m.end();
        }
        self.rewrite_words(&value[last..], &mut out, &mut found);
        found.dedup();
        (out, found)
    }

    /// Plain text between identifiers: listed dev names become prod names;
    /// any other word with the dev suffix is named.
    fn rewrite_words(&self, text: &str, out: &mut String, found: &mut Vec<Found>) {
        let known = self.names.known();
        out.push_str(&crate::naming::map_words(text, |w| {
            let prod = known.get(w).map(String::as_str);
            match prod {
                Some(p) => found.push(Found::mapped(w, p)),
                None if self.names.looks_dev(w) => found.push(Found::named(
                    w,
                    "a dev name the migration does not cover (not in [source]): no prod counterpart",
                )),
                None => {}
            }
            prod
        }));
    }

    /// What one identifier-shaped token is, if it is dev's.
    fn resolve(&self, token: &str) -> Option<Found> {
        if self.prod_ids.contains(token) {
            return None;
        }
        if let Some(t) = self.exact.get(token) {
            return Some(match t {
                Target::Prod(p) => Found::mapped(token, p),
                Target::Missing(why) => Found::named(token, why),
            });
        }
        if token.starts_with("arn:") {
            return self.resolve_arn(token);
        }
        if ["vpc-", "subnet-", "sg-"].iter().any(|p| token.starts_with(p)) {
            // An id of one account's network is meaningless in another VPC.
            return Some(Found::named(token, "an id of dev's network with no prod twin"));
        }
        if token.ends_with(".rds.amazonaws.com") {
            return self
                .names
                .looks_dev(token)
                .then(|| Found::named(token, "an Aurora endpoint that is not the dev cluster's: no prod counterpart"));
        }
        None
    }

    fn resolve_arn(&self, arn: &str) -> Option<Found> {
        let parts: Vec<&str> = arn.splitn(6, ':').collect();
        let [_, partition, service, region, account, resource] = parts.as_slice() else { return None };
        // Another account's ARN (a shared layer, an AWS-managed resource) is
        // not dev's; S3 ARNs carry no account.
        if !account.is_empty() && *account != self.dev_account {
            return None;
        }
        let region = if region.is_empty() { String::new() } else { self.region.clone() };
        let prod = |resource: String| format!("arn:{partition}:{service}:{region}:{}:{resource}", self.prod_account);
        let names = &self.names;
        let known = |name: &str| names.known().get(name).cloned();
        let not_covered = |what: &str| {
            Found::named(arn, format!("dev {what} that the migration does not cover: no prod counterpart"))
        };
        let dev_named = |name: &str| names.looks_dev(name);
        match *service {
            "dynamodb" => {
                let p: Vec<&str> = resource.split('/').collect();
                let table = p.get(1).copied().unwrap_or_default();
                let Some(prod_table) = known(table) else {
                    return dev_named(table).then(|| not_covered("table"));
                };
                if p.get(2) == Some(&"stream") {
                    return Some(match self.streams.get(table) {
                        Some(Target::Prod(s)) => Found::mapped(arn, s),
                        Some(Target::Missing(why)) => Found::named(arn, why),
                        None => Found::named(arn, "the prod table's stream label is known once the table exists"),
                    });
                }
                let rest: Vec<&str> = p.iter().skip(2).copied().collect();
                let tail = if rest.is_empty() { String::new() } else { format!("/{}", rest.join("/")) };
                Some(Found::mapped(arn, prod(format!("table/{prod_table}{tail}"))))
            }
            "lambda" => {
                let p: Vec<&str> = resource.split(':').collect();
                if p.first() != Some(&"function") {
                    // Layers are shared by ARN: prod uses dev's.
                    return None;
                }
                let function = p.get(1).copied().unwrap_or_default();
                let Some(prod_function) = known(function) else {
                    return dev_named(function).then(|| not_covered("function"));
                };
                let qualifier = p.get(2).map(|q| format!(":{q}")).unwrap_or_default();
                Some(Found::mapped(arn, prod(format!("function:{prod_function}{qualifier}"))))
            }
            "s3" => {
                let (bucket, key) = resource.split_once('/').map_or((*resource, None), |(b, k)| (b, Some(k)));
                match known(bucket) {
                    Some(b) => Some(Found::mapped(
                        arn,
                        format!("arn:{partition}:s3:::{b}{}", key.map(|k| format!("/{k}")).unwrap_or_default()),
                    )),
                    None => dev_named(bucket).then(|| not_covered("bucket")),
                }
            }
            "kms" => {
                let (id, arn_form, alias) = self.key.as_ref()?;
                if resource.starts_with("alias/") {
                    if resource.starts_with("alias/aws/") {
                        return None;
                    }
                    return Some(Found::mapped(
                        arn,
                        format!("{}:{alias}", arn_form.rsplit_once(':').map_or("", |(a, _)| a)),
                    ));
                }
                let dev_key = resource.strip_prefix("key/")?;
                (dev_key != id).then(|| Found::mapped(arn, arn_form.clone()))
            }
            "iam" => {
                let role = resource.strip_prefix("role/")?;
                let role = role.rsplit('/').next().unwrap_or(role);
                match self.roles.get(role) {
                    Some(p) => Some(Found::mapped(arn, format!("arn:{partition}:iam::{}:role/{p}", self.prod_account))),
                    None => dev_named(role).then(|| not_covered("role")),
                }
            }
            "ssm" => {
                let name = resource.strip_prefix("parameter")?;
                match names.parameter(name) {
                    Some(p) => Some(Found::mapped(arn, prod(format!("parameter{p}")))),
                    None => dev_named(name).then(|| not_covered("parameter")),
                }
            }
            "sns" => match self.topics.get(arn) {
                Some(p) => Some(Found::mapped(arn, p)),
                None => dev_named(resource).then(|| not_covered("topic")),
            },
            "rds" => {
                let (kind, id) = resource.split_once(':')?;
                match (kind, known(id)) {
                    ("cluster", Some(p)) => Some(Found::mapped(arn, prod(format!("cluster:{p}")))),
                    _ => dev_named(id).then(|| not_covered("database resource")),
                }
            }
            "logs" => {
                let group = resource.strip_prefix("log-group:/aws/lambda/")?;
                let (function, rest) = group.split_once(':').map_or((group, ""), |(f, r)| (f, r));
                match known(function) {
                    Some(p) => Some(Found::mapped(
                        arn,
                        prod(format!(
                            "log-group:/aws/lambda/{p}{}",
                            if rest.is_empty() { String::new() } else { format!(":{rest}") }
                        )),
                    )),
                    None => dev_named(function).then(|| not_covered("log group")),
                }
            }
            // Anything else of the dev account named like dev's has no prod
            // twin (in one account, prod's own share the account).
            _ => dev_named(resource).then(|| not_covered(&format!("{service} resource"))),
        }
    }
}

/// Identifier-shaped tokens: ARNs, RDS endpoints, EC2 ids, KMS aliases and
/// key ids.
fn pattern() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(concat!(
            r"arn:aws[a-z-]*:[a-z0-9-]+:[a-z0-9-]*:[0-9]*:[A-Za-z0-9_/.:*+=,@$-]*[A-Za-z0-9_/*+=@$-]",
            r"|[a-z0-9][a-z0-9.-]*\.rds\.amazonaws\.com",
            r"|\b(?:vpc|subnet|sg)-[0-9a-f]{8,17}\b",
            r"|\balias/[A-Za-z0-9/_-]+",
            r"|\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b",
        ))
        .expect("the identifier pattern compiles")
    })
}

/// Which kinds of dev identifier `values` may hold, so that [`gather`]
/// reads only what it needs.
#[derive(Debug, Default, Clone, Copy)]
struct Needs {
    /// Any ARN: its account is compared with dev's.
    arns: bool,
    endpoints: bool,
    ec2: bool,
    keys: bool,
    roles: bool,
    topics: bool,
    streams: bool,
}

impl Needs {
    fn of<'a>(values: impl IntoIterator<Item = &'a str>) -> (Needs, BTreeSet<String>) {
        let mut n = Needs::default();
        let mut key_tokens = BTreeSet::new();
        for v in values {
            for m in pattern().find_iter(v) {
                let t = m.as_str();
                n.arns |= t.starts_with("arn:");
                if t.ends_with(".rds.amazonaws.com") {
                    n.endpoints = true;
                } else if t.starts_with("vpc-") || t.starts_with("subnet-") || t.starts_with("sg-") {
                    n.ec2 = true;
                } else if t.starts_with("alias/") || !t.starts_with("arn:") {
                    n.keys = true;
                    key_tokens.insert(t.to_owned());
                } else if t.contains(":kms:") {
                    n.keys = true;
                } else if t.contains(":iam::") {
                    n.roles = true;
                } else if t.contains(":sns:") {
                    n.topics = true;
                } else if t.contains(":dynamodb:") && t.contains("/stream/") {
                    n.streams = true;
                }
            }
        }
        (n, key_tokens)
    }
}

/// What the prod side of the migration has published (or, for a step this
/// run does not schedule, what exists): the values [`gather`] maps to.
#[derive(Debug, Clone, Default)]
pub struct ProdEndpoints {
    pub writer: Option<String>,
    pub reader: Option<String>,
    /// Instance endpoints, in instance order (`<cluster>-1` first).
    pub instances: Vec<String>,
}

/// Reads what the values' dev identifiers need and builds the map. Dev
/// reads only; prod values come from the steps that make them (waited for
/// when this run schedules them, read from prod otherwise).
pub async fn gather<'a>(ctx: &Ctx, values: impl IntoIterator<Item = &'a str>) -> Result<Counterparts, StepError> {
    let (needs, key_tokens) = Needs::of(values);
    let dev_account = if needs.arns || needs.keys {
        ctx.aws.source.account_id().await.map_err(StepError::Invalid)?
    } else {
        ctx.account.clone()
    };
    let mut c = Counterparts::new(ctx.cfg.names.clone(), &dev_account, &ctx.account, &ctx.cfg.migration.region);
    let names = &ctx.cfg.names;
    if needs.roles {
        for f in &ctx.cfg.source.lambda_functions {
            if let Some(role) =
                dev_function(ctx, f).await?.and_then(|c| c.role().map(|r| r.rsplit('/').next().unwrap_or(r).to_owned()))
            {
                c.roles.insert(role, names.lambda_role(f));
            }
        }
    }
    if needs.topics {
        let prod_topic = format!("arn:aws:sns:{}:{}:{}", ctx.cfg.migration.region, ctx.account, names.own("alarms"));
        for t in crate::steps::monitoring::dev_alarm_topics(ctx).await? {
            c.topics.insert(t, prod_topic.clone());
        }
    }
    if needs.keys {
        if let Some(key) = crate::steps::kms::prod_key(ctx).await? {
            c.prod_ids.insert(key.0.clone());
            for token in &key_tokens {
                if token == &key.0 || token == &key.2 || token.starts_with("alias/aws/") {
                    continue;
                }
                let out = ctx.aws.source.kms.describe_key().key_id(token).send().await;
                let Some(md) = out.found(format!("dev key {token}"), "DescribeKey")?.and_then(|o| o.key_metadata)
                else {
                    continue;
                };
                if md.key_id == key.0 {
                    continue;
                }
                let prod = if token.starts_with("alias/") { key.2.clone() } else { key.0.clone() };
                c.exact.insert(token.clone(), Target::Prod(prod));
            }
            c.key = Some(key);
        }
    }
    if needs.ec2 {
        add_network(ctx, &mut c).await?;
    }
    if needs.endpoints {
        add_endpoints(ctx, &mut c).await?;
    }
    if needs.streams {
        for t in &ctx.cfg.source.dynamodb_tables {
            let stream = crate::steps::dynamodb::prod_stream(ctx, t).await?;
            let target = match stream {
                Some(s) if !is_planned(&s) => Target::Prod(s),
                _ => Target::Missing(format!("{} has no stream in prod (yet)", names.prod(t))),
            };
            c.streams.insert(t.clone(), target);
        }
    }
    Ok(c)
}

/// A dev function's configuration (the read-only source client).
async fn dev_function(
    ctx: &Ctx,
    name: &str,
) -> Result<Option<aws_sdk_lambda::types::FunctionConfiguration>, StepError> {
    let out = ctx.aws.source.lambda.get_function().function_name(name).send().await;
    Ok(out.found(format!("dev function {name}"), "GetFunction")?.and_then(|o| o.configuration))
}

/// Dev's VPC, subnets (by CIDR) and the functions' and cluster's groups →
/// the prod ones.
async fn add_network(ctx: &Ctx, c: &mut Counterparts) -> Result<(), StepError> {
    let prod = crate::steps::network::prod_network(ctx).await?;
    let Some(prod) = prod else { return Ok(()) };
    c.prod_ids.extend([prod.id.clone(), prod.sg_alb.clone(), prod.sg_compute.clone(), prod.sg_db.clone()]);
    c.prod_ids.extend(prod.by_cidr.values().cloned());
    let dev_vpc = &ctx.cfg.source.vpc_id;
    c.exact.insert(dev_vpc.clone(), Target::Prod(prod.id.clone()));
    let dev = crate::steps::network::Observed::of_dev_vpc(ctx, dev_vpc).await?;
    for s in &dev.subnets {
        let (Some(id), Some(cidr)) = (s.subnet_id(), s.cidr_block()) else { continue };
        let target = match prod.by_cidr.get(cidr) {
            Some(p) => Target::Prod(p.clone()),
            None => Target::Missing(format!("no prod subnet has its CIDR {cidr}")),
        };
        c.exact.insert(id.to_owned(), target);
    }
    for f in &ctx.cfg.source.lambda_functions {
        let groups: Vec<String> = dev_function(ctx, f)
            .await?
            .and_then(|c| c.vpc_config().map(|v| v.security_group_ids().to_vec()))
            .unwrap_or_default();
        for g in groups {
            c.exact.insert(g, Target::Prod(prod.sg_compute.clone()));
        }
    }
    if let Some(cluster) = crate::steps::database::dev_cluster(ctx).await? {
        for g in cluster.vpc_security_groups().iter().filter_map(|g| g.vpc_security_group_id()) {
            c.exact.entry(g.to_owned()).or_insert_with(|| Target::Prod(prod.sg_db.clone()));
        }
    }
    Ok(())
}

/// Dev's cluster and instance endpoints → the prod cluster's.
async fn add_endpoints(ctx: &Ctx, c: &mut Counterparts) -> Result<(), StepError> {
    let Some(dev) = crate::steps::database::dev_cluster(ctx).await? else { return Ok(()) };
    let prod = crate::steps::database::prod_endpoints(ctx).await?;
    let missing =
        |what: &str| Target::Missing(format!("the prod cluster's {what} is known once its restore is accepted"));
    // In a plan, the placeholder of the endpoint the restore will have.
    let target = |v: &Option<String>, what: &str| match v {
        Some(e) => Target::Prod(e.clone()),
        None => missing(what),
    };
    if let Some(e) = dev.endpoint() {
        c.exact.insert(e.to_owned(), target(&prod.writer, "writer endpoint"));
    }
    if let Some(e) = dev.reader_endpoint() {
        c.exact.insert(e.to_owned(), target(&prod.reader, "reader endpoint"));
    }
    c.prod_ids.extend(prod.writer.iter().chain(prod.reader.iter()).chain(prod.instances.iter()).cloned());
    for (i, e) in crate::steps::database::dev_instance_endpoints(ctx, &dev).await?.into_iter().enumerate() {
        let t = match prod.instances.get(i) {
            Some(p) => Target::Prod(p.clone()),
            None => Target::Missing(
                "its prod instance does not exist yet (instances are created after the restore): use the cluster endpoint".into(),
            ),
        };
        c.exact.insert(e, t);
    }
    Ok(())
}

/// Records `found` at `place` for the report; a named reference the
/// configuration keeps is marked kept.
pub fn record(ctx: &Ctx, step: &str, place: &str, found: &[Found]) {
    let kept = ctx.cfg.references.keeps(place);
    for f in found {
        ctx.reference(step, Reference { place: place.to_owned(), found: f.clone(), kept: kept && !f.is_mapped() });
    }
}

/// `validate`'s finding for one prod resource: the dev identifiers still in
/// its values (`(place, found)`, as [`Counterparts::rewrite`] finds them in
/// what prod holds). Any is a failed `references.dev_identifiers` check —
/// one with a prod counterpart was not mapped (drift), one without is
/// named — unless `[references] keep` accepts its place.
pub fn checks(ctx: &Ctx, resource: &str, leftovers: &[(String, Found)]) -> Vec<crate::report::Check> {
    let failing: Vec<String> = leftovers
        .iter()
        .filter(|(place, f)| f.is_mapped() || !ctx.cfg.references.keeps(place))
        .map(|(place, f)| match (&f.prod, &f.why) {
            (Some(p), _) => format!("{place} names dev's {} (prod's is {p})", f.dev),
            (None, why) => {
                format!("{place} names dev's {} ({})", f.dev, why.as_deref().unwrap_or("no prod counterpart"))
            }
        })
        .collect();
    let kept = leftovers.len() - failing.len();
    let detail = match (failing.is_empty(), kept) {
        (true, 0) => "no dev identifier in copied values".to_owned(),
        (true, k) => format!("{k} dev reference(s) kept by [references] keep"),
        (false, _) => failing.join("; "),
    };
    vec![crate::report::Check::new("references.dev_identifiers", resource, failing.is_empty(), detail)]
}

#[cfg(test)]
mod tests;
