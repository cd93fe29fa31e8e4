//! The behaviour mode's second round: what AWS enforces on the way down
//! (teardown) and on a second migration after a destroy, and the refusals
//! of a first apply that moto forgives. Each is its own [`Behaviour`],
//! switchable and counted like the others:
//!
//! | behaviour | what AWS does |
//! |---|---|
//! | `ClientTokens` | an EC2 `ClientToken` is remembered for the whole run: reused with other parameters → `IdempotentParameterMismatch`, with the same ones → the first answer again |
//! | `GroupReferences` | `DeleteSecurityGroup` → `DependencyViolation` while another group's rule names the group |
//! | `EniNeedsRole` | a deleted function's lingering interfaces are released with its execution role: a role deleted first leaves them for ever (in the parent module, beside `EniLinger`) |
//! | `TargetGroupInUse` | `DeleteTargetGroup` → `ResourceInUse` for a while after a listener is deleted |
//! | `RdsDeleting` | a second `DeleteDBInstance` → `InvalidDBInstanceState` "already being deleted"; `DeleteDBClusterParameterGroup` / `DeleteDBSubnetGroup` right after their cluster → `InvalidDBParameterGroupState` / `InvalidDBSubnetGroupStateFault` |
//! | `EndpointUnsuccessful` | `DeleteVpcEndpoints` answers 200 and lists the endpoint in `Unsuccessful` (its first attempt per interface endpoint: its network interface still in use) |
//! | `LambdaPropagation` | CreateFunction with a key created during the run: "… KMS key is invalid for CreateGrant" (its first attempt per function) |
//! | `BucketPropagation` | settings calls right after CreateBucket → `NoSuchBucket`; PutBucketReplication right after versioning → "Versioning must be 'Enabled'" |
//! | `XRayPermission` | CreateFunction with active tracing whose role grants no `xray:PutTraceSegments` → refused |
//! | `NewKeyNotFound` | EnableKeyRotation, TagResource, CreateAlias right after CreateKey → `NotFoundException` (the first attempt per key and call) |
//! | `CidrAssociating` | a secondary CIDR block is `associating` for a while; CreateSubnet in it is refused meanwhile |
//! | `DynamoTagPages` | ListTagsOfResource answers a few tags per page with `NextToken` |
//! | `LambdaKeyDropped` | Lambda keeps no `KMSKeyArn` for a function without environment variables |
//! | `ParameterGroupSettle` | a cluster restored within 5 minutes of its new cluster parameter group's creation runs its members `pending-reboot` until each is rebooted |

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use serde_json::Value;

use super::{form, get, xml_value, AwsBehaviour, Behaviour};

/// How long the windows of this round last, in the tests' units.
#[derive(Debug, Clone, Copy)]
pub struct Windows {
    /// After a listener is deleted, its target groups stay in use.
    pub target_group_in_use: Duration,
    /// After DeleteDBInstance, the instance is `deleting` (AWS: minutes).
    pub instance_deleting: Duration,
    /// After DeleteDBCluster, its parameter and subnet groups stay in use.
    pub groups_in_use: Duration,
    /// After CreateBucket (or versioning), S3 has not caught up.
    pub bucket_propagation: Duration,
    /// A new CIDR block stays `associating`.
    pub cidr_associating: Duration,
    /// AWS's minimum age of a cluster parameter group before first use.
    pub parameter_group_settle: Duration,
}

impl Windows {
    pub fn units(unit: Duration) -> Windows {
        Windows {
            target_group_in_use: unit * 4,
            instance_deleting: unit * 100,
            groups_in_use: unit * 4,
            bucket_propagation: unit * 2,
            cidr_associating: unit * 3,
            // AWS: 5 minutes against a restore's ~10: always longer than
            // the test's restore.
            parameter_group_settle: unit * 100,
        }
    }

    pub fn aws(factor: f64) -> Windows {
        let s = |secs: f64| Duration::from_secs_f64(secs * factor);
        Windows {
            target_group_in_use: s(60.0),
            instance_deleting: s(300.0),
            groups_in_use: s(60.0),
            bucket_propagation: s(5.0),
            cidr_associating: s(10.0),
            parameter_group_settle: s(300.0),
        }
    }
}

