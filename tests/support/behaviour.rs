//! AWS behaviour mode for the test proxy: moto answers at once and forgives
//! what AWS refuses; this layer makes it behave as AWS does in the ways that
//! break real runs (the sources are in the README's "Against AWS" section),
//! with AWS's durations scaled (`Durations`: the tests' profile in units
//! of 150 ms, the benchmark's AWS minutes times a factor):
//!
//! | behaviour | what AWS does |
//! |---|---|
//! | `LambdaStates` | a new function is `Pending`, an updated one `InProgress`; meanwhile UpdateFunctionConfiguration/Code and PublishVersion answer `ResourceConflictException` |
//! | `IamPropagation` | a role created moments ago cannot be assumed by Lambda yet (and, for a VPC function, lacks CreateNetworkInterface) |
//! | `DynamoStates` | a table is `CREATING` after CreateTable, `UPDATING` (and its new index `CREATING`) after UpdateTable; UpdateTable, UpdateTimeToLive and DeleteTable answer `ResourceInUseException` meanwhile |
//! | `PitrUnavailable` | UpdateContinuousBackups right after a new table became ACTIVE answers `ContinuousBackupsUnavailableException` (here: its first two attempts) |
//! | `TtlHourly` | UpdateTimeToLive at most once per table within the hour |
//! | `EniLinger` | a deleted VPC function's network interfaces stay; its security groups, subnets and the VPC answer `DependencyViolation` until they go, and DescribeNetworkInterfaces lists them |
//! | `AlbSubnetPerAz` | CreateLoadBalancer takes one subnet per Availability Zone, in at least two zones |
//! | `AuroraStates` | a restored cluster and a new instance are `creating`; ModifyDBCluster answers `InvalidDBClusterStateFault` meanwhile |
//! | `SsmThroughput` | PutParameter is throttled past the account's default throughput |
//! | `CodeLocationExpiry` | GetFunction's `Code.Location` is a presigned URL that expires |
//! | `EndpointStates` | a new interface VPC endpoint is `pending` for a while before `available` |
//! | `LambdaRequestLimit` | CreateFunction and UpdateFunctionCode requests over 69,905,067 bytes (a package of about 50 MB inline) answer 413 `RequestEntityTooLargeException` |
//! | `AlbStates` | a new load balancer is `provisioning` for a few minutes before `active` |
//! | `IamLimits` | a role's inline policies total at most 10,240 characters and it has at most 10 managed policies; a managed policy document is at most 6,144; DeletePolicy answers `DeleteConflict` while the policy is attached or has other versions, DeleteRole while the role has managed policies |
//!
//! Each behaviour can be switched on alone and counts how often it fired: a
//! test asserts that it did, since a behaviour that never fired proves
//! nothing.

#![allow(dead_code)]

mod teardown;
pub use teardown::Windows;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Behaviour {
    LambdaStates,
    IamPropagation,
    DynamoStates,
    PitrUnavailable,
    TtlHourly,
    EniLinger,
    AlbSubnetPerAz,
    AuroraStates,
    SsmThroughput,
    CodeLocationExpiry,
    EndpointStates,
    IamLimits,
    LambdaRequestLimit,
    AlbStates,
    // Round two (`teardown`): the way down and the second migration.
    ClientTokens,
    GroupReferences,
    EniNeedsRole,
    TargetGroupInUse,
    RdsDeleting,
    EndpointUnsuccessful,
    LambdaPropagation,
    BucketPropagation,
    XRayPermission,
    NewKeyNotFound,
    CidrAssociating,
    DynamoTagPages,
    LambdaKeyDropped,
    ParameterGroupSettle,
}

pub const ALL: [Behaviour; 28] = [
    Behaviour::LambdaStates,
    Behaviour::IamPropagation,
    Behaviour::DynamoStates,
    Behaviour::PitrUnavailable,
    Behaviour::TtlHourly,
    Behaviour::EniLinger,
    Behaviour::AlbSubnetPerAz,
    Behaviour::AuroraStates,
    Behaviour::SsmThroughput,
    Behaviour::CodeLocationExpiry,
    Behaviour::EndpointStates,
    Behaviour::IamLimits,
    Behaviour::LambdaRequestLimit,
    Behaviour::AlbStates,
    Behaviour::ClientTokens,
    Behaviour::GroupReferences,
    Behaviour::EniNeedsRole,
    Behaviour::TargetGroupInUse,
    Behaviour::RdsDeleting,
    Behaviour::EndpointUnsuccessful,
    Behaviour::LambdaPropagation,
    Behaviour::BucketPropagation,
    Behaviour::XRayPermission,
    Behaviour::NewKeyNotFound,
    Behaviour::CidrAssociating,
    Behaviour::DynamoTagPages,
    Behaviour::LambdaKeyDropped,
    Behaviour::ParameterGroupSettle,
];

/// How long each state lasts.
#[derive(Debug, Clone, Copy)]
pub struct Durations {
    pub function_pending: Duration,
    pub function_updating: Duration,
    /// Until Lambda can assume a new role (the first half) and, for a VPC
    /// function, until the role's EC2 permissions are seen (the second).
    pub role_propagation: Duration,
    pub table_creating: Duration,
    pub table_updating: Duration,
    pub index_creating: Duration,
    /// The window within which a table's TTL may change once.
    pub ttl_window: Duration,
    /// How long a deleted VPC function's ENIs stay.
    pub eni_linger: Duration,
    pub cluster_creating: Duration,
    pub instance_creating: Duration,
    /// How long GetFunction's presigned `Code.Location` is valid.
    pub code_url_valid: Duration,
    /// How long a new interface endpoint stays `pending`.
    pub endpoint_pending: Duration,
    /// How long a new load balancer stays `provisioning`.
    pub alb_provisioning: Duration,
}

