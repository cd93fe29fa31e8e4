//! IAM as AWS enforces it, in the test proxy: every request is authorized
//! against the caller's policies (chosen by its access key) before it
//! reaches the emulator, by action *and* resource, and refused with the
//! service's own AccessDenied answer naming both.
//!
//! Why here and not moto's `INITIAL_NO_AUTH_ACTION_COUNT`: moto 5.2.5
//! authorizes most services against the resource `*` (only S3, IAM, STS and
//! SQS pass the real ARN), so a policy scoped to specific ARNs — the only
//! kind paymig generates — is denied there for everything, and moto models
//! neither `iam:PassRole` nor the extra resources RDS checks. This
//! authorizer derives each request's action(s) and resource ARN(s) from the
//! wire, as AWS does for the operations paymig calls:
//!
//! - implied actions: `iam:PassRole` (with `iam:PassedToService`) when
//!   CreateFunction / UpdateFunctionConfiguration name a role, or
//!   PutBucketReplication names one; `s3:DeleteObjectVersion` for a
//!   DeleteObjects that names versions; `s3:GetObjectVersion` likewise;
//! - RDS create/restore: the cluster or instance, its subnet group,
//!   parameter group (the engine's default when none is named), the default
//!   option group, the snapshot;
//! - a request whose action cannot be derived is refused and listed as
//!   `unmapped` (a test fails on it), so nothing is waved through unseen.
//!
//! Not modelled (said so in the README): conditions other than
//! `iam:PassedToService` and `iam:AWSServiceName`; EC2 requests are
//! authorized against the resources they name by id (`vpc-…`, `subnet-…`,
//! `sg-…`…), not the ones a create makes; KMS grants made by services on the
//! caller's behalf.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Mutex;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use serde_json::Value;

use super::behaviour::{form, get, percent_decode, query_param};

/// The emulator's account.
pub const ACCOUNT: &str = "123456789012";

/// What one request asks for: each (action, resource) pair must be allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ask {
    pub action: String,
    pub resource: String,
    /// Condition keys AWS supplies for this request.
    pub context: BTreeMap<String, String>,
}

impl Ask {
    fn new(action: impl Into<String>, resource: impl Into<String>) -> Ask {
        Ask { action: action.into(), resource: resource.into(), context: BTreeMap::new() }
    }

    fn with(mut self, key: &str, value: &str) -> Ask {
        self.context.insert(key.to_owned(), value.to_owned());
        self
    }
}

/// The policies in force, per access key, and what was refused.
#[derive(Debug, Default)]
pub struct Enforcer {
    policies: Mutex<BTreeMap<String, Value>>,
    /// `action on resource (by key)` of every refusal.
    pub denied: Mutex<Vec<String>>,
    /// Requests whose action could not be derived (refused too).
    pub unmapped: Mutex<Vec<String>>,
    /// Every action that was allowed, with how often.
    pub allowed: Mutex<BTreeMap<String, u64>>,
    /// Services whose service-linked role exists (created by the first
    /// create that needed it, as AWS does in a fresh account).
    linked: Mutex<Vec<String>>,
    /// Access key -> the principal it signs as (its account names the
    /// resources it asks for; the emulator's account by default).
    principals: Mutex<BTreeMap<String, String>>,
    /// Role ARN -> (its permissions, its trust policy), for roles a caller
    /// assumes: the credentials AssumeRole returns carry the permissions.
    roles: Mutex<BTreeMap<String, (Value, Value)>>,
}

impl Enforcer {
    /// Puts `policy` (one policy document) in force for `access_key`; a key
    /// with no policy is refused everything but GetCallerIdentity.
    pub fn set_policy(&self, access_key: &str, policy: Value) {
        self.policies.lock().unwrap().insert(access_key.to_owned(), policy);
    }

    /// `access_key` signs as `principal` (an IAM user or role ARN).
    pub fn set_principal(&self, access_key: &str, principal: &str) {
        self.principals.lock().unwrap().insert(access_key.to_owned(), principal.to_owned());
    }

    /// A role callers may assume: `policy` is what its credentials may do,
    /// `trust` who may assume it (AssumeRole is refused to anyone else).
    pub fn set_role(&self, role_arn: &str, policy: Value, trust: Value) {
        self.roles.lock().unwrap().insert(role_arn.to_owned(), (policy, trust));
    }

