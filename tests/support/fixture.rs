//! The dev stack the tests and `scripts/demo` migrate, seeded through the AWS
//! SDK into a moto server: a VPC with a secondary CIDR and three private
//! subnets (route tables, an internet gateway route dev has and prod must not
//! copy), plus one of every other dev resource `migrations.toml` lists, so
//! preflight's existence checks pass and later tiers have something to read.

#![allow(dead_code)]

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_sdk_ec2::types::{AttributeBooleanValue, ResourceType, Tag, TagSpecification};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextMut;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

/// moto's default account (static credentials map to it).
pub const DEFAULT_ACCOUNT: &str = "123456789012";

/// Sends every request as `account` (moto's `x-moto-account-id` header).
#[derive(Debug, Clone)]
pub struct AsAccount(pub String);

impl Intercept for AsAccount {
    fn name(&self) -> &'static str {
        "AsAccount"
    }
    fn modify_before_signing(
        &self,
        ctx: &mut BeforeTransmitInterceptorContextMut<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        ctx.request_mut().headers_mut().insert("x-moto-account-id", self.0.clone());
        Ok(())
    }
}

/// SDK config for the emulator with static test credentials.
pub async fn sdk_config(endpoint: &str, region: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new("testing", "testing", None, None, "fixture"))
        .load()
        .await
}

/// Clients of one account in one region.
pub struct Clients {
    pub ec2: aws_sdk_ec2::Client,
    pub kms: aws_sdk_kms::Client,
    pub s3: aws_sdk_s3::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub iam: aws_sdk_iam::Client,
    pub lambda: aws_sdk_lambda::Client,
    pub rds: aws_sdk_rds::Client,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    pub ssm: aws_sdk_ssm::Client,
}

macro_rules! client {
    ($k:ident, $sdk:expr, $acct:expr) => {{
        let mut b = $k::config::Builder::from($sdk);
        if let Some(a) = $acct {
            b = b.interceptor(AsAccount(a.to_owned()));
        }
        $k::Client::from_conf(b.build())
    }};
}

impl Clients {
    pub async fn new(endpoint: &str, region: &str, account: Option<&str>) -> Clients {
        let sdk = sdk_config(endpoint, region).await;
        let mut s3 = aws_sdk_s3::config::Builder::from(&sdk).force_path_style(true);
        if let Some(a) = account {
            s3 = s3.interceptor(AsAccount(a.to_owned()));
        }
        Clients {
            ec2: client!(aws_sdk_ec2, &sdk, account),
            kms: client!(aws_sdk_kms, &sdk, account),
            s3: aws_sdk_s3::Client::from_conf(s3.build()),
            dynamodb: client!(aws_sdk_dynamodb, &sdk, account),
            iam: client!(aws_sdk_iam, &sdk, account),
            lambda: client!(aws_sdk_lambda, &sdk, account),
            rds: client!(aws_sdk_rds, &sdk, account),
            cloudwatch: client!(aws_sdk_cloudwatch, &sdk, account),
            ssm: client!(aws_sdk_ssm, &sdk, account),
        }
    }
}

/// How much of a dev stack to seed.
#[derive(Debug, Clone)]
pub struct Options {
    /// Availability zones of the dev subnets (one subnet each).
    pub zones: Vec<&'static str>,
    pub account: Option<String>,
    /// The dev function runs with active X-Ray tracing.
    pub tracing: bool,
    /// The dev cluster's port (5432 when not set).
    pub db_port: Option<i32>,
    /// A subnet in the secondary CIDR block (10.21.0.0/16) beside the
    /// primary block's.
    pub secondary_subnet: bool,
    /// A second dev function, `ledger-worker-dev`, without environment
    /// variables (Lambda keeps no key for it).
    pub bare_function: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            zones: vec!["us-east-1a", "us-east-1b", "us-east-1c"],
            account: None,
            tracing: false,
            db_port: None,
            secondary_subnet: false,
            bare_function: false,
        }
    }
}