impl Durations {
    /// The test profile: AWS's durations in proportion, scaled to `unit`
    /// (a function 2 units, an index 4, ENIs 12, an ALB 30, the TTL window
    /// for ever).
    pub fn units(unit: Duration) -> Durations {
        Durations {
            function_pending: unit * 2,
            function_updating: unit * 2,
            role_propagation: unit * 3,
            table_creating: unit * 2,
            table_updating: unit * 2,
            index_creating: unit * 4,
            ttl_window: unit * 100_000,
            eni_linger: unit * 12,
            cluster_creating: unit * 3,
            instance_creating: unit * 3,
            code_url_valid: unit * 3,
            endpoint_pending: unit * 3,
            // AWS: ~3 minutes against a function's ~10 s. Long enough that
            // the step's first poll, after target groups and listener, meets
            // it provisioning even on a loaded machine.
            alb_provisioning: unit * 30,
        }
    }

    /// AWS's typical durations (AWS_REALITY) times `factor`: a function
    /// ~10 s, a role ~10 s, a table ~20 s, an index ~1 min, the TTL window
    /// an hour, ENIs ~20 min, a restored cluster ~10 min, an instance ~8
    /// min, the package link 10 min, an interface endpoint ~90 s, an ALB ~3
    /// min.
    pub fn aws(factor: f64) -> Durations {
        let s = |secs: f64| Duration::from_secs_f64(secs * factor);
        Durations {
            function_pending: s(10.0),
            function_updating: s(10.0),
            role_propagation: s(10.0),
            table_creating: s(20.0),
            table_updating: s(20.0),
            index_creating: s(60.0),
            ttl_window: s(3600.0),
            eni_linger: s(1200.0),
            cluster_creating: s(600.0),
            instance_creating: s(480.0),
            code_url_valid: s(600.0),
            endpoint_pending: s(90.0),
            alb_provisioning: s(180.0),
        }
    }
}

/// A lingering ENI: (gone at, id, subnet, security groups).
type Eni = (Instant, String, String, Vec<String>);

#[derive(Default)]
struct State {
    /// Function name -> (busy until, `Pending` or `InProgress`).
    functions: HashMap<String, (Instant, &'static str)>,
    /// Function name -> (subnets, security groups) of its VPC config.
    function_vpc: HashMap<String, (Vec<String>, Vec<String>)>,
    /// Function name -> its execution role's name.
    function_role: HashMap<String, String>,
    /// Lingering ENI id -> the execution role Lambda releases it with.
    eni_role: HashMap<String, String>,
    /// Role name -> when it was created.
    roles: HashMap<String, Instant>,
    /// Table -> (busy until, CREATING/UPDATING).
    tables: HashMap<String, (Instant, &'static str)>,
    /// Table -> index -> creating until.
    indexes: HashMap<String, HashMap<String, Instant>>,
    /// Table -> PITR attempts refused so far.
    pitr_refused: HashMap<String, u32>,
    /// Table -> last UpdateTimeToLive.
    ttl_changed: HashMap<String, Instant>,
    /// Lingering ENIs.
    enis: Vec<Eni>,
    /// Subnet id -> Availability Zone (from CreateSubnet).
    subnet_az: HashMap<String, String>,
    /// Cluster id -> creating until.
    clusters: HashMap<String, Instant>,
    /// Instance id -> creating until.
    instances: HashMap<String, Instant>,
    /// PutParameter token bucket: (tokens, last refill).
    put_tokens: Option<(f64, Instant)>,
    /// Interface endpoint id -> pending until.
    endpoints: HashMap<String, Instant>,
    /// Role -> inline policy -> its size (white space not counted).
    inline: HashMap<String, HashMap<String, usize>>,
    /// Role -> attached managed policy ARNs.
    attached: HashMap<String, BTreeSet<String>>,
    /// Managed policy ARN -> versions besides the default.
    other_versions: HashMap<String, u32>,
    /// Load balancer ARN -> provisioning until.
    albs: HashMap<String, Instant>,
}

/// IAM's limits (AWS_REALITY: IAM quotas).
mod iam_limits {
    pub const INLINE_PER_ROLE: usize = 10_240;
    pub const MANAGED_DOCUMENT: usize = 6_144;
    pub const MANAGED_PER_ROLE: usize = 10;
}

/// A policy document's size as IAM counts it: white space is not counted.
fn policy_size(doc: &str) -> usize {
    doc.chars().filter(|c| !c.is_whitespace()).count()
}

/// The behaviour layer of one proxy.
pub struct AwsBehaviour {
    on: BTreeSet<Behaviour>,
    /// How long each state lasts.
    pub durations: Durations,
    /// Round two's windows.
    pub windows: Windows,
    /// PutParameter calls per second before throttling (AWS's default
    /// throughput is 40 for standard parameters).
    pub put_parameter_per_second: f64,
    state: Mutex<State>,
    /// Round two's state; never locked while `state` is held.
    round2: Mutex<teardown::State>,
    fired: Mutex<BTreeMap<Behaviour, u64>>,
    packages: Mutex<HashMap<String, Vec<u8>>>,
    endpoint: OnceLock<String>,
    ids: AtomicU64,
}

impl std::fmt::Debug for AwsBehaviour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsBehaviour").field("on", &self.on).field("durations", &self.durations).finish()
    }
}

impl AwsBehaviour {
    /// `on`, with the test profile's durations (`Durations::units`).
    pub fn new(on: &[Behaviour], unit: Duration) -> AwsBehaviour {
        AwsBehaviour::timed(on, Durations::units(unit), Windows::units(unit))
    }

