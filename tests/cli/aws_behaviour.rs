//! paymig against an emulator that behaves like AWS (`support::behaviour`):
//! resources that take time, the refusals AWS answers meanwhile, IAM
//! propagation, lingering Lambda ENIs, the TTL hourly rule, one ALB subnet
//! per zone, expiring package links. Each test checks that its behaviour
//! fired (a behaviour that never fired proves nothing) and the resulting
//! state through the SDK.

use std::sync::Arc;
use std::time::Duration;

use crate::support::behaviour::{AwsBehaviour, Behaviour};
use crate::support::fixture::{self, TableSpec};
use crate::support::inventory::{duplicates, prod_inventory};
use crate::support::proxy::{Proxy, ProxyConfig};
use crate::support::World;
use crate::without_database;

/// One unit of AWS time in these tests (a function is Pending 2 units,
/// ENIs linger 12).
const UNIT: Duration = Duration::from_millis(150);

fn behaving(w: &World, on: &[Behaviour]) -> (Proxy, Arc<AwsBehaviour>) {
    let b = Arc::new(AwsBehaviour::new(on, UNIT));
    let proxy = Proxy::start(ProxyConfig { behaviour: Some(b.clone()), ..ProxyConfig::new(&w.moto.endpoint) });
    (proxy, b)
}