/// A security-group rule naming another group: (owner, egress, protocol,
/// from, to, peer).
type GroupRef = (String, bool, String, String, String, String);

#[derive(Default)]
pub struct State {
    /// ClientToken -> (the request's parameters without the token, the
    /// first answer).
    tokens: HashMap<String, (Vec<(String, String)>, Bytes)>,
    group_refs: BTreeSet<GroupRef>,
    target_groups_busy_until: Option<Instant>,
    /// Instance id -> deleting until.
    instances_deleting: HashMap<String, Instant>,
    /// Cluster groups busy until (after DeleteDBCluster).
    groups_busy_until: Option<Instant>,
    /// Interface endpoints created, and those whose first delete was refused.
    interface_endpoints: HashSet<String>,
    endpoints_refused: HashSet<String>,
    /// Keys created during the run, and the functions refused once.
    new_keys: HashSet<String>,
    grant_refused: HashSet<String>,
    /// Bucket -> not visible to settings calls until (and the first one is
    /// refused whenever it comes: a loaded machine must not make the
    /// behaviour vanish).
    buckets_new: HashMap<String, (Instant, bool)>,
    /// Bucket -> versioning not yet seen by replication until (likewise).
    buckets_versioning: HashMap<String, (Instant, bool)>,
    /// Role -> its inline policy documents.
    role_docs: HashMap<String, HashMap<String, String>>,
    /// (key id, operation) refused once.
    key_refused: HashSet<(String, String)>,
    /// Table ARN -> every tag, as the first page's answer had them.
    table_tags: HashMap<String, Vec<Value>>,
    /// `<vpc> <CIDR block>` -> associating until.
    cidrs: HashMap<String, Instant>,
    /// Cluster parameter group -> created at.
    parameter_groups: HashMap<String, Instant>,
    /// Cluster -> the members rebooted since its restore (pending-reboot
    /// until then).
    pending_reboot: HashMap<String, HashSet<String>>,
}

/// The tags ListTagsOfResource answers per page under `DynamoTagPages`.
const TAGS_PER_PAGE: usize = 3;