/// Seeds a dev DynamoDB table: `pk` (+ `sk`) keys, GSIs
/// `(name, hash key, INCLUDE attribute)`, an optional LSI, TTL attribute and
/// stream view type, provisioned `(read, write)` or on-demand.
pub struct TableSpec {
    pub name: String,
    pub range: bool,
    pub gsis: Vec<(String, String, String)>,
    pub lsi: bool,
    pub ttl: Option<String>,
    pub stream: Option<aws_sdk_dynamodb::types::StreamViewType>,
    pub provisioned: Option<(i64, i64)>,
}

pub async fn seed_table(c: &Clients, t: &TableSpec) {
    use aws_sdk_dynamodb::types::*;
    let attr = |n: &str| {
        AttributeDefinition::builder().attribute_name(n).attribute_type(ScalarAttributeType::S).build().unwrap()
    };
    let key = |n: &str, k: KeyType| KeySchemaElement::builder().attribute_name(n).key_type(k).build().unwrap();
    let pt = |(r, w): (i64, i64)| {
        ProvisionedThroughput::builder().read_capacity_units(r).write_capacity_units(w).build().unwrap()
    };
    let mut req = c
        .dynamodb
        .create_table()
        .table_name(&t.name)
        .attribute_definitions(attr("pk"))
        .key_schema(key("pk", KeyType::Hash));
    if t.range {
        req = req.attribute_definitions(attr("sk")).key_schema(key("sk", KeyType::Range));
    }
    for (name, hash, include) in &t.gsis {
        req = req.attribute_definitions(attr(hash));
        let mut g = GlobalSecondaryIndex::builder().index_name(name).key_schema(key(hash, KeyType::Hash)).projection(
            Projection::builder().projection_type(ProjectionType::Include).non_key_attributes(include).build(),
        );
        if let Some(p) = t.provisioned {
            g = g.provisioned_throughput(pt((p.0 / 2, p.1 / 2)));
        }
        req = req.global_secondary_indexes(g.build().unwrap());
    }
    if t.lsi {
        req = req.attribute_definitions(attr("created")).local_secondary_indexes(
            LocalSecondaryIndex::builder()
                .index_name("by-created")
                .key_schema(key("pk", KeyType::Hash))
                .key_schema(key("created", KeyType::Range))
                .projection(Projection::builder().projection_type(ProjectionType::KeysOnly).build())
                .build()
                .unwrap(),
        );
    }
    if let Some(v) = &t.stream {
        req = req.stream_specification(
            StreamSpecification::builder().stream_enabled(true).stream_view_type(v.clone()).build().unwrap(),
        );
    }
    req = match t.provisioned {
        Some(p) => req.billing_mode(BillingMode::Provisioned).provisioned_throughput(pt(p)),
        None => req.billing_mode(BillingMode::PayPerRequest),
    };
    req.send().await.expect("dev table");
    if let Some(attr) = &t.ttl {
        c.dynamodb
            .update_time_to_live()
            .table_name(&t.name)
            .time_to_live_specification(
                TimeToLiveSpecification::builder().attribute_name(attr).enabled(true).build().unwrap(),
            )
            .send()
            .await
            .expect("dev ttl");
    }
}

/// What was seeded.
#[derive(Debug, Clone)]
pub struct DevStack {
    pub vpc_id: String,
    pub cidrs: Vec<String>,
    pub subnets: Vec<(String, String)>,
}

fn tags(rt: ResourceType, name: &str) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(rt)
        .tags(Tag::builder().key("Name").value(name).build())
        .tags(Tag::builder().key("Environment").value("development").build())
        .build()
}