    /// `on`, with these durations.
    pub fn timed(on: &[Behaviour], durations: Durations, windows: Windows) -> AwsBehaviour {
        AwsBehaviour {
            on: on.iter().copied().collect(),
            durations,
            windows,
            round2: Mutex::new(teardown::State::default()),
            put_parameter_per_second: 40.0,
            state: Mutex::new(State::default()),
            fired: Mutex::new(BTreeMap::new()),
            packages: Mutex::new(HashMap::new()),
            endpoint: OnceLock::new(),
            ids: AtomicU64::new(1),
        }
    }

    /// Every behaviour at once.
    pub fn all(unit: Duration) -> AwsBehaviour {
        AwsBehaviour::new(&ALL, unit)
    }

    /// How often each behaviour fired.
    pub fn fired(&self) -> BTreeMap<Behaviour, u64> {
        self.fired.lock().unwrap().clone()
    }

    /// How often `b` fired.
    pub fn count(&self, b: Behaviour) -> u64 {
        self.fired().get(&b).copied().unwrap_or(0)
    }

    /// The package `CodeLocationExpiry` serves for a dev function.
    pub fn register_package(&self, function: &str, zip: Vec<u8>) {
        self.packages.lock().unwrap().insert(function.to_owned(), zip);
    }

    pub(crate) fn set_endpoint(&self, endpoint: String) {
        let _ = self.endpoint.set(endpoint);
    }

    fn is_on(&self, b: Behaviour) -> bool {
        self.on.contains(&b)
    }

    fn fire(&self, b: Behaviour) {
        *self.fired.lock().unwrap().entry(b).or_default() += 1;
    }

    fn later(&self, d: Duration) -> Instant {
        Instant::now() + d
    }

    fn request_id(&self) -> String {
        format!("behaviour-{}", self.ids.fetch_add(1, Ordering::Relaxed))
    }

    /// Serves a rewritten `Code.Location`: the package while the URL is
    /// valid, 403 after.
    pub fn serve(&self, req: &Request<Bytes>) -> Option<Response<Full<Bytes>>> {
        let function = req.uri().path().strip_prefix("/__paymig_code/")?;
        let issued: u128 = query_param(req.uri().query().unwrap_or(""), "issued")?.parse().ok()?;
        let now = epoch_ms();
        if now.saturating_sub(issued) > self.durations.code_url_valid.as_millis() {
            self.fire(Behaviour::CodeLocationExpiry);
            return Some(
                Response::builder()
                    .status(403)
                    .header("content-type", "application/xml")
                    .body(Full::new(Bytes::from_static(
                        b"<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>",
                    )))
                    .unwrap(),
            );
        }
        let zip = self.packages.lock().unwrap().get(function).cloned();
        Some(match zip {
            Some(zip) => Response::builder().status(200).body(Full::new(Bytes::from(zip))).unwrap(),
            None => Response::builder().status(404).body(Full::new(Bytes::new())).unwrap(),
        })
    }