    /// After a request was answered: the credentials an allowed AssumeRole
    /// returned get the role's permissions and sign as the role.
    pub fn observe(&self, service: &str, req: &Request<Bytes>, status: u16, body: &[u8]) {
        if service != "sts" || !(200..300).contains(&status) {
            return;
        }
        let f = form(req.body());
        if get(&f, "Action").as_deref() != Some("AssumeRole") {
            return;
        }
        let (Some(role), Some(key)) = (get(&f, "RoleArn"), xml_text(body, "AccessKeyId")) else { return };
        if let Some((policy, _)) = self.roles.lock().unwrap().get(&role).cloned() {
            self.set_policy(&key, policy);
            self.set_principal(&key, &role);
        }
    }

    /// Whether the trust policy of `role` lets `principal` assume it.
    fn trusts(&self, role: &str, principal: &str) -> bool {
        let Some((_, trust)) = self.roles.lock().unwrap().get(role).cloned() else { return false };
        let account = principal.split(':').nth(4).unwrap_or_default();
        let root = format!("arn:aws:iam::{account}:root");
        trust["Statement"].as_array().into_iter().flatten().any(|s| {
            s["Effect"] == "Allow"
                && action_matches(&s["Action"], "sts:AssumeRole")
                && match &s["Principal"]["AWS"] {
                    Value::String(p) => p == principal || *p == root,
                    Value::Array(ps) => ps.iter().any(|p| p == principal || *p == root),
                    _ => false,
                }
        })
    }

    pub fn denied(&self) -> Vec<String> {
        self.denied.lock().unwrap().clone()
    }

    pub fn unmapped(&self) -> Vec<String> {
        self.unmapped.lock().unwrap().clone()
    }

    pub fn allowed_actions(&self) -> Vec<String> {
        self.allowed.lock().unwrap().keys().cloned().collect()
    }

    pub fn clear(&self) {
        self.denied.lock().unwrap().clear();
        self.unmapped.lock().unwrap().clear();
    }

    /// Authorizes `req` (to `service`, SigV4 name); `None` lets it through,
    /// `Some(response)` is the refusal to send instead.
    pub fn check(&self, service: &str, req: &Request<Bytes>) -> Option<Response<Full<Bytes>>> {
        let (key, region) = credential(req)?;
        let principal = self.principals.lock().unwrap().get(&key).cloned();
        let account = principal.as_deref().and_then(|p| p.split(':').nth(4)).unwrap_or(ACCOUNT).to_owned();
        let asks = match asks_in(service, &region, &account, req) {
            Ok(a) => a,
            Err(what) => {
                eprintln!("enforced IAM cannot read: {service} {what}");
                self.unmapped.lock().unwrap().push(format!("{service} {what}"));
                return Some(denial(service, &format!("{service}:?"), "*"));
            }
        };
        let mut asks = asks;
        let linked_service = asks.iter().find_map(|a| match a.action.as_str() {
            "elasticloadbalancing:CreateLoadBalancer" => Some("elasticloadbalancing.amazonaws.com"),
            "rds:RestoreDBClusterFromSnapshot" | "rds:CreateDBCluster" | "rds:CreateDBInstance" => {
                Some("rds.amazonaws.com")
            }
            _ => None,
        });
        let new_link = linked_service.filter(|s| !self.linked.lock().unwrap().iter().any(|l| l == s));
        if let Some(svc) = new_link {
            asks.push(
                Ask::new(
                    "iam:CreateServiceLinkedRole",
                    format!("arn:aws:iam::{ACCOUNT}:role/aws-service-role/{svc}/*"),
                )
                .with("iam:AWSServiceName", svc),
            );
        }
        let policy = self.policies.lock().unwrap().get(&key).cloned();
        for ask in &asks {
            if ask.action == "sts:GetCallerIdentity" {
                continue;
            }
            // A role's trust policy must name the caller, too.
            let trusted = ask.action != "sts:AssumeRole"
                || principal.as_deref().is_none_or(|p| {
                    !self.roles.lock().unwrap().contains_key(&ask.resource) || self.trusts(&ask.resource, p)
                });
            let ok = trusted && policy.as_ref().is_some_and(|p| is_allowed(p, ask));
            if !ok {
                let line = format!("{} on {} (key {key})", ask.action, ask.resource);
                eprintln!("enforced IAM refused: {line}");
                self.denied.lock().unwrap().push(line);
                return Some(denial(service, &ask.action, &ask.resource));
            }
        }
        if let Some(svc) = new_link {
            self.linked.lock().unwrap().push(svc.to_owned());
        }
        let mut allowed = self.allowed.lock().unwrap();
        for ask in asks {
            *allowed.entry(ask.action).or_default() += 1;
        }
        None
    }
}