#[tokio::test(flavor = "multi_thread")]
async fn lambda_waits_for_pending_and_in_progress_and_for_iam_propagation() {
    let w = World::with(Default::default(), without_database).await;
    let (proxy, b) = behaving(&w, &[Behaviour::LambdaStates, Behaviour::IamPropagation]);
    let apply = w.paymig(["apply", "--yes"]).via(&proxy.endpoint).guard_dev(&w.moto.endpoint).run();
    apply.expect_code(0);
    assert!(b.count(Behaviour::IamPropagation) >= 1, "the new role was not yet assumable: {:?}", b.fired());
    assert!(b.count(Behaviour::LambdaStates) >= 1, "the new function was Pending: {:?}", b.fired());

    // Drift in both the configuration and the code: two updates in a row,
    // each refused while the previous one is in progress.
    let lambda = &w.prod.lambda;
    lambda
        .update_function_configuration()
        .function_name("payment-processor-prod")
        .memory_size(1024)
        .send()
        .await
        .unwrap();
    let other = fixture::zip_one("handler.py", b"def handler(e, c):\n    return 'not dev'\n");
    lambda
        .update_function_code()
        .function_name("payment-processor-prod")
        .zip_file(aws_smithy_types::Blob::new(other))
        .send()
        .await
        .unwrap();
    let before = b.count(Behaviour::LambdaStates);
    let mend = w.paymig(["apply", "--yes"]).via(&proxy.endpoint).run();
    mend.expect_code(0);
    assert!(b.count(Behaviour::LambdaStates) > before, "the updates met InProgress: {:?}", b.fired());
    let f = lambda.get_function().function_name("payment-processor-prod").send().await.unwrap();
    let dev = lambda.get_function().function_name("payment-processor-dev").send().await.unwrap();
    let (prod_cfg, dev_cfg) = (f.configuration.unwrap(), dev.configuration.unwrap());
    assert_eq!(prod_cfg.code_sha256(), dev_cfg.code_sha256(), "dev's code again");
    assert_eq!(prod_cfg.memory_size(), dev_cfg.memory_size(), "dev's memory again");
    let again = w.paymig(["apply", "--yes"]).via(&proxy.endpoint).run();
    again.expect_code(0);
    assert_eq!(again.mutating_calls(), 0, "{}", again.stderr);
    w.paymig(["destroy", "--yes"]).via(&proxy.endpoint).run().expect_code(0);
    assert!(prod_inventory(&w.moto.endpoint, "prod").await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn dynamodb_waits_between_table_changes_retries_pitr_and_never_touches_ttl_twice() {
    let w = World::with(Default::default(), |t| {
        without_database(t)
            .replace("dynamodb_tables = [\"sessions-dev\"]", "dynamodb_tables = [\"sessions-dev\", \"orders-dev\"]")
    })
    .await;
    let dev = fixture::Clients::new(&w.moto.endpoint, "us-east-1", None).await;
    fixture::seed_table(
        &dev,
        &TableSpec {
            name: "orders-dev".into(),
            range: true,
            gsis: vec![
                ("by-customer".into(), "customer".into(), "total".into()),
                ("by-status".into(), "status".into(), "total".into()),
            ],
            lsi: false,
            ttl: Some("expires_at".into()),
            stream: None,
            provisioned: None,
        },
    )
    .await;
    // A prod table that predates paymig, without the two indexes: paymig
    // adds them in place, one at a time (its TTL is already dev's).
    fixture::seed_table(
        &dev,
        &TableSpec {
            name: "orders-prod".into(),
            range: true,
            gsis: vec![],
            lsi: false,
            ttl: Some("expires_at".into()),
            stream: None,
            provisioned: None,
        },
    )
    .await;
    let (proxy, b) = behaving(&w, &[Behaviour::DynamoStates, Behaviour::PitrUnavailable, Behaviour::TtlHourly]);
    let apply = w.paymig(["apply", "--yes"]).via(&proxy.endpoint).guard_dev(&w.moto.endpoint).run();
    apply.expect_code(0);
    assert!(b.count(Behaviour::DynamoStates) >= 2, "tables and indexes were CREATING: {:?}", b.fired());
    assert!(b.count(Behaviour::PitrUnavailable) >= 1, "PITR was refused right after ACTIVE: {:?}", b.fired());
    let orders = w.prod.dynamodb.describe_table().table_name("orders-prod").send().await.unwrap().table.unwrap();
    let mut gsis: Vec<&str> = orders.global_secondary_indexes().iter().filter_map(|g| g.index_name()).collect();
    gsis.sort();
    assert_eq!(gsis, ["by-customer", "by-status"]);
    for t in ["sessions-prod", "orders-prod"] {
        let pitr = w.prod.dynamodb.describe_continuous_backups().table_name(t).send().await.unwrap();
        let status = pitr
            .continuous_backups_description()
            .and_then(|c| c.point_in_time_recovery_description())
            .and_then(|p| p.point_in_time_recovery_status())
            .map(|s| s.as_str().to_owned());
        assert_eq!(status.as_deref(), Some("ENABLED"), "{t}");
    }
    let ttl = w.prod.dynamodb.describe_time_to_live().table_name("orders-prod").send().await.unwrap();
    assert_eq!(ttl.time_to_live_description().and_then(|d| d.attribute_name()), Some("expires_at"));

    // Destroy within the TTL window: the tables paymig created are deleted
    // without disabling TTL first (AWS would refuse a second change within
    // the hour); the table that predates paymig keeps its TTL and indexes.
    let destroy = w.paymig(["destroy", "--yes"]).via(&proxy.endpoint).run();
    destroy.expect_code(0);
    assert_eq!(b.count(Behaviour::TtlHourly), 0, "no second TTL change: {:?}", b.fired());
    let left = w.prod.dynamodb.list_tables().send().await.unwrap();
    assert!(!left.table_names().iter().any(|t| t == "sessions-prod"), "{left:?}");
    // The TTL rule is live: a second change of one table through the proxy
    // is refused.
    let ddb = aws_sdk_dynamodb::Client::new(&fixture::sdk_config(&proxy.endpoint, "us-east-1").await);
    fixture::seed_table(
        &fixture::Clients::new(&proxy.endpoint, "us-east-1", None).await,
        &TableSpec {
            name: "ttl-probe".into(),
            range: false,
            gsis: vec![],
            lsi: false,
            ttl: None,
            stream: None,
            provisioned: None,
        },
    )
    .await;
    tokio::time::sleep(UNIT * 3).await;
    let set = |enabled: bool| {
        ddb.update_time_to_live().table_name("ttl-probe").time_to_live_specification(
            aws_sdk_dynamodb::types::TimeToLiveSpecification::builder()
                .attribute_name("expires_at")
                .enabled(enabled)
                .build()
                .unwrap(),
        )
    };
    set(true).send().await.expect("the first change");
    assert!(set(false).send().await.is_err(), "a second change within the hour is refused");
    assert_eq!(b.count(Behaviour::TtlHourly), 1);
}

/// A deleted function's interfaces linger (AWS: 20–45 minutes) and Lambda
/// releases them with the function's execution role: destroy waits for
/// them before deleting the roles, the groups and the subnets. Deleted
/// first, a role would leave them for ever (`EniNeedsRole`): the wait would
/// run into `max_wait_minutes`, here 2.
#[tokio::test(flavor = "multi_thread")]
async fn destroy_waits_for_lingering_lambda_network_interfaces() {
    let w = World::with(Default::default(), |t| {
        without_database(t).replace("max_wait_minutes = 60", "max_wait_minutes = 2")
    })
    .await;
    // Longer than the fixed retry budget paymig once had (eight attempts,
    // about a minute): on AWS they stay 20–45 minutes.
    let mut b = AwsBehaviour::new(&[Behaviour::EniLinger, Behaviour::EniNeedsRole], UNIT);
    b.durations.eni_linger = Duration::from_secs(95);
    let b = Arc::new(b);
    let proxy = Proxy::start(ProxyConfig { behaviour: Some(b.clone()), ..ProxyConfig::new(&w.moto.endpoint) });
    w.paymig(["apply", "--yes"]).via(&proxy.endpoint).run().expect_code(0);
    let destroy = w.paymig(["destroy", "--yes"]).via(&proxy.endpoint).guard_dev(&w.moto.endpoint).run();
    destroy.expect_code(0);
    assert!(b.count(Behaviour::EniLinger) >= 1, "ENIs lingered: {:?}", b.fired());
    assert_eq!(b.count(Behaviour::EniNeedsRole), 0, "no role went before its interfaces: {:?}", b.fired());
    assert!(destroy.stderr.contains("network interface"), "the wait is shown: {}", destroy.stderr);
    let left = prod_inventory(&w.moto.endpoint, "prod").await;
    assert!(left.is_empty(), "{left:?}");
}

/// A new interface endpoint is `pending` for a while (AWS: a minute or
/// two). apply waits for `available` — a validate right after it is clean —
/// in a step of its own, so the functions and the ALB go on meanwhile.
#[tokio::test(flavor = "multi_thread")]
async fn apply_waits_for_interface_endpoints_in_a_step_nothing_else_waits_for() {
    let w = World::with(Default::default(), without_database).await;
    let mut b = AwsBehaviour::new(&[Behaviour::EndpointStates], UNIT);
    // Longer than the rest of this apply takes.
    b.durations.endpoint_pending = Duration::from_secs(20);
    let b = Arc::new(b);
    let proxy = Proxy::start(ProxyConfig { behaviour: Some(b.clone()), ..ProxyConfig::new(&w.moto.endpoint) });
    let apply =
        w.paymig(["--log-format", "json", "apply", "--yes"]).via(&proxy.endpoint).guard_dev(&w.moto.endpoint).run();
    apply.expect_code(0);
    assert!(b.count(Behaviour::EndpointStates) >= 2, "the endpoints were pending: {:?}", b.fired());
    let done: Vec<String> = apply
        .stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["event"] == "step" && e["state"] == "done")
        .filter_map(|e| e["step"].as_str().map(String::from))
        .collect();
    let at = |s: &str| done.iter().position(|d| d == s).unwrap_or_else(|| panic!("{s} done: {done:?}"));
    assert!(
        at("lambda") < at("endpoints") && at("alb") < at("endpoints"),
        "nothing waited for the endpoints: {done:?}"
    );
    let validate = w.paymig(["validate", "--format", "json"]).via(&proxy.endpoint).guard_dev(&w.moto.endpoint).run();
    validate.expect_code(0);
    let report: serde_json::Value = serde_json::from_str(&validate.stdout).unwrap();
    let checks: Vec<&serde_json::Value> =
        report["checks"].as_array().unwrap().iter().filter(|c| c["id"] == "network.interface_endpoints").collect();
    assert!(checks.len() == 2 && checks.iter().all(|c| c["passed"] == true), "{checks:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_alb_gets_one_subnet_per_availability_zone() {
    // Dev has two subnets in us-east-1a: prod mirrors both.
    let opts = fixture::Options { zones: vec!["us-east-1a", "us-east-1a", "us-east-1b"], ..Default::default() };
    let w = World::with(opts, without_database).await;
    let (proxy, b) = behaving(&w, &[Behaviour::AlbSubnetPerAz]);
    w.paymig(["apply", "--yes"]).via(&proxy.endpoint).guard_dev(&w.moto.endpoint).run().expect_code(0);
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&fixture::sdk_config(&w.moto.endpoint, "us-east-1").await);
    let lb = elb.describe_load_balancers().names("payments-alb-prod").send().await.unwrap();
    let zones: Vec<String> =
        lb.load_balancers()[0].availability_zones().iter().filter_map(|z| z.zone_name().map(str::to_owned)).collect();
    let distinct: std::collections::BTreeSet<&String> = zones.iter().collect();
    assert_eq!(distinct.len(), zones.len(), "one subnet per zone: {zones:?}");
    assert!(zones.len() >= 2, "{zones:?}");
    // The rule is live: two subnets of one zone are refused.
    let subnets = w
        .prod
        .ec2
        .describe_subnets()
        .filters(aws_sdk_ec2::types::Filter::builder().name("tag:paymig:migration").values("payments").build())
        .send()
        .await
        .unwrap();
    let in_a: Vec<String> = subnets
        .subnets()
        .iter()
        .filter(|s| s.availability_zone() == Some("us-east-1a"))
        .filter_map(|s| s.subnet_id().map(str::to_owned))
        .collect();
    assert_eq!(in_a.len(), 2, "prod mirrors dev's two subnets in us-east-1a");
    let via = aws_sdk_elasticloadbalancingv2::Client::new(&fixture::sdk_config(&proxy.endpoint, "us-east-1").await);
    assert!(via.create_load_balancer().name("probe").set_subnets(Some(in_a)).send().await.is_err());
    assert_eq!(b.count(Behaviour::AlbSubnetPerAz), 1, "{:?}", b.fired());
    w.paymig(["destroy", "--yes"]).via(&proxy.endpoint).run().expect_code(0);
}

/// A new load balancer is `provisioning` for minutes on AWS: apply ends
/// only once it is `active` (a `switch` right after must find it serving).
#[tokio::test(flavor = "multi_thread")]
async fn apply_ends_once_the_new_load_balancer_is_active() {
    let w = World::with(Default::default(), without_database).await;
    let mut b = AwsBehaviour::new(&[Behaviour::AlbStates], UNIT);
    // Longer than the rest of this apply takes after CreateLoadBalancer.
    b.durations.alb_provisioning = Duration::from_secs(8);
    let b = Arc::new(b);
    let proxy = Proxy::start(ProxyConfig { behaviour: Some(b.clone()), ..ProxyConfig::new(&w.moto.endpoint) });
    let apply = w.paymig(["apply", "--yes"]).via(&proxy.endpoint).guard_dev(&w.moto.endpoint).run();
    apply.expect_code(0);
    assert!(
        b.count(Behaviour::AlbStates) >= 1,
        "the load balancer was provisioning: {:?}\n{}",
        b.fired(),
        apply.stderr
    );
    assert!(apply.stderr.contains("to become active"), "the wait is shown: {}", apply.stderr);
    let via = aws_sdk_elasticloadbalancingv2::Client::new(&fixture::sdk_config(&proxy.endpoint, "us-east-1").await);
    let lb = via.describe_load_balancers().names("payments-alb-prod").send().await.unwrap();
    let state = lb.load_balancers()[0].state().and_then(|s| s.code()).cloned();
    assert_eq!(state, Some(aws_sdk_elasticloadbalancingv2::types::LoadBalancerStateEnum::Active));
    w.paymig(["destroy", "--yes"]).via(&proxy.endpoint).run().expect_code(0);
}

/// The whole stack, database included, against every behaviour at once, at
/// the first attempt of every command: apply, validate right after it, a
/// no-op re-apply, rollback, apply, destroy, and a second migration after
/// the destroy (apply, destroy) in the same run — EC2 remembers client
/// tokens across it. The dev stack has what AWS is strict about: a function
/// with active X-Ray tracing, one without environment variables, a database
/// on port 6543, and a subnet in the VPC's secondary CIDR block.
#[tokio::test(flavor = "multi_thread")]
async fn the_full_life_cycle_holds_when_the_emulator_behaves_like_aws() {
    let opts = fixture::Options {
        tracing: true,
        db_port: Some(6543),
        secondary_subnet: true,
        bare_function: true,
        ..Default::default()
    };
    let w = World::with(opts, |t| {
        // A wait that can never end (an interface whose role is gone, a
        // group still referenced) fails the test in minutes, not an hour.
        t.replace("max_wait_minutes = 60", "max_wait_minutes = 2").replace(
            "lambda_functions = [\"payment-processor-dev\"]",
            "lambda_functions = [\"payment-processor-dev\", \"ledger-worker-dev\"]",
        )
    })
    .await;
    let mut b = AwsBehaviour::all(UNIT);
    // Long enough that undo meets them even on a loaded machine.
    b.durations.eni_linger = Duration::from_secs(5);
    let b = Arc::new(b);
    let proxy = Proxy::start(ProxyConfig { behaviour: Some(b.clone()), ..ProxyConfig::new(&w.moto.endpoint) });
    let run = |args: &[&str]| w.paymig(args).via(&proxy.endpoint).guard_dev(&w.moto.endpoint).run();
    let via = fixture::Clients::new(&proxy.endpoint, "us-east-1", None).await;
    run(&["apply", "--yes"]).expect_code(0);
    // Right after apply, with every state AWS passes through: no drift.
    run(&["validate"]).expect_code(0);
    let inv = prod_inventory(&w.moto.endpoint, "prod").await;
    assert!(duplicates(&inv).is_empty(), "{:?}", duplicates(&inv));
    assert_strict_dev_stack_migrated(&w, &via).await;
    let again = run(&["apply", "--yes"]);
    again.expect_code(0);
    assert_eq!(again.mutating_calls(), 0, "{}", again.stderr);
    run(&["rollback", "--yes"]).expect_code(0);
    run(&["apply", "--yes"]).expect_code(0);
    // The same stack again (a new KMS key: the old one is pending deletion).
    let without_key = |mut i: crate::support::inventory::Inventory| {
        i.remove("kms_key");
        i
    };
    assert_eq!(
        without_key(prod_inventory(&w.moto.endpoint, "prod").await),
        without_key(inv.clone()),
        "the same stack again"
    );
    run(&["destroy", "--yes"]).expect_code(0);
    let left = prod_inventory(&w.moto.endpoint, "prod").await;
    assert!(left.is_empty(), "{left:?}");
    // The second migration: every EC2 create carries a token of its own,
    // so none meets a token remembered from the first.
    run(&["apply", "--yes"]).expect_code(0);
    run(&["validate"]).expect_code(0);
    assert_strict_dev_stack_migrated(&w, &via).await;
    assert_eq!(b.count(Behaviour::ClientTokens), 0, "no remembered token was reused: {:?}", b.fired());
    // A destroy killed during the Aurora deletion left an instance
    // `deleting`: the next destroy meets "already being deleted" and waits.
    via.rds.delete_db_instance().db_instance_identifier("payments-prod-2").send().await.unwrap();
    run(&["destroy", "--yes"]).expect_code(0);
    let left = prod_inventory(&w.moto.endpoint, "prod").await;
    assert!(left.is_empty(), "{left:?}");
    let fired = b.fired();
    for must in [
        Behaviour::LambdaStates,
        Behaviour::DynamoStates,
        Behaviour::AuroraStates,
        Behaviour::EniLinger,
        Behaviour::EndpointStates,
        Behaviour::AlbStates,
        Behaviour::TargetGroupInUse,
        Behaviour::RdsDeleting,
        Behaviour::EndpointUnsuccessful,
        Behaviour::LambdaPropagation,
        Behaviour::BucketPropagation,
        Behaviour::NewKeyNotFound,
        Behaviour::CidrAssociating,
        Behaviour::DynamoTagPages,
        Behaviour::ParameterGroupSettle,
    ] {
        assert!(fired.get(&must).copied().unwrap_or(0) > 0, "{must:?} never fired: {fired:?}");
    }
    // What paymig now never meets: the execution roles outlived the
    // functions' interfaces, every group's references were revoked before
    // it was deleted, the traced function's role could trace, and no key
    // was sent for the function without variables. Each is live (probed
    // below), so never meeting it is paymig's doing.
    for never in
        [Behaviour::EniNeedsRole, Behaviour::GroupReferences, Behaviour::XRayPermission, Behaviour::LambdaKeyDropped]
    {
        assert_eq!(b.count(never), 0, "{never:?}: {fired:?}");
    }
    let a = via.ec2.create_security_group().group_name("probe-a").description("p").vpc_id(&w.dev.vpc_id);
    let a = a.send().await.unwrap().group_id.unwrap();
    let c = via.ec2.create_security_group().group_name("probe-c").description("p").vpc_id(&w.dev.vpc_id);
    let c = c.send().await.unwrap().group_id.unwrap();
    let from_c = aws_sdk_ec2::types::IpPermission::builder()
        .ip_protocol("tcp")
        .from_port(443)
        .to_port(443)
        .user_id_group_pairs(aws_sdk_ec2::types::UserIdGroupPair::builder().group_id(&c).build())
        .build();
    via.ec2.authorize_security_group_ingress().group_id(&a).ip_permissions(from_c).send().await.unwrap();
    let referenced = via.ec2.delete_security_group().group_id(&c).send().await.unwrap_err();
    assert_eq!(paymig::testing::AwsFailure::of(&referenced).code.as_deref(), Some("DependencyViolation"));
    assert_eq!(b.count(Behaviour::GroupReferences), 1);
    let role = via.iam.get_role().role_name("payment-processor-dev-role").send().await.unwrap().role.unwrap().arn;
    let key = via.kms.create_key().send().await.unwrap().key_metadata.unwrap().arn.unwrap();
    let probe = |name: &str, traced: bool| {
        let code = aws_sdk_lambda::types::FunctionCode::builder()
            .zip_file(aws_smithy_types::Blob::new(fixture::zip_one("h.py", b"x")))
            .build();
        let tracing = aws_sdk_lambda::types::TracingConfig::builder()
            .mode(if traced {
                aws_sdk_lambda::types::TracingMode::Active
            } else {
                aws_sdk_lambda::types::TracingMode::PassThrough
            })
            .build();
        via.lambda
            .create_function()
            .function_name(name)
            .runtime(aws_sdk_lambda::types::Runtime::Python312)
            .handler("h.h")
            .role(&role)
            .code(code)
            .kms_key_arn(&key)
            .tracing_config(tracing)
    };
    let untraceable = probe("probe-traced", true).send().await.unwrap_err();
    assert!(paymig::testing::AwsFailure::of(&untraceable).message.contains("PutTraceSegments"));
    assert_eq!(b.count(Behaviour::XRayPermission), 1);
    // The key is new: Lambda refuses its grant once (LambdaPropagation).
    if probe("probe-bare", false).send().await.is_err() {
        probe("probe-bare", false).send().await.unwrap();
    }
    let bare = via.lambda.get_function_configuration().function_name("probe-bare").send().await.unwrap();
    assert!(bare.kms_key_arn().is_none() && b.count(Behaviour::LambdaKeyDropped) >= 1, "{bare:?}");
    // The token memory is live: a remembered token with other parameters
    // is refused, with the same ones it answers the first resource again.
    let vpc = via.ec2.create_vpc().cidr_block("10.99.0.0/16").send().await.unwrap().vpc.unwrap().vpc_id.unwrap();
    let rt = || via.ec2.create_route_table().vpc_id(&vpc).client_token("probe-token");
    let first = rt().send().await.unwrap().route_table.unwrap().route_table_id;
    assert_eq!(rt().send().await.unwrap().route_table.unwrap().route_table_id, first, "replayed");
    let other = via.ec2.create_vpc().cidr_block("10.98.0.0/16").send().await.unwrap().vpc.unwrap().vpc_id.unwrap();
    let mismatch = via.ec2.create_route_table().vpc_id(&other).client_token("probe-token").send().await.unwrap_err();
    assert_eq!(paymig::testing::AwsFailure::of(&mismatch).code.as_deref(), Some("IdempotentParameterMismatch"));
}

/// What the strict dev stack must look like in prod, read through the
/// proxy (what AWS would answer): the database group admits the cluster's
/// own port, the traced function's role may write traces, the secondary
/// block's subnet exists, every cluster member runs its parameter group,
/// and the function without variables carries no key.
async fn assert_strict_dev_stack_migrated(w: &World, via: &fixture::Clients) {
    let cluster = via.rds.describe_db_clusters().db_cluster_identifier("payments-prod").send().await.unwrap();
    let cluster = &cluster.db_clusters()[0];
    assert_eq!(cluster.port(), Some(6543), "restored on dev's port");
    let members: Vec<(Option<&str>, Option<&str>)> = cluster
        .db_cluster_members()
        .iter()
        .map(|m| (m.db_instance_identifier(), m.db_cluster_parameter_group_status()))
        .collect();
    assert!(members.len() == 2 && members.iter().all(|(_, s)| *s == Some("in-sync")), "{members:?}");
    let db = crate::support::group_id(&w.prod, "payments-db-sg-prod").await;
    let groups = w.prod.ec2.describe_security_groups().group_ids(&db).send().await.unwrap();
    let ports: Vec<(Option<i32>, Option<i32>)> =
        groups.security_groups()[0].ip_permissions().iter().map(|p| (p.from_port(), p.to_port())).collect();
    assert_eq!(ports, [(Some(6543), Some(6543))], "the database group admits the cluster's port");
    let doc = w
        .prod
        .iam
        .get_role_policy()
        .role_name("payment-processor-prod-role")
        .policy_name("paymig-execution")
        .send()
        .await
        .unwrap()
        .policy_document;
    let doc = crate::support::behaviour::percent_decode(&doc);
    assert!(doc.contains("xray:PutTraceSegments") && doc.contains("xray:PutTelemetryRecords"), "{doc}");
    let bare = w.prod.iam.get_role_policy().role_name("ledger-worker-prod-role").policy_name("paymig-execution");
    let bare = crate::support::behaviour::percent_decode(&bare.send().await.unwrap().policy_document);
    assert!(!bare.contains("xray:"), "tracing is granted only where it is on: {bare}");
    let subnets = w
        .prod
        .ec2
        .describe_subnets()
        .filters(aws_sdk_ec2::types::Filter::builder().name("cidr-block").values("10.21.1.0/24").build())
        .filters(aws_sdk_ec2::types::Filter::builder().name("tag:paymig:migration").values("payments").build())
        .send()
        .await
        .unwrap();
    assert_eq!(subnets.subnets().len(), 1, "the secondary block's subnet");
    let worker = via.lambda.get_function_configuration().function_name("ledger-worker-prod").send().await.unwrap();
    assert!(worker.kms_key_arn().is_none(), "no key without variables");
}

/// Without `[source] lambda_artifacts` the package comes from GetFunction's
/// presigned `Code.Location`, valid for minutes; the database step before
/// the lambda step takes longer. The link is asked for right before the
/// download.
#[tokio::test(flavor = "multi_thread")]
async fn the_package_link_is_asked_for_right_before_the_download() {
    let w = World::with(Default::default(), |t| {
        t.replace("lambda_artifacts = \"s3://payments-artifacts-dev/lambda/\"", "")
    })
    .await;
    let text = std::fs::read_to_string(&w.config).unwrap();
    assert!(!text.contains("lambda_artifacts = \"s3"), "the config downloads from the code location");
    let b = Arc::new(AwsBehaviour::new(&[Behaviour::CodeLocationExpiry, Behaviour::AuroraStates], UNIT));
    let zip =
        fixture::zip_one("handler.py", b"def handler(event, context):\n    return {'statusCode': 200, 'body': 'ok'}\n");
    b.register_package("payment-processor-dev", zip);
    let proxy = Proxy::start(ProxyConfig { behaviour: Some(b.clone()), ..ProxyConfig::new(&w.moto.endpoint) });
    // One step at a time: the database step (and every step before the
    // functions) runs between preflight and the download.
    let apply =
        w.paymig(["apply", "--yes", "--parallelism", "1"]).via(&proxy.endpoint).guard_dev(&w.moto.endpoint).run();
    apply.expect_code(0);
    assert!(b.count(Behaviour::AuroraStates) >= 1, "the database took time: {:?}", b.fired());
    assert_eq!(b.count(Behaviour::CodeLocationExpiry), 0, "no expired link was used: {:?}", b.fired());
    let prod = w.prod.lambda.get_function().function_name("payment-processor-prod").send().await.unwrap();
    let dev = w.prod.lambda.get_function().function_name("payment-processor-dev").send().await.unwrap();
    assert_eq!(prod.configuration.unwrap().code_sha256(), dev.configuration.unwrap().code_sha256());
    // The expiry is live: a link read earlier is refused once it expired.
    let via = aws_sdk_lambda::Client::new(&fixture::sdk_config(&proxy.endpoint, "us-east-1").await);
    let link =
        via.get_function().function_name("payment-processor-dev").send().await.unwrap().code.unwrap().location.unwrap();
    assert!(paymig::testing::download(&link).await.is_ok());
    tokio::time::sleep(UNIT * 5).await;
    let expired = paymig::testing::download(&link).await.unwrap_err();
    assert_eq!(expired.status, Some(403));
    assert_eq!(b.count(Behaviour::CodeLocationExpiry), 1);
}

/// A short crash campaign against the behaving emulator (database tier
/// left out: its SDK waiters poll every 30 s): applies killed at journal
/// boundaries resume to the reference stack with nothing duplicated, a
/// re-apply changes nothing, the journal stays consistent and destroy —
/// waiting for ENIs, tables and functions as AWS requires — leaves nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_applies_resume_and_converge_when_the_emulator_behaves_like_aws() {
    use crate::campaigns::{check_journal, crash_round, journal_file, round_config, shape, Kill};
    use futures::StreamExt;
    let w = World::with(Default::default(), without_database).await;
    let b = Arc::new(AwsBehaviour::all(UNIT));
    let proxy = Proxy::start(ProxyConfig { behaviour: Some(b.clone()), ..ProxyConfig::new(&w.moto.endpoint) });
    let reference = round_config(&w, "b000");
    crate::support::Paymig::new(&proxy.endpoint, &reference).args(["apply", "--yes"]).run().expect_code(0);
    let writes = check_journal(&journal_file(&w, "b000"), true).unwrap() as u64;
    let expected = shape(&prod_inventory(&w.moto.endpoint, "b000").await, "b000");
    crate::support::Paymig::new(&proxy.endpoint, &reference).args(["destroy", "--yes"]).run().expect_code(0);
    let kills: Vec<Kill> = [3, writes / 4, writes / 2, writes * 3 / 4].into_iter().map(Kill::AfterWrites).collect();
    let endpoint = proxy.endpoint.clone();
    let landed: Vec<bool> = futures::stream::iter(kills.into_iter().enumerate())
        .map(|(i, k)| {
            let (w, expected, endpoint) = (&w, &expected, &endpoint);
            async move { crash_round(w, Some(endpoint), format!("b{:03}", i + 1), k, expected).await }
        })
        .buffer_unordered(4)
        .collect()
        .await;
    assert!(landed.iter().all(|l| *l), "every kill landed mid-run: {landed:?}");
    let fired = b.fired();
    for must in [Behaviour::LambdaStates, Behaviour::DynamoStates, Behaviour::EniLinger] {
        assert!(fired.get(&must).copied().unwrap_or(0) > 0, "{must:?} never fired: {fired:?}");
    }
}