    /// Before forwarding: the refusal AWS would answer, if any.
    pub fn before(&self, service: &str, op: &str, req: &Request<Bytes>) -> Option<Response<Full<Bytes>>> {
        if let Some(refused) = self.before_teardown(service, op, req) {
            return Some(refused);
        }
        let mut st = self.state.lock().unwrap();
        let now = Instant::now();
        match service {
            "lambda" => {
                let (lop, function) = lambda_op(req);
                if self.is_on(Behaviour::LambdaRequestLimit)
                    && matches!(lop, "CreateFunction" | "UpdateFunctionCode")
                    && req.body().len() > 69_905_067
                {
                    self.fire(Behaviour::LambdaRequestLimit);
                    let msg = format!("Request must be smaller than 69905067 bytes for the {lop} operation");
                    return Some(self.rest_json_error(413, "RequestEntityTooLargeException", &msg));
                }
                if self.is_on(Behaviour::LambdaStates)
                    && matches!(lop, "UpdateFunctionConfiguration" | "UpdateFunctionCode" | "PublishVersion")
                {
                    if let Some((until, state)) = st.functions.get(&function) {
                        if now < *until {
                            self.fire(Behaviour::LambdaStates);
                            let msg = if *state == "Pending" {
                                "The operation cannot be performed at this time. The function is currently in the following state: Pending".to_owned()
                            } else {
                                format!("The operation cannot be performed at this time. An update is in progress for resource: {function}")
                            };
                            return Some(self.rest_json_error(409, "ResourceConflictException", &msg));
                        }
                    }
                }
                if self.is_on(Behaviour::IamPropagation) && lop == "CreateFunction" {
                    let body: Value = serde_json::from_slice(req.body()).unwrap_or_default();
                    let role = body["Role"].as_str().unwrap_or("").rsplit('/').next().unwrap_or("").to_owned();
                    let vpc = body["VpcConfig"]["SubnetIds"].as_array().is_some_and(|s| !s.is_empty());
                    if let Some(created) = st.roles.get(&role) {
                        let age = now.duration_since(*created);
                        let half = self.durations.role_propagation / 2;
                        if age < half || (vpc && age < half * 2) {
                            self.fire(Behaviour::IamPropagation);
                            let msg = if age < half {
                                "The role defined for the function cannot be assumed by Lambda.".to_owned()
                            } else {
                                "The provided execution role does not have permissions to call CreateNetworkInterface on EC2".to_owned()
                            };
                            return Some(self.rest_json_error(400, "InvalidParameterValueException", &msg));
                        }
                    }
                }
                None
            }
            "dynamodb" => {
                let body: Value = serde_json::from_slice(req.body()).unwrap_or_default();
                let table = body["TableName"].as_str().unwrap_or("").to_owned();
                if self.is_on(Behaviour::DynamoStates)
                    && matches!(op, "UpdateTable" | "UpdateTimeToLive" | "DeleteTable" | "UpdateContinuousBackups")
                {
                    let busy_table = st.tables.get(&table).filter(|(until, _)| now < *until).map(|(_, s)| *s);
                    let busy_index = st.indexes.get(&table).is_some_and(|i| i.values().any(|u| now < *u));
                    if busy_table.is_some() || busy_index {
                        self.fire(Behaviour::DynamoStates);
                        let what = busy_table.unwrap_or("UPDATING");
                        return Some(self.json_error(
                            "ResourceInUseException",
                            &format!(
                                "Attempt to change a resource which is still in use: Table is being {}: {table}",
                                what.to_lowercase()
                            ),
                        ));
                    }
                }
                // Right after a new table becomes ACTIVE, enabling backups is
                // refused for a while: here its first two attempts.
                if self.is_on(Behaviour::PitrUnavailable)
                    && op == "UpdateContinuousBackups"
                    && st.tables.contains_key(&table)
                {
                    let refused = st.pitr_refused.entry(table.clone()).or_default();
                    if *refused < 2 {
                        *refused += 1;
                        self.fire(Behaviour::PitrUnavailable);
                        return Some(self.json_error(
                            "ContinuousBackupsUnavailableException",
                            &format!("Backups are being enabled for the table: {table}. Please retry later"),
                        ));
                    }
                }
                if self.is_on(Behaviour::TtlHourly) && op == "UpdateTimeToLive" {
                    if let Some(at) = st.ttl_changed.get(&table) {
                        if now < *at + self.durations.ttl_window {
                            self.fire(Behaviour::TtlHourly);
                            return Some(self.json_error(
                                "ValidationException",
                                "Time to live has been modified multiple times within a fixed interval",
                            ));
                        }
                    }
                }
                None
            }
            "ssm" if self.is_on(Behaviour::SsmThroughput) && op == "PutParameter" => {
                let rate = self.put_parameter_per_second;
                let (tokens, last) = st.put_tokens.get_or_insert((rate, now));
                *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * rate).min(rate);
                *last = now;
                if *tokens < 1.0 {
                    self.fire(Behaviour::SsmThroughput);
                    return Some(self.json_error("ThrottlingException", "Rate exceeded"));
                }
                *tokens -= 1.0;
                None
            }
            "ec2" if self.is_on(Behaviour::EniLinger) => {
                st.enis.retain(|(gone, ..)| now < *gone);
                let form = form(req.body());
                let lingering = |pred: &dyn Fn(&Eni) -> bool| st.enis.iter().any(pred);
                let blocked = match op {
                    "DeleteSecurityGroup" => get(&form, "GroupId").is_some_and(|g| lingering(&|e| e.3.contains(&g))),
                    "DeleteSubnet" => get(&form, "SubnetId").is_some_and(|s| lingering(&|e| e.2 == s)),
                    "DeleteVpc" => !st.enis.is_empty(),
                    _ => false,
                };
                if blocked {
                    self.fire(Behaviour::EniLinger);
                    let what = get(&form, "GroupId").or_else(|| get(&form, "SubnetId")).or_else(|| get(&form, "VpcId"));
                    return Some(self.ec2_error(
                        "DependencyViolation",
                        &format!("resource {} has a dependent object", what.unwrap_or_default()),
                    ));
                }
                None
            }
            "elasticloadbalancing" if self.is_on(Behaviour::AlbSubnetPerAz) && op == "CreateLoadBalancer" => {
                let form = form(req.body());
                let subnets: Vec<String> =
                    form.iter().filter(|(k, _)| k.starts_with("Subnets.member.")).map(|(_, v)| v.clone()).collect();
                let zones: Vec<Option<&String>> = subnets.iter().map(|s| st.subnet_az.get(s)).collect();
                if zones.iter().any(Option::is_none) {
                    return None;
                }
                let distinct: BTreeSet<&String> = zones.iter().flatten().copied().collect();
                let msg = if distinct.len() < zones.len() {
                    Some("A load balancer cannot be attached to multiple subnets in the same Availability Zone")
                } else if distinct.len() < 2 {
                    Some("At least two subnets in two different Availability Zones must be specified")
                } else {
                    None
                };
                msg.map(|m| {
                    self.fire(Behaviour::AlbSubnetPerAz);
                    self.query_error("InvalidConfigurationRequest", m)
                })
            }
            "rds" if self.is_on(Behaviour::AuroraStates) && op == "ModifyDBCluster" => {
                let form = form(req.body());
                let id = get(&form, "DBClusterIdentifier").unwrap_or_default();
                if st.clusters.get(&id).is_some_and(|until| now < *until) {
                    self.fire(Behaviour::AuroraStates);
                    return Some(self.query_error(
                        "InvalidDBClusterStateFault",
                        &format!("DB cluster {id} is not in the available state (creating)"),
                    ));
                }
                None
            }
            "iam" if self.is_on(Behaviour::IamLimits) => {
                let form = form(req.body());
                let role = get(&form, "RoleName").unwrap_or_default();
                let policy_arn = get(&form, "PolicyArn").unwrap_or_default();
                let size = get(&form, "PolicyDocument").map(|d| policy_size(&d)).unwrap_or(0);
                let refusal = match op {
                    "PutRolePolicy" => {
                        let name = get(&form, "PolicyName").unwrap_or_default();
                        let others: usize = st
                            .inline
                            .get(&role)
                            .map(|p| p.iter().filter(|(n, _)| **n != name).map(|(_, s)| s).sum())
                            .unwrap_or(0);
                        (others + size > iam_limits::INLINE_PER_ROLE).then(|| {
                            ("LimitExceeded", format!("Maximum policy size of 10240 bytes exceeded for role {role}"))
                        })
                    }
                    "CreatePolicy" | "CreatePolicyVersion" => (size > iam_limits::MANAGED_DOCUMENT)
                        .then(|| ("LimitExceeded", "Cannot exceed quota for PolicySize: 6144".to_owned())),
                    "AttachRolePolicy" => st
                        .attached
                        .get(&role)
                        .is_some_and(|a| a.len() >= iam_limits::MANAGED_PER_ROLE && !a.contains(&policy_arn))
                        .then(|| ("LimitExceeded", "Cannot exceed quota for PoliciesPerRole: 10".to_owned())),
                    "DeletePolicy" => {
                        if st.attached.values().any(|a| a.contains(&policy_arn)) {
                            Some(("DeleteConflict", "Cannot delete a policy attached to entities.".to_owned()))
                        } else if st.other_versions.get(&policy_arn).is_some_and(|n| *n > 0) {
                            Some(("DeleteConflict", "This policy has more than one version. Before you delete a policy, you must delete the policy's versions. The default version is deleted with the policy.".to_owned()))
                        } else {
                            None
                        }
                    }
                    "DeleteRole" => st.attached.get(&role).is_some_and(|a| !a.is_empty()).then(|| {
                        ("DeleteConflict", "Cannot delete entity, must detach all policies first.".to_owned())
                    }),
                    _ => None,
                };
                refusal.map(|(code, msg)| {
                    self.fire(Behaviour::IamLimits);
                    self.query_error(code, &msg)
                })
            }
            _ => None,
        }
    }

    /// After a call was forwarded: the state it starts, and describes
    /// rewritten to show it.
    pub fn after(&self, service: &str, op: &str, req: &Request<Bytes>, status: u16, body: Bytes) -> Bytes {
        let body = self.after_teardown(service, op, req, status, body);
        let ok = (200..300).contains(&status);
        let mut st = self.state.lock().unwrap();
        let now = Instant::now();
        match service {
            "lambda" => {
                let (lop, function) = lambda_op(req);
                match lop {
                    "CreateFunction" if ok => {
                        let asked: Value = serde_json::from_slice(req.body()).unwrap_or_default();
                        let name = asked["FunctionName"].as_str().unwrap_or_default().to_owned();
                        let list = |v: &Value| -> Vec<String> {
                            v.as_array()
                                .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect())
                                .unwrap_or_default()
                        };
                        let subnets = list(&asked["VpcConfig"]["SubnetIds"]);
                        let role = asked["Role"].as_str().unwrap_or("").rsplit('/').next().unwrap_or("").to_owned();
                        st.function_role.insert(name.clone(), role);
                        if !subnets.is_empty() {
                            st.function_vpc
                                .insert(name.clone(), (subnets, list(&asked["VpcConfig"]["SecurityGroupIds"])));
                        }
                        if !self.is_on(Behaviour::LambdaStates) {
                            return body;
                        }
                        st.functions.insert(name, (self.later(self.durations.function_pending), "Pending"));
                        // AWS answers CreateFunction with the function Pending.
                        match serde_json::from_slice::<Value>(&body) {
                            Ok(mut doc) => {
                                doc["State"] = "Pending".into();
                                doc["LastUpdateStatus"] = "InProgress".into();
                                Bytes::from(doc.to_string())
                            }
                            Err(_) => body,
                        }
                    }
                    "UpdateFunctionConfiguration" | "UpdateFunctionCode"
                        if ok && self.is_on(Behaviour::LambdaStates) =>
                    {
                        st.functions.insert(function, (self.later(self.durations.function_updating), "InProgress"));
                        body
                    }
                    "DeleteFunction" if ok => {
                        st.functions.remove(&function);
                        if self.is_on(Behaviour::EniLinger) {
                            if let Some((subnets, groups)) = st.function_vpc.remove(&function) {
                                let gone = now + self.durations.eni_linger;
                                let role = st.function_role.get(&function).cloned().unwrap_or_default();
                                for s in subnets {
                                    let id = format!("eni-{:017x}", self.ids.fetch_add(1, Ordering::Relaxed));
                                    st.eni_role.insert(id.clone(), role.clone());
                                    st.enis.push((gone, id, s, groups.clone()));
                                }
                            }
                        }
                        body
                    }
                    "GetFunction" | "GetFunctionConfiguration" if ok => {
                        let mut doc: Value = match serde_json::from_slice(&body) {
                            Ok(v) => v,
                            Err(_) => return body,
                        };
                        let cfg = if lop == "GetFunction" { &mut doc["Configuration"] } else { &mut doc };
                        if self.is_on(Behaviour::LambdaStates) {
                            if let Some((until, state)) = st.functions.get(&function) {
                                if now < *until {
                                    self.fire(Behaviour::LambdaStates);
                                    if *state == "Pending" {
                                        cfg["State"] = "Pending".into();
                                        cfg["LastUpdateStatus"] = "InProgress".into();
                                    } else {
                                        cfg["LastUpdateStatus"] = "InProgress".into();
                                    }
                                }
                            }
                        }
                        if lop == "GetFunction" && self.is_on(Behaviour::CodeLocationExpiry) {
                            if let Some(endpoint) = self.endpoint.get() {
                                doc["Code"]["Location"] =
                                    format!("{endpoint}/__paymig_code/{function}?issued={}", epoch_ms()).into();
                            }
                        }
                        Bytes::from(doc.to_string())
                    }
                    _ => body,
                }
            }
            "iam" if ok && op == "CreateRole" => {
                if let Some(name) = get(&form(req.body()), "RoleName") {
                    st.roles.insert(name, now);
                }
                body
            }
            "iam" if ok => {
                let form = form(req.body());
                let role = get(&form, "RoleName").unwrap_or_default();
                let policy_arn = get(&form, "PolicyArn").unwrap_or_default();
                match op {
                    "PutRolePolicy" => {
                        let size = get(&form, "PolicyDocument").map(|d| policy_size(&d)).unwrap_or(0);
                        st.inline.entry(role).or_default().insert(get(&form, "PolicyName").unwrap_or_default(), size);
                    }
                    "DeleteRolePolicy" => {
                        if let Some(p) = st.inline.get_mut(&role) {
                            p.remove(&get(&form, "PolicyName").unwrap_or_default());
                        }
                    }
                    "AttachRolePolicy" => {
                        st.attached.entry(role).or_default().insert(policy_arn);
                    }
                    "DetachRolePolicy" => {
                        if let Some(a) = st.attached.get_mut(&role) {
                            a.remove(&policy_arn);
                        }
                    }
                    "CreatePolicyVersion" => *st.other_versions.entry(policy_arn).or_default() += 1,
                    "DeletePolicyVersion" => {
                        let n = st.other_versions.entry(policy_arn).or_default();
                        *n = n.saturating_sub(1);
                    }
                    "DeleteRole" => {
                        st.inline.remove(&role);
                        st.attached.remove(&role);
                        // Lambda releases a deleted function's interfaces
                        // with its role: gone first, they stay for ever.
                        if self.is_on(Behaviour::EniNeedsRole) {
                            let stuck: Vec<String> = st
                                .enis
                                .iter()
                                .filter(|(gone, id, ..)| now < *gone && st.eni_role.get(id) == Some(&role))
                                .map(|(_, id, ..)| id.clone())
                                .collect();
                            for e in st.enis.iter_mut().filter(|e| stuck.contains(&e.1)) {
                                e.0 = now + Duration::from_secs(100 * 365 * 24 * 3600);
                            }
                            if !stuck.is_empty() {
                                self.fire(Behaviour::EniNeedsRole);
                            }
                        }
                    }
                    _ => {}
                }
                body
            }
            "dynamodb" => {
                let asked: Value = serde_json::from_slice(req.body()).unwrap_or_default();
                let table = asked["TableName"].as_str().unwrap_or("").to_owned();
                match op {
                    "CreateTable" if ok => {
                        st.tables.insert(table, (self.later(self.durations.table_creating), "CREATING"));
                        body
                    }
                    "UpdateTable" if ok => {
                        st.tables.insert(table.clone(), (self.later(self.durations.table_updating), "UPDATING"));
                        for u in asked["GlobalSecondaryIndexUpdates"].as_array().into_iter().flatten() {
                            if let Some(index) = u["Create"]["IndexName"].as_str() {
                                st.indexes
                                    .entry(table.clone())
                                    .or_default()
                                    .insert(index.to_owned(), self.later(self.durations.index_creating));
                            }
                        }
                        body
                    }
                    "UpdateTimeToLive" if ok => {
                        st.ttl_changed.insert(table, now);
                        body
                    }
                    "DeleteTable" if ok => {
                        st.tables.remove(&table);
                        st.indexes.remove(&table);
                        st.ttl_changed.remove(&table);
                        body
                    }
                    "DescribeTable" if ok && self.is_on(Behaviour::DynamoStates) => {
                        let mut doc: Value = match serde_json::from_slice(&body) {
                            Ok(v) => v,
                            Err(_) => return body,
                        };
                        let mut changed = false;
                        if let Some((until, state)) = st.tables.get(&table) {
                            if now < *until {
                                doc["Table"]["TableStatus"] = (*state).into();
                                changed = true;
                            }
                        }
                        if let (Some(idx), Some(gsis)) =
                            (st.indexes.get(&table), doc["Table"]["GlobalSecondaryIndexes"].as_array_mut())
                        {
                            for g in gsis {
                                let name = g["IndexName"].as_str().unwrap_or_default().to_owned();
                                if idx.get(&name).is_some_and(|u| now < *u) {
                                    g["IndexStatus"] = "CREATING".into();
                                    changed = true;
                                }
                            }
                        }
                        if changed {
                            self.fire(Behaviour::DynamoStates);
                        }
                        Bytes::from(doc.to_string())
                    }
                    _ => body,
                }
            }
            "ec2" => match op {
                "CreateVpcEndpoint" if ok && self.is_on(Behaviour::EndpointStates) => {
                    let form = form(req.body());
                    let interface = get(&form, "VpcEndpointType").is_some_and(|t| t.eq_ignore_ascii_case("interface"));
                    match xml_value(&body, "vpcEndpointId").filter(|_| interface) {
                        Some(id) => {
                            st.endpoints.insert(id.clone(), now + self.durations.endpoint_pending);
                            self.fire(Behaviour::EndpointStates);
                            pending_endpoints(&body, &[id])
                        }
                        None => body,
                    }
                }
                "DescribeVpcEndpoints" if ok && self.is_on(Behaviour::EndpointStates) => {
                    let busy: Vec<String> =
                        st.endpoints.iter().filter(|(_, u)| now < **u).map(|(id, _)| id.clone()).collect();
                    let text = pending_endpoints(&body, &busy);
                    if text != body {
                        self.fire(Behaviour::EndpointStates);
                    }
                    text
                }
                "CreateSubnet" if ok => {
                    let form = form(req.body());
                    if let (Some(az), Some(id)) = (get(&form, "AvailabilityZone"), xml_value(&body, "subnetId")) {
                        st.subnet_az.insert(id, az);
                    }
                    body
                }
                "DescribeSubnets" if ok => {
                    // Subnets created before the proxy saw them (dev's).
                    let text = String::from_utf8_lossy(&body).into_owned();
                    for item in text.split("<item>").skip(1) {
                        if let (Some(id), Some(az)) =
                            (xml_value(item.as_bytes(), "subnetId"), xml_value(item.as_bytes(), "availabilityZone"))
                        {
                            st.subnet_az.entry(id).or_insert(az);
                        }
                    }
                    body
                }
                "DescribeNetworkInterfaces" if ok && self.is_on(Behaviour::EniLinger) => {
                    st.enis.retain(|(gone, ..)| now < *gone);
                    let form = form(req.body());
                    let mut filters: Vec<(String, Vec<String>)> = Vec::new();
                    for (k, v) in &form {
                        if let Some(rest) = k.strip_prefix("Filter.") {
                            let mut parts = rest.splitn(2, '.');
                            let (n, field) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                            let i: usize = n.parse().unwrap_or(0);
                            while filters.len() < i {
                                filters.push((String::new(), Vec::new()));
                            }
                            if i == 0 {
                                continue;
                            }
                            if field == "Name" {
                                filters[i - 1].0 = v.clone();
                            } else if field.starts_with("Value") {
                                filters[i - 1].1.push(v.clone());
                            }
                        }
                    }
                    let matching: Vec<&Eni> = st
                        .enis
                        .iter()
                        .filter(|(_, _, subnet, groups)| {
                            filters.iter().all(|(name, values)| match name.as_str() {
                                "group-id" => groups.iter().any(|g| values.contains(g)),
                                "subnet-id" => values.contains(subnet),
                                "vpc-id" | "" => true,
                                "interface-type" => values.iter().any(|v| v == "lambda"),
                                _ => true,
                            })
                        })
                        .collect();
                    if matching.is_empty() {
                        return body;
                    }
                    self.fire(Behaviour::EniLinger);
                    let items: String = matching
                        .iter()
                        .map(|(_, id, subnet, groups)| {
                            let groups: String = groups
                                .iter()
                                .map(|g| format!("<item><groupId>{g}</groupId><groupName>{g}</groupName></item>"))
                                .collect();
                            format!(
                                "<item><networkInterfaceId>{id}</networkInterfaceId><subnetId>{subnet}</subnetId><description>AWS Lambda VPC ENI</description><interfaceType>lambda</interfaceType><status>in-use</status><groupSet>{groups}</groupSet></item>"
                            )
                        })
                        .collect();
                    let text = String::from_utf8_lossy(&body).into_owned();
                    let text = if text.contains("<networkInterfaceSet/>") {
                        text.replace(
                            "<networkInterfaceSet/>",
                            &format!("<networkInterfaceSet>{items}</networkInterfaceSet>"),
                        )
                    } else {
                        text.replacen("<networkInterfaceSet>", &format!("<networkInterfaceSet>{items}"), 1)
                    };
                    Bytes::from(text)
                }
                _ => body,
            },
            "elasticloadbalancing" if ok && self.is_on(Behaviour::AlbStates) => match op {
                "CreateLoadBalancer" => {
                    if let Some(arn) = xml_value(&body, "LoadBalancerArn") {
                        st.albs.insert(arn, now + self.durations.alb_provisioning);
                    }
                    body
                }
                "DescribeLoadBalancers" => {
                    st.albs.retain(|_, until| now < *until);
                    let busy: Vec<String> = st.albs.keys().cloned().collect();
                    let (text, n) = provisioning_albs(&body, &busy);
                    if n > 0 {
                        self.fire(Behaviour::AlbStates);
                    }
                    text
                }
                _ => body,
            },
            "rds" if self.is_on(Behaviour::AuroraStates) => {
                let form = form(req.body());
                match op {
                    "RestoreDBClusterFromSnapshot" | "CreateDBCluster" if ok => {
                        if let Some(id) = get(&form, "DBClusterIdentifier") {
                            st.clusters.insert(id, self.later(self.durations.cluster_creating));
                        }
                        body
                    }
                    "CreateDBInstance" if ok => {
                        if let Some(id) = get(&form, "DBInstanceIdentifier") {
                            st.instances.insert(id, self.later(self.durations.instance_creating));
                        }
                        body
                    }
                    "DescribeDBClusters" if ok => {
                        let busy: Vec<String> =
                            st.clusters.iter().filter(|(_, u)| now < **u).map(|(id, _)| id.clone()).collect();
                        let (text, n) = rewrite_blocks(&body, "DBCluster", "DBClusterIdentifier", &busy, "Status");
                        if n > 0 {
                            self.fire(Behaviour::AuroraStates);
                        }
                        text
                    }
                    "DescribeDBInstances" if ok => {
                        let busy: Vec<String> =
                            st.instances.iter().filter(|(_, u)| now < **u).map(|(id, _)| id.clone()).collect();
                        let (text, n) =
                            rewrite_blocks(&body, "DBInstance", "DBInstanceIdentifier", &busy, "DBInstanceStatus");
                        if n > 0 {
                            self.fire(Behaviour::AuroraStates);
                        }
                        text
                    }
                    _ => body,
                }
            }
            _ => body,
        }
    }

    fn rest_json_error(&self, status: u16, code: &str, message: &str) -> Response<Full<Bytes>> {
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .header("x-amzn-errortype", code)
            .header("x-amzn-requestid", self.request_id())
            .body(Full::new(Bytes::from(serde_json::json!({"Type": "User", "message": message}).to_string())))
            .unwrap()
    }

    fn json_error(&self, code: &str, message: &str) -> Response<Full<Bytes>> {
        Response::builder()
            .status(400)
            .header("content-type", "application/x-amz-json-1.0")
            .header("x-amzn-requestid", self.request_id())
            .body(Full::new(Bytes::from(
                serde_json::json!({"__type": format!("com.amazonaws.service#{code}"), "message": message}).to_string(),
            )))
            .unwrap()
    }

    fn ec2_error(&self, code: &str, message: &str) -> Response<Full<Bytes>> {
        Response::builder()
            .status(400)
            .header("content-type", "text/xml")
            .body(Full::new(Bytes::from(format!(
                "<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors><RequestID>{}</RequestID></Response>",
                self.request_id()
            ))))
            .unwrap()
    }

    fn query_error(&self, code: &str, message: &str) -> Response<Full<Bytes>> {
        Response::builder()
            .status(400)
            .header("content-type", "text/xml")
            .body(Full::new(Bytes::from(format!(
                "<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>{}</RequestId></ErrorResponse>",
                self.request_id()
            ))))
            .unwrap()
    }
}