/// The text of the first `<tag>` of an XML answer.
fn xml_text(body: &[u8], tag: &str) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let start = text.find(&format!("<{tag}>"))? + tag.len() + 2;
    let end = text[start..].find(&format!("</{tag}>"))? + start;
    Some(text[start..end].to_owned())
}

/// Whether a statement's `Action` (a string or a list) names `action`.
fn action_matches(actions: &Value, action: &str) -> bool {
    match actions {
        Value::String(a) => a == action,
        Value::Array(a) => a.iter().any(|x| x == action),
        _ => false,
    }
}

/// The access key and region of a SigV4-signed request (header or
/// presigned query).
fn credential(req: &Request<Bytes>) -> Option<(String, String)> {
    let scope = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|a| a.split("Credential=").nth(1))
        .map(|c| c.split(',').next().unwrap_or(c).to_owned())
        .or_else(|| query_param(req.uri().query().unwrap_or(""), "X-Amz-Credential"))?;
    let parts: Vec<&str> = scope.split('/').collect();
    Some((parts.first()?.to_string(), parts.get(2)?.to_string()))
}

/// Whether `policy` allows `ask`: some Allow statement matches its action,
/// resource and conditions, and no Deny statement matches.
pub fn is_allowed(policy: &Value, ask: &Ask) -> bool {
    let statements = match &policy["Statement"] {
        Value::Array(a) => a.clone(),
        s @ Value::Object(_) => vec![s.clone()],
        _ => vec![],
    };
    let mut allowed = false;
    for s in &statements {
        if !matches_any(&s["Action"], &ask.action, true) || !matches_any(&s["Resource"], &ask.resource, false) {
            continue;
        }
        if !conditions_hold(&s["Condition"], &ask.context) {
            continue;
        }
        match s["Effect"].as_str() {
            Some("Deny") => return false,
            Some("Allow") => allowed = true,
            _ => {}
        }
    }
    allowed
}