/// With 70 tables an execution role's whole policy no longer fits IAM's
/// 10,240 inline characters (the emulator enforces IAM's limits here): the
/// table grants move into managed policies of at most 6,144 characters,
/// attached to every execution role, through apply, drift, a shrinking
/// configuration, rollback and destroy — and no IAM limit is ever hit.
#[tokio::test(flavor = "multi_thread")]
async fn seventy_tables_move_into_managed_policies_within_iams_limits() {
    use std::collections::BTreeSet;
    let extra: Vec<String> = (1..=69).map(|i| format!("ledger-shard-{i:02}-dev")).collect();
    let list: Vec<String> =
        std::iter::once("sessions-dev").chain(extra.iter().map(String::as_str)).map(|t| format!("\"{t}\"")).collect();
    let many = format!("dynamodb_tables = [{}]", list.join(", "));
    let w =
        World::with(Default::default(), |t| without_database(t).replace("dynamodb_tables = [\"sessions-dev\"]", &many))
            .await;
    let dev = fixture::Clients::new(&w.moto.endpoint, "us-east-1", None).await;
    for name in &extra {
        let spec = TableSpec {
            name: name.clone(),
            range: false,
            gsis: vec![],
            lsi: false,
            ttl: None,
            stream: None,
            provisioned: None,
        };
        fixture::seed_table(&dev, &spec).await;
    }
    let (proxy, b) = behaving(&w, &[Behaviour::IamLimits]);
    let run = |args: &[&str]| w.paymig(args).via(&proxy.endpoint).guard_dev(&w.moto.endpoint).run();

    let plan = run(&["plan"]);
    plan.expect_code(0);
    for p in ["payments-tables-1-prod", "payments-tables-2-prod"] {
        assert!(plan.stdout.contains(&format!("+ iam_policy {p}")), "{p} planned: {}", plan.stdout);
    }
    run(&["apply", "--yes"]).expect_code(0);
    assert_eq!(b.count(Behaviour::IamLimits), 0, "apply hit no IAM limit: {:?}", b.fired());

    // Through the SDK: the inline policy has no table grant, the attached
    // policies grant every table and its indexes once, each within IAM's
    // limit and tagged.
    let iam = &w.prod.iam;
    let role = "payment-processor-prod-role";
    let attached = |iam: aws_sdk_iam::Client| async move {
        let out = iam.list_attached_role_policies().role_name(role).send().await.unwrap();
        out.attached_policies().iter().map(|p| p.policy_arn().unwrap().to_owned()).collect::<BTreeSet<String>>()
    };
    let table_arns = attached(iam.clone()).await;
    let expected: BTreeSet<String> = ["payments-tables-1-prod", "payments-tables-2-prod"]
        .iter()
        .map(|p| format!("arn:aws:iam::123456789012:policy/{p}"))
        .collect();
    assert_eq!(table_arns, expected);
    let inline = iam.get_role_policy().role_name(role).policy_name("paymig-execution").send().await.unwrap();
    let inline = crate::support::behaviour::percent_decode(inline.policy_document());
    assert!(inline.len() <= 10_240 && !inline.contains("dynamodb:"), "{inline}");
    let mut granted = Vec::new();
    for arn in &expected {
        let p = iam.get_policy().policy_arn(arn).send().await.unwrap().policy.unwrap();
        let tags: BTreeSet<(&str, &str)> = p.tags().iter().map(|t| (t.key(), t.value())).collect();
        assert!(
            tags.contains(&("Environment", "production")) && tags.contains(&("CostCenter", "payments")),
            "{tags:?}"
        );
        let v =
            iam.get_policy_version().policy_arn(arn).version_id(p.default_version_id().unwrap()).send().await.unwrap();
        let doc = crate::support::behaviour::percent_decode(v.policy_version.unwrap().document().unwrap());
        assert!(doc.len() <= 6_144, "{arn}: {} characters", doc.len());
        let doc: serde_json::Value = serde_json::from_str(&doc).unwrap();
        for s in doc["Statement"].as_array().unwrap() {
            assert!(s["Action"].as_array().unwrap().iter().all(|a| !a.as_str().unwrap().contains('*')), "{s}");
            granted.extend(s["Resource"].as_array().unwrap().iter().map(|r| r.as_str().unwrap().to_owned()));
        }
    }
    let want: Vec<String> = std::iter::once("sessions-prod".to_owned())
        .chain((1..=69).map(|i| format!("ledger-shard-{i:02}-prod")))
        .flat_map(|t| {
            [
                format!("arn:aws:dynamodb:us-east-1:123456789012:table/{t}"),
                format!("arn:aws:dynamodb:us-east-1:123456789012:table/{t}/index/*"),
            ]
        })
        .collect();
    assert_eq!(granted, want, "every table and its indexes, once, in order");

    // Converged, validated; a detached policy is drift that apply repairs.
    let again = run(&["apply", "--yes"]);
    again.expect_code(0);
    assert_eq!(again.mutating_calls(), 0, "{}", again.stderr);
    let report = run(&["validate", "--format", "json"]);
    report.expect_code(0);
    assert!(report.stdout.contains("iam.table_policies"), "{}", report.stdout);
    let second = "arn:aws:iam::123456789012:policy/payments-tables-2-prod";
    iam.detach_role_policy().role_name(role).policy_arn(second).send().await.unwrap();
    run(&["validate"]).expect_code(3);
    run(&["apply", "--yes"]).expect_code(0);
    assert_eq!(attached(iam.clone()).await, expected, "repaired");

    // Fewer tables: the grants fit inline again and the table policies are
    // detached; rollback puts both back.
    let text = std::fs::read_to_string(&w.config).unwrap();
    std::fs::write(&w.config, text.replace(&many, "dynamodb_tables = [\"sessions-dev\"]")).unwrap();
    run(&["apply", "--yes"]).expect_code(0);
    assert!(attached(iam.clone()).await.is_empty(), "nothing attached once the tables fit inline");
    let inline = iam.get_role_policy().role_name(role).policy_name("paymig-execution").send().await.unwrap();
    assert!(crate::support::behaviour::percent_decode(inline.policy_document()).contains("table/sessions-prod"));
    run(&["rollback", "--yes"]).expect_code(0);
    assert_eq!(attached(iam.clone()).await, expected, "rollback attached them again");
    let inline = iam.get_role_policy().role_name(role).policy_name("paymig-execution").send().await.unwrap();
    assert!(
        !crate::support::behaviour::percent_decode(inline.policy_document()).contains("dynamodb:"),
        "and took the tables out"
    );
    assert_eq!(b.count(Behaviour::IamLimits), 0, "{:?}", b.fired());

    // The limits are live: the whole policy as one inline document is
    // refused, and so is deleting an attached policy.
    let via = fixture::Clients::new(&proxy.endpoint, "us-east-1", None).await;
    let whole = serde_json::json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Action": ["dynamodb:GetItem"], "Resource": want}]});
    let refused =
        via.iam.put_role_policy().role_name(role).policy_name("whole").policy_document(whole.to_string()).send().await;
    assert_eq!(refused.unwrap_err().into_service_error().meta().code(), Some("LimitExceeded"));
    let refused = via.iam.delete_policy().policy_arn(second).send().await;
    assert_eq!(refused.unwrap_err().into_service_error().meta().code(), Some("DeleteConflict"));
    assert_eq!(b.count(Behaviour::IamLimits), 2);

    // Destroy detaches before it deletes, as IAM requires.
    run(&["destroy", "--yes"]).expect_code(0);
    assert_eq!(b.count(Behaviour::IamLimits), 2, "destroy hit no limit: {:?}", b.fired());
    let left = prod_inventory(&w.moto.endpoint, "prod").await;
    assert!(left.is_empty(), "{left:?}");
}

