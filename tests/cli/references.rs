//! Dev's identity does not reach prod: every dev identifier in a copied
//! value (a function's environment, a parameter's value) becomes its prod
//! counterpart as prod itself reports it, or is named by plan, apply and
//! validate; and the restored cluster's master credentials are RDS-managed
//! prod secrets, not dev's password.

use std::collections::BTreeMap;

use serde_json::Value;

use super::support::fixture;
use super::support::World;

/// The secrets of the prod account, by name (a raw Secrets Manager call: the
/// tests have no Secrets Manager client).
async fn secret_names(endpoint: &str) -> Vec<String> {
    use http_body_util::BodyExt;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build(hyper_util::client::legacy::connect::HttpConnector::new());
    let req = hyper::Request::post(format!("{endpoint}/"))
        .header("x-amz-target", "secretsmanager.ListSecrets")
        .header("content-type", "application/x-amz-json-1.1")
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=testing/20261206/us-east-1/secretsmanager/aws4_request, SignedHeaders=host, Signature=0",
        )
        .body(http_body_util::Full::new(bytes::Bytes::from_static(b"{}")))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let doc: Value = serde_json::from_slice(&body).unwrap();
    doc["SecretList"].as_array().unwrap().iter().filter_map(|s| s["Name"].as_str().map(String::from)).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn dev_references_become_what_prod_reports_or_are_named_and_credentials_are_prods_own() {
    let w = World::with(Default::default(), |t| {
        t.replace("keep = []", "keep = [\"payment-processor-dev:LEGACY\"]").replace(
            "environment = { LOG_LEVEL = \"INFO\" }",
            "environment = { LOG_LEVEL = \"INFO\", DB_SECRET = \"{{database.master_user_secret_arn}}\" }",
        )
    })
    .await;
    let dev = fixture::Clients::new(&w.moto.endpoint, "us-east-1", None).await;
    // Dev's function and parameters name dev's cluster, table, key, network
    // and a queue paymig does not migrate.
    let cluster = dev.rds.describe_db_clusters().db_cluster_identifier("payments-dev").send().await.unwrap();
    let cluster = &cluster.db_clusters()[0];
    let (writer, reader) = (cluster.endpoint().unwrap().to_owned(), cluster.reader_endpoint().unwrap().to_owned());
    let dev_key = cluster.kms_key_id().unwrap().to_owned();
    dev.kms.create_alias().alias_name("alias/payments-dev-key").target_key_id(&dev_key).send().await.unwrap();
    let table_arn = format!("arn:aws:dynamodb:us-east-1:{}:table/sessions-dev", fixture::DEFAULT_ACCOUNT);
    let queue = format!("arn:aws:sqs:us-east-1:{}:payments-dev-dlq", fixture::DEFAULT_ACCOUNT);
    let (dev_subnet, dev_cidr) = {
        let s = dev
            .ec2
            .describe_subnets()
            .filters(aws_sdk_ec2::types::Filter::builder().name("vpc-id").values(&w.dev.vpc_id).build())
            .send()
            .await
            .unwrap();
        let s = &s.subnets()[0];
        (s.subnet_id().unwrap().to_owned(), s.cidr_block().unwrap().to_owned())
    };
    let env = aws_sdk_lambda::types::Environment::builder()
        .variables("TABLE_NAME", "sessions-dev")
        .variables("PARAM_PATH", "/dev/")
        .variables("DB_HOST", format!("postgres://app@{writer}:5432/payments"))
        .variables("DB_READER", &reader)
        .variables("TABLE_ARN", &table_arn)
        .variables("KEY", "alias/payments-dev-key")
        .variables("VPC", &w.dev.vpc_id)
        .variables("SUBNET", &dev_subnet)
        .variables("QUEUE", &queue)
        .variables("LEGACY", "legacy-batch-dev.internal")
        .build();
    dev.lambda
        .update_function_configuration()
        .function_name("payment-processor-dev")
        .environment(env)
        .send()
        .await
        .unwrap();
    for (name, value) in [("/dev/payments/db-host", writer.as_str()), ("/dev/payments/dlq", queue.as_str())] {
        dev.ssm
            .put_parameter()
            .name(name)
            .value(value)
            .r#type(aws_sdk_ssm::types::ParameterType::String)
            .send()
            .await
            .unwrap();
    }

    // plan names each one, with where it is and what it becomes, in text
    // and JSON.
    let plan = w.paymig(["plan"]).run();
    plan.expect_code(0);
    assert!(plan.stdout.contains(&format!("payment-processor-dev:DB_READER: {reader} → ")), "{}", plan.stdout);
    assert!(
        plan.stdout.contains(&format!("! payment-processor-dev:QUEUE: {queue} is copied unchanged")),
        "{}",
        plan.stdout
    );
    assert!(plan.stdout.contains("! /dev/payments/dlq:"), "{}", plan.stdout);
    assert!(plan.stdout.contains("= payment-processor-dev:LEGACY: legacy-batch-dev kept"), "{}", plan.stdout);
    let json: Value = serde_json::from_str(&w.paymig(["plan", "--format", "json"]).run().stdout).unwrap();
    let refs: Vec<&Value> =
        json["steps"].as_array().unwrap().iter().flat_map(|s| s["references"].as_array().unwrap().iter()).collect();
    let at = |place: &str, dev: &str| {
        refs.iter()
            .find(|r| r["where"] == place && r["dev"] == dev)
            .unwrap_or_else(|| panic!("{place} {dev}: {refs:?}"))
    };
    assert!(at("payment-processor-dev:QUEUE", &queue)["why"].as_str().unwrap().contains("sqs"));
    assert_eq!(at("payment-processor-dev:LEGACY", "legacy-batch-dev")["kept"], true);
    assert_eq!(
        at("payment-processor-dev:TABLE_ARN", &table_arn)["prod"].as_str().map(|p| p.contains("table/sessions-prod")),
        Some(true)
    );
    assert_eq!(json["summary"]["references"]["named"], 2, "{}", json["summary"]);

    // apply maps them to what prod reports, and says again what it could
    // not map (in its closing lines and its final JSON event).
    let apply = w.paymig(["--log-format", "json", "apply", "--yes"]).run();
    apply.expect_code(0);
    let event = apply
        .stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|e| e["event"] == "summary")
        .unwrap_or_else(|| panic!("{}", apply.stderr));
    let summary: Value = serde_json::from_str(event["summary"].as_str().unwrap()).unwrap();
    let unmapped: Vec<&str> = summary["unmapped_references"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["reference"]["dev"].as_str())
        .collect();
    assert!(unmapped.contains(&queue.as_str()) && unmapped.len() == 2, "{summary}");
    assert!(
        apply.stdout.contains(&format!("payment-processor-dev:QUEUE: {queue} is copied unchanged")),
        "{}",
        apply.stdout
    );

    let prod_cluster = w.prod.rds.describe_db_clusters().db_cluster_identifier("payments-prod").send().await.unwrap();
    let prod_cluster = &prod_cluster.db_clusters()[0];
    let prod_key = w.prod.kms.describe_key().key_id("alias/payments-prod").send().await.unwrap().key_metadata.unwrap();
    let prod_table = w.prod.dynamodb.describe_table().table_name("sessions-prod").send().await.unwrap().table.unwrap();
    let prod_vpc = w
        .prod
        .ec2
        .describe_vpcs()
        .filters(aws_sdk_ec2::types::Filter::builder().name("tag:paymig:migration").values("payments").build())
        .send()
        .await
        .unwrap()
        .vpcs()[0]
        .vpc_id()
        .unwrap()
        .to_owned();
    let prod_subnet = w
        .prod
        .ec2
        .describe_subnets()
        .filters(aws_sdk_ec2::types::Filter::builder().name("vpc-id").values(&prod_vpc).build())
        .filters(aws_sdk_ec2::types::Filter::builder().name("cidr-block").values(&dev_cidr).build())
        .send()
        .await
        .unwrap()
        .subnets()[0]
        .subnet_id()
        .unwrap()
        .to_owned();
    let secret = prod_cluster.master_user_secret().expect("RDS manages prod's master credentials");
    let function =
        w.prod.lambda.get_function_configuration().function_name("payment-processor-prod").send().await.unwrap();
    let vars: BTreeMap<String, String> =
        function.environment().unwrap().variables().unwrap().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let expected = [
        ("TABLE_NAME", "sessions-prod".to_owned()),
        ("PARAM_PATH", "/prod/".to_owned()),
        ("DB_HOST", format!("postgres://app@{}:5432/payments", prod_cluster.endpoint().unwrap())),
        ("DB_READER", prod_cluster.reader_endpoint().unwrap().to_owned()),
        ("TABLE_ARN", prod_table.table_arn().unwrap().to_owned()),
        ("KEY", "alias/payments-prod".to_owned()),
        ("VPC", prod_vpc.clone()),
        ("SUBNET", prod_subnet),
        ("QUEUE", queue.clone()),
        ("LEGACY", "legacy-batch-dev.internal".to_owned()),
        ("DB_SECRET", secret.secret_arn().unwrap().to_owned()),
    ];
    for (k, v) in expected {
        assert_eq!(vars.get(k), Some(&v), "{k}: {vars:?}");
    }
    assert_ne!(prod_cluster.endpoint(), Some(writer.as_str()));
    let param = w.prod.ssm.get_parameter().name("/prod/payments/db-host").send().await.unwrap();
    assert_eq!(param.parameter().and_then(|p| p.value()), prod_cluster.endpoint(), "the endpoint prod reports");
    // The master credentials are prod's: RDS keeps them in Secrets Manager
    // under the prod key.
    assert_eq!(secret.kms_key_id(), prod_key.arn());
    assert_eq!(secret.secret_status(), Some("active"));

    // validate: the unmapped references are findings until kept.
    let validate = w.paymig(["validate", "--format", "json"]).run();
    validate.expect_code(3);
    let report: Value = serde_json::from_str(&validate.stdout).unwrap();
    let failed: Vec<&Value> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["id"] == "references.dev_identifiers" && c["passed"] == false)
        .collect();
    assert_eq!(failed.len(), 2, "the function and the parameters: {failed:?}");
    assert!(failed.iter().any(|c| c["detail"].as_str().unwrap().contains(&queue)), "{failed:?}");
    let credentials = report["checks"].as_array().unwrap().iter().find(|c| c["id"] == "database.master_credentials");
    assert_eq!(credentials.map(|c| c["passed"].clone()), Some(Value::Bool(true)), "{credentials:?}");
    let text = std::fs::read_to_string(&w.config).unwrap();
    std::fs::write(
        &w.config,
        text.replace(
            "keep = [\"payment-processor-dev:LEGACY\"]",
            "keep = [\"payment-processor-dev:LEGACY\", \"payment-processor-dev:QUEUE\", \"/dev/payments/dlq\"]",
        ),
    )
    .unwrap();
    w.paymig(["validate"]).run().expect_code(0);
    // A re-apply changes nothing; destroy leaves no secret behind.
    let again = w.paymig(["apply", "--yes"]).run();
    again.expect_code(0);
    assert_eq!(again.mutating_calls(), 0, "{}", again.stderr);
    assert_eq!(secret_names(&w.moto.endpoint).await.len(), 1);
    w.paymig(["destroy", "--yes"]).run().expect_code(0);
    assert!(secret_names(&w.moto.endpoint).await.is_empty(), "no secret left");
}
