//! paymig driven as a user would drive it — the built binary against a moto
//! server — with every result checked through the AWS SDK.

mod support;

#[path = "cli/audit_monitoring.rs"]
mod audit_monitoring;
#[path = "cli/aws_behaviour.rs"]
mod aws_behaviour;
#[path = "cli/bad_input.rs"]
mod bad_input;
#[path = "cli/bench.rs"]
mod bench;
#[path = "cli/campaigns.rs"]
mod campaigns;
#[path = "cli/ci.rs"]
mod ci;
#[path = "cli/contract.rs"]
mod contract;
#[path = "cli/data_tier.rs"]
mod data_tier;
#[path = "cli/iam.rs"]
mod iam;
#[path = "cli/lambda.rs"]
mod lambda;
#[path = "cli/network.rs"]
mod network;
#[path = "cli/params.rs"]
mod params;
#[path = "cli/references.rs"]
mod references;
#[path = "cli/remote_journal.rs"]
mod remote_journal;
#[path = "cli/ux.rs"]
mod ux;
#[path = "cli/validate.rs"]
mod validate;

use std::collections::BTreeSet;

use aws_sdk_ec2::types::{Filter, VpcAttributeName};
use support::fixture::{self, Clients};
use support::{Paymig, World};

fn tag_filters() -> Vec<Filter> {
    vec![
        Filter::builder().name("tag:paymig:migration").values("payments").build(),
        Filter::builder().name("tag:paymig:suffix").values("prod").build(),
    ]
}

/// The network and KMS resources of the migration, counted by kind.
#[derive(Debug, Default, PartialEq, Eq)]
struct Inventory {
    vpcs: usize,
    subnets: usize,
    route_tables: usize,
    endpoints: usize,
    security_groups: usize,
    live_keys: usize,
    alias: bool,
}

/// The network and KMS tiers of the prod inventory (`support::inventory`,
/// which pages every list), counted by kind.
async fn inventory(w: &World) -> Inventory {
    let inv = support::inventory::prod_inventory(&w.moto.endpoint, "prod").await;
    let n = |kind: &str| inv.get(kind).map_or(0, Vec::len);
    Inventory {
        vpcs: n("vpc"),
        subnets: n("subnet"),
        route_tables: n("route_table"),
        endpoints: n("vpc_endpoint"),
        security_groups: n("security_group"),
        live_keys: n("kms_key"),
        alias: n("kms_alias") > 0,
    }
}

/// The config without the database tier: moto keeps a deleted cluster's
/// automated snapshot name, so a cluster cannot be recreated within the same
/// minute — tests that destroy and re-apply leave Aurora to their own tests.
fn without_database(config: String) -> String {
    config.replace("db_cluster = \"payments-dev\"", "db_cluster = \"\"")
}

fn full() -> Inventory {
    Inventory { vpcs: 1, subnets: 3, route_tables: 3, endpoints: 4, security_groups: 4, live_keys: 1, alias: true }
}

fn tags_of(tags: &[aws_sdk_ec2::types::Tag]) -> std::collections::BTreeMap<String, String> {
    tags.iter().map(|t| (t.key().unwrap().to_owned(), t.value().unwrap().to_owned())).collect()
}