/// A package over Lambda's inline request limit (about 50 MB zipped; the
/// emulator answers 413 past 69,905,067 bytes here, as Lambda does) is
/// staged in a prod bucket and deployed from there, on create and on a code
/// update; the staged object is removed once deployed, and destroy removes
/// the bucket.
#[tokio::test(flavor = "multi_thread")]
async fn a_package_over_the_inline_limit_is_deployed_through_a_staging_bucket() {
    let w = World::with(Default::default(), without_database).await;
    let dev = fixture::Clients::new(&w.moto.endpoint, "us-east-1", None).await;
    let mut content = b"def handler(event, context):\n    return 'large'\n#".to_vec();
    content.resize(52_500_000, b'x');
    let large = fixture::zip_one("handler.py", &content);
    let key = "lambda/payment-processor-dev.zip";
    dev.s3.put_object().bucket("payments-artifacts-dev").key(key).body(large.clone().into()).send().await.unwrap();
    dev.lambda
        .update_function_code()
        .function_name("payment-processor-dev")
        .s3_bucket("payments-artifacts-dev")
        .s3_key(key)
        .send()
        .await
        .unwrap();
    let (proxy, b) = behaving(&w, &[Behaviour::LambdaRequestLimit]);
    let run = |args: &[&str]| w.paymig(args).via(&proxy.endpoint).guard_dev(&w.moto.endpoint).run();
    let staging = "payments-lambda-staging-prod";

    let plan = run(&["plan"]);
    plan.expect_code(0);
    assert!(plan.stdout.contains(&format!("+ staging_bucket {staging}")), "{}", plan.stdout);
    run(&["apply", "--yes"]).expect_code(0);
    assert_eq!(b.count(Behaviour::LambdaRequestLimit), 0, "nothing was sent inline: {:?}", b.fired());
    let sha = |c: aws_sdk_lambda::Client, f: &'static str| async move {
        let out = c.get_function().function_name(f).send().await.unwrap();
        out.configuration.unwrap().code_sha256.unwrap()
    };
    let dev_sha = sha(dev.lambda.clone(), "payment-processor-dev").await;
    assert_eq!(sha(dev.lambda.clone(), "payment-processor-prod").await, dev_sha, "dev's large package runs in prod");

    // The bucket: the prod key, no public access, a day's expiry, tagged,
    // and nothing left in it.
    let s3 = &w.prod.s3;
    let enc = s3.get_bucket_encryption().bucket(staging).send().await.unwrap();
    let rule = enc.server_side_encryption_configuration.unwrap().rules[0].clone();
    let default = rule.apply_server_side_encryption_by_default.unwrap();
    assert_eq!(default.sse_algorithm, aws_sdk_s3::types::ServerSideEncryption::AwsKms);
    let keys = w.prod.kms.list_aliases().send().await.unwrap();
    let alias = keys.aliases().iter().find(|a| a.alias_name() == Some("alias/payments-prod")).unwrap();
    let key_arn = w.prod.kms.describe_key().key_id(alias.target_key_id().unwrap()).send().await.unwrap();
    assert_eq!(default.kms_master_key_id.as_deref(), key_arn.key_metadata.unwrap().arn(), "the prod key");
    let block = s3.get_public_access_block().bucket(staging).send().await.unwrap();
    let block = block.public_access_block_configuration.unwrap();
    assert!(block.block_public_acls == Some(true) && block.restrict_public_buckets == Some(true), "{block:?}");
    let life = s3.get_bucket_lifecycle_configuration().bucket(staging).send().await.unwrap();
    assert_eq!(life.rules()[0].expiration.as_ref().and_then(|e| e.days), Some(1));
    let tags = s3.get_bucket_tagging().bucket(staging).send().await.unwrap();
    assert!(tags.tag_set().iter().any(|t| t.key() == "Environment" && t.value() == "production"));
    let listed = s3.list_objects_v2().bucket(staging).send().await.unwrap();
    assert_eq!(listed.key_count(), Some(0), "the staged package was removed once deployed");

    let again = run(&["apply", "--yes"]);
    again.expect_code(0);
    assert_eq!(again.mutating_calls(), 0, "{}", again.stderr);

    // Code drift: the update goes through the bucket too.
    let small = fixture::zip_one("handler.py", b"def handler(e, c):\n    return 'not dev'\n");
    w.prod
        .lambda
        .update_function_code()
        .function_name("payment-processor-prod")
        .zip_file(aws_smithy_types::Blob::new(small))
        .send()
        .await
        .unwrap();
    assert_ne!(sha(dev.lambda.clone(), "payment-processor-prod").await, dev_sha);
    run(&["apply", "--yes"]).expect_code(0);
    assert_eq!(sha(dev.lambda.clone(), "payment-processor-prod").await, dev_sha, "dev's package again");
    assert_eq!(b.count(Behaviour::LambdaRequestLimit), 0, "{:?}", b.fired());
    assert_eq!(s3.list_objects_v2().bucket(staging).send().await.unwrap().key_count(), Some(0));

    // The limit is live: the same package inline is refused.
    let via = fixture::Clients::new(&proxy.endpoint, "us-east-1", None).await;
    let inline = via
        .lambda
        .update_function_code()
        .function_name("payment-processor-prod")
        .zip_file(aws_smithy_types::Blob::new(large))
        .send()
        .await;
    assert_eq!(inline.unwrap_err().raw_response().map(|r| r.status().as_u16()), Some(413));
    assert_eq!(b.count(Behaviour::LambdaRequestLimit), 1);

    run(&["destroy", "--yes"]).expect_code(0);
    let left = prod_inventory(&w.moto.endpoint, "prod").await;
    assert!(left.is_empty(), "{left:?}");
}
