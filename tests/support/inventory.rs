//! What exists on the emulator, read through the SDK: every prod resource the
//! migration may create (by kind, with names and ids, so a duplicate shows),
//! and a normalized fingerprint of every dev resource (so any write to dev
//! shows).

#![allow(dead_code)]

use std::collections::BTreeMap;

use aws_sdk_ec2::types::Filter;

use super::fixture::sdk_config;

/// Every live prod resource of the migration, kind -> sorted names/ids.
pub type Inventory = BTreeMap<&'static str, Vec<String>>;

fn tagged(suffix: &str) -> Vec<Filter> {
    vec![
        Filter::builder().name("tag:paymig:migration").values("payments").build(),
        Filter::builder().name("tag:paymig:suffix").values(suffix).build(),
    ]
}

fn name_tag(tags: &[aws_sdk_ec2::types::Tag]) -> String {
    tags.iter().find(|t| t.key() == Some("Name")).and_then(|t| t.value()).unwrap_or("?").to_owned()
}

/// The prod side of environment `suffix`: everything tagged for the
/// migration or named with the suffix, in us-east-1 and the replica region.
pub async fn prod_inventory(endpoint: &str, suffix: &str) -> Inventory {
    let named = |n: &str| n.contains(&format!("-{suffix}")) || n.contains(&format!("/{suffix}/"));
    let sdk = sdk_config(endpoint, "us-east-1").await;
    let west = sdk_config(endpoint, "us-west-2").await;
    let ec2 = aws_sdk_ec2::Client::new(&sdk);
    let mut inv: Inventory = BTreeMap::new();
    let mut add = |kind: &'static str, name: String| inv.entry(kind).or_default().push(name);

    for v in ec2.describe_vpcs().set_filters(Some(tagged(suffix))).send().await.unwrap().vpcs() {
        add("vpc", name_tag(v.tags()));
    }
    for s in ec2.describe_subnets().set_filters(Some(tagged(suffix))).send().await.unwrap().subnets() {
        add("subnet", name_tag(s.tags()));
    }
    for r in ec2.describe_route_tables().set_filters(Some(tagged(suffix))).send().await.unwrap().route_tables() {
        add("route_table", name_tag(r.tags()));
    }
    for g in ec2.describe_security_groups().set_filters(Some(tagged(suffix))).send().await.unwrap().security_groups() {
        add("security_group", g.group_name().unwrap_or("?").to_owned());
    }
    for e in ec2.describe_vpc_endpoints().set_filters(Some(tagged(suffix))).send().await.unwrap().vpc_endpoints() {
        if !e.state().is_some_and(|s| s.as_str().eq_ignore_ascii_case("deleted")) {
            add("vpc_endpoint", e.service_name().unwrap_or("?").to_owned());
        }
    }

    let kms = aws_sdk_kms::Client::new(&sdk);
    let keys: Vec<_> = kms.list_keys().into_paginator().items().send().collect::<Vec<_>>().await;
    for k in keys {
        let k = k.unwrap();
        let id = k.key_id().unwrap();
        let md = kms.describe_key().key_id(id).send().await.unwrap().key_metadata.unwrap();
        let tags = kms.list_resource_tags().key_id(id).send().await.unwrap();
        let ours = tags.tags().iter().any(|t| t.tag_key() == "paymig:migration" && t.tag_value() == "payments")
            && tags.tags().iter().any(|t| t.tag_key() == "paymig:suffix" && t.tag_value() == suffix);
        if ours && md.key_state().is_some_and(|s| s.as_str() != "PendingDeletion") {
            add("kms_key", id.to_owned());
        }
    }
    for a in kms.list_aliases().send().await.unwrap().aliases() {
        if a.alias_name().is_some_and(named) {
            add("kms_alias", a.alias_name().unwrap().to_owned());
        }
    }

    let rds = aws_sdk_rds::Client::new(&sdk);
    for c in rds.describe_db_clusters().send().await.unwrap().db_clusters() {
        let id = c.db_cluster_identifier().unwrap_or("?");
        if named(id) && c.status() != Some("deleting") {
            add("db_cluster", id.to_owned());
        }
    }
    for i in rds.describe_db_instances().send().await.unwrap().db_instances() {
        let id = i.db_instance_identifier().unwrap_or("?");
        if named(id) && i.db_instance_status() != Some("deleting") {
            add("db_instance", id.to_owned());
        }
    }
    for g in rds.describe_db_subnet_groups().send().await.unwrap().db_subnet_groups() {
        if g.db_subnet_group_name().is_some_and(named) {
            add("db_subnet_group", g.db_subnet_group_name().unwrap().to_owned());
        }
    }
    for g in rds.describe_db_cluster_parameter_groups().send().await.unwrap().db_cluster_parameter_groups() {
        if g.db_cluster_parameter_group_name().is_some_and(named) {
            add("db_cluster_parameter_group", g.db_cluster_parameter_group_name().unwrap().to_owned());
        }
    }

    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    for t in ddb.list_tables().send().await.unwrap().table_names() {
        if named(t) {
            add("dynamodb_table", t.clone());
        }
    }

    let lambda = aws_sdk_lambda::Client::new(&sdk);
    let functions: Vec<_> = lambda.list_functions().into_paginator().items().send().collect::<Vec<_>>().await;
    for f in functions.into_iter().map(Result::unwrap) {
        if f.function_name().is_some_and(named) {
            add("lambda_function", f.function_name().unwrap().to_owned());
        }
    }

    let iam = aws_sdk_iam::Client::new(&sdk);
    let roles: Vec<_> = iam.list_roles().into_paginator().items().send().collect::<Vec<_>>().await;
    for r in roles.into_iter().map(Result::unwrap) {
        if named(r.role_name()) {
            add("iam_role", r.role_name().to_owned());
        }
    }
    let scope = aws_sdk_iam::types::PolicyScopeType::Local;
    let policies: Vec<_> = iam.list_policies().scope(scope).into_paginator().items().send().collect::<Vec<_>>().await;
    for p in policies.into_iter().map(Result::unwrap) {
        if p.policy_name().is_some_and(named) {
            add("iam_policy", p.policy_name().unwrap().to_owned());
        }
    }

    for (region_sdk, kind) in [(&sdk, "s3_bucket"), (&west, "s3_bucket")] {
        let s3 =
            aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(region_sdk).force_path_style(true).build());
        for b in s3.list_buckets().send().await.unwrap().buckets() {
            let name = b.name().unwrap_or("?");
            if named(name) && !inv_has(&inv, kind, name) {
                inv.entry(kind).or_default().push(name.to_owned());
            }
        }
    }

    let sns = aws_sdk_sns::Client::new(&sdk);
    for t in sns.list_topics().send().await.unwrap().topics() {
        if t.topic_arn().is_some_and(|a| a.rsplit(':').next().is_some_and(named)) {
            inv.entry("sns_topic").or_default().push(t.topic_arn().unwrap().to_owned());
        }
    }

    let cw = aws_sdk_cloudwatch::Client::new(&sdk);
    for a in cw.describe_alarms().send().await.unwrap().metric_alarms() {
        if a.alarm_name().is_some_and(named) {
            inv.entry("alarm").or_default().push(a.alarm_name().unwrap().to_owned());
        }
    }
    for d in cw.list_dashboards().send().await.unwrap().dashboard_entries() {
        if d.dashboard_name().is_some_and(named) {
            inv.entry("dashboard").or_default().push(d.dashboard_name().unwrap().to_owned());
        }
    }

    let ssm = aws_sdk_ssm::Client::new(&sdk);
    let pages: Vec<_> = ssm
        .get_parameters_by_path()
        .path(format!("/{suffix}/"))
        .recursive(true)
        .with_decryption(false)
        .into_paginator()
        .send()
        .collect::<Vec<_>>()
        .await;
    for page in pages {
        for p in page.unwrap().parameters() {
            inv.entry("ssm_parameter").or_default().push(p.name().unwrap_or("?").to_owned());
        }
    }

    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&sdk);
    for lb in elb.describe_load_balancers().send().await.unwrap().load_balancers() {
        if lb.load_balancer_name().is_some_and(named) {
            inv.entry("load_balancer").or_default().push(lb.load_balancer_name().unwrap().to_owned());
        }
    }
    for tg in elb.describe_target_groups().send().await.unwrap().target_groups() {
        if tg.target_group_name().is_some_and(named) {
            inv.entry("target_group").or_default().push(tg.target_group_name().unwrap().to_owned());
        }
    }

    for v in inv.values_mut() {
        v.sort();
    }
    inv
}