/// A minimal zip archive (stored, not deflated) holding one file.
pub fn zip_one(name: &str, content: &[u8]) -> Vec<u8> {
    let crc = crc32fast::hash(content);
    let (n, len) = (name.len() as u16, content.len() as u32);
    let mut z = Vec::new();
    let local = |z: &mut Vec<u8>| {
        z.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        z.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0x21, 0]);
        z.extend_from_slice(&crc.to_le_bytes());
        z.extend_from_slice(&len.to_le_bytes());
        z.extend_from_slice(&len.to_le_bytes());
        z.extend_from_slice(&n.to_le_bytes());
        z.extend_from_slice(&0u16.to_le_bytes());
    };
    local(&mut z);
    z.extend_from_slice(name.as_bytes());
    z.extend_from_slice(content);
    let central_at = z.len() as u32;
    z.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
    z.extend_from_slice(&[20, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x21, 0]);
    z.extend_from_slice(&crc.to_le_bytes());
    z.extend_from_slice(&len.to_le_bytes());
    z.extend_from_slice(&len.to_le_bytes());
    z.extend_from_slice(&n.to_le_bytes());
    z.extend_from_slice(&[0; 12]);
    z.extend_from_slice(&0u32.to_le_bytes());
    z.extend_from_slice(name.as_bytes());
    let central_len = z.len() as u32 - central_at;
    z.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    z.extend_from_slice(&[0, 0, 0, 0, 1, 0, 1, 0]);
    z.extend_from_slice(&central_len.to_le_bytes());
    z.extend_from_slice(&central_at.to_le_bytes());
    z.extend_from_slice(&0u16.to_le_bytes());
    z
}

/// Seeds the dev stack named in `migrations.toml` into `endpoint`.
pub async fn seed(endpoint: &str, opts: &Options) -> DevStack {
    let c = Clients::new(endpoint, "us-east-1", opts.account.as_deref()).await;
    let network = seed_network(&c, opts).await;
    seed_data(&c, opts).await;
    network
}

async fn seed_network(c: &Clients, opts: &Options) -> DevStack {
    let ec2 = &c.ec2;
    let vpc = ec2
        .create_vpc()
        .cidr_block("10.20.0.0/16")
        .tag_specifications(tags(ResourceType::Vpc, "payments-dev"))
        .send()
        .await
        .expect("create dev vpc");
    let vpc_id = vpc.vpc.and_then(|v| v.vpc_id).expect("vpc id");
    ec2.associate_vpc_cidr_block().vpc_id(&vpc_id).cidr_block("10.21.0.0/16").send().await.expect("secondary cidr");
    ec2.modify_vpc_attribute()
        .vpc_id(&vpc_id)
        .enable_dns_hostnames(AttributeBooleanValue::builder().value(true).build())
        .send()
        .await
        .expect("dns hostnames");
    let igw = ec2
        .create_internet_gateway()
        .send()
        .await
        .expect("igw")
        .internet_gateway
        .and_then(|g| g.internet_gateway_id)
        .expect("igw id");
    ec2.attach_internet_gateway().internet_gateway_id(&igw).vpc_id(&vpc_id).send().await.expect("attach igw");
    let mut subnets = Vec::new();
    for (i, az) in opts.zones.iter().enumerate() {
        let letter = az.chars().last().unwrap_or('x');
        let cidr = format!("10.20.{}.0/24", i + 1);
        let s = ec2
            .create_subnet()
            .vpc_id(&vpc_id)
            .cidr_block(&cidr)
            .availability_zone(*az)
            .tag_specifications(tags(ResourceType::Subnet, &format!("payments-private-{letter}-dev")))
            .send()
            .await
            .expect("subnet");
        let sid = s.subnet.and_then(|s| s.subnet_id).expect("subnet id");
        let rt = ec2
            .create_route_table()
            .vpc_id(&vpc_id)
            .tag_specifications(tags(ResourceType::RouteTable, &format!("payments-private-{letter}-rt-dev")))
            .send()
            .await
            .expect("route table")
            .route_table
            .and_then(|r| r.route_table_id)
            .expect("rt id");
        ec2.associate_route_table().route_table_id(&rt).subnet_id(&sid).send().await.expect("associate");
        if i == 0 {
            ec2.create_route()
                .route_table_id(&rt)
                .destination_cidr_block("0.0.0.0/0")
                .gateway_id(&igw)
                .send()
                .await
                .expect("igw route");
        }
        subnets.push((az.to_string(), cidr));
    }
    if opts.secondary_subnet {
        let (az, cidr) = (opts.zones[0], "10.21.1.0/24");
        ec2.create_subnet()
            .vpc_id(&vpc_id)
            .cidr_block(cidr)
            .availability_zone(az)
            .tag_specifications(tags(ResourceType::Subnet, "payments-secondary-dev"))
            .send()
            .await
            .expect("subnet in the secondary block");
        subnets.push((az.to_string(), cidr.to_string()));
    }
    DevStack { vpc_id, cidrs: vec!["10.20.0.0/16".into(), "10.21.0.0/16".into()], subnets }
}