impl AwsBehaviour {
    /// Round two's refusals, before a request reaches the emulator.
    pub(super) fn before_teardown(
        &self,
        service: &str,
        op: &str,
        req: &Request<Bytes>,
    ) -> Option<Response<Full<Bytes>>> {
        let mut st = self.round2.lock().unwrap();
        let now = Instant::now();
        match service {
            "ec2" => {
                let f = form(req.body());
                if self.is_on(Behaviour::ClientTokens) {
                    if let Some(token) = get(&f, "ClientToken") {
                        if let Some((params, answer)) = st.tokens.get(&token) {
                            self.fire(Behaviour::ClientTokens);
                            if *params != without_token(&f) {
                                return Some(self.ec2_error(
                                    "IdempotentParameterMismatch",
                                    &format!("The client token {token} was used for a request with other parameters"),
                                ));
                            }
                            return Some(ok_xml(answer.clone()));
                        }
                    }
                }
                match op {
                    "DeleteSecurityGroup" if self.is_on(Behaviour::GroupReferences) => {
                        let group = get(&f, "GroupId").unwrap_or_default();
                        let by = st.group_refs.iter().find(|r| r.5 == group && r.0 != group).map(|r| r.0.clone());
                        if let Some(by) = by {
                            self.fire(Behaviour::GroupReferences);
                            return Some(self.ec2_error(
                                "DependencyViolation",
                                &format!("resource {group} has a dependent object (a rule of {by} names it)"),
                            ));
                        }
                        None
                    }
                    "DeleteVpcEndpoints" if self.is_on(Behaviour::EndpointUnsuccessful) => {
                        let id = get(&f, "VpcEndpointId.1").unwrap_or_default();
                        if st.interface_endpoints.contains(&id) && st.endpoints_refused.insert(id.clone()) {
                            self.fire(Behaviour::EndpointUnsuccessful);
                            let body = format!(
                                "<DeleteVpcEndpointsResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>{}</requestId><unsuccessful><item><error><code>DependencyViolation</code><message>The endpoint's network interface is in use</message></error><resourceId>{id}</resourceId></item></unsuccessful></DeleteVpcEndpointsResponse>",
                                self.request_id()
                            );
                            return Some(ok_xml(Bytes::from(body)));
                        }
                        None
                    }
                    "CreateSubnet" if self.is_on(Behaviour::CidrAssociating) => {
                        let cidr = get(&f, "CidrBlock").unwrap_or_default();
                        let vpc = get(&f, "VpcId").unwrap_or_default();
                        let net: Option<ipnet::Ipv4Net> = cidr.parse().ok();
                        let associating = st.cidrs.iter().any(|(key, until)| {
                            let (v, block) = key.split_once(' ').unwrap_or(("", key));
                            now < *until
                                && v == vpc
                                && block.parse::<ipnet::Ipv4Net>().ok().zip(net).is_some_and(|(b, n)| b.contains(&n))
                        });
                        if associating {
                            self.fire(Behaviour::CidrAssociating);
                            return Some(self.ec2_error(
                                "InvalidSubnet.Range",
                                &format!("The CIDR '{cidr}' is invalid for this VPC: its block is still associating"),
                            ));
                        }
                        None
                    }
                    _ => None,
                }
            }
            "dynamodb" if self.is_on(Behaviour::DynamoTagPages) && op == "ListTagsOfResource" => {
                let asked: Value = serde_json::from_slice(req.body()).unwrap_or_default();
                let start: usize = asked["NextToken"].as_str().and_then(|t| t.parse().ok())?;
                let tags = st.table_tags.get(asked["ResourceArn"].as_str().unwrap_or_default())?;
                Some(
                    Response::builder()
                        .status(200)
                        .header("content-type", "application/x-amz-json-1.0")
                        .body(Full::new(Bytes::from(tag_page(tags, start).to_string())))
                        .unwrap(),
                )
            }
            "elasticloadbalancing" if self.is_on(Behaviour::TargetGroupInUse) && op == "DeleteTargetGroup" => {
                if st.target_groups_busy_until.is_some_and(|u| now < u) {
                    self.fire(Behaviour::TargetGroupInUse);
                    let arn = get(&form(req.body()), "TargetGroupArn").unwrap_or_default();
                    return Some(self.query_error(
                        "ResourceInUse",
                        &format!("Target group '{arn}' is currently in use by a listener or a rule"),
                    ));
                }
                None
            }
            "rds" if self.is_on(Behaviour::RdsDeleting) => {
                let f = form(req.body());
                match op {
                    "DeleteDBInstance" => {
                        let id = get(&f, "DBInstanceIdentifier").unwrap_or_default();
                        if st.instances_deleting.get(&id).is_some_and(|u| now < *u) {
                            self.fire(Behaviour::RdsDeleting);
                            return Some(self.query_error(
                                "InvalidDBInstanceState",
                                &format!("Instance {id} is already being deleted."),
                            ));
                        }
                        None
                    }
                    "DeleteDBClusterParameterGroup" | "DeleteDBSubnetGroup"
                        if st.groups_busy_until.is_some_and(|u| now < u) =>
                    {
                        self.fire(Behaviour::RdsDeleting);
                        Some(if op == "DeleteDBSubnetGroup" {
                            self.query_error("InvalidDBSubnetGroupStateFault", "DB subnet group is in use by a cluster")
                        } else {
                            self.query_error(
                                "InvalidDBParameterGroupState",
                                "One or more database clusters are still members of this parameter group",
                            )
                        })
                    }
                    _ => None,
                }
            }
            "lambda" => {
                let (lop, _) = super::lambda_op(req);
                if lop != "CreateFunction" {
                    return None;
                }
                let body: Value = serde_json::from_slice(req.body()).unwrap_or_default();
                let function = body["FunctionName"].as_str().unwrap_or_default().to_owned();
                if self.is_on(Behaviour::XRayPermission) && body["TracingConfig"]["Mode"] == "Active" {
                    let role = body["Role"].as_str().unwrap_or("").rsplit('/').next().unwrap_or("").to_owned();
                    let granted = st
                        .role_docs
                        .get(&role)
                        .is_some_and(|docs| docs.values().any(|d| d.contains("xray:PutTraceSegments")));
                    if !granted {
                        self.fire(Behaviour::XRayPermission);
                        return Some(self.rest_json_error(
                            400,
                            "InvalidParameterValueException",
                            "The provided execution role does not have permissions to call PutTraceSegments on XRAY",
                        ));
                    }
                }
                if self.is_on(Behaviour::LambdaPropagation) {
                    let key = body["KMSKeyArn"].as_str().unwrap_or("").rsplit('/').next().unwrap_or("").to_owned();
                    if st.new_keys.contains(&key) && st.grant_refused.insert(function) {
                        self.fire(Behaviour::LambdaPropagation);
                        return Some(self.rest_json_error(
                            400,
                            "InvalidParameterValueException",
                            "Lambda was unable to configure access to your environment variables because the KMS key is invalid for CreateGrant. Please check your KMS key settings.",
                        ));
                    }
                }
                None
            }
            "s3" if self.is_on(Behaviour::BucketPropagation) => {
                let (bucket, sub) = s3_target(req);
                if req.method() != "PUT" || sub.is_empty() {
                    return None;
                }
                if let Some((until, refused)) = st.buckets_new.get_mut(&bucket) {
                    if now < *until || !*refused {
                        *refused = true;
                        self.fire(Behaviour::BucketPropagation);
                        return Some(s3_error(404, "NoSuchBucket", "The specified bucket does not exist"));
                    }
                }
                let versioning = if sub == "replication" { st.buckets_versioning.get_mut(&bucket) } else { None };
                if let Some((_, refused)) = versioning.filter(|(until, refused)| now < *until || !*refused) {
                    *refused = true;
                    self.fire(Behaviour::BucketPropagation);
                    return Some(s3_error(
                        400,
                        "InvalidRequest",
                        "Versioning must be 'Enabled' on the bucket to apply a replication configuration",
                    ));
                }
                None
            }
            "kms" if self.is_on(Behaviour::NewKeyNotFound) => {
                if !matches!(op, "EnableKeyRotation" | "TagResource" | "CreateAlias") {
                    return None;
                }
                let body: Value = serde_json::from_slice(req.body()).unwrap_or_default();
                let key = body["KeyId"].as_str().or(body["TargetKeyId"].as_str()).unwrap_or_default().to_owned();
                if st.new_keys.contains(&key) && st.key_refused.insert((key.clone(), op.to_owned())) {
                    self.fire(Behaviour::NewKeyNotFound);
                    return Some(self.json_error("NotFoundException", &format!("Key '{key}' does not exist")));
                }
                None
            }
            _ => None,
        }
    }