fn inv_has(inv: &Inventory, kind: &str, name: &str) -> bool {
    inv.get(kind).is_some_and(|v| v.iter().any(|n| n == name))
}

/// Kinds with more than one resource of the same name: duplicates.
pub fn duplicates(inv: &Inventory) -> Vec<String> {
    let mut out = Vec::new();
    for (kind, names) in inv {
        for w in names.windows(2) {
            if w[0] == w[1] && *kind != "kms_key" {
                out.push(format!("{kind} {}", w[0]));
            }
        }
    }
    if inv.get("kms_key").is_some_and(|k| k.len() > 1) {
        out.push(format!("kms_key x{}", inv["kms_key"].len()));
    }
    out
}

/// Fields that change with time alone, not with anything done to dev.
const VOLATILE: [&str; 6] =
    ["latest_restorable_time", "last_modified", "last_update_status", "approximate", "item_count", "table_size_bytes"];

/// The pretty Debug form without the volatile fields (each with its whole
/// nested value).
fn normalized(kind: &str, v: impl std::fmt::Debug) -> String {
    let text = format!("{v:#?}");
    let mut kept = Vec::new();
    let mut skip_deeper_than: Option<usize> = None;
    for line in text.lines() {
        let indent = line.len() - line.trim_start().len();
        if let Some(level) = skip_deeper_than {
            if indent > level {
                continue;
            }
            skip_deeper_than = None;
            // The closing bracket of the skipped value.
            if indent == level && matches!(line.trim(), ")," | "}," | "],") {
                continue;
            }
        }
        if VOLATILE.iter().any(|f| line.trim_start().starts_with(f)) {
            if line.ends_with('(') || line.ends_with('{') || line.ends_with('[') {
                skip_deeper_than = Some(indent);
            }
            continue;
        }
        kept.push(line);
    }
    format!("== {kind}\n{}\n", kept.join("\n"))
}

