//! Audit buckets and monitoring, checked through the SDK.

use std::collections::BTreeMap;
use std::time::Instant;

use futures::StreamExt;
use serde_json::{json, Value};

use super::support::fixture::Clients;
use super::support::{is_gone, World};
use super::without_database;

/// Versioning status. moto names the root element of its answer
/// differently from AWS, which the SDK cannot deserialize; the raw 200 body
/// still carries the status.
async fn versioning(c: &Clients, bucket: &str) -> Option<String> {
    match c.s3.get_bucket_versioning().bucket(bucket).send().await {
        Ok(out) => out.status().map(|s| s.as_str().to_owned()),
        Err(aws_sdk_s3::error::SdkError::ServiceError(se)) if se.raw().status().as_u16() == 200 => {
            let body = String::from_utf8_lossy(se.raw().body().bytes().unwrap()).into_owned();
            body.split("<Status>").nth(1).and_then(|r| r.split("</Status>").next()).map(str::to_owned)
        }
        Err(e) => panic!("GetBucketVersioning {bucket}: {e:?}"),
    }
}

async fn assert_audit_bucket(c: &Clients, bucket: &str) {
    assert_eq!(versioning(c, bucket).await.as_deref(), Some("Enabled"), "{bucket} versioning");
    let enc = c.s3.get_bucket_encryption().bucket(bucket).send().await.unwrap();
    let alg = enc.server_side_encryption_configuration().unwrap().rules()[0]
        .apply_server_side_encryption_by_default()
        .unwrap()
        .sse_algorithm()
        .as_str()
        .to_owned();
    assert_eq!(alg, "AES256", "{bucket} SSE-S3");
    let pab = c.s3.get_public_access_block().bucket(bucket).send().await.unwrap();
    let p = pab.public_access_block_configuration().unwrap();
    assert_eq!(
        [p.block_public_acls(), p.ignore_public_acls(), p.block_public_policy(), p.restrict_public_buckets()],
        [Some(true); 4],
        "{bucket}"
    );
    let lc = c.s3.get_bucket_lifecycle_configuration().bucket(bucket).send().await.unwrap();
    let rule = &lc.rules()[0];
    assert_eq!(rule.status().as_str(), "Enabled");
    assert_eq!(
        (rule.transitions()[0].days(), rule.transitions()[0].storage_class().map(|s| s.as_str())),
        (Some(90), Some("GLACIER"))
    );
    let nc = &rule.noncurrent_version_transitions()[0];
    assert_eq!((nc.noncurrent_days(), nc.storage_class().map(|s| s.as_str())), (Some(90), Some("GLACIER")));
    assert_eq!(rule.abort_incomplete_multipart_upload().and_then(|a| a.days_after_initiation()), Some(7));
    let policy: Value =
        serde_json::from_str(c.s3.get_bucket_policy().bucket(bucket).send().await.unwrap().policy().unwrap()).unwrap();
    let st = &policy["Statement"][0];
    assert_eq!(st["Effect"], "Deny");
    assert_eq!(st["Condition"]["Bool"]["aws:SecureTransport"], "false");
    let tags = c.s3.get_bucket_tagging().bucket(bucket).send().await.unwrap();
    let tags: BTreeMap<&str, &str> = tags.tag_set().iter().map(|t| (t.key(), t.value())).collect();
    assert_eq!(tags.get("paymig:migration"), Some(&"payments"));
    assert_eq!(tags.get("CostCenter"), Some(&"payments"));
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_buckets_are_created_with_every_setting_and_replicated() {
    let w = World::with(Default::default(), without_database).await;
    w.paymig(["apply", "--yes"]).run().expect_code(0);
    let replica = Clients::new(&w.moto.endpoint, "us-west-2", None).await;
    assert_audit_bucket(&w.prod, "payments-audit-prod").await;
    assert_audit_bucket(&replica, "payments-audit-prod-replica").await;
    let loc = replica.s3.get_bucket_location().bucket("payments-audit-prod-replica").send().await.unwrap();
    assert_eq!(loc.location_constraint().map(|l| l.as_str()), Some("us-west-2"));

    let role = w.prod.iam.get_role().role_name("payments-s3-replication-prod").send().await.unwrap().role.unwrap();
    let rep = w
        .prod
        .s3
        .get_bucket_replication()
        .bucket("payments-audit-prod")
        .send()
        .await
        .unwrap()
        .replication_configuration
        .unwrap();
    assert_eq!(rep.role(), role.arn());
    let rule = &rep.rules()[0];
    assert_eq!(rule.status().as_str(), "Enabled");
    assert_eq!(rule.destination().map(|d| d.bucket()), Some("arn:aws:s3:::payments-audit-prod-replica"));
    let trust = paymig::testing::decode_policy(role.assume_role_policy_document().unwrap());
    assert_eq!(trust["Statement"][0]["Principal"]["Service"], "s3.amazonaws.com");
    let doc = w
        .prod
        .iam
        .get_role_policy()
        .role_name("payments-s3-replication-prod")
        .policy_name("paymig-s3-replication")
        .send()
        .await
        .unwrap();
    let policy = paymig::testing::decode_policy(doc.policy_document());
    assert_eq!(
        policy,
        json!({"Version": "2012-10-17", "Statement": [
            {"Sid": "ReadSourceConfiguration", "Effect": "Allow", "Action": ["s3:GetReplicationConfiguration", "s3:ListBucket"], "Resource": ["arn:aws:s3:::payments-audit-prod"]},
            {"Sid": "ReadSourceObjects", "Effect": "Allow", "Action": ["s3:GetObjectVersionForReplication", "s3:GetObjectVersionAcl", "s3:GetObjectVersionTagging"], "Resource": ["arn:aws:s3:::payments-audit-prod/*"]},
            {"Sid": "WriteReplicas", "Effect": "Allow", "Action": ["s3:ReplicateObject", "s3:ReplicateDelete", "s3:ReplicateTags"], "Resource": ["arn:aws:s3:::payments-audit-prod-replica/*"]}
        ]}),
        "the replication role's policy, exactly"
    );

    let again = w.paymig(["apply", "--yes"]).run();
    again.expect_code(0);
    assert_eq!(again.mutating_calls(), 0, "{}", again.stderr);
    // The dev bucket is untouched and nothing was created in the replica
    // region but the replica bucket.
    assert!(w.prod.s3.head_bucket().bucket("payments-audit-dev").send().await.is_ok());
    let west: Vec<String> = replica
        .s3
        .list_buckets()
        .send()
        .await
        .unwrap()
        .buckets()
        .iter()
        .filter_map(|b| b.name().map(str::to_owned))
        .collect();
    assert!(west.contains(&"payments-audit-prod-replica".to_owned()));
}

#[tokio::test(flavor = "multi_thread")]
async fn destroy_empties_buckets_holding_thousands_of_versions() {
    let w = World::with(Default::default(), without_database).await;
    w.paymig(["apply", "--yes"]).run().expect_code(0);
    let bucket = "payments-audit-prod";
    // moto blocks object I/O under a Deny-with-Condition policy over plain
    // HTTP: lift it to stage the objects (destroy removes it first too).
    w.prod.s3.delete_bucket_policy().bucket(bucket).send().await.unwrap();
    const KEYS: usize = 1000;
    const VERSIONS: usize = 5;
    let puts = (0..KEYS * VERSIONS).map(|i| {
        let s3 = w.prod.s3.clone();
        async move {
            s3.put_object()
                .bucket(bucket)
                .key(format!("audit/{:04}.json", i % KEYS))
                .body(format!("{{\"v\":{i}}}").into_bytes().into())
                .send()
                .await
                .unwrap();
        }
    });
    futures::stream::iter(puts).buffer_unordered(32).collect::<Vec<_>>().await;
    let markers = (0..200).map(|i| {
        let s3 = w.prod.s3.clone();
        async move {
            s3.delete_object().bucket(bucket).key(format!("audit/{i:04}.json")).send().await.unwrap();
        }
    });
    futures::stream::iter(markers).buffer_unordered(32).collect::<Vec<_>>().await;
    w.prod.s3.create_multipart_upload().bucket(bucket).key("audit/big.bin").send().await.unwrap();

    let started = Instant::now();
    // -v: the per-batch events (by default only the step's counter shows).
    let destroy = w.paymig(["-v", "destroy", "--yes"]).run();
    let elapsed = started.elapsed();
    destroy.expect_code(0);
    let (read, mutating) = destroy.calls();
    eprintln!(
        "destroy with {} versions + 200 delete markers + 1 upload: {:.1}s, {read} read / {mutating} mutating calls",
        KEYS * VERSIONS,
        elapsed.as_secs_f64()
    );
    assert!(is_gone(w.prod.s3.head_bucket().bucket(bucket).send().await), "the prod bucket is gone");
    let replica = Clients::new(&w.moto.endpoint, "us-west-2", None).await;
    assert!(
        is_gone(replica.s3.head_bucket().bucket("payments-audit-prod-replica").send().await),
        "the replica is gone"
    );
    assert!(is_gone(w.prod.iam.get_role().role_name("payments-s3-replication-prod").send().await), "the role is gone");
    assert!(w.prod.s3.head_bucket().bucket("payments-audit-dev").send().await.is_ok(), "dev untouched");
    // 5,200 entries in batches of 1,000: 6 DeleteObjects calls.
    let deletes = destroy.stderr.matches("emptying bucket").count();
    assert!(deletes >= 5, "progress is reported per batch at -v: {}", destroy.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn monitoring_topic_alarms_and_dashboard() {
    let w =
        World::with(Default::default(), |t| t.replace("alarm_emails = []", "alarm_emails = [\"oncall@example.com\"]"))
            .await;
    w.paymig(["apply", "--yes"]).run().expect_code(0);
    let key = w
        .prod
        .kms
        .describe_key()
        .key_id("alias/payments-prod")
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .arn
        .unwrap();
    let topic = "arn:aws:sns:us-east-1:123456789012:payments-alarms-prod";
    let sns = aws_sdk_sns::Client::from_conf(
        aws_sdk_sns::config::Builder::from(&super::support::fixture::sdk_config(&w.moto.endpoint, "us-east-1").await)
            .build(),
    );
    let attrs = sns.get_topic_attributes().topic_arn(topic).send().await.unwrap().attributes.unwrap();
    assert_eq!(attrs.get("KmsMasterKeyId"), Some(&key), "topic encrypted with the prod key");
    let policy: Value = serde_json::from_str(&attrs["Policy"]).unwrap();
    let cw = policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Principal"]["Service"] == "cloudwatch.amazonaws.com")
        .expect("cloudwatch may publish");
    assert_eq!(cw["Action"], "sns:Publish");
    let subs = sns.list_subscriptions_by_topic().topic_arn(topic).send().await.unwrap();
    assert_eq!(subs.subscriptions().iter().filter_map(|s| s.endpoint()).collect::<Vec<_>>(), ["oncall@example.com"]);

    let alarms = w.prod.cloudwatch.describe_alarms().send().await.unwrap();
    let by: BTreeMap<&str, &aws_sdk_cloudwatch::types::MetricAlarm> =
        alarms.metric_alarms().iter().map(|a| (a.alarm_name().unwrap(), a)).collect();
    let cpu = by["payments-prod-cpu-high"];
    assert_eq!(
        (cpu.namespace(), cpu.metric_name(), cpu.threshold()),
        (Some("AWS/RDS"), Some("CPUUtilization"), Some(80.0))
    );
    assert_eq!(cpu.dimensions()[0].value(), Some("payments-prod"));
    let rate = by["payment-processor-prod-error-rate"];
    let e1 = rate.metrics().iter().find(|q| q.return_data() == Some(true)).unwrap();
    assert_eq!(e1.expression(), Some("100*(m1/m2)"));
    let metrics: Vec<&str> =
        rate.metrics().iter().filter_map(|q| q.metric_stat()).filter_map(|m| m.metric()?.metric_name()).collect();
    assert_eq!(metrics, ["Errors", "Invocations"]);
    assert_eq!(rate.threshold(), Some(1.0));
    let throttles = by["payment-processor-prod-throttles"];
    assert_eq!(throttles.threshold(), Some(5.0), "the configured production threshold");
    assert_eq!(throttles.dimensions()[0].value(), Some("payment-processor-prod"));
    assert_eq!(by["sessions-prod-read-throttles"].threshold(), Some(10.0), "dev's threshold kept");
    assert!(
        !by.contains_key("legacy-batch-prod-errors"),
        "alarms on resources the migration does not move stay behind"
    );
    for name in [
        "payments-prod-cpu-high",
        "payment-processor-prod-error-rate",
        "payment-processor-prod-throttles",
        "sessions-prod-read-throttles",
    ] {
        let a = by[name];
        assert_eq!(a.alarm_actions(), [topic], "{name}");
        assert_eq!(a.ok_actions(), [topic], "{name}");
        assert_eq!(
            a.treat_missing_data(),
            if name.ends_with("throttles") { a.treat_missing_data() } else { Some("notBreaching") },
            "{name}"
        );
    }

    let body =
        w.prod.cloudwatch.get_dashboard().dashboard_name("payments-prod").send().await.unwrap().dashboard_body.unwrap();
    let parsed: Value = serde_json::from_str(&body).unwrap();
    let strings = collect_strings(&parsed);
    assert!(
        strings.iter().all(|s| !s
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .any(|w| w.split('-').any(|t| t == "dev"))),
        "dev identifier left: {strings:?}"
    );
    assert!(
        strings.contains(&"payment-processor-prod".to_owned()) && strings.contains(&"payments-audit-prod".to_owned())
    );
    assert!(strings
        .contains(&"arn:aws:cloudwatch:us-east-1:123456789012:alarm:payment-processor-prod-throttles".to_owned()));
    assert!(
        strings.contains(&"arn:aws:cloudwatch:us-east-1:123456789012:alarm:payments-prod-cpu-high".to_owned()),
        "the alarm widget lists the new alarms"
    );

    let again = w.paymig(["apply", "--yes"]).run();
    again.expect_code(0);
    assert_eq!(again.mutating_calls(), 0, "{}", again.stderr);

    w.paymig(["rollback", "--yes"]).run().expect_code(0);
    let left = w.prod.cloudwatch.describe_alarms().send().await.unwrap();
    let names: Vec<&str> = left.metric_alarms().iter().filter_map(|a| a.alarm_name()).collect();
    assert!(names.iter().all(|n| n.contains("-dev-")), "only dev alarms remain: {names:?}");
    assert!(is_gone(w.prod.cloudwatch.get_dashboard().dashboard_name("payments-prod").send().await));
    assert!(
        w.prod.cloudwatch.get_dashboard().dashboard_name("payments-dev").send().await.is_ok(),
        "dev dashboard untouched"
    );
    assert!(is_gone(sns.get_topic_attributes().topic_arn(topic).send().await));
}

fn collect_strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a.iter().flat_map(collect_strings).collect(),
        Value::Object(o) => o.values().flat_map(collect_strings).collect(),
        _ => vec![],
    }
}

/// A dev alarm whose prod name is a configured alarm's (`payments-dev-cpu-high`
/// on the dev cluster becomes `payments-prod-cpu-high`, which paymig creates
/// from `[monitoring] rds_cpu_percent`): the configured alarm stands for it,
/// so one name gets one definition, a re-apply changes nothing and validate
/// finds no drift. Replicated alarms keep every setting (percentile, M of N,
/// unit, anomaly band), each action list rewritten to the prod topic.
#[tokio::test(flavor = "multi_thread")]
async fn configured_alarms_win_and_replicas_keep_every_setting() {
    use aws_sdk_cloudwatch::types::{
        ComparisonOperator, Dimension, Metric, MetricDataQuery, MetricStat, StandardUnit, Statistic,
    };
    let w = World::new().await;
    let cw = &w.prod.cloudwatch;
    let dev_topic = "arn:aws:sns:us-east-1:123456789012:payments-dev-alerts";
    cw.put_metric_alarm()
        .alarm_name("payments-dev-cpu-high")
        .namespace("AWS/RDS")
        .metric_name("CPUUtilization")
        .dimensions(Dimension::builder().name("DBClusterIdentifier").value("payments-dev").build())
        .statistic(Statistic::Maximum)
        .period(60)
        .evaluation_periods(1)
        .threshold(95.0)
        .comparison_operator(ComparisonOperator::GreaterThanThreshold)
        .alarm_actions(dev_topic)
        .send()
        .await
        .unwrap();
    cw.put_metric_alarm()
        .alarm_name("payment-processor-dev-p99-duration")
        .namespace("AWS/Lambda")
        .metric_name("Duration")
        .dimensions(Dimension::builder().name("FunctionName").value("payment-processor-dev").build())
        .extended_statistic("p99")
        .unit(StandardUnit::Milliseconds)
        .period(60)
        .evaluation_periods(5)
        .datapoints_to_alarm(3)
        .threshold(2500.0)
        .comparison_operator(ComparisonOperator::GreaterThanThreshold)
        .evaluate_low_sample_count_percentile("ignore")
        .treat_missing_data("ignore")
        .alarm_actions(dev_topic)
        .insufficient_data_actions(dev_topic)
        .send()
        .await
        .unwrap();
    let invocations = Metric::builder()
        .namespace("AWS/Lambda")
        .metric_name("Invocations")
        .dimensions(Dimension::builder().name("FunctionName").value("payment-processor-dev").build())
        .build();
    cw.put_metric_alarm()
        .alarm_name("payment-processor-dev-invocations-anomaly")
        .evaluation_periods(2)
        .comparison_operator(ComparisonOperator::LessThanLowerOrGreaterThanUpperThreshold)
        .threshold_metric_id("ad1")
        .metrics(
            MetricDataQuery::builder()
                .id("m1")
                .return_data(true)
                .metric_stat(MetricStat::builder().metric(invocations).period(300).stat("Sum").build())
                .build(),
        )
        .metrics(
            MetricDataQuery::builder()
                .id("ad1")
                .expression("ANOMALY_DETECTION_BAND(m1, 2)")
                .label("expected invocations")
                .return_data(true)
                .build(),
        )
        .alarm_actions(dev_topic)
        .send()
        .await
        .unwrap();
    // The dev dashboard shows the dev CPU alarm.
    let body = json!({"widgets": [{"type": "alarm", "x": 0, "y": 0, "width": 12, "height": 6, "properties": {
        "title": "cpu", "alarms": ["arn:aws:cloudwatch:us-east-1:123456789012:alarm:payments-dev-cpu-high"]}}]});
    cw.put_dashboard().dashboard_name("payments-dev").dashboard_body(body.to_string()).send().await.unwrap();

    let plan = w.paymig(["plan"]).run();
    plan.expect_code(0);
    let said =
        "dev alarm payments-dev-cpu-high is not replicated: the configured alarm payments-prod-cpu-high stands for it";
    assert!(plan.stdout.contains(said), "plan says which alarm stands for the dev one:\n{}", plan.stdout);
    let apply = w.paymig(["apply", "--yes"]).run();
    apply.expect_code(0);
    assert!(apply.stdout.contains(said), "{}", apply.stdout);

    let topic = "arn:aws:sns:us-east-1:123456789012:payments-alarms-prod";
    let alarms = cw.describe_alarms().send().await.unwrap();
    let by: BTreeMap<&str, &aws_sdk_cloudwatch::types::MetricAlarm> =
        alarms.metric_alarms().iter().map(|a| (a.alarm_name().unwrap(), a)).collect();
    let cpu = by["payments-prod-cpu-high"];
    assert_eq!(
        (cpu.threshold(), cpu.statistic(), cpu.period(), cpu.evaluation_periods()),
        (Some(80.0), Some(&Statistic::Average), Some(300), Some(3)),
        "the configured alarm's definition, not dev's"
    );
    assert_eq!(cpu.dimensions()[0].value(), Some("payments-prod"));

    let p99 = by["payment-processor-prod-p99-duration"];
    assert_eq!((p99.extended_statistic(), p99.statistic()), (Some("p99"), None));
    assert_eq!((p99.evaluation_periods(), p99.datapoints_to_alarm()), (Some(5), Some(3)));
    assert_eq!(p99.unit(), Some(&StandardUnit::Milliseconds));
    assert_eq!(p99.evaluate_low_sample_count_percentile(), Some("ignore"));
    assert_eq!(p99.treat_missing_data(), Some("ignore"));
    assert_eq!(p99.dimensions()[0].value(), Some("payment-processor-prod"));
    assert_eq!(
        (p99.alarm_actions(), p99.insufficient_data_actions()),
        ([topic.to_owned()].as_slice(), [topic.to_owned()].as_slice())
    );

    let band = by["payment-processor-prod-invocations-anomaly"];
    assert_eq!((band.threshold_metric_id(), band.threshold()), (Some("ad1"), None));
    let ad = band.metrics().iter().find(|q| q.id() == Some("ad1")).unwrap();
    assert_eq!((ad.expression(), ad.label()), (Some("ANOMALY_DETECTION_BAND(m1, 2)"), Some("expected invocations")));
    let m1 = band.metrics().iter().find(|q| q.id() == Some("m1")).unwrap();
    assert_eq!(m1.metric_stat().unwrap().metric().unwrap().dimensions()[0].value(), Some("payment-processor-prod"));
    assert!(band.insufficient_data_actions().is_empty(), "dev had none: none added");

    let body = cw.get_dashboard().dashboard_name("payments-prod").send().await.unwrap().dashboard_body.unwrap();
    let strings = collect_strings(&serde_json::from_str(&body).unwrap());
    assert!(
        strings.contains(&"arn:aws:cloudwatch:us-east-1:123456789012:alarm:payments-prod-cpu-high".to_owned()),
        "the dashboard's reference to the dev alarm points at the configured alarm: {strings:?}"
    );
    assert!(!strings.iter().any(|s| s.contains("payments-dev-cpu-high")), "{strings:?}");

    let again = w.paymig(["apply", "--yes"]).run();
    again.expect_code(0);
    assert_eq!(again.mutating_calls(), 0, "one definition per alarm: a re-apply rewrites nothing\n{}", again.stderr);
    let report = w.paymig(["validate", "--format", "json"]).run();
    report.expect_code(0);
    let doc: Value = serde_json::from_str(&report.stdout).unwrap();
    assert_eq!(doc["summary"]["differing"], 0, "{}", report.stdout);
}
