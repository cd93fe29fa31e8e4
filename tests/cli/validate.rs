//! validate: a clean report right after apply in three formats, and changes
//! made behind paymig's back detected with exit 3.

use aws_sdk_dynamodb::types::{
    DeleteGlobalSecondaryIndexAction, GlobalSecondaryIndexUpdate, PointInTimeRecoverySpecification,
};
use serde_json::Value;

use super::support::fixture::{self, TableSpec};
use super::support::World;

fn report(w: &World) -> (Option<i32>, Value) {
    let run = w.paymig(["validate", "--format", "json"]).run();
    let doc = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("validate --format json: {e}\n{}\n{}", run.stdout, run.stderr));
    (run.code, doc)
}

fn failed_check<'a>(doc: &'a Value, id: &str, resource: &str) -> Option<&'a Value> {
    doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id && c["resource"] == resource && c["passed"] == false)
}

fn resource<'a>(doc: &'a Value, kind: &str, prod: &str) -> &'a Value {
    doc["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == kind && r["prod"] == prod)
        .unwrap_or_else(|| panic!("no {kind} {prod} in the report"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_report_is_clean_right_after_apply_in_all_three_formats() {
    let w = World::new().await;
    w.paymig(["apply", "--yes"]).run().expect_code(0);
    let (code, doc) = report(&w);
    assert_eq!(code, Some(0), "{doc:#}");
    for key in ["resources", "matching", "differing", "missing", "checks_failed"] {
        assert!(doc["summary"][key].is_u64(), "summary.{key}");
    }
    assert_eq!(doc["summary"]["differing"], 0);
    assert!(doc["summary"]["resources"].as_u64().unwrap() >= 15);
    let ids: std::collections::BTreeSet<&str> =
        doc["checks"].as_array().unwrap().iter().filter_map(|c| c["id"].as_str()).collect();
    for id in [
        "kms.rotation",
        "network.no_nat_gateway",
        "network.no_internet_gateway",
        "database.cmk",
        "database.backup_retention",
        "database.deletion_protection_off",
        "dynamodb.pitr",
        "s3.versioning",
        "s3.lifecycle",
        "s3.public_access_block",
        "s3.replication",
        "sns.cmk",
        "monitoring.alarm_actions",
        "iam.no_wildcard_action",
        "tags.present",
        "names.suffix",
        "params.no_securestring_copied",
    ] {
        assert!(ids.contains(id), "check {id} missing from {ids:?}");
    }
    // Expected differences are listed, flagged as expected.
    let table = resource(&doc, "dynamodb_table", "sessions-prod");
    assert_eq!(table["status"], "match");
    assert!(table["differences"].as_array().unwrap().iter().any(|d| d["field"] == "name" && d["expected"] == true));

    let md = w.paymig(["validate"]).run();
    md.expect_code(0);
    assert!(
        md.stdout.starts_with("# paymig validate") && md.stdout.contains("| `dynamodb.pitr` | sessions-prod | pass |"),
        "{}",
        md.stdout
    );

    let html = w.dir.path().join("report.html");
    w.paymig(["validate", "--format", "html", "--out"]).args([&html]).run().expect_code(0);
    let dom = crate::support::headless_dom(&html);
    assert!(dom.contains("id=\"summary\" data-clean=\"true\""), "the browser rendered the page: {dom}");
    assert!(dom.contains("<td>sessions-prod</td>") && dom.contains("dynamodb.pitr"), "{dom}");
}

#[tokio::test(flavor = "multi_thread")]
async fn changes_behind_paymigs_back_are_detected_with_exit_3() {
    let w = World::with(Default::default(), |t| {
        t.replace("dynamodb_tables = [\"sessions-dev\"]", "dynamodb_tables = [\"orders-dev\", \"sessions-dev\"]")
    })
    .await;
    let dev = fixture::Clients::new(&w.moto.endpoint, "us-east-1", None).await;
    fixture::seed_table(
        &dev,
        &TableSpec {
            name: "orders-dev".into(),
            range: true,
            gsis: vec![("by-customer".into(), "customer".into(), "total".into())],
            lsi: false,
            ttl: None,
            stream: None,
            provisioned: None,
        },
    )
    .await;
    w.paymig(["apply", "--yes"]).run().expect_code(0);
    assert_eq!(report(&w).0, Some(0));

    let p = &w.prod;
    p.dynamodb
        .update_continuous_backups()
        .table_name("sessions-prod")
        .point_in_time_recovery_specification(
            PointInTimeRecoverySpecification::builder().point_in_time_recovery_enabled(false).build().unwrap(),
        )
        .send()
        .await
        .unwrap();
    let vpc = p
        .ec2
        .describe_vpcs()
        .filters(aws_sdk_ec2::types::Filter::builder().name("tag:Name").values("payments-prod").build())
        .send()
        .await
        .unwrap()
        .vpcs()[0]
        .vpc_id()
        .unwrap()
        .to_owned();
    p.ec2
        .delete_tags()
        .resources(&vpc)
        .tags(aws_sdk_ec2::types::Tag::builder().key("CostCenter").build())
        .send()
        .await
        .unwrap();
    p.ssm.put_parameter().name("/prod/payments/table").value("tampered").overwrite(true).send().await.unwrap();
    p.cloudwatch.delete_alarms().alarm_names("payments-prod-cpu-high").send().await.unwrap();
    p.dynamodb
        .update_table()
        .table_name("orders-prod")
        .global_secondary_index_updates(
            GlobalSecondaryIndexUpdate::builder()
                .delete(DeleteGlobalSecondaryIndexAction::builder().index_name("by-customer").build().unwrap())
                .build(),
        )
        .send()
        .await
        .unwrap();

    let (code, doc) = report(&w);
    assert_eq!(code, Some(3), "{doc:#}");
    let pitr = failed_check(&doc, "dynamodb.pitr", "sessions-prod").expect("PITR disabled");
    assert_eq!(pitr["detail"], "point-in-time recovery: disabled", "the detail names the state");
    let sessions = resource(&doc, "dynamodb_table", "sessions-prod");
    assert_eq!(sessions["status"], "differs", "a resource failing a check is no match: {sessions}");
    assert!(sessions["differences"].as_array().unwrap().iter().any(|d| d["field"] == "check dynamodb.pitr"));
    // The summary names what needs attention first; --out says where it wrote.
    let text = w.paymig(["validate", "--format", "text"]).run();
    text.expect_code(3);
    let (checks, drift) = (text.stdout.find("Failed checks (").unwrap(), text.stdout.find("Drift (").unwrap());
    assert!(checks < drift && drift < text.stdout.find("Missing in prod (1)").unwrap(), "{}", text.stdout);
    assert!(
        text.stdout.contains("✗ dynamodb.pitr  sessions-prod: point-in-time recovery: disabled"),
        "{}",
        text.stdout
    );
    assert!(text.stdout.contains("- [monitoring] alarm payments-prod-cpu-high"), "{}", text.stdout);
    let path = w.dir.path().join("report.md");
    let out = w.paymig(["validate", "--out", path.to_str().unwrap()]).run();
    out.expect_code(3);
    assert!(out.stdout.contains(&format!("wrote the md report to {}", path.display())), "{}", out.stdout);
    assert!(std::fs::read_to_string(&path).unwrap().contains("| tier |"));
    assert!(
        failed_check(&doc, "tags.present", "payments-prod")
            .is_some_and(|c| c["detail"].as_str().unwrap().contains("CostCenter")),
        "tag removed"
    );
    let param = resource(&doc, "ssm_parameter", "/prod/payments/table");
    assert_eq!(param["status"], "differs", "parameter edited");
    assert!(param["differences"]
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d["field"] == "value" && d["prod"] == "tampered" && d["expected"] == false));
    assert_eq!(resource(&doc, "alarm", "payments-prod-cpu-high")["status"], "missing", "alarm deleted");
    let orders = resource(&doc, "dynamodb_table", "orders-prod");
    assert_eq!(orders["status"], "differs", "GSI removed");
    assert!(orders["differences"]
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d["field"] == "global_secondary_indexes" && d["expected"] == false));

    // apply repairs what it owns; the edited parameter is a conflict until
    // --overwrite, and then the report is clean again.
    w.paymig(["apply", "--yes"]).run().expect_code(0);
    let (code, doc) = report(&w);
    assert_eq!(code, Some(3));
    assert_eq!(resource(&doc, "ssm_parameter", "/prod/payments/table")["status"], "differs");
    assert_eq!(doc["summary"]["checks_failed"], 0, "{doc:#}");
    w.paymig(["params", "--overwrite", "--yes"]).run().expect_code(0);
    assert_eq!(report(&w).0, Some(0));
}