/// A normalized description of every dev resource: the VPC and everything in
/// it, the Aurora cluster, its instances, snapshots and parameter groups, the
/// tables, functions, buckets (settings and object versions), alarms,
/// dashboards, SSM parameters under /dev/ (metadata only, never values), KMS
/// aliases, roles and topics.
pub async fn dev_fingerprint(endpoint: &str) -> String {
    // Dev resources are the ones named for dev (every fixture name carries
    // `dev`); prod names never do.
    let dev = |n: &str| n.to_ascii_lowercase().contains("dev");
    let sdk = sdk_config(endpoint, "us-east-1").await;
    let mut out = String::new();
    let ec2 = aws_sdk_ec2::Client::new(&sdk);
    let vpcs = ec2.describe_vpcs().send().await.unwrap();
    let dev_vpcs: Vec<_> = vpcs
        .vpcs()
        .iter()
        .filter(|v| !v.tags().iter().any(|t| t.key() == Some("paymig:migration")) && !v.is_default().unwrap_or(false))
        .cloned()
        .collect();
    for v in &dev_vpcs {
        let id = v.vpc_id().unwrap();
        let in_vpc = || vec![Filter::builder().name("vpc-id").values(id).build()];
        out += &normalized("vpc", v);
        out +=
            &normalized("subnets", ec2.describe_subnets().set_filters(Some(in_vpc())).send().await.unwrap().subnets());
        out += &normalized(
            "route_tables",
            ec2.describe_route_tables().set_filters(Some(in_vpc())).send().await.unwrap().route_tables(),
        );
        out += &normalized(
            "security_groups",
            ec2.describe_security_groups().set_filters(Some(in_vpc())).send().await.unwrap().security_groups(),
        );
        out += &normalized(
            "vpc_endpoints",
            ec2.describe_vpc_endpoints().set_filters(Some(in_vpc())).send().await.unwrap().vpc_endpoints(),
        );
        let igw = Filter::builder().name("attachment.vpc-id").values(id).build();
        out += &normalized(
            "internet_gateways",
            ec2.describe_internet_gateways().filters(igw).send().await.unwrap().internet_gateways(),
        );
    }

    let rds = aws_sdk_rds::Client::new(&sdk);
    let is_dev = |s: Option<&str>| s.is_some_and(dev);
    let clusters = rds.describe_db_clusters().send().await.unwrap();
    out += &normalized(
        "db_clusters",
        clusters.db_clusters().iter().filter(|c| is_dev(c.db_cluster_identifier())).collect::<Vec<_>>(),
    );
    let instances = rds.describe_db_instances().send().await.unwrap();
    out += &normalized(
        "db_instances",
        instances.db_instances().iter().filter(|i| is_dev(i.db_instance_identifier())).collect::<Vec<_>>(),
    );
    let snaps = rds.describe_db_cluster_snapshots().snapshot_type("manual").send().await.unwrap();
    out += &normalized(
        "db_cluster_snapshots",
        snaps.db_cluster_snapshots().iter().filter(|s| is_dev(s.db_cluster_identifier())).collect::<Vec<_>>(),
    );
    let pgs = rds.describe_db_cluster_parameter_groups().send().await.unwrap();
    for g in pgs.db_cluster_parameter_groups().iter().filter(|g| is_dev(g.db_cluster_parameter_group_name())) {
        let name = g.db_cluster_parameter_group_name().unwrap();
        let params = rds
            .describe_db_cluster_parameters()
            .db_cluster_parameter_group_name(name)
            .source("user")
            .send()
            .await
            .unwrap();
        out += &normalized(name, (g, params.parameters()));
    }

    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    for t in ddb.list_tables().send().await.unwrap().table_names() {
        if !dev(t) {
            continue;
        }
        let d = ddb.describe_table().table_name(t).send().await.unwrap();
        let ttl = ddb.describe_time_to_live().table_name(t).send().await.unwrap();
        let pitr = ddb.describe_continuous_backups().table_name(t).send().await.unwrap();
        let arn = d.table().and_then(|x| x.table_arn()).unwrap().to_owned();
        let tags = ddb.list_tags_of_resource().resource_arn(arn).send().await.unwrap();
        out += &normalized(
            t,
            (d.table(), ttl.time_to_live_description(), pitr.continuous_backups_description(), tags.tags()),
        );
    }

    let lambda = aws_sdk_lambda::Client::new(&sdk);
    let functions: Vec<_> = lambda.list_functions().into_paginator().items().send().collect::<Vec<_>>().await;
    for f in functions.into_iter().map(Result::unwrap) {
        let name = f.function_name().unwrap_or("?");
        if !dev(name) {
            continue;
        }
        let full = lambda.get_function().function_name(name).send().await.unwrap();
        let aliases = lambda.list_aliases().function_name(name).send().await.unwrap();
        let policy = lambda.get_policy().function_name(name).send().await.ok().and_then(|p| p.policy);
        out += &normalized(name, (full.configuration(), full.concurrency(), full.tags(), aliases.aliases(), policy));
    }

    let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&sdk).force_path_style(true).build());
    for b in s3.list_buckets().send().await.unwrap().buckets() {
        let name = b.name().unwrap_or("?");
        if !dev(name) {
            continue;
        }
        let versions = s3.list_object_versions().bucket(name).send().await.unwrap();
        let summary: Vec<_> = versions
            .versions()
            .iter()
            .map(|v| (v.key(), v.version_id(), v.e_tag(), v.size()))
            .chain(versions.delete_markers().iter().map(|d| (d.key(), d.version_id(), None, None)))
            .collect();
        let enc = s3
            .get_bucket_encryption()
            .bucket(name)
            .send()
            .await
            .ok()
            .map(|e| format!("{:?}", e.server_side_encryption_configuration()));
        let pol = s3.get_bucket_policy().bucket(name).send().await.ok().and_then(|p| p.policy);
        let tags = s3.get_bucket_tagging().bucket(name).send().await.ok().map(|t| format!("{:?}", t.tag_set()));
        let lc =
            s3.get_bucket_lifecycle_configuration().bucket(name).send().await.ok().map(|l| format!("{:?}", l.rules()));
        out += &normalized(name, (summary, enc, pol, tags, lc));
    }

    let cw = aws_sdk_cloudwatch::Client::new(&sdk);
    let alarms = cw.describe_alarms().send().await.unwrap();
    let dev_alarms: Vec<_> = alarms
        .metric_alarms()
        .iter()
        .filter(|a| is_dev(a.alarm_name()))
        .map(|a| (a.alarm_name(), a.metric_name(), a.threshold(), a.alarm_actions(), a.dimensions(), a.metrics()))
        .collect();
    out += &normalized("alarms", dev_alarms);
    for d in cw.list_dashboards().send().await.unwrap().dashboard_entries() {
        let name = d.dashboard_name().unwrap_or("?");
        if dev(name) {
            out += &normalized(name, cw.get_dashboard().dashboard_name(name).send().await.unwrap().dashboard_body());
        }
    }

    let ssm = aws_sdk_ssm::Client::new(&sdk);
    let pages: Vec<_> = ssm.describe_parameters().into_paginator().send().collect::<Vec<_>>().await;
    let mut params: Vec<_> = pages
        .into_iter()
        .flat_map(|p| p.unwrap().parameters.unwrap_or_default())
        .filter(|p| p.name().is_some_and(|n| n.starts_with("/dev/")))
        .map(|p| (p.name().map(str::to_owned), p.r#type().cloned(), p.version(), p.description().map(str::to_owned)))
        .collect();
    params.sort_by(|a, b| a.0.cmp(&b.0));
    out += &normalized("ssm_parameters", params);

    let kms = aws_sdk_kms::Client::new(&sdk);
    let aliases = kms.list_aliases().send().await.unwrap();
    out += &normalized(
        "kms_aliases",
        aliases
            .aliases()
            .iter()
            .filter(|a| is_dev(a.alias_name()))
            .map(|a| (a.alias_name(), a.target_key_id()))
            .collect::<Vec<_>>(),
    );
    let iam = aws_sdk_iam::Client::new(&sdk);
    let roles = iam.list_roles().send().await.unwrap();
    out += &normalized(
        "iam_roles",
        roles
            .roles()
            .iter()
            .filter(|r| dev(r.role_name()))
            .map(|r| (r.role_name(), r.arn(), r.assume_role_policy_document()))
            .collect::<Vec<_>>(),
    );
    let sns = aws_sdk_sns::Client::new(&sdk);
    let topics = sns.list_topics().send().await.unwrap();
    out += &normalized("sns_topics", topics.topics().iter().filter(|t| is_dev(t.topic_arn())).collect::<Vec<_>>());
    out
}