fn epoch_ms() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0)
}

/// Lambda's REST operation and function name from the method and path.
fn lambda_op(req: &Request<Bytes>) -> (&'static str, String) {
    let path = req.uri().path();
    let parts: Vec<String> = path.trim_start_matches('/').split('/').map(percent_decode).collect();
    let method = req.method().as_str();
    let name = parts.get(2).map(|n| n.rsplit(':').next().unwrap_or(n).to_owned()).unwrap_or_default();
    // A qualified ARN ends in the version or alias: keep the function name.
    let name = if parts.get(2).is_some_and(|n| n.starts_with("arn:")) {
        parts[2].split(':').nth(6).unwrap_or(&name).to_owned()
    } else {
        name
    };
    let op = match (method, parts.len(), parts.get(3).map(String::as_str)) {
        ("POST", 2, _) => "CreateFunction",
        ("GET", 3, _) => "GetFunction",
        ("DELETE", 3, _) => "DeleteFunction",
        ("GET", 4, Some("configuration")) => "GetFunctionConfiguration",
        ("PUT", 4, Some("configuration")) => "UpdateFunctionConfiguration",
        ("PUT", 4, Some("code")) => "UpdateFunctionCode",
        ("POST", 4, Some("versions")) => "PublishVersion",
        _ => "Other",
    };
    (op, name)
}