    /// Round two's bookkeeping and rewrites, after the emulator answered.
    pub(super) fn after_teardown(
        &self,
        service: &str,
        op: &str,
        req: &Request<Bytes>,
        status: u16,
        body: Bytes,
    ) -> Bytes {
        let ok = (200..300).contains(&status);
        let mut st = self.round2.lock().unwrap();
        let now = Instant::now();
        let w = self.windows;
        match service {
            "ec2" if ok => {
                let f = form(req.body());
                if let Some(token) = get(&f, "ClientToken") {
                    st.tokens.entry(token).or_insert_with(|| (without_token(&f), body.clone()));
                }
                match op {
                    "CreateVpcEndpoint" => {
                        if get(&f, "VpcEndpointType").is_some_and(|t| t.eq_ignore_ascii_case("interface")) {
                            st.interface_endpoints.extend(xml_value(&body, "vpcEndpointId"));
                        }
                        body
                    }
                    "AuthorizeSecurityGroupIngress" | "AuthorizeSecurityGroupEgress" => {
                        st.group_refs.extend(group_refs(&f, op.ends_with("Egress")));
                        body
                    }
                    "RevokeSecurityGroupIngress" | "RevokeSecurityGroupEgress" => {
                        for r in group_refs(&f, op.ends_with("Egress")) {
                            st.group_refs.remove(&r);
                        }
                        body
                    }
                    "DeleteSecurityGroup" => {
                        let group = get(&f, "GroupId").unwrap_or_default();
                        st.group_refs.retain(|r| r.0 != group);
                        body
                    }
                    "AssociateVpcCidrBlock" if self.is_on(Behaviour::CidrAssociating) => {
                        if let (Some(vpc), Some(cidr)) = (get(&f, "VpcId"), get(&f, "CidrBlock")) {
                            st.cidrs.insert(format!("{vpc} {cidr}"), now + w.cidr_associating);
                        }
                        body
                    }
                    "DescribeVpcs" if self.is_on(Behaviour::CidrAssociating) => {
                        // Per VPC: another VPC with the same block (dev's) is
                        // not associating.
                        let busy: Vec<(String, String)> = st
                            .cidrs
                            .iter()
                            .filter(|(_, u)| now < **u)
                            .filter_map(|(k, _)| k.split_once(' ').map(|(v, c)| (v.to_owned(), c.to_owned())))
                            .collect();
                        let text = String::from_utf8_lossy(&body).into_owned();
                        let mut items: Vec<String> = text.split("<item><ownerId>").map(str::to_owned).collect();
                        let mut changed = false;
                        for item in items.iter_mut().skip(1) {
                            for (vpc, cidr) in &busy {
                                if !item.contains(&format!("<vpcId>{vpc}</vpcId>")) {
                                    continue;
                                }
                                let from =
                                    format!("<cidrBlock>{cidr}</cidrBlock><cidrBlockState><state>associated</state>");
                                let to =
                                    format!("<cidrBlock>{cidr}</cidrBlock><cidrBlockState><state>associating</state>");
                                if item.contains(&from) {
                                    *item = item.replace(&from, &to);
                                    changed = true;
                                }
                            }
                        }
                        if changed {
                            self.fire(Behaviour::CidrAssociating);
                        }
                        Bytes::from(items.join("<item><ownerId>"))
                    }
                    _ => body,
                }
            }
            "elasticloadbalancing" if ok && op == "DeleteListener" => {
                st.target_groups_busy_until = Some(now + w.target_group_in_use);
                body
            }
            "rds" if ok => {
                let f = form(req.body());
                match op {
                    "DeleteDBInstance" => {
                        if let Some(id) = get(&f, "DBInstanceIdentifier") {
                            st.instances_deleting.insert(id, now + w.instance_deleting);
                        }
                        body
                    }
                    "DeleteDBCluster" => {
                        st.groups_busy_until = Some(now + w.groups_in_use);
                        body
                    }
                    "CreateDBInstance" => {
                        // A new instance of the same name is not the one deleting.
                        if let Some(id) = get(&f, "DBInstanceIdentifier") {
                            st.instances_deleting.remove(&id);
                        }
                        body
                    }
                    "CreateDBClusterParameterGroup" => {
                        if let Some(g) = get(&f, "DBClusterParameterGroupName") {
                            st.parameter_groups.insert(g, now);
                        }
                        body
                    }
                    "RestoreDBClusterFromSnapshot" | "CreateDBCluster"
                        if self.is_on(Behaviour::ParameterGroupSettle) =>
                    {
                        let group = get(&f, "DBClusterParameterGroupName").unwrap_or_default();
                        let young =
                            st.parameter_groups.get(&group).is_some_and(|at| now < *at + w.parameter_group_settle);
                        if let (true, Some(cluster)) = (young, get(&f, "DBClusterIdentifier")) {
                            st.pending_reboot.insert(cluster, HashSet::new());
                        }
                        body
                    }
                    "RebootDBInstance" => {
                        let id = get(&f, "DBInstanceIdentifier").unwrap_or_default();
                        for rebooted in st.pending_reboot.values_mut() {
                            rebooted.insert(id.clone());
                        }
                        body
                    }
                    "DescribeDBClusters" if self.is_on(Behaviour::ParameterGroupSettle) => {
                        let (text, n) = pending_members(&body, &st.pending_reboot);
                        if n > 0 {
                            self.fire(Behaviour::ParameterGroupSettle);
                        }
                        text
                    }
                    _ => body,
                }
            }
            "iam" if ok && op == "PutRolePolicy" => {
                let f = form(req.body());
                let (role, name) = (get(&f, "RoleName").unwrap_or_default(), get(&f, "PolicyName").unwrap_or_default());
                st.role_docs.entry(role).or_default().insert(name, get(&f, "PolicyDocument").unwrap_or_default());
                body
            }
            "iam" if ok && op == "DeleteRolePolicy" => {
                let f = form(req.body());
                if let Some(docs) = st.role_docs.get_mut(&get(&f, "RoleName").unwrap_or_default()) {
                    docs.remove(&get(&f, "PolicyName").unwrap_or_default());
                }
                body
            }
            "kms" if ok && op == "CreateKey" => {
                let answer: Value = serde_json::from_slice(&body).unwrap_or_default();
                if let Some(id) = answer["KeyMetadata"]["KeyId"].as_str() {
                    st.new_keys.insert(id.to_owned());
                }
                body
            }
            "s3" if ok && self.is_on(Behaviour::BucketPropagation) => {
                let (bucket, sub) = s3_target(req);
                if req.method() == "PUT"
                    && sub.is_empty()
                    && !bucket.is_empty()
                    && !req.uri().path().trim_start_matches('/').contains('/')
                {
                    st.buckets_new.insert(bucket, (now + w.bucket_propagation, false));
                } else if req.method() == "PUT" && sub == "versioning" {
                    st.buckets_versioning.insert(bucket, (now + w.bucket_propagation, false));
                }
                body
            }
            "dynamodb" if ok && self.is_on(Behaviour::DynamoTagPages) && op == "ListTagsOfResource" => {
                // The first page: every tag is remembered, the first few
                // answered (the rest by `before_teardown`, from here).
                let asked: Value = serde_json::from_slice(req.body()).unwrap_or_default();
                let answer: Value = serde_json::from_slice(&body).unwrap_or_default();
                let tags = answer["Tags"].as_array().cloned().unwrap_or_default();
                if tags.len() <= TAGS_PER_PAGE {
                    return body;
                }
                self.fire(Behaviour::DynamoTagPages);
                let arn = asked["ResourceArn"].as_str().unwrap_or_default().to_owned();
                st.table_tags.insert(arn, tags.clone());
                Bytes::from(tag_page(&tags, 0).to_string())
            }
            "lambda" if ok && self.is_on(Behaviour::LambdaKeyDropped) => {
                let (lop, _) = super::lambda_op(req);
                if !matches!(
                    lop,
                    "CreateFunction" | "GetFunction" | "GetFunctionConfiguration" | "UpdateFunctionConfiguration"
                ) {
                    return body;
                }
                let mut doc: Value = match serde_json::from_slice(&body) {
                    Ok(v) => v,
                    Err(_) => return body,
                };
                let cfg = if lop == "GetFunction" { &mut doc["Configuration"] } else { &mut doc };
                let has_vars = cfg["Environment"]["Variables"].as_object().is_some_and(|v| !v.is_empty());
                if has_vars || cfg.get("KMSKeyArn").is_none_or(Value::is_null) {
                    return body;
                }
                if let Some(o) = cfg.as_object_mut() {
                    o.remove("KMSKeyArn");
                }
                self.fire(Behaviour::LambdaKeyDropped);
                Bytes::from(doc.to_string())
            }
            _ => body,
        }
    }
}