async fn seed_data(c: &Clients, opts: &Options) {
    use aws_sdk_dynamodb::types::{AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType};
    c.dynamodb
        .create_table()
        .table_name("sessions-dev")
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
        .expect("dev table");

    for b in ["payments-audit-dev", "payments-artifacts-dev"] {
        c.s3.create_bucket().bucket(b).send().await.expect("dev bucket");
    }
    let zip = zip_one("handler.py", b"def handler(event, context):\n    return {'statusCode': 200, 'body': 'ok'}\n");
    c.s3.put_object()
        .bucket("payments-artifacts-dev")
        .key("lambda/payment-processor-dev.zip")
        .body(zip.into())
        .send()
        .await
        .expect("artifact");

    let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
    let role = c
        .iam
        .create_role()
        .role_name("payment-processor-dev-role")
        .assume_role_policy_document(trust)
        .send()
        .await
        .expect("dev role");
    let role_arn = role.role.map(|r| r.arn).expect("role arn");
    c.lambda
        .create_function()
        .function_name("payment-processor-dev")
        .runtime(aws_sdk_lambda::types::Runtime::Python312)
        .handler("handler.handler")
        .role(&role_arn)
        .memory_size(256)
        .timeout(30)
        .code(
            aws_sdk_lambda::types::FunctionCode::builder()
                .s3_bucket("payments-artifacts-dev")
                .s3_key("lambda/payment-processor-dev.zip")
                .build(),
        )
        .environment(
            aws_sdk_lambda::types::Environment::builder()
                .variables("TABLE_NAME", "sessions-dev")
                .variables("PARAM_PATH", "/dev/")
                .build(),
        )
        .set_tracing_config(opts.tracing.then(|| {
            aws_sdk_lambda::types::TracingConfig::builder().mode(aws_sdk_lambda::types::TracingMode::Active).build()
        }))
        .send()
        .await
        .expect("dev function");
    if opts.bare_function {
        let zip = zip_one("worker.py", b"def handler(event, context):\n    return None\n");
        c.s3.put_object()
            .bucket("payments-artifacts-dev")
            .key("lambda/ledger-worker-dev.zip")
            .body(zip.into())
            .send()
            .await
            .expect("artifact");
        c.lambda
            .create_function()
            .function_name("ledger-worker-dev")
            .runtime(aws_sdk_lambda::types::Runtime::Python312)
            .handler("worker.handler")
            .role(&role_arn)
            .code(
                aws_sdk_lambda::types::FunctionCode::builder()
                    .s3_bucket("payments-artifacts-dev")
                    .s3_key("lambda/ledger-worker-dev.zip")
                    .build(),
            )
            .send()
            .await
            .expect("bare dev function");
    }

    // Aurora: encrypted with a dev key, a custom parameter group, IAM auth,
    // log exports, and two snapshots (the newer one is what prod restores).
    let dev_key = c
        .kms
        .create_key()
        .description("payments dev")
        .send()
        .await
        .expect("dev key")
        .key_metadata
        .expect("key")
        .arn
        .expect("arn");
    c.rds
        .create_db_cluster_parameter_group()
        .db_cluster_parameter_group_name("payments-dev-params")
        .db_parameter_group_family("aurora-postgresql15")
        .description("payments dev")
        .send()
        .await
        .expect("dev parameter group");
    c.rds
        .modify_db_cluster_parameter_group()
        .db_cluster_parameter_group_name("payments-dev-params")
        .parameters(
            aws_sdk_rds::types::Parameter::builder()
                .parameter_name("log_min_duration_statement")
                .parameter_value("500")
                .apply_method(aws_sdk_rds::types::ApplyMethod::Immediate)
                .build(),
        )
        .parameters(
            aws_sdk_rds::types::Parameter::builder()
                .parameter_name("rds.force_ssl")
                .parameter_value("1")
                .apply_method(aws_sdk_rds::types::ApplyMethod::PendingReboot)
                .build(),
        )
        .send()
        .await
        .expect("dev parameters");
    c.rds
        .create_db_cluster()
        .db_cluster_identifier("payments-dev")
        .engine("aurora-postgresql")
        .engine_version("15.4")
        .master_username("payments")
        .master_user_password("dev-only-password")
        .database_name("payments")
        .storage_encrypted(true)
        .kms_key_id(dev_key)
        .db_cluster_parameter_group_name("payments-dev-params")
        .enable_iam_database_authentication(true)
        .enable_cloudwatch_logs_exports("postgresql")
        .set_port(opts.db_port)
        .serverless_v2_scaling_configuration(
            aws_sdk_rds::types::ServerlessV2ScalingConfiguration::builder().min_capacity(0.5).max_capacity(4.0).build(),
        )
        .send()
        .await
        .expect("dev cluster");
    for snapshot in ["payments-dev-seed", "payments-dev-nightly"] {
        c.rds
            .create_db_cluster_snapshot()
            .db_cluster_identifier("payments-dev")
            .db_cluster_snapshot_identifier(snapshot)
            .send()
            .await
            .expect("dev snapshot");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    // Dev alarms on migrated resources (replicated to prod) and one on an
    // unrelated resource (not replicated).
    use aws_sdk_cloudwatch::types::{ComparisonOperator, Dimension, Statistic};
    for (name, ns, metric, dim, value, threshold) in [
        ("payment-processor-dev-throttles", "AWS/Lambda", "Throttles", "FunctionName", "payment-processor-dev", 1.0),
        ("sessions-dev-read-throttles", "AWS/DynamoDB", "ReadThrottleEvents", "TableName", "sessions-dev", 10.0),
        ("legacy-batch-dev-errors", "AWS/Lambda", "Errors", "FunctionName", "legacy-batch-dev", 1.0),
    ] {
        c.cloudwatch
            .put_metric_alarm()
            .alarm_name(name)
            .namespace(ns)
            .metric_name(metric)
            .dimensions(Dimension::builder().name(dim).value(value).build())
            .statistic(Statistic::Sum)
            .period(60)
            .evaluation_periods(2)
            .threshold(threshold)
            .comparison_operator(ComparisonOperator::GreaterThanOrEqualToThreshold)
            .alarm_actions("arn:aws:sns:us-east-1:123456789012:payments-dev-alerts")
            .send()
            .await
            .expect("dev alarm");
    }
    let body = serde_json::json!({"widgets": [
        {"type": "metric", "x": 0, "y": 0, "width": 12, "height": 6, "properties": {
            "metrics": [["AWS/Lambda", "Errors", "FunctionName", "payment-processor-dev"], ["AWS/DynamoDB", "ConsumedReadCapacityUnits", "TableName", "sessions-dev"],
                        ["AWS/RDS", "CPUUtilization", "DBClusterIdentifier", "payments-dev"], ["AWS/S3", "NumberOfObjects", "BucketName", "payments-audit-dev", "StorageType", "AllStorageTypes"]],
            "period": 300, "stat": "Sum", "region": "us-east-1", "title": "payment-processor-dev and sessions-dev"}},
        {"type": "alarm", "x": 12, "y": 0, "width": 12, "height": 6, "properties": {
            "title": "throttling", "alarms": ["arn:aws:cloudwatch:us-east-1:123456789012:alarm:payment-processor-dev-throttles"]}}]});
    c.cloudwatch
        .put_dashboard()
        .dashboard_name("payments-dev")
        .dashboard_body(body.to_string())
        .send()
        .await
        .expect("dev dashboard");

    for (name, value) in [("/dev/payments/table", "sessions-dev"), ("/dev/payments/log-level", "DEBUG")] {
        c.ssm
            .put_parameter()
            .name(name)
            .value(value)
            .r#type(aws_sdk_ssm::types::ParameterType::String)
            .send()
            .await
            .expect("dev parameter");
    }
    c.ssm
        .put_parameter()
        .name("/dev/payments/db-password")
        .value("dev-only-password")
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .send()
        .await
        .expect("dev secret");
}