pub(crate) fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A query-protocol body (`Action=…&Name=value`), decoded.
pub(crate) fn form(body: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (percent_decode(k), percent_decode(v)))
        .collect()
}

pub(crate) fn get(form: &[(String, String)], key: &str) -> Option<String> {
    form.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
}

pub(crate) fn query_param(query: &str, key: &str) -> Option<String> {
    form(query.as_bytes()).into_iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

/// The text of the first `<tag>` element.
/// Each endpoint of `ids` shown `pending` (its own `<state>` follows its id
/// in EC2's XML, before any nested set).
fn pending_endpoints(body: &Bytes, ids: &[String]) -> Bytes {
    let mut text = String::from_utf8_lossy(body).into_owned();
    for id in ids {
        let Some(at) = text.find(&format!("<vpcEndpointId>{id}</vpcEndpointId>")) else { continue };
        let next = text[at + 1..].find("<vpcEndpointId>").map_or(text.len(), |n| n + at + 1);
        if let Some(s) = text[at..next].find("<state>available</state>") {
            let s = at + s;
            text.replace_range(s..s + "<state>available</state>".len(), "<state>pending</state>");
        }
    }
    Bytes::from(text)
}

fn xml_value(body: &[u8], tag: &str) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let open = format!("<{tag}>");
    let start = text.find(&open)? + open.len();
    let end = text[start..].find(&format!("</{tag}>"))? + start;
    Some(text[start..end].to_owned())
}