/// One ListTagsOfResource page from `start`, with the next page's token.
fn tag_page(tags: &[Value], start: usize) -> Value {
    let end = (start + TAGS_PER_PAGE).min(tags.len());
    let mut page = serde_json::json!({"Tags": tags[start.min(end)..end]});
    if end < tags.len() {
        page["NextToken"] = Value::String(end.to_string());
    }
    page
}

/// A query request's parameters without its token, action and version.
fn without_token(f: &[(String, String)]) -> Vec<(String, String)> {
    let mut p: Vec<(String, String)> =
        f.iter().filter(|(k, _)| !matches!(k.as_str(), "ClientToken" | "Action" | "Version")).cloned().collect();
    p.sort();
    p
}

fn ok_xml(body: Bytes) -> Response<Full<Bytes>> {
    Response::builder().status(200).header("content-type", "text/xml").body(Full::new(body)).unwrap()
}

fn s3_error(status: u16, code: &str, message: &str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/xml")
        .body(Full::new(Bytes::from(format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>{message}</Message><RequestId>behaviour</RequestId></Error>"
        ))))
        .unwrap()
}

/// A path-style S3 request's bucket and its settings sub-resource
/// (`versioning`, `replication`…; empty for none).
fn s3_target(req: &Request<Bytes>) -> (String, String) {
    let bucket = req.uri().path().trim_start_matches('/').split('/').next().unwrap_or("").to_owned();
    let sub = req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .map(|p| p.split('=').next().unwrap_or(""))
        .find(|k| {
            matches!(
                *k,
                "versioning" | "encryption" | "tagging" | "publicAccessBlock" | "lifecycle" | "policy" | "replication"
            )
        })
        .unwrap_or("")
        .to_owned();
    (bucket, sub)
}