#[track_caller]
fn assert_prod_tags(what: &str, tags: &std::collections::BTreeMap<String, String>) {
    for (k, v) in [
        ("Environment", "production"),
        ("CostCenter", "payments"),
        ("paymig:migration", "payments"),
        ("paymig:suffix", "prod"),
    ] {
        assert_eq!(tags.get(k).map(String::as_str), Some(v), "{what} lacks tag {k}={v}: {tags:?}");
    }
    let name = tags.get("Name").unwrap_or_else(|| panic!("{what} has no Name tag"));
    assert!(name.split('-').any(|t| t == "prod"), "{what} Name {name} lacks the suffix");
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_builds_the_network_and_kms_tiers_idempotently_and_destroy_removes_them() {
    let w = World::with(Default::default(), without_database).await;

    let plan = w.paymig(["plan"]).run();
    plan.expect_code(0);
    assert!(plan.stdout.contains("+ vpc payments-prod"), "{}", plan.stdout);
    assert!(plan.stdout.contains("+ load_balancer payments-alb-prod"), "every tier is planned: {}", plan.stdout);
    assert!(
        plan.stdout.contains("0.0.0.0/0 via igw-"),
        "the dev internet route is reported as not copied: {}",
        plan.stdout
    );
    assert_eq!(plan.mutating_calls(), 0, "plan mutates nothing");
    assert_eq!(inventory(&w).await, Inventory::default());

    let apply = w.paymig(["apply", "--yes"]).run();
    apply.expect_code(0);
    assert!(apply.mutating_calls() > 10);
    assert_eq!(inventory(&w).await, full());

    // The VPC: dev's CIDR blocks (primary and secondary) and DNS attributes.
    let ec2 = &w.prod.ec2;
    let vpc = ec2.describe_vpcs().set_filters(Some(tag_filters())).send().await.unwrap().vpcs()[0].clone();
    let vpc_id = vpc.vpc_id().unwrap().to_owned();
    assert_ne!(vpc_id, w.dev.vpc_id);
    let cidrs: BTreeSet<&str> = vpc.cidr_block_association_set().iter().filter_map(|a| a.cidr_block()).collect();
    assert_eq!(cidrs, w.dev.cidrs.iter().map(String::as_str).collect());
    assert_eq!(vpc.cidr_block(), Some("10.20.0.0/16"));
    assert_prod_tags("vpc", &tags_of(vpc.tags()));
    assert_eq!(tags_of(vpc.tags())["Name"], "payments-prod");
    let hostnames = ec2
        .describe_vpc_attribute()
        .vpc_id(&vpc_id)
        .attribute(VpcAttributeName::EnableDnsHostnames)
        .send()
        .await
        .unwrap();
    assert_eq!(hostnames.enable_dns_hostnames().and_then(|v| v.value()), Some(true));

    // Subnets mirror dev: same CIDRs in the same AZs, named with the suffix.
    let subnets =
        ec2.describe_subnets().filters(Filter::builder().name("vpc-id").values(&vpc_id).build()).send().await.unwrap();
    let mut got: Vec<(String, String)> = subnets
        .subnets()
        .iter()
        .map(|s| (s.availability_zone().unwrap().to_owned(), s.cidr_block().unwrap().to_owned()))
        .collect();
    got.sort();
    assert_eq!(got, w.dev.subnets);
    for s in subnets.subnets() {
        assert_prod_tags("subnet", &tags_of(s.tags()));
        assert_eq!(s.map_public_ip_on_launch(), Some(false));
    }

    // A route table per subnet, no internet or NAT route, both gateway
    // endpoints on every table.
    let rts = ec2.describe_route_tables().set_filters(Some(tag_filters())).send().await.unwrap();
    let subnet_ids: BTreeSet<&str> = subnets.subnets().iter().filter_map(|s| s.subnet_id()).collect();
    let associated: BTreeSet<&str> =
        rts.route_tables().iter().flat_map(|r| r.associations()).filter_map(|a| a.subnet_id()).collect();
    assert_eq!(associated, subnet_ids);
    let rt_ids: BTreeSet<String> = rts.route_tables().iter().map(|r| r.route_table_id().unwrap().to_owned()).collect();
    for rt in rts.route_tables() {
        assert_prod_tags("route table", &tags_of(rt.tags()));
        for r in rt.routes() {
            assert!(r.nat_gateway_id().is_none(), "NAT route in {rt:?}");
            assert!(!r.gateway_id().is_some_and(|g| g.starts_with("igw-")), "internet route in {rt:?}");
        }
    }
    let igws = ec2
        .describe_internet_gateways()
        .filters(Filter::builder().name("attachment.vpc-id").values(&vpc_id).build())
        .send()
        .await
        .unwrap();
    assert!(igws.internet_gateways().is_empty(), "prod has no internet gateway");
    let nats = ec2
        .describe_nat_gateways()
        .filter(Filter::builder().name("vpc-id").values(&vpc_id).build())
        .send()
        .await
        .unwrap();
    assert!(nats.nat_gateways().is_empty(), "prod has no NAT gateway");
    let eps = ec2.describe_vpc_endpoints().set_filters(Some(tag_filters())).send().await.unwrap();
    let of_type = |t: &str| -> BTreeSet<&str> {
        eps.vpc_endpoints()
            .iter()
            .filter(|e| e.vpc_endpoint_type().map(|x| x.as_str()) == Some(t))
            .filter_map(|e| e.service_name())
            .collect()
    };
    assert_eq!(of_type("Gateway"), BTreeSet::from(["com.amazonaws.us-east-1.dynamodb", "com.amazonaws.us-east-1.s3"]));
    // The services the execution role grants (tests/cli/network.rs checks them in full).
    assert_eq!(of_type("Interface"), BTreeSet::from(["com.amazonaws.us-east-1.kms", "com.amazonaws.us-east-1.ssm"]));
    for e in eps.vpc_endpoints().iter().filter(|e| e.vpc_endpoint_type().map(|t| t.as_str()) == Some("Gateway")) {
        assert_eq!(e.route_table_ids().iter().cloned().collect::<BTreeSet<_>>(), rt_ids);
        let policy: serde_json::Value = serde_json::from_str(e.policy_document().unwrap()).unwrap();
        for st in policy["Statement"].as_array().unwrap() {
            for a in st["Action"].as_array().unwrap() {
                assert!(!a.as_str().unwrap().contains('*'), "wildcard action in endpoint policy");
            }
        }
        assert_prod_tags("endpoint", &tags_of(e.tags()));
    }

    // Security groups: the database admits 5432 from compute only; the ALB
    // only the listener port from the VPC.
    let sgs = ec2.describe_security_groups().set_filters(Some(tag_filters())).send().await.unwrap();
    let by_name = |n: &str| {
        sgs.security_groups()
            .iter()
            .find(|g| g.group_name() == Some(n))
            .unwrap_or_else(|| panic!("no group {n}"))
            .clone()
    };
    let (alb, compute, db) =
        (by_name("payments-alb-sg-prod"), by_name("payments-compute-sg-prod"), by_name("payments-db-sg-prod"));
    let db_in = db.ip_permissions();
    assert_eq!(db_in.len(), 1);
    assert_eq!((db_in[0].from_port(), db_in[0].to_port()), (Some(5432), Some(5432)));
    assert_eq!(
        db_in[0].user_id_group_pairs().iter().filter_map(|p| p.group_id()).collect::<Vec<_>>(),
        [compute.group_id().unwrap()]
    );
    assert!(db_in[0].ip_ranges().is_empty());
    let alb_in = alb.ip_permissions();
    assert_eq!(alb_in.len(), 1);
    assert_eq!(alb_in[0].from_port(), Some(80));
    let alb_cidrs: BTreeSet<&str> = alb_in[0].ip_ranges().iter().filter_map(|r| r.cidr_ip()).collect();
    assert_eq!(alb_cidrs, w.dev.cidrs.iter().map(String::as_str).collect());
    assert!(
        !compute.ip_permissions_egress().iter().any(|p| p.ip_ranges().iter().any(|r| r.cidr_ip() == Some("0.0.0.0/0"))),
        "compute has no open egress"
    );
    for g in [&alb, &compute, &db] {
        assert_prod_tags("security group", &tags_of(g.tags()));
    }

    // KMS: a customer-managed key behind the alias, rotation on, tagged.
    let key = w.prod.kms.describe_key().key_id("alias/payments-prod").send().await.unwrap().key_metadata.unwrap();
    assert_eq!(key.key_manager().map(|m| m.as_str()), Some("CUSTOMER"));
    assert!(w.prod.kms.get_key_rotation_status().key_id(key.key_id()).send().await.unwrap().key_rotation_enabled());
    let policy = w.prod.kms.get_key_policy().key_id(key.key_id()).policy_name("default").send().await.unwrap();
    assert!(policy.policy().unwrap().contains("cloudwatch.amazonaws.com"));

    // Journal: every intent has its outcome.
    let lines = w.journal_lines();
    let intents = lines.iter().filter(|l| l["type"] == "intent").count();
    let dones = lines.iter().filter(|l| l["type"] == "done").count();
    assert_eq!(intents, dones);
    assert!(intents >= 14);

    // Idempotence: a second apply sends zero mutating calls.
    let again = w.paymig(["apply", "--yes"]).run();
    again.expect_code(0);
    assert_eq!(again.mutating_calls(), 0, "{}", again.stderr);
    assert_eq!(inventory(&w).await, full());

    let status = w.paymig(["status"]).run();
    status.expect_code(0);
    assert!(status.stdout.contains("[network]") && status.stdout.contains("3 subnet"), "{}", status.stdout);

    // Destroy leaves nothing tagged; the key waits 7 days for deletion.
    let destroy = w.paymig(["destroy", "--yes"]).run();
    destroy.expect_code(0);
    assert_eq!(inventory(&w).await, Inventory::default());
    let old = w.prod.kms.describe_key().key_id(key.key_id()).send().await.unwrap().key_metadata.unwrap();
    assert_eq!(old.key_state().map(|s| s.as_str()), Some("PendingDeletion"));
    // The dev VPC is untouched.
    assert_eq!(w.prod.ec2.describe_vpcs().vpc_ids(&w.dev.vpc_id).send().await.unwrap().vpcs().len(), 1);
    // Destroy is idempotent.
    let again = w.paymig(["destroy", "--yes"]).run();
    again.expect_code(0);
    assert_eq!(again.mutating_calls(), 0, "{}", again.stderr);

    // A re-apply after destroy works: a new key behind the same alias.
    w.paymig(["apply", "--yes"]).run().expect_code(0);
    assert_eq!(inventory(&w).await, full());
    let new_key = w.prod.kms.describe_key().key_id("alias/payments-prod").send().await.unwrap().key_metadata.unwrap();
    assert_ne!(new_key.key_id(), key.key_id());
    w.paymig(["destroy", "--yes"]).run().expect_code(0);
    assert_eq!(inventory(&w).await, Inventory::default());
}

#[tokio::test(flavor = "multi_thread")]
async fn rollback_undoes_only_the_newest_run_and_restores_updated_settings() {
    let w = World::new().await;
    w.paymig(["apply", "--yes"]).run().expect_code(0);

    // Out-of-band drift: the S3 endpoint deleted, key rotation switched off.
    let ec2 = &w.prod.ec2;
    let eps = ec2.describe_vpc_endpoints().set_filters(Some(tag_filters())).send().await.unwrap();
    let s3 = eps.vpc_endpoints().iter().find(|e| e.service_name().unwrap().ends_with(".s3")).unwrap();
    ec2.delete_vpc_endpoints().vpc_endpoint_ids(s3.vpc_endpoint_id().unwrap()).send().await.unwrap();
    let key = w.prod.kms.describe_key().key_id("alias/payments-prod").send().await.unwrap().key_metadata.unwrap();
    w.prod.kms.disable_key_rotation().key_id(key.key_id()).send().await.unwrap();

    let plan = w.paymig(["plan", "--format", "json"]).run();
    plan.expect_code(0);
    let doc: serde_json::Value =
        serde_json::from_str(&plan.stdout).expect("plan --format json prints one JSON document");
    assert_eq!(doc["summary"]["create"], 1, "{doc}");
    assert_eq!(doc["summary"]["update"], 1, "{doc}");

    let second = w.paymig(["apply", "--yes"]).run();
    second.expect_code(0);
    assert_eq!(inventory(&w).await, full());
    assert!(w.prod.kms.get_key_rotation_status().key_id(key.key_id()).send().await.unwrap().key_rotation_enabled());

    // Rollback: the second run's endpoint goes, rotation returns to off, and
    // the first run's resources stay.
    let rb = w.paymig(["rollback", "--yes"]).run();
    rb.expect_code(0);
    let inv = inventory(&w).await;
    assert_eq!(inv, Inventory { endpoints: 3, ..full() });
    assert!(!w.prod.kms.get_key_rotation_status().key_id(key.key_id()).send().await.unwrap().key_rotation_enabled());

    // The next rollback takes the first run.
    w.paymig(["rollback", "--yes"]).run().expect_code(0);
    let inv = inventory(&w).await;
    assert_eq!((inv.vpcs, inv.subnets, inv.security_groups, inv.live_keys), (0, 0, 0, 0), "{inv:?}");
    let nothing = w.paymig(["rollback", "--yes"]).run();
    nothing.expect_code(0);
    assert!(nothing.stdout.contains("nothing to roll back"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_run_exits_4_naming_the_holder_and_a_dead_holder_is_taken_over() {
    let w = World::new().await;
    let dir = w.dir.path().join("journal");
    let store = std::sync::Arc::new(paymig::testing::FileStore::new(&dir, "payments"));
    let held = paymig::testing::Lock::take(store, "apply").expect("read the lock").expect("take the lock");
    let second = w.paymig(["apply", "--yes"]).run();
    second.expect_code(4);
    assert!(second.stderr.contains(&format!("pid {}", std::process::id())), "{}", second.stderr);
    assert!(second.stderr.contains("paymig apply"), "{}", second.stderr);
    let status = w.paymig(["status", "--format", "json"]).run();
    status.expect_code(0);
    let doc: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(doc["lock"]["pid"], std::process::id());
    assert_eq!(inventory(&w).await, Inventory::default(), "the refused run changed nothing");
    drop(held);

    // Two applies started together: exactly one may hold the lock at a time.
    let a = w.paymig(["apply", "--yes"]).spawn();
    let b = w.paymig(["apply", "--yes"]).spawn();
    let (a, b) = (support::to_run(a.wait_with_output().unwrap()), support::to_run(b.wait_with_output().unwrap()));
    let codes = BTreeSet::from([a.code, b.code]);
    assert!(codes == BTreeSet::from([Some(0), Some(4)]) || codes == BTreeSet::from([Some(0)]), "{a:?} {b:?}");
    assert_eq!(inventory(&w).await, full());

    // A lock note left by a killed run is taken over with a message.
    let note = serde_json::json!({"pid": 999_999, "host": paymig::testing::hostname(), "started": "2026-01-01T00:00:00Z", "command": "apply"});
    std::fs::write(dir.join("payments/lock"), note.to_string()).unwrap();
    let next = w.paymig(["apply", "--yes"]).run();
    next.expect_code(0);
    assert!(next.stderr.contains("pid 999999") && next.stderr.contains("no longer running"), "{}", next.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_torn_journal_line_is_set_aside_and_nothing_earlier_is_lost() {
    let w = World::new().await;
    w.paymig(["apply", "--yes"]).run().expect_code(0);
    let before = w.journal_lines().len();
    let path = w.journal_path();
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("{\"seq\":9999,\"run\":\"torn\",\"ty");
    std::fs::write(&path, text).unwrap();
    let again = w.paymig(["apply", "--yes"]).run();
    again.expect_code(0);
    assert!(again.stderr.contains("torn"), "{}", again.stderr);
    let lines = w.journal_lines();
    assert!(lines.len() >= before + 2, "earlier entries kept, the new run appended");
    assert!(std::fs::read_to_string(path.with_extension("jsonl.torn")).unwrap().contains("9999"));
    w.paymig(["destroy", "--yes"]).run().expect_code(0);
    assert_eq!(inventory(&w).await, Inventory::default());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dev_vpc_in_two_azs_gets_a_derived_third_subnet() {
    let opts = fixture::Options { zones: vec!["us-east-1a", "us-east-1b"], ..Default::default() };
    let w = World::with(opts, |t| t).await;
    let plan = w.paymig(["plan"]).run();
    plan.expect_code(0);
    assert!(plan.stdout.contains("deriving 10.20.0.0/24 in us-east-1c"), "{}", plan.stdout);
    w.paymig(["apply", "--yes"]).run().expect_code(0);
    let subnets = w.prod.ec2.describe_subnets().set_filters(Some(tag_filters())).send().await.unwrap();
    let mut got: Vec<(&str, &str)> =
        subnets.subnets().iter().map(|s| (s.availability_zone().unwrap(), s.cidr_block().unwrap())).collect();
    got.sort();
    assert_eq!(got, [("us-east-1a", "10.20.1.0/24"), ("us-east-1b", "10.20.2.0/24"), ("us-east-1c", "10.20.0.0/24")]);
}

#[tokio::test(flavor = "multi_thread")]
async fn source_and_target_in_different_accounts() {
    const DEV: &str = "111111111111";
    let opts = fixture::Options { account: Some(DEV.into()), ..Default::default() };
    // moto cannot restore a snapshot across accounts (its restore looks in
    // the target account only), so this world leaves the database out; the
    // ARN reference for shared snapshots is unit-tested in steps::database.
    let w = World::with(opts, |t| {
        without_database(t).replace(
            "# role_arn = \"arn:aws:iam::111111111111:role/paymig-read-dev\"",
            "role_arn = \"arn:aws:iam::111111111111:role/paymig-read-dev\"",
        )
    })
    .await;
    // Dev's values name dev's table by ARN, in dev's account.
    let dev = Clients::new(&w.moto.endpoint, "us-east-1", Some(DEV)).await;
    let dev_table = format!("arn:aws:dynamodb:us-east-1:{DEV}:table/sessions-dev");
    let env = aws_sdk_lambda::types::Environment::builder().variables("TABLE_ARN", &dev_table).build();
    dev.lambda
        .update_function_configuration()
        .function_name("payment-processor-dev")
        .environment(env)
        .send()
        .await
        .unwrap();
    let put = dev.ssm.put_parameter().name("/dev/payments/table-arn").value(&dev_table);
    put.r#type(aws_sdk_ssm::types::ParameterType::String).send().await.unwrap();
    w.paymig(["apply", "--yes"]).run().expect_code(0);
    // Prod landed in the target (default) account, nothing in the dev account.
    assert_eq!(inventory(&w).await, full());
    // The ARN became the prod table's, in the prod account (what prod reports).
    let prod_table = w.prod.dynamodb.describe_table().table_name("sessions-prod").send().await.unwrap().table.unwrap();
    let prod_table = prod_table.table_arn().unwrap();
    assert!(prod_table.contains(":123456789012:"), "{prod_table}");
    let f = w.prod.lambda.get_function_configuration().function_name("payment-processor-prod").send().await.unwrap();
    assert_eq!(
        f.environment().and_then(|e| e.variables()).and_then(|v| v.get("TABLE_ARN")).map(String::as_str),
        Some(prod_table)
    );
    let p = w.prod.ssm.get_parameter().name("/prod/payments/table-arn").send().await.unwrap();
    assert_eq!(p.parameter().and_then(|p| p.value()), Some(prod_table));
    assert_eq!(dev.ec2.describe_vpcs().set_filters(Some(tag_filters())).send().await.unwrap().vpcs().len(), 0);
    assert_eq!(dev.ec2.describe_vpcs().vpc_ids(&w.dev.vpc_id).send().await.unwrap().vpcs().len(), 1);
    // The dev VPC id does not exist in the prod account: it was read from dev.
    assert!(support::is_gone(w.prod.ec2.describe_vpcs().vpc_ids(&w.dev.vpc_id).send().await));
    // The rest of the life cycle across the boundary: a clean validate
    // (dev read in its account, prod in its own), a no-op re-apply, and a
    // destroy that leaves nothing in prod and dev as it was.
    w.paymig(["validate"]).run().expect_code(0);
    let again = w.paymig(["apply", "--yes"]).run();
    again.expect_code(0);
    assert_eq!(again.mutating_calls(), 0, "{}", again.stderr);
    w.paymig(["destroy", "--yes"]).run().expect_code(0);
    assert_eq!(inventory(&w).await, Inventory::default());
    assert_eq!(dev.ec2.describe_vpcs().vpc_ids(&w.dev.vpc_id).send().await.unwrap().vpcs().len(), 1);
}

/// Dev in another account: before anything changes, paymig refuses a
/// snapshot dev has not shared with prod and a snapshot key whose policy does
/// not grant prod what a restore needs, naming the dev team's exact fixes
/// (zero mutating calls); once dev has made them, the plan goes through.
#[tokio::test(flavor = "multi_thread")]
async fn another_accounts_snapshot_must_be_shared_with_its_key_before_anything_changes() {
    const DEV: &str = "111111111111";
    const PROD: &str = "123456789012";
    let opts = fixture::Options { account: Some(DEV.into()), ..Default::default() };
    let w = World::with(opts, |t| {
        t.replace(
            "# role_arn = \"arn:aws:iam::111111111111:role/paymig-read-dev\"",
            "role_arn = \"arn:aws:iam::111111111111:role/paymig-read-dev\"",
        )
    })
    .await;
    // Dev's function uses a layer of dev's own, not shared with prod.
    let dev = Clients::new(&w.moto.endpoint, "us-east-1", Some(DEV)).await;
    let layer = dev
        .lambda
        .publish_layer_version()
        .layer_name("payments-common")
        .content(
            aws_sdk_lambda::types::LayerVersionContentInput::builder()
                .zip_file(aws_sdk_lambda::primitives::Blob::new(fixture::zip_one("python/common.py", b"X = 1\n")))
                .build(),
        )
        .send()
        .await
        .unwrap();
    let layer_arn = layer.layer_version_arn().unwrap().to_owned();
    dev.lambda
        .update_function_configuration()
        .function_name("payment-processor-dev")
        .layers(&layer_arn)
        .send()
        .await
        .unwrap();
    for cmd in [&["plan"][..], &["apply", "--yes"]] {
        let run = w.paymig(cmd).run();
        run.expect_code(2);
        assert!(
            run.stderr.contains(&format!(
                "layer {layer_arn} (account {DEV}) does not grant the prod account {PROD} lambda:GetLayerVersion"
            )) && run.stderr.contains("aws lambda add-layer-version-permission --region us-east-1 --layer-name payments-common --version-number 1"),
            "{}",
            run.stderr
        );
        assert!(
            run.stderr
                .contains(&format!("payments-dev-nightly (account {DEV}) is not shared with the prod account {PROD}"))
                && run.stderr.contains(&format!("--attribute-name restore --values-to-add {PROD}")),
            "{}",
            run.stderr
        );
        assert!(
            run.stderr.contains(&format!(
                "does not grant the prod account {PROD} kms:CreateGrant, kms:Decrypt, kms:DescribeKey"
            )),
            "{}",
            run.stderr
        );
        assert_eq!(run.mutating_calls(), 0, "{}", run.stderr);
    }
    assert!(support::inventory::prod_inventory(&w.moto.endpoint, "prod").await.is_empty(), "nothing was created");

    // The dev team's fixes, in the dev account.
    dev.lambda
        .add_layer_version_permission()
        .layer_name("payments-common")
        .version_number(1)
        .statement_id("paymig-prod")
        .action("lambda:GetLayerVersion")
        .principal(PROD)
        .send()
        .await
        .unwrap();
    dev.rds
        .modify_db_cluster_snapshot_attribute()
        .db_cluster_snapshot_identifier("payments-dev-nightly")
        .attribute_name("restore")
        .values_to_add(PROD)
        .send()
        .await
        .unwrap();
    let snapshot = dev
        .rds
        .describe_db_cluster_snapshots()
        .db_cluster_snapshot_identifier("payments-dev-nightly")
        .send()
        .await
        .unwrap()
        .db_cluster_snapshots()[0]
        .clone();
    let key = snapshot.kms_key_id().expect("the dev snapshot is encrypted");
    let policy = serde_json::json!({"Version": "2012-10-17", "Statement": [
        {"Sid": "DevRoot", "Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{DEV}:root")}, "Action": "kms:*", "Resource": "*"},
        {"Sid": "ProdRestores", "Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{PROD}:root")},
         "Action": ["kms:CreateGrant", "kms:Decrypt", "kms:DescribeKey"], "Resource": "*"}]});
    dev.kms.put_key_policy().key_id(key).policy_name("default").policy(policy.to_string()).send().await.unwrap();
    let plan = w.paymig(["plan"]).run();
    plan.expect_code(0);
    assert!(plan.stdout.contains("payments-prod"), "{}", plan.stdout);
    // The policies across the boundary: prod may use dev's snapshot key;
    // the dev identity (not prod's) assumes [source] role_arn.
    let prod_policy: serde_json::Value = serde_json::from_str(&w.paymig(["iam-policy"]).run().stdout).unwrap();
    let sid = |doc: &serde_json::Value, sid: &str| {
        doc["Statement"].as_array().unwrap().iter().find(|s| s["Sid"] == sid).cloned()
    };
    let key = sid(&prod_policy, "DevSnapshotKey").expect("a statement for dev's snapshot key");
    assert_eq!(key["Resource"], serde_json::json!([format!("arn:aws:kms:us-east-1:{DEV}:key/*")]));
    // With no [source] profile, the prod identity is the one that assumes
    // [source] role_arn, and the role's own policy only reads.
    assert!(sid(&prod_policy, "AssumeTargetRole").is_none());
    let assume = sid(&prod_policy, "AssumeSourceRole").expect("the prod identity assumes the dev role");
    assert_eq!(assume["Resource"], serde_json::json!(["arn:aws:iam::111111111111:role/paymig-read-dev"]));
    let source = w.paymig(["iam-policy", "--side", "source"]).run();
    let source_policy: serde_json::Value = serde_json::from_str(&source.stdout).unwrap();
    assert!(sid(&source_policy, "AssumeSourceRole").is_none(), "{source_policy}");
}

#[tokio::test(flavor = "multi_thread")]
async fn source_clients_refuse_every_mutating_call() {
    let moto = support::Moto::start();
    let sdk = fixture::sdk_config(&moto.endpoint, "us-east-1").await;
    let stats = std::sync::Arc::new(paymig::testing::CallStats::default());
    let aws = paymig::testing::Aws {
        source: paymig::testing::Clients::new(paymig::testing::Side::Source, sdk.clone(), &stats),
        target: paymig::testing::Clients::new(paymig::testing::Side::Target, sdk.clone(), &stats),
        replica: paymig::testing::Clients::new(paymig::testing::Side::Replica, sdk, &stats),
        stats,
    };
    let before = aws.target.ec2.describe_vpcs().send().await.unwrap().vpcs().len();

    let err = aws.source.ec2.create_vpc().cidr_block("10.99.0.0/16").send().await.unwrap_err();
    let msg = paymig::testing::describe_sdk_error(&err);
    assert!(msg.contains("refused") && msg.contains("CreateVpc"), "{msg}");
    let err = aws.source.s3.create_bucket().bucket("should-not-exist").send().await.unwrap_err();
    assert!(paymig::testing::describe_sdk_error(&err).contains("never writes to the dev environment"));
    assert!(aws.source.ssm.put_parameter().name("/dev/x").value("y").send().await.is_err());
    // Reads pass.
    aws.source.ec2.describe_vpcs().send().await.unwrap();
    // Nothing reached the emulator.
    assert_eq!(aws.target.ec2.describe_vpcs().send().await.unwrap().vpcs().len(), before);
    assert!(support::is_gone(aws.target.s3.head_bucket().bucket("should-not-exist").send().await));
    let summary = aws.stats.summary();
    assert_eq!(summary.mutating, 3, "the refused calls are still counted as attempted: {summary:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_dev_vpc_fails_preflight_with_exit_2_and_changes_nothing() {
    let w = World::with(Default::default(), |t| t.replace("vpc_id = \"vpc-", "vpc_id = \"vpc-0000")).await;
    for args in [vec!["plan"], vec!["apply", "--yes"]] {
        let run = w.paymig(args).run();
        run.expect_code(2);
        assert!(run.stderr.contains("[source] vpc_id"), "{}", run.stderr);
    }
    assert_eq!(inventory(&w).await, Inventory::default());
    assert!(w.journal_lines().iter().all(|l| l["type"] != "intent"));
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_dev_resources_of_every_listed_kind_fail_preflight() {
    let w = World::with(Default::default(), |t| {
        t.replace("\"sessions-dev\"", "\"sessions-gone-dev\"")
            .replace("\"payment-processor-dev\"]", "\"gone-processor-dev\"]")
            .replace("[lambda.overrides.\"payment-processor-dev\"]", "[lambda.overrides.\"gone-processor-dev\"]")
            .replace("[\"payments-audit-dev\"]", "[\"payments-audit-gone-dev\"]")
            .replace("db_cluster = \"payments-dev\"", "db_cluster = \"payments-gone-dev\"")
            .replace("dashboards = [\"payments-dev\"]", "dashboards = [\"payments-gone-dev\"]")
    })
    .await;
    let run = w.paymig(["apply", "--yes"]).run();
    run.expect_code(2);
    for what in
        ["sessions-gone-dev", "gone-processor-dev", "payments-audit-gone-dev", "payments-gone-dev", "dashboards"]
    {
        assert!(run.stderr.contains(what), "{what} not named:\n{}", run.stderr);
    }
    assert_eq!(run.mutating_calls(), 0);
    assert_eq!(inventory(&w).await, Inventory::default());
}

#[test]
fn without_a_terminal_mutating_commands_refuse_without_yes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("migrations.toml");
    std::fs::write(&cfg, support::config_text("vpc-0a1b2c3d4e5f", dir.path())).unwrap();
    let (listener, endpoint) = counting_endpoint();
    for cmd in ["apply", "rollback", "destroy"] {
        let run = Paymig::new(&endpoint, &cfg).args([cmd]).run();
        run.expect_code(2);
        assert!(run.stderr.contains("--yes"), "{}", run.stderr);
    }
    assert!(
        matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "a refused command reached AWS"
    );
}

/// A loopback listener that answers nothing, and its URL: any connection to
/// it is an AWS call paymig should not have made.
fn counting_endpoint() -> (std::net::TcpListener, String) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    (l, url)
}

#[test]
fn malformed_configs_exit_2_naming_the_key_with_zero_aws_calls() {
    let reference = support::config_text("vpc-0a1b2c3d4e5f", std::path::Path::new("/tmp/unused"));
    let cases: Vec<(&str, String, &str)> = vec![
        ("malformed toml", reference.replace("[tags]", "[tags"), "migrations.toml:"),
        ("unknown key", reference.replace("replica_region =", "replica_regoin ="), "did you mean `replica_region`"),
        ("unknown section", format!("{reference}\n[databse]\nx = 1\n"), "unknown field `databse`"),
        ("wrong type", reference.replace("instances = 2", "instances = \"two\""), "instances"),
        // In words, not serde's type names.
        ("not a number", reference.replace("rds_cpu_percent = 80", "rds_cpu_percent = \"high\""), "expected a number"),
        // A suffix no dev name carries would plan a parallel stack.
        (
            "suffix in no dev name",
            reference.replace("name_suffix = \"-dev\"", "name_suffix = \"-staging\""),
            "sessions-dev → sessions-dev-prod",
        ),
        // Every missing key at once, not only the first.
        (
            "two missing keys",
            reference.replace("name = \"payments\"\n", "").replace("region = \"us-east-1\"\n", ""),
            "2 required keys are missing: `migration.name`, `migration.region`",
        ),
        (
            "bad suffix",
            reference.replace("environment_suffix = \"prod\"", "environment_suffix = \"Prod!\""),
            "migration.environment_suffix",
        ),
        (
            "long suffix",
            reference.replace("environment_suffix = \"prod\"", "environment_suffix = \"production-eu1\""),
            "migration.environment_suffix",
        ),
        (
            "same regions",
            reference.replace("replica_region = \"us-west-2\"", "replica_region = \"us-east-1\""),
            "migration.replica_region",
        ),
        ("missing tag", reference.replace("CostCenter = \"payments\"", ""), "tags.CostCenter"),
        (
            "duplicate table",
            reference.replace("[\"sessions-dev\"]", "[\"sessions-dev\", \"sessions-dev\"]"),
            "source.dynamodb_tables",
        ),
        (
            "bad parameter path",
            reference.replace("parameter_path = \"/prod/\"", "parameter_path = \"/prod\""),
            "target.parameter_path",
        ),
        (
            "artifacts not s3",
            reference.replace("s3://payments-artifacts-dev/lambda/", "https://example.com/x"),
            "source.lambda_artifacts",
        ),
        (
            "override of unlisted function",
            reference.replace("[lambda.overrides.\"payment-processor-dev\"]", "[lambda.overrides.\"other-dev\"]"),
            "lambda.overrides",
        ),
        (
            "percentage over 100",
            reference.replace("rds_cpu_percent = 80", "rds_cpu_percent = 180"),
            "monitoring.rds_cpu_percent",
        ),
        ("one instance", reference.replace("instances = 2", "instances = 1"), "database.instances"),
        (
            "bucket name too long",
            reference.replace("[\"payments-audit-dev\"]", &format!("[\"{}-dev\"]", "a".repeat(56))),
            "63",
        ),
        ("missing section", reference.replace("[target]", "[targets]"), "targets"),
        (
            "bad role arn",
            reference.replace(
                "# role_arn = \"arn:aws:iam::111111111111:role/paymig-read-dev\"",
                "role_arn = \"dev-reader\"",
            ),
            "source.role_arn",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let (listener, endpoint) = counting_endpoint();
    for (what, text, needle) in &cases {
        let cfg = dir.path().join("migrations.toml");
        std::fs::write(&cfg, text).unwrap();
        for cmd in [&["plan"][..], &["apply", "--yes"][..]] {
            let run = Paymig::new(&endpoint, &cfg).args(cmd).run();
            assert_eq!(run.code, Some(2), "{what}: {}", run.stderr);
            assert!(run.stderr.contains(needle), "{what}: {needle:?} not in {}", run.stderr);
            assert!(run.stderr.contains("migrations.toml"), "{what}: the file is named: {}", run.stderr);
        }
    }
    assert!(
        matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "a malformed config reached AWS"
    );
    // A missing config file names itself too.
    let run = Paymig::new(&endpoint, &dir.path().join("nope.toml")).args(["plan"]).run();
    assert_eq!(run.code, Some(2));
    assert!(run.stderr.contains("nope.toml"));
}

#[tokio::test(flavor = "multi_thread")]
async fn iam_policy_names_no_wildcard_action_and_scopes_to_the_migrations_arns() {
    let w = World::new().await;
    let run = w.paymig(["iam-policy"]).run();
    run.expect_code(0);
    assert_eq!(run.mutating_calls(), 0);
    let policy: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let statements = policy["Statement"].as_array().unwrap();
    let actions: Vec<&str> =
        statements.iter().flat_map(|s| s["Action"].as_array().unwrap()).map(|a| a.as_str().unwrap()).collect();
    for a in [
        "ec2:CreateVpc",
        "kms:CreateKey",
        "rds:RestoreDBClusterFromSnapshot",
        "lambda:CreateFunction",
        "elasticloadbalancing:ModifyListener",
        "ssm:PutParameter",
    ] {
        assert!(actions.contains(&a), "{a} missing");
    }
    assert!(actions.iter().all(|a| !a.contains('*')), "{actions:?}");
    let resources_of = |action: &str| -> Vec<String> {
        statements
            .iter()
            .filter(|s| s["Action"].as_array().unwrap().iter().any(|a| a == action))
            .flat_map(|s| match &s["Resource"] {
                serde_json::Value::String(r) => vec![r.clone()],
                v => v.as_array().unwrap().iter().map(|r| r.as_str().unwrap().to_owned()).collect(),
            })
            .collect()
    };
    assert_eq!(
        resources_of("dynamodb:CreateTable"),
        [
            "arn:aws:dynamodb:us-east-1:123456789012:table/sessions-prod",
            "arn:aws:dynamodb:us-east-1:123456789012:table/sessions-prod/index/*"
        ]
    );
    assert!(resources_of("lambda:CreateFunction")
        .contains(&"arn:aws:lambda:us-east-1:123456789012:function:payment-processor-prod".to_owned()));
    assert_eq!(resources_of("ssm:PutParameter"), ["arn:aws:ssm:us-east-1:123456789012:parameter/prod/*"]);
    assert!(resources_of("s3:CreateBucket").contains(&"arn:aws:s3:::payments-audit-prod-replica".to_owned()));
    assert!(!resources_of("iam:PassRole").iter().any(|r| r == "*"), "PassRole is scoped to paymig's roles");
}

#[tokio::test(flavor = "multi_thread")]
async fn with_json_logs_every_stderr_line_is_one_json_event() {
    let w = World::with(Default::default(), without_database).await;
    let run = w.paymig(["--log-format", "json", "apply", "--yes"]).run();
    run.expect_code(0);
    let events: Vec<serde_json::Value> = run
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let calls = events.iter().find(|e| e["message"] == "api calls").expect("an api-calls event");
    assert!(calls["mutating"].as_u64().unwrap() > 0 && calls["read"].as_u64().is_some());
    assert!(events.iter().any(|e| e["message"] == "step running" && e["step"] == "network"));
    // A refusal is a JSON event too, with the exit code.
    let refused = w.paymig(["--log-format", "json", "destroy"]).run();
    refused.expect_code(2);
    let last: serde_json::Value = serde_json::from_str(refused.stderr.lines().last().unwrap()).unwrap();
    assert_eq!((last["level"].as_str(), last["exit_code"].as_i64()), (Some("ERROR"), Some(2)));
}

#[tokio::test(flavor = "multi_thread")]
async fn destroy_finishes_when_a_referenced_security_group_was_deleted_behind_its_back() {
    let w = World::with(Default::default(), without_database).await;
    w.paymig(["apply", "--yes"]).run().expect_code(0);
    // The database group is referenced by the compute group's egress rule;
    // the emulator lets it be deleted anyway (AWS would refuse).
    let ec2 = &w.prod.ec2;
    let groups = ec2.describe_security_groups().set_filters(Some(tag_filters())).send().await.unwrap();
    let db = groups.security_groups().iter().find(|g| g.group_name() == Some("payments-db-sg-prod")).unwrap();
    let db_id = db.group_id().unwrap().to_owned();
    let compute = groups.security_groups().iter().find(|g| g.group_name() == Some("payments-compute-sg-prod")).unwrap();
    assert!(
        compute
            .ip_permissions_egress()
            .iter()
            .flat_map(|p| p.user_id_group_pairs())
            .any(|p| p.group_id() == Some(&db_id)),
        "the compute group's egress names the database group"
    );
    ec2.delete_security_group().group_id(&db_id).send().await.unwrap();

    let destroy = w.paymig(["destroy", "--yes"]).run();
    destroy.expect_code(0);
    let left = support::inventory::prod_inventory(&w.moto.endpoint, "prod").await;
    assert!(left.is_empty(), "destroy left {left:?}\n{}", destroy.stderr);
}