/// In a DescribeLoadBalancers answer, the state of each load balancer in
/// `arns` (its `<State><Code>` follows its ARN, before the next ARN) reads
/// `provisioning`; returns the text and how many changed.
fn provisioning_albs(body: &[u8], arns: &[String]) -> (Bytes, usize) {
    let mut text = String::from_utf8_lossy(body).into_owned();
    let mut changed = 0;
    for arn in arns {
        let tag = format!("<LoadBalancerArn>{arn}</LoadBalancerArn>");
        let Some(at) = text.find(&tag).map(|i| i + tag.len()) else { continue };
        let next = text[at..].find("<LoadBalancerArn>").map_or(text.len(), |i| i + at);
        if let Some(code) = text[at..next].find("<Code>active</Code>").map(|i| i + at) {
            text.replace_range(code..code + "<Code>active</Code>".len(), "<Code>provisioning</Code>");
            changed += 1;
        }
    }
    (Bytes::from(text), changed)
}

/// In every `<block>` whose `<id_tag>` is one of `ids`, sets `<status_tag>`
/// to `creating`; returns the text and how many blocks changed.
fn rewrite_blocks(body: &[u8], block: &str, id_tag: &str, ids: &[String], status_tag: &str) -> (Bytes, usize) {
    let text = String::from_utf8_lossy(body).into_owned();
    if ids.is_empty() {
        return (Bytes::from(text), 0);
    }
    let open = format!("<{block}>");
    let close = format!("</{block}>");
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    let mut changed = 0;
    while let Some(start) = rest.find(&open) {
        let Some(end) = rest[start..].find(&close).map(|e| e + start + close.len()) else { break };
        out.push_str(&rest[..start]);
        let mut chunk = rest[start..end].to_owned();
        let id = xml_value(chunk.as_bytes(), id_tag).unwrap_or_default();
        if ids.contains(&id) {
            if let Some(status) = xml_value(chunk.as_bytes(), status_tag) {
                chunk = chunk.replacen(
                    &format!("<{status_tag}>{status}</{status_tag}>"),
                    &format!("<{status_tag}>creating</{status_tag}>"),
                    1,
                );
                changed += 1;
            }
        }
        out.push_str(&chunk);
        rest = &rest[end..];
    }
    out.push_str(rest);
    (Bytes::from(out), changed)
}