fn matches_any(element: &Value, value: &str, case_insensitive: bool) -> bool {
    let patterns: Vec<&str> = match element {
        Value::String(s) => vec![s.as_str()],
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    patterns.iter().any(|p| {
        if case_insensitive {
            glob(&p.to_ascii_lowercase(), &value.to_ascii_lowercase())
        } else {
            glob(p, value)
        }
    })
}

/// IAM's wildcard match: `*` any run of characters, `?` one.
pub fn glob(pattern: &str, value: &str) -> bool {
    let (p, v): (Vec<char>, Vec<char>) = (pattern.chars().collect(), value.chars().collect());
    let (mut pi, mut vi, mut star, mut mark) = (0, 0, None, 0);
    while vi < v.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == v[vi]) {
            pi += 1;
            vi += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = vi;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            vi = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// The statement's conditions, each operator over each key: a key the
/// request does not supply fails the condition (as AWS does for
/// StringEquals / StringLike without IfExists).
fn conditions_hold(condition: &Value, context: &BTreeMap<String, String>) -> bool {
    let Some(ops) = condition.as_object() else { return true };
    ops.iter().all(|(op, keys)| {
        keys.as_object().is_some_and(|keys| {
            keys.iter().all(|(k, want)| {
                let Some(have) = context.get(k) else { return false };
                let wants: Vec<&str> = match want {
                    Value::String(s) => vec![s.as_str()],
                    Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                    _ => vec![],
                };
                match op.as_str() {
                    "StringEquals" => wants.contains(&have.as_str()),
                    "StringLike" => wants.iter().any(|w| glob(w, have)),
                    _ => false,
                }
            })
        })
    })
}

/// The service's AccessDenied answer, in its protocol, naming the action and
/// the resource as AWS's message does.
fn denial(service: &str, action: &str, resource: &str) -> Response<Full<Bytes>> {
    let message = format!(
        "User: arn:aws:iam::{ACCOUNT}:user/paymig is not authorized to perform: {action} on resource: {resource} because no identity-based policy allows the {action} action"
    );
    let (status, ctype, body, errortype) = match service {
        "dynamodb" | "ssm" | "kms" => (
            400,
            "application/x-amz-json-1.1",
            serde_json::json!({"__type": "AccessDeniedException", "message": message}).to_string(),
            None,
        ),
        "lambda" => (
            403,
            "application/json",
            serde_json::json!({"Type": "User", "message": message}).to_string(),
            Some("AccessDeniedException"),
        ),
        "s3" => (403, "application/xml", format!("<Error><Code>AccessDenied</Code><Message>{message}</Message><RequestId>denied</RequestId></Error>"), None),
        "ec2" => (
            403,
            "text/xml",
            format!("<Response><Errors><Error><Code>UnauthorizedOperation</Code><Message>You are not authorized to perform this operation. {message}</Message></Error></Errors><RequestID>denied</RequestID></Response>"),
            None,
        ),
        _ => (
            403,
            "text/xml",
            format!("<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>{message}</Message></Error><RequestId>denied</RequestId></ErrorResponse>"),
            None,
        ),
    };
    let mut r = Response::builder().status(status).header("content-type", ctype).header("x-amzn-requestid", "denied");
    if let Some(t) = errortype {
        r = r.header("x-amzn-errortype", t);
    }
    r.body(Full::new(Bytes::from(body))).unwrap()
}

/// What a request asks for, or what could not be derived.
pub fn asks(service: &str, region: &str, req: &Request<Bytes>) -> Result<Vec<Ask>, String> {
    asks_in(service, region, ACCOUNT, req)
}

/// [`asks`] for a caller of `account` (an assumed role of another account
/// names its own resources).
pub fn asks_in(service: &str, region: &str, account: &str, req: &Request<Bytes>) -> Result<Vec<Ask>, String> {
    let arn = |svc: &str, rest: &str| format!("arn:aws:{svc}:{region}:{account}:{rest}");
    match service {
        "s3" => s3_asks(req),
        "lambda" => lambda_asks(region, account, req),
        "dynamodb" | "ssm" | "kms" => {
            let target = req.headers().get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or("");
            let op = target.rsplit('.').next().unwrap_or("").to_owned();
            if op.is_empty() {
                return Err(format!("{} {}", req.method(), req.uri().path()));
            }
            let body: Value = serde_json::from_slice(req.body()).unwrap_or_default();
            let action = format!("{service}:{op}");
            let resources: Vec<String> = match service {
                "dynamodb" => match (body["TableName"].as_str(), body["ResourceArn"].as_str()) {
                    (Some(t), _) => vec![arn("dynamodb", &format!("table/{t}"))],
                    (_, Some(a)) => vec![a.to_owned()],
                    _ => vec!["*".into()],
                },
                "ssm" => {
                    let param = |n: &str| {
                        arn(
                            "ssm",
                            &format!("parameter{}", if n.starts_with('/') { n.to_owned() } else { format!("/{n}") }),
                        )
                    };
                    if let Some(n) = body["Name"].as_str() {
                        vec![param(n)]
                    } else if let Some(ns) = body["Names"].as_array() {
                        ns.iter().filter_map(Value::as_str).map(param).collect()
                    } else if let Some(p) = body["Path"].as_str() {
                        vec![param(p.trim_end_matches('/'))]
                    } else if let Some(id) = body["ResourceId"].as_str() {
                        vec![param(id)]
                    } else {
                        vec!["*".into()]
                    }
                }
                _ => {
                    // kms: a key id, key ARN, alias name or alias ARN.
                    let key = |k: &str| {
                        if k.starts_with("arn:") {
                            k.to_owned()
                        } else if k.starts_with("alias/") {
                            arn("kms", k)
                        } else {
                            arn("kms", &format!("key/{k}"))
                        }
                    };
                    let mut v: Vec<String> = ["KeyId", "TargetKeyId", "AliasName"]
                        .iter()
                        .filter_map(|f| body[*f].as_str())
                        .map(key)
                        .collect();
                    if v.is_empty() {
                        v.push("*".into());
                    }
                    v
                }
            };
            Ok(resources.into_iter().map(|r| Ask::new(&action, r)).collect())
        }
        // Query protocol: Action=… in the form body (or the query string).
        _ => {
            let mut params = form(req.body());
            params.extend(form(req.uri().query().unwrap_or("").as_bytes()));
            let op = get(&params, "Action").ok_or_else(|| format!("{} {}", req.method(), req.uri().path()))?;
            let prefix = match service {
                "monitoring" => "cloudwatch",
                s => s,
            };
            let action = format!("{prefix}:{op}");
            let p = |k: &str| get(&params, k);
            let members = |k: &str| -> Vec<String> {
                params
                    .iter()
                    .filter(|(n, _)| n.starts_with(&format!("{k}.member.")) || n.starts_with(&format!("{k}.")))
                    .map(|(_, v)| v.clone())
                    .collect()
            };
            let mut asks: Vec<Ask> = Vec::new();
            let mut resources: Vec<String> = Vec::new();
            match prefix {
                "iam" => {
                    if let Some(r) = p("RoleName") {
                        resources.push(format!("arn:aws:iam::{account}:role/{r}"));
                    } else if op == "CreateServiceLinkedRole" {
                        let svc = p("AWSServiceName").unwrap_or_default();
                        asks.push(
                            Ask::new(&action, format!("arn:aws:iam::{account}:role/aws-service-role/{svc}/*"))
                                .with("iam:AWSServiceName", &svc),
                        );
                    }
                }
                "sts" => resources.extend(p("RoleArn")),
                "sns" => {
                    resources.extend(p("TopicArn").or_else(|| p("ResourceArn")));
                    if op == "CreateTopic" {
                        resources.push(arn("sns", &p("Name").unwrap_or_default()));
                    }
                }
                "cloudwatch" => {
                    let alarms: Vec<String> = p("AlarmName").into_iter().chain(members("AlarmNames")).collect();
                    resources.extend(alarms.iter().map(|a| arn("cloudwatch", &format!("alarm:{a}"))));
                    let dashboards: Vec<String> =
                        p("DashboardName").into_iter().chain(members("DashboardNames")).collect();
                    resources.extend(dashboards.iter().map(|d| format!("arn:aws:cloudwatch::{account}:dashboard/{d}")));
                    resources.extend(p("ResourceARN"));
                }
                "elasticloadbalancing" => {
                    for k in ["LoadBalancerArn", "TargetGroupArn", "ListenerArn", "RuleArn"] {
                        resources.extend(p(k));
                    }
                    resources.extend(members("ResourceArns"));
                    resources.extend(members("LoadBalancerArns"));
                    resources.extend(members("TargetGroupArns"));
                    match op.as_str() {
                        "CreateLoadBalancer" => resources.push(arn(
                            "elasticloadbalancing",
                            &format!("loadbalancer/app/{}/new", p("Name").unwrap_or_default()),
                        )),
                        "CreateTargetGroup" => resources.push(arn(
                            "elasticloadbalancing",
                            &format!("targetgroup/{}/new", p("Name").unwrap_or_default()),
                        )),
                        _ => {}
                    }
                }
                "rds" => {
                    let name = |kind: &str, id: String| {
                        if id.starts_with("arn:") {
                            id
                        } else {
                            arn("rds", &format!("{kind}:{id}"))
                        }
                    };
                    resources.extend(p("DBClusterIdentifier").map(|c| name("cluster", c)));
                    resources.extend(p("DBInstanceIdentifier").map(|d| name("db", d)));
                    resources.extend(p("DBSubnetGroupName").map(|g| name("subgrp", g)));
                    resources.extend(p("DBClusterParameterGroupName").map(|g| name("cluster-pg", g)));
                    resources.extend(
                        p("SnapshotIdentifier")
                            .or_else(|| p("DBClusterSnapshotIdentifier"))
                            .map(|s| name("cluster-snapshot", s)),
                    );
                    resources.extend(p("ResourceName"));
                    match op.as_str() {
                        // AWS also authorizes the defaults a create uses.
                        "CreateDBInstance" => {
                            let pg = p("DBParameterGroupName").unwrap_or_else(|| "default.aurora-postgresql15".into());
                            resources.push(name("pg", pg));
                            resources.push(name("og", "default:aurora-postgresql-15".into()));
                        }
                        "RestoreDBClusterFromSnapshot" | "CreateDBCluster"
                            if p("DBClusterParameterGroupName").is_none() =>
                        {
                            resources.push(name("cluster-pg", "default.aurora-postgresql15".into()));
                        }
                        _ => {}
                    }
                }
                // EC2: the resources the request names by id (its ARNs are
                // `<type>/<id>`); a request naming none is checked against `*`.
                "ec2" => {
                    let types = [
                        ("vpc-", "vpc"),
                        ("subnet-", "subnet"),
                        ("sg-", "security-group"),
                        ("rtb-", "route-table"),
                        ("vpce-", "vpc-endpoint"),
                        ("igw-", "internet-gateway"),
                        ("pl-", "prefix-list"),
                        ("eni-", "network-interface"),
                        // An association stands for what it associates
                        // (AWS authorizes the route table, the VPC).
                        ("rtbassoc-", "route-table"),
                        ("vpc-cidr-assoc-", "vpc"),
                        ("subnet-cidr-assoc-", "subnet"),
                    ];
                    for (_, v) in &params {
                        if let Some((_, t)) = types.iter().rev().find(|(pre, _)| {
                            v.strip_prefix(pre)
                                .is_some_and(|rest| !rest.is_empty() && rest.chars().all(|c| c.is_ascii_hexdigit()))
                        }) {
                            let r = arn("ec2", &format!("{t}/{v}"));
                            if !resources.contains(&r) {
                                resources.push(r);
                            }
                        }
                    }
                }
                _ => {}
            }
            if resources.is_empty() && asks.is_empty() {
                resources.push("*".into());
            }
            asks.extend(resources.into_iter().map(|r| Ask::new(&action, r)));
            Ok(asks)
        }
    }
}

/// Lambda's REST operations, as IAM names them.
fn lambda_asks(region: &str, account: &str, req: &Request<Bytes>) -> Result<Vec<Ask>, String> {
    let path = req.uri().path();
    let parts: Vec<String> = path.trim_start_matches('/').split('/').map(percent_decode).collect();
    let method = req.method().as_str();
    let seg = |i: usize| parts.get(i).map(String::as_str);
    let function_arn = |n: &str| {
        if n.starts_with("arn:") {
            // Unqualified: the function an alias or version belongs to.
            n.split(':').take(7).collect::<Vec<_>>().join(":")
        } else {
            format!("arn:aws:lambda:{region}:{account}:function:{n}")
        }
    };
    let f = seg(2).map(function_arn).unwrap_or_default();
    let op = match (method, seg(1), parts.len(), seg(3), seg(4)) {
        ("POST", Some("functions"), 2, _, _) => "CreateFunction",
        ("GET", Some("functions"), 2, _, _) => "ListFunctions",
        ("GET", Some("functions"), 3, _, _) => "GetFunction",
        ("DELETE", Some("functions"), 3, _, _) => "DeleteFunction",
        ("GET", Some("functions"), 4, Some("configuration"), _) => "GetFunctionConfiguration",
        ("PUT", Some("functions"), 4, Some("configuration"), _) => "UpdateFunctionConfiguration",
        ("PUT", Some("functions"), 4, Some("code"), _) => "UpdateFunctionCode",
        ("POST", Some("functions"), 4, Some("versions"), _) => "PublishVersion",
        ("GET", Some("functions"), 4, Some("versions"), _) => "ListVersionsByFunction",
        ("POST", Some("functions"), 4, Some("aliases"), _) => "CreateAlias",
        ("GET", Some("functions"), 4, Some("aliases"), _) => "ListAliases",
        ("GET", Some("functions"), 5, Some("aliases"), _) => "GetAlias",
        ("PUT", Some("functions"), 5, Some("aliases"), _) => "UpdateAlias",
        ("DELETE", Some("functions"), 5, Some("aliases"), _) => "DeleteAlias",
        ("POST", Some("functions"), 4, Some("policy"), _) => "AddPermission",
        ("GET", Some("functions"), 4, Some("policy"), _) => "GetPolicy",
        ("DELETE", Some("functions"), 5, Some("policy"), _) => "RemovePermission",
        ("PUT", Some("functions"), 4, Some("concurrency"), _) => "PutFunctionConcurrency",
        ("DELETE", Some("functions"), 4, Some("concurrency"), _) => "DeleteFunctionConcurrency",
        ("GET", Some("functions"), 4, Some("concurrency"), _) => "GetFunctionConcurrency",
        ("GET", Some("tags"), _, _, _) => "ListTags",
        ("POST", Some("tags"), _, _, _) => "TagResource",
        ("DELETE", Some("tags"), _, _, _) => "UntagResource",
        ("GET", Some("account-settings"), _, _, _) => "GetAccountSettings",
        ("GET", Some("layers"), 5, Some("versions"), _) => "GetLayerVersion",
        _ => return Err(format!("{method} {path}")),
    };
    let action = format!("lambda:{op}");
    let resource = match op {
        "ListFunctions" | "GetAccountSettings" => "*".to_owned(),
        "CreateFunction" => {
            let body: Value = serde_json::from_slice(req.body()).unwrap_or_default();
            function_arn(body["FunctionName"].as_str().unwrap_or_default())
        }
        "ListTags" | "TagResource" | "UntagResource" => {
            // /2017-03-31/tags/<arn>
            function_arn(&parts[2..].join("/"))
        }
        "GetLayerVersion" => format!(
            "arn:aws:lambda:{region}:{account}:layer:{}:{}",
            seg(2).unwrap_or_default(),
            seg(4).unwrap_or_default()
        ),
        _ => f,
    };
    let mut asks = vec![Ask::new(action, resource)];
    if matches!(op, "CreateFunction" | "UpdateFunctionConfiguration") {
        let body: Value = serde_json::from_slice(req.body()).unwrap_or_default();
        if let Some(role) = body["Role"].as_str() {
            asks.push(Ask::new("iam:PassRole", role).with("iam:PassedToService", "lambda.amazonaws.com"));
        }
        for layer in body["Layers"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            asks.push(Ask::new("lambda:GetLayerVersion", layer));
        }
    }
    Ok(asks)
}

/// S3's REST operations (path style), as IAM names them.
fn s3_asks(req: &Request<Bytes>) -> Result<Vec<Ask>, String> {
    let path = req.uri().path().trim_start_matches('/');
    let (bucket, key) = match path.split_once('/') {
        Some((b, k)) if !k.is_empty() => (b.to_owned(), Some(percent_decode(k))),
        Some((b, _)) => (b.to_owned(), None),
        None => (path.to_owned(), None),
    };
    let query = req.uri().query().unwrap_or("");
    let has = |k: &str| query.split('&').any(|p| p == k || p.starts_with(&format!("{k}=")));
    let method = req.method().as_str();
    let bucket_arn = format!("arn:aws:s3:::{bucket}");
    let ask = |a: &str| Ask::new(format!("s3:{a}"), bucket_arn.clone());
    if bucket.is_empty() {
        return Ok(vec![Ask::new("s3:ListAllMyBuckets", "*")]);
    }
    if let Some(key) = key {
        let object = format!("{bucket_arn}/{key}");
        let versioned = has("versionId");
        let op = match (method, has("tagging")) {
            ("GET" | "HEAD", false) if versioned => "GetObjectVersion",
            ("GET" | "HEAD", false) => "GetObject",
            ("PUT", false) => "PutObject",
            ("DELETE", false) if versioned => "DeleteObjectVersion",
            ("DELETE", false) => "DeleteObject",
            ("GET", true) => "GetObjectTagging",
            ("PUT", true) => "PutObjectTagging",
            _ => return Err(format!("{method} /{path}?{query}")),
        };
        return Ok(vec![Ask::new(format!("s3:{op}"), object)]);
    }
    let sub: &[(&str, &str, &str, &str)] = &[
        // (query key, GET, PUT, DELETE)
        ("versioning", "GetBucketVersioning", "PutBucketVersioning", ""),
        ("encryption", "GetEncryptionConfiguration", "PutEncryptionConfiguration", "PutEncryptionConfiguration"),
        ("lifecycle", "GetLifecycleConfiguration", "PutLifecycleConfiguration", "PutLifecycleConfiguration"),
        ("replication", "GetReplicationConfiguration", "PutReplicationConfiguration", "PutReplicationConfiguration"),
        ("policy", "GetBucketPolicy", "PutBucketPolicy", "DeleteBucketPolicy"),
        ("tagging", "GetBucketTagging", "PutBucketTagging", "PutBucketTagging"),
        ("publicAccessBlock", "GetBucketPublicAccessBlock", "PutBucketPublicAccessBlock", "PutBucketPublicAccessBlock"),
        ("ownershipControls", "GetBucketOwnershipControls", "PutBucketOwnershipControls", "PutBucketOwnershipControls"),
        ("acl", "GetBucketAcl", "PutBucketAcl", ""),
        ("location", "GetBucketLocation", "", ""),
        ("logging", "GetBucketLogging", "PutBucketLogging", ""),
        ("object-lock", "GetBucketObjectLockConfiguration", "PutBucketObjectLockConfiguration", ""),
        ("versions", "ListBucketVersions", "", ""),
        ("uploads", "ListBucketMultipartUploads", "", ""),
    ];
    for (k, get_op, put_op, delete_op) in sub {
        if has(k) {
            let op = match method {
                "GET" => *get_op,
                "PUT" => *put_op,
                "DELETE" => *delete_op,
                _ => "",
            };
            if op.is_empty() {
                return Err(format!("{method} /{path}?{query}"));
            }
            let mut asks = vec![ask(op)];
            if op == "PutReplicationConfiguration" && method == "PUT" {
                let body = String::from_utf8_lossy(req.body());
                if let Some(role) = body.split("<Role>").nth(1).and_then(|r| r.split("</Role>").next()) {
                    asks.push(Ask::new("iam:PassRole", role).with("iam:PassedToService", "s3.amazonaws.com"));
                }
            }
            return Ok(asks);
        }
    }
    if has("delete") && method == "POST" {
        // DeleteObjects: each object, and each version named.
        let body = String::from_utf8_lossy(req.body()).into_owned();
        let mut asks = Vec::new();
        for object in body.split("<Object>").skip(1) {
            let key = object.split("<Key>").nth(1).and_then(|k| k.split("</Key>").next()).unwrap_or_default();
            let key = key.replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">");
            let op = if object.contains("<VersionId>") { "DeleteObjectVersion" } else { "DeleteObject" };
            asks.push(Ask::new(format!("s3:{op}"), format!("{bucket_arn}/{key}")));
        }
        return Ok(asks);
    }
    let op = match method {
        "GET" | "HEAD" => "ListBucket",
        "PUT" => "CreateBucket",
        "DELETE" => "DeleteBucket",
        _ => return Err(format!("{method} /{path}?{query}")),
    };
    Ok(vec![ask(op)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_and_statements_match_as_iam_does() {
        assert!(glob("arn:aws:s3:::b/*", "arn:aws:s3:::b/k/x"));
        assert!(!glob("arn:aws:s3:::b/*", "arn:aws:s3:::bb/k"));
        assert!(glob("*-prod", "payments-prod") && !glob("*-prod", "payments-prod-x"));
        let policy = serde_json::json!({"Statement": [
            {"Effect": "Allow", "Action": ["dynamodb:DescribeTable"], "Resource": ["arn:aws:dynamodb:us-east-1:1:table/t"]},
            {"Effect": "Allow", "Action": "iam:PassRole", "Resource": "*", "Condition": {"StringEquals": {"iam:PassedToService": "lambda.amazonaws.com"}}},
        ]});
        assert!(is_allowed(&policy, &Ask::new("dynamodb:DescribeTable", "arn:aws:dynamodb:us-east-1:1:table/t")));
        assert!(!is_allowed(&policy, &Ask::new("dynamodb:DescribeTable", "arn:aws:dynamodb:us-east-1:1:table/u")));
        assert!(!is_allowed(&policy, &Ask::new("dynamodb:DeleteTable", "arn:aws:dynamodb:us-east-1:1:table/t")));
        let pass = Ask::new("iam:PassRole", "arn:aws:iam::1:role/r");
        assert!(!is_allowed(&policy, &pass), "a condition key the request lacks fails");
        assert!(is_allowed(&policy, &pass.clone().with("iam:PassedToService", "lambda.amazonaws.com")));
        assert!(!is_allowed(&policy, &pass.with("iam:PassedToService", "s3.amazonaws.com")));
    }
}
