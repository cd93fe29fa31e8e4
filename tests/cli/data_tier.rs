//! The data tier: Aurora restored from a dev snapshot, DynamoDB tables
//! reproduced — checked through the SDK.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_dynamodb::types::StreamViewType;

use super::support::fixture::{self, Clients, TableSpec};
use super::support::{is_gone, World};
use super::without_database;

async fn prod_key_arn(c: &Clients) -> String {
    c.kms.describe_key().key_id("alias/payments-prod").send().await.unwrap().key_metadata.unwrap().arn.unwrap()
}

async fn clusters(c: &Clients) -> Vec<aws_sdk_rds::types::DbCluster> {
    c.rds.describe_db_clusters().send().await.unwrap().db_clusters().to_vec()
}

async fn prod_instances(c: &Clients) -> Vec<aws_sdk_rds::types::DbInstance> {
    let all = c.rds.describe_db_instances().send().await.unwrap().db_instances().to_vec();
    all.into_iter().filter(|i| i.db_cluster_identifier() == Some("payments-prod")).collect()
}

/// The journal's record of the snapshot prod was restored from.
fn journaled_snapshot(w: &World) -> String {
    let lines = w.journal_lines();
    let intent = lines
        .iter()
        .find(|l| l["type"] == "intent" && l["kind"] == "db_cluster" && l["op"] == "create")
        .expect("cluster intent");
    intent["data"]["snapshot"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn aurora_is_restored_from_the_newest_dev_snapshot_into_the_prod_network() {
    let w = World::new().await;
    let dev = Clients::new(&w.moto.endpoint, "us-east-1", None).await;
    let snaps = dev.rds.describe_db_cluster_snapshots().db_cluster_identifier("payments-dev").send().await.unwrap();
    let newest =
        snaps.db_cluster_snapshots().iter().max_by_key(|s| s.snapshot_create_time().map(|t| t.as_nanos())).unwrap();
    let dev_cluster =
        clusters(&dev).await.into_iter().find(|c| c.db_cluster_identifier() == Some("payments-dev")).unwrap();

    let apply = w.paymig(["apply", "--yes"]).run();
    apply.expect_code(0);
    let key = prod_key_arn(&w.prod).await;
    let c = clusters(&w.prod)
        .await
        .into_iter()
        .find(|c| c.db_cluster_identifier() == Some("payments-prod"))
        .expect("prod cluster");
    assert_eq!(c.engine(), Some("aurora-postgresql"));
    assert_eq!(c.engine_version(), newest.engine_version());
    assert_eq!(c.kms_key_id(), Some(key.as_str()), "re-encrypted with the prod key");
    assert_ne!(c.kms_key_id(), dev_cluster.kms_key_id());
    assert_eq!(c.backup_retention_period(), Some(1));
    assert_eq!(c.deletion_protection(), Some(false));
    assert_eq!(c.iam_database_authentication_enabled(), Some(true), "as dev");
    assert_eq!(c.enabled_cloudwatch_logs_exports(), ["postgresql"]);
    let scaling = c.serverless_v2_scaling_configuration().unwrap();
    assert_eq!((scaling.min_capacity(), scaling.max_capacity()), (Some(0.5), Some(16.0)), "from [database]");
    assert_eq!(c.db_cluster_parameter_group(), Some("payments-prod-params"));
    let tags: BTreeMap<&str, &str> = c.tag_list().iter().filter_map(|t| Some((t.key()?, t.value()?))).collect();
    assert_eq!(tags.get("paymig:migration"), Some(&"payments"));
    assert_eq!(tags.get("Environment"), Some(&"production"));
    assert_eq!(journaled_snapshot(&w), newest.db_cluster_snapshot_identifier().unwrap());

    // The prod network: subnet group over the prod subnets, the database group.
    let sg = super::support::group_id(&w.prod, "payments-db-sg-prod").await;
    assert_eq!(
        c.vpc_security_groups().iter().filter_map(|g| g.vpc_security_group_id()).collect::<Vec<_>>(),
        [sg.as_str()]
    );
    let group = w
        .prod
        .rds
        .describe_db_subnet_groups()
        .db_subnet_group_name("payments-prod-subnets")
        .send()
        .await
        .unwrap()
        .db_subnet_groups()[0]
        .clone();
    let prod_subnets = w.prod.ec2.describe_subnets().set_filters(Some(super::tag_filters())).send().await.unwrap();
    let want: BTreeSet<&str> = prod_subnets.subnets().iter().filter_map(|s| s.subnet_id()).collect();
    let have: BTreeSet<&str> = group.subnets().iter().filter_map(|s| s.subnet_identifier()).collect();
    assert_eq!(have, want);

    // Dev's non-default parameters, in a group of the same family.
    let pg = w
        .prod
        .rds
        .describe_db_cluster_parameter_groups()
        .db_cluster_parameter_group_name("payments-prod-params")
        .send()
        .await
        .unwrap();
    assert_eq!(pg.db_cluster_parameter_groups()[0].db_parameter_group_family(), Some("aurora-postgresql15"));
    let params = w
        .prod
        .rds
        .describe_db_cluster_parameters()
        .db_cluster_parameter_group_name("payments-prod-params")
        .source("user")
        .send()
        .await
        .unwrap();
    let got: BTreeMap<&str, &str> =
        params.parameters().iter().filter_map(|p| Some((p.parameter_name()?, p.parameter_value()?))).collect();
    assert_eq!(got, BTreeMap::from([("log_min_duration_statement", "500"), ("rds.force_ssl", "1")]));

    // Two db.serverless instances in two AZs with distinct promotion tiers.
    let instances = prod_instances(&w.prod).await;
    assert_eq!(instances.len(), 2);
    let azs: BTreeSet<&str> = instances.iter().filter_map(|i| i.availability_zone()).collect();
    assert_eq!(azs.len(), 2, "{azs:?}");
    let tiers: BTreeSet<i32> = instances.iter().filter_map(|i| i.promotion_tier()).collect();
    assert_eq!(tiers, BTreeSet::from([0, 1]));
    assert!(instances.iter().all(|i| i.db_instance_class() == Some("db.serverless")));

    let again = w.paymig(["apply", "--yes"]).run();
    again.expect_code(0);
    assert_eq!(again.mutating_calls(), 0, "{}", again.stderr);

    // Rollback removes the whole data tier and never touches dev; it says
    // first that the database goes with it.
    let dry = w.paymig(["rollback", "--dry-run"]).run();
    dry.expect_code(0);
    assert!(
        dry.stdout.contains("data that would be deleted:")
            && dry.stdout.contains("  ! payments-prod: Aurora cluster, restored ")
            && dry.stdout.contains(" ago, 2 instances"),
        "{}",
        dry.stdout
    );
    w.paymig(["rollback", "--yes"]).run().expect_code(0);
    assert!(clusters(&w.prod).await.iter().all(|c| c.db_cluster_identifier() != Some("payments-prod")));
    assert!(prod_instances(&w.prod).await.is_empty());
    assert!(is_gone(w.prod.rds.describe_db_subnet_groups().db_subnet_group_name("payments-prod-subnets").send().await));
    assert!(is_gone(
        w.prod
            .rds
            .describe_db_cluster_parameter_groups()
            .db_cluster_parameter_group_name("payments-prod-params")
            .send()
            .await
    ));
    assert!(
        clusters(&dev).await.iter().any(|c| c.db_cluster_identifier() == Some("payments-dev")),
        "dev cluster intact"
    );
    let after = dev.rds.describe_db_cluster_snapshots().db_cluster_identifier("payments-dev").send().await.unwrap();
    let ids: BTreeSet<&str> =
        after.db_cluster_snapshots().iter().filter_map(|s| s.db_cluster_snapshot_identifier()).collect();
    assert!(ids.contains("payments-dev-seed") && ids.contains("payments-dev-nightly"), "dev snapshots intact: {ids:?}");
    let dev_table = dev.dynamodb.describe_table().table_name("sessions-dev").send().await;
    assert!(dev_table.is_ok(), "dev table intact");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_explicit_snapshot_is_restored_and_a_missing_one_fails_preflight() {
    let w = World::with(Default::default(), |t| t.replace("db_snapshot = \"\"", "db_snapshot = \"payments-dev-seed\""))
        .await;
    let plan = w.paymig(["plan"]).run();
    plan.expect_code(0);
    assert!(plan.stdout.contains("from snapshot payments-dev-seed"), "{}", plan.stdout);
    w.paymig(["apply", "--yes"]).run().expect_code(0);
    assert_eq!(journaled_snapshot(&w), "payments-dev-seed");

    let text = std::fs::read_to_string(&w.config).unwrap().replace("payments-dev-seed", "payments-dev-missing");
    std::fs::write(&w.config, text).unwrap();
    let run = w.paymig(["apply", "--yes"]).run();
    run.expect_code(2);
    assert!(
        run.stderr.contains("[source] db_snapshot") && run.stderr.contains("payments-dev-missing"),
        "{}",
        run.stderr
    );
    assert_eq!(run.mutating_calls(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dev_cluster_of_another_engine_fails_preflight() {
    let w =
        World::with(Default::default(), |t| t.replace("db_cluster = \"payments-dev\"", "db_cluster = \"ledger-dev\""))
            .await;
    w.prod
        .rds
        .create_db_cluster()
        .db_cluster_identifier("ledger-dev")
        .engine("aurora-mysql")
        .master_username("u")
        .master_user_password("password123")
        .send()
        .await
        .unwrap();
    let run = w.paymig(["plan"]).run();
    run.expect_code(2);
    assert!(run.stderr.contains("aurora-mysql") && run.stderr.contains("aurora-postgresql only"), "{}", run.stderr);

    assert_eq!(run.mutating_calls(), 0);
    // (A cluster without any snapshot cannot be staged: moto gives every new
    // cluster an automated snapshot. `newest_available` is unit-tested for it,
    // and a missing explicit snapshot is tested above.)
}

fn twelve_tables() -> Vec<TableSpec> {
    (0..12)
        .map(|i| TableSpec {
            name: format!("ledger{i:02}-dev"),
            range: i % 2 == 0,
            gsis: (0..(i % 3)).map(|g| (format!("by-attr{g}"), format!("attr{g}"), format!("extra{g}"))).collect(),
            lsi: i % 4 == 0,
            ttl: (i % 3 == 0).then(|| "expires_at".to_owned()),
            stream: match i % 3 {
                0 => Some(StreamViewType::NewAndOldImages),
                1 => Some(StreamViewType::KeysOnly),
                _ => None,
            },
            provisioned: Some((10 + i as i64, 4 + i as i64)),
        })
        .collect()
}

fn table_shape(t: &aws_sdk_dynamodb::types::TableDescription) -> String {
    let attrs: BTreeSet<String> = t
        .attribute_definitions()
        .iter()
        .map(|a| format!("{}:{}", a.attribute_name(), a.attribute_type().as_str()))
        .collect();
    let keys: Vec<String> =
        t.key_schema().iter().map(|k| format!("{}:{}", k.attribute_name(), k.key_type().as_str())).collect();
    let mut gsis: Vec<String> = t
        .global_secondary_indexes()
        .iter()
        .map(|g| {
            let p = g.projection().unwrap();
            let pt = g.provisioned_throughput().map(|p| (p.read_capacity_units(), p.write_capacity_units()));
            format!(
                "{}:{:?}:{:?}:{:?}:{:?}",
                g.index_name().unwrap(),
                g.key_schema().iter().map(|k| k.attribute_name()).collect::<Vec<_>>(),
                p.projection_type(),
                p.non_key_attributes(),
                pt
            )
        })
        .collect();
    gsis.sort();
    let mut lsis: Vec<String> = t
        .local_secondary_indexes()
        .iter()
        .map(|l| {
            format!(
                "{}:{:?}:{:?}",
                l.index_name().unwrap(),
                l.key_schema().iter().map(|k| k.attribute_name()).collect::<Vec<_>>(),
                l.projection().and_then(|p| p.projection_type())
            )
        })
        .collect();
    lsis.sort();
    let stream = t
        .stream_specification()
        .filter(|s| s.stream_enabled())
        .map(|s| s.stream_view_type().map(|v| v.as_str().to_owned()));
    let pt = t.provisioned_throughput().map(|p| (p.read_capacity_units(), p.write_capacity_units()));
    format!("attrs={attrs:?} keys={keys:?} gsis={gsis:?} lsis={lsis:?} stream={stream:?} throughput={pt:?}")
}

#[tokio::test(flavor = "multi_thread")]
async fn twelve_tables_are_reproduced_exactly_with_provisioned_billing() {
    let specs = twelve_tables();
    let list: Vec<String> = specs.iter().map(|s| format!("\"{}\"", s.name)).collect();
    let w = World::with(Default::default(), |t| {
        without_database(t)
            .replace("dynamodb_tables = [\"sessions-dev\"]", &format!("dynamodb_tables = [{}]", list.join(", ")))
            .replace("billing_mode = \"PAY_PER_REQUEST\"", "billing_mode = \"PROVISIONED\"")
    })
    .await;
    let dev = Clients::new(&w.moto.endpoint, "us-east-1", None).await;
    for s in &specs {
        fixture::seed_table(&dev, s).await;
    }
    let apply = w.paymig(["apply", "--yes"]).run();
    apply.expect_code(0);
    let key = prod_key_arn(&w.prod).await;
    for s in &specs {
        let prod_name = s.name.replace("-dev", "-prod");
        let d = dev.dynamodb.describe_table().table_name(&s.name).send().await.unwrap().table.unwrap();
        let p = w.prod.dynamodb.describe_table().table_name(&prod_name).send().await.unwrap().table.unwrap();
        assert_eq!(table_shape(&p), table_shape(&d), "{prod_name} differs from {}", s.name);
        assert_eq!(p.billing_mode_summary().and_then(|b| b.billing_mode()).map(|b| b.as_str()), Some("PROVISIONED"));
        assert_eq!(p.sse_description().and_then(|x| x.kms_master_key_arn()), Some(key.as_str()), "{prod_name} SSE");
        assert_ne!(p.deletion_protection_enabled(), Some(true));
        let pitr = w.prod.dynamodb.describe_continuous_backups().table_name(&prod_name).send().await.unwrap();
        let status = pitr
            .continuous_backups_description()
            .and_then(|c| c.point_in_time_recovery_description())
            .and_then(|p| p.point_in_time_recovery_status());
        assert_eq!(status.map(|s| s.as_str()), Some("ENABLED"), "{prod_name} PITR");
        let ttl = w.prod.dynamodb.describe_time_to_live().table_name(&prod_name).send().await.unwrap();
        let ttl_attr = ttl
            .time_to_live_description()
            .filter(|d| d.time_to_live_status().map(|s| s.as_str()) == Some("ENABLED"))
            .and_then(|d| d.attribute_name());
        assert_eq!(ttl_attr, s.ttl.as_deref(), "{prod_name} TTL");
        let tags = w.prod.dynamodb.list_tags_of_resource().resource_arn(p.table_arn().unwrap()).send().await.unwrap();
        assert!(tags.tags().iter().any(|t| t.key() == "paymig:migration" && t.value() == "payments"));
    }
    let again = w.paymig(["apply", "--yes"]).run();
    again.expect_code(0);
    assert_eq!(again.mutating_calls(), 0, "{}", again.stderr);

    w.paymig(["destroy", "--yes"]).run().expect_code(0);
    let left = w.prod.dynamodb.list_tables().send().await.unwrap();
    assert!(left.table_names().iter().all(|t| !t.ends_with("-prod")), "{:?}", left.table_names());
    assert_eq!(left.table_names().iter().filter(|t| t.ends_with("-dev")).count(), 13, "dev tables intact");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_prod_table_with_another_schema_is_refused_and_a_missing_gsi_is_added() {
    let w = World::with(Default::default(), |t| {
        without_database(t)
            .replace("dynamodb_tables = [\"sessions-dev\"]", "dynamodb_tables = [\"orders-dev\", \"sessions-dev\"]")
    })
    .await;
    let dev = Clients::new(&w.moto.endpoint, "us-east-1", None).await;
    let orders = |name: &str, gsis| TableSpec {
        name: name.into(),
        range: true,
        gsis,
        lsi: false,
        ttl: None,
        stream: None,
        provisioned: None,
    };
    fixture::seed_table(&dev, &orders("orders-dev", vec![("by-customer".into(), "customer".into(), "total".into())]))
        .await;
    // Prod already has orders without the GSI, and sessions with another key.
    fixture::seed_table(&w.prod, &orders("orders-prod", vec![])).await;
    fixture::seed_table(
        &w.prod,
        &TableSpec {
            name: "sessions-prod".into(),
            range: true,
            gsis: vec![],
            lsi: false,
            ttl: None,
            stream: None,
            provisioned: None,
        },
    )
    .await;

    let plan = w.paymig(["plan"]).run();
    plan.expect_code(0);
    assert!(plan.stdout.contains("add GSI by-customer"), "{}", plan.stdout);
    assert!(plan.stdout.contains("sessions-prod exists with a different schema"), "{}", plan.stdout);

    let apply = w.paymig(["apply", "--yes"]).run();
    apply.expect_code(1);
    assert!(apply.stdout.contains("cannot change in place"), "{}", apply.stdout);
    let o = w.prod.dynamodb.describe_table().table_name("orders-prod").send().await.unwrap().table.unwrap();
    assert_eq!(o.global_secondary_indexes().iter().filter_map(|g| g.index_name()).collect::<Vec<_>>(), ["by-customer"]);
    let s = w.prod.dynamodb.describe_table().table_name("sessions-prod").send().await.unwrap().table.unwrap();
    assert_eq!(s.key_schema().len(), 2, "the drifted table is left exactly as it was");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_killed_in_the_data_tier_resumes_without_a_second_cluster() {
    // Calibrate: with --parallelism 1 the journal order is deterministic, so
    // the kill points below land inside the database step.
    let calib = World::new().await;
    calib.paymig(["apply", "--yes", "--parallelism", "1"]).run().expect_code(0);
    let lines = calib.journal_lines();
    let seqs: Vec<u64> = lines
        .iter()
        .filter(|l| l["step"] == "database" || lines.iter().any(|i| i["seq"] == l["intent"] && i["step"] == "database"))
        .filter_map(|l| l["seq"].as_u64())
        .collect();
    assert!(seqs.len() >= 8, "{seqs:?}");
    let points = [seqs[0], seqs[seqs.len() / 2 - 1], seqs[seqs.len() / 2], seqs[seqs.len() - 2]];
    drop(calib);
    for k in points {
        let w = World::new().await;
        let killed = w
            .paymig(["apply", "--yes", "--parallelism", "1"])
            .env("PAYMIG_TEST_KILL_AFTER_WRITES", &k.to_string())
            .run();
        assert!(killed.killed, "not killed at {k}: {}", killed.stderr);
        w.paymig(["apply", "--yes"]).run().expect_code(0);
        let prod: Vec<_> = clusters(&w.prod)
            .await
            .into_iter()
            .filter(|c| c.db_cluster_identifier().is_some_and(|i| i.starts_with("payments-prod")))
            .collect();
        assert_eq!(prod.len(), 1, "one prod cluster after a kill at {k}");
        assert_eq!(prod_instances(&w.prod).await.len(), 2, "after a kill at {k}");
        let lines = w.journal_lines();
        let open = lines
            .iter()
            .filter(|l| l["type"] == "intent")
            .filter(|i| {
                !lines.iter().any(|d| (d["type"] == "done" || d["type"] == "undone") && d["intent"] == i["seq"])
            })
            .count();
        assert_eq!(open, 0, "journal consistent after a kill at {k}");
        assert_eq!(w.paymig(["apply", "--yes"]).run().mutating_calls(), 0);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_prod_table_that_predates_paymig_is_managed_but_never_deleted() {
    let w = World::with(Default::default(), without_database).await;
    // Same schema as dev, no paymig tags: created by someone else.
    use aws_sdk_dynamodb::types::{AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType};
    w.prod
        .dynamodb
        .create_table()
        .table_name("sessions-prod")
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("session_id")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(KeySchemaElement::builder().attribute_name("session_id").key_type(KeyType::Hash).build().unwrap())
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .unwrap();
    let apply = w.paymig(["apply", "--yes"]).run();
    apply.expect_code(0);
    let lines = w.journal_lines();
    assert!(
        !lines.iter().any(|l| l["kind"] == "dynamodb_table" && (l["op"] == "create" || l["op"] == "adopt")),
        "a foreign table is not adopted"
    );
    w.paymig(["destroy", "--yes"]).run().expect_code(0);
    assert!(
        w.prod.dynamodb.describe_table().table_name("sessions-prod").send().await.is_ok(),
        "destroy never deletes what paymig did not create"
    );
}

/// A dev cluster `id` on `version`, with the cluster parameter group `group`
/// of `family` when given, and one snapshot `<id>-snap`.
async fn dev_cluster(c: &Clients, id: &str, version: &str, group: Option<(&str, &str)>) {
    if let Some((name, family)) = group {
        c.rds
            .create_db_cluster_parameter_group()
            .db_cluster_parameter_group_name(name)
            .db_parameter_group_family(family)
            .description("dev")
            .send()
            .await
            .unwrap();
    }
    c.rds
        .create_db_cluster()
        .db_cluster_identifier(id)
        .engine("aurora-postgresql")
        .engine_version(version)
        .master_username("ledger")
        .master_user_password("dev-only-password")
        .set_db_cluster_parameter_group_name(group.map(|(n, _)| n.to_owned()))
        .send()
        .await
        .unwrap();
    c.rds
        .create_db_cluster_snapshot()
        .db_cluster_identifier(id)
        .db_cluster_snapshot_identifier(format!("{id}-snap"))
        .send()
        .await
        .unwrap();
}

/// Before a restore, the prod region's engine catalogue: the snapshot's
/// version runs db.serverless (Serverless v2) within `[database]`'s range,
/// and its parameter-group family is that of dev's group, which paymig
/// copies. Each gap is refused in preflight (exit 2, no mutating call) naming
/// the key and the fix — on AWS the restore would fail 10 minutes in.
#[tokio::test(flavor = "multi_thread")]
async fn the_snapshots_engine_version_is_checked_against_the_catalogue_before_a_restore() {
    let w = World::new().await;
    dev_cluster(&w.prod, "ledger13-dev", "13.4", None).await;
    dev_cluster(&w.prod, "ledger15-dev", "15.4", Some(("ledger15-dev-params", "aurora-postgresql16"))).await;
    let reference = std::fs::read_to_string(&w.config).unwrap();
    let variant = |name: &str, from: &str, to: &str| {
        assert!(reference.contains(from), "{from}");
        let path = w.dir.path().join(format!("{name}.toml"));
        std::fs::write(&path, reference.replace(from, to)).unwrap();
        path
    };
    let cases = [
        (
            variant("no-serverless", "db_cluster = \"payments-dev\"", "db_cluster = \"ledger13-dev\""),
            "which does not run db.serverless (Aurora Serverless v2)",
            "ledger13-dev-snap",
        ),
        (
            variant("family", "db_cluster = \"payments-dev\"", "db_cluster = \"ledger15-dev\""),
            "dev's cluster parameter group is family aurora-postgresql16, but snapshot ledger15-dev-snap (aurora-postgresql 15.4) needs aurora-postgresql15",
            "help: take a new snapshot",
        ),
        (
            variant("min-capacity", "min_capacity = 0.5", "min_capacity = 0"),
            "[database] min_capacity = 0: aurora-postgresql 15.4 (snapshot payments-dev-nightly) runs Serverless v2 from 0.5 ACU",
            "help: set min_capacity to 0.5",
        ),
    ];
    for (cfg, problem, fix) in &cases {
        for args in [&["plan"][..], &["apply", "--yes"]] {
            let run = crate::support::Paymig::new(&w.moto.endpoint, cfg).args(args).guard_dev(&w.moto.endpoint).run();
            run.expect_code(2);
            assert!(run.stderr.contains(problem) && run.stderr.contains(fix), "{}", run.stderr);
            assert_eq!(run.mutating_calls(), 0, "{}", run.stderr);
        }
    }
    assert!(crate::support::inventory::prod_inventory(&w.moto.endpoint, "prod").await.is_empty(), "nothing created");
    // The reference configuration passes the same checks.
    w.paymig(["plan"]).run().expect_code(0);
}

/// On an emulator without AWS's engine catalogue (moto as released answers
/// DescribeDBEngineVersions with a bare 500) the engine checks are skipped
/// and said at -v, and the migration goes on; the engine is still checked by the
/// restore itself.
#[tokio::test(flavor = "multi_thread")]
async fn without_an_engine_catalogue_the_checks_are_skipped_and_said() {
    let moto = crate::support::Moto::start_plain();
    let dev = fixture::seed(&moto.endpoint, &Default::default()).await;
    let w = World::adopt(moto, dev, |t| t).await;
    // Said at -v only: AWS always has the catalogue.
    let quiet = w.paymig(["plan"]).run();
    quiet.expect_code(0);
    assert!(!quiet.stderr.contains("no RDS engine catalogue"), "{}", quiet.stderr);
    let plan = w.paymig(["-v", "plan"]).run();
    plan.expect_code(0);
    assert!(plan.stderr.contains("no RDS engine catalogue"), "{}", plan.stderr);
    assert!(plan.stdout.contains("+ db_cluster payments-prod"), "{}", plan.stdout);
}