/// The group-to-group rules an Authorize/Revoke request names.
fn group_refs(f: &[(String, String)], egress: bool) -> Vec<GroupRef> {
    let owner = get(f, "GroupId").unwrap_or_default();
    let mut out = Vec::new();
    for n in 1.. {
        let p = format!("IpPermissions.{n}.");
        if !f.iter().any(|(k, _)| k.starts_with(&p)) {
            break;
        }
        let field = |name: &str| get(f, &format!("{p}{name}")).unwrap_or_default();
        for (k, peer) in f {
            if k.starts_with(&format!("{p}Groups.")) && k.ends_with(".GroupId") {
                out.push((
                    owner.clone(),
                    egress,
                    field("IpProtocol"),
                    field("FromPort"),
                    field("ToPort"),
                    peer.clone(),
                ));
            }
        }
    }
    out
}

/// In a DescribeDBClusters answer, the members of each cluster in `pending`
/// that were not rebooted read `pending-reboot`; returns the text and how
/// many members changed.
fn pending_members(body: &[u8], pending: &HashMap<String, HashSet<String>>) -> (Bytes, usize) {
    let mut text = String::from_utf8_lossy(body).into_owned();
    let mut changed = 0;
    for (cluster, rebooted) in pending {
        let Some(at) = text.find(&format!("<DBClusterIdentifier>{cluster}</DBClusterIdentifier>")) else { continue };
        let Some(start) = text[..at].rfind("<DBCluster>") else { continue };
        let end = text[start..].find("</DBCluster>").map_or(text.len(), |i| i + start);
        let mut block = text[start..end].to_owned();
        let mut out = String::new();
        let mut rest = block.as_str();
        while let Some(m) = rest.find("<DBClusterMember>") {
            let close = rest[m..].find("</DBClusterMember>").map_or(rest.len(), |i| i + m + "</DBClusterMember>".len());
            out.push_str(&rest[..m]);
            let member = &rest[m..close];
            let id = xml_value(member.as_bytes(), "DBInstanceIdentifier").unwrap_or_default();
            if rebooted.contains(&id) || !member.contains("<DBClusterParameterGroupStatus>in-sync<") {
                out.push_str(member);
            } else {
                out.push_str(&member.replace(
                    "<DBClusterParameterGroupStatus>in-sync<",
                    "<DBClusterParameterGroupStatus>pending-reboot<",
                ));
                changed += 1;
            }
            rest = &rest[close..];
        }
        out.push_str(rest);
        block = out;
        text.replace_range(start..end, &block);
    }
    (Bytes::from(text), changed)
}
