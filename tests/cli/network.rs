//! Interface VPC endpoints: functions in private subnets without NAT reach
//! the services their roles use (SSM, KMS by default) through them.

use aws_sdk_ec2::types::{AttributeBooleanValue, Filter, VpcAttributeName, VpcEndpoint, VpcEndpointType};

use crate::support::World;

fn f(name: &str, value: &str) -> Filter {
    Filter::builder().name(name).values(value).build()
}

async fn prod_vpc(w: &World) -> String {
    let out = w.prod.ec2.describe_vpcs().filters(f("tag:Name", "payments-prod")).send().await.unwrap();
    out.vpcs()[0].vpc_id().unwrap().to_owned()
}

/// The reference config with `[network] interface_endpoints` set to `list`.
fn with_endpoints(config: String, list: &str) -> String {
    let line = "# interface_endpoints = [\"kms\", \"ssm\"]";
    assert!(config.contains(line), "the reference config documents the key");
    config.replace(line, &format!("interface_endpoints = {list}"))
}

async fn endpoints(w: &World, vpc: &str) -> Vec<VpcEndpoint> {
    let out = w.prod.ec2.describe_vpc_endpoints().filters(f("vpc-id", vpc)).send().await.unwrap();
    out.vpc_endpoints()
        .iter()
        .filter(|e| e.state().is_none_or(|s| !s.as_str().eq_ignore_ascii_case("deleted")))
        .cloned()
        .collect()
}

async fn group(w: &World, name: &str) -> aws_sdk_ec2::types::SecurityGroup {
    let out = w.prod.ec2.describe_security_groups().filters(f("group-name", name)).send().await.unwrap();
    out.security_groups().first().unwrap_or_else(|| panic!("no security group {name}")).clone()
}

/// (port, peer group ids) of each rule that names a group.
fn group_peers(perms: &[aws_sdk_ec2::types::IpPermission]) -> Vec<(Option<i32>, Vec<String>)> {
    perms
        .iter()
        .map(|p| {
            (p.from_port(), p.user_id_group_pairs().iter().filter_map(|g| g.group_id().map(String::from)).collect())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn functions_reach_ssm_and_kms_through_interface_endpoints_with_private_dns() {
    let w = World::with(Default::default(), crate::without_database).await;
    // Dev resolves no hostnames; private DNS needs them in prod.
    w.prod
        .ec2
        .modify_vpc_attribute()
        .vpc_id(&w.dev.vpc_id)
        .enable_dns_hostnames(AttributeBooleanValue::builder().value(false).build())
        .send()
        .await
        .unwrap();

    let plan = w.paymig(["plan"]).run();
    plan.expect_code(0);
    for service in ["kms", "ssm"] {
        let line =
            format!("+ vpc_endpoint payments-{service}-endpoint-prod (interface com.amazonaws.us-east-1.{service}");
        assert!(plan.stdout.contains(&line), "plan shows {line}:\n{}", plan.stdout);
    }
    assert!(plan.stdout.contains("+ security_group payments-endpoints-sg-prod"), "{}", plan.stdout);

    w.paymig(["apply", "--yes"]).run().expect_code(0);
    let vpc = prod_vpc(&w).await;
    let hostnames = w
        .prod
        .ec2
        .describe_vpc_attribute()
        .vpc_id(&vpc)
        .attribute(VpcAttributeName::EnableDnsHostnames)
        .send()
        .await
        .unwrap();
    assert_eq!(hostnames.enable_dns_hostnames().and_then(|b| b.value()), Some(true), "private DNS needs hostnames");

    let compute = group(&w, "payments-compute-sg-prod").await;
    let eg = group(&w, "payments-endpoints-sg-prod").await;
    let (compute_id, eg_id) = (compute.group_id().unwrap().to_owned(), eg.group_id().unwrap().to_owned());
    assert_eq!(group_peers(eg.ip_permissions()), [(Some(443), vec![compute_id.clone()])], "443 from compute only");
    assert!(
        eg.ip_permissions_egress().is_empty(),
        "the endpoints group sends nothing: {:?}",
        eg.ip_permissions_egress()
    );
    assert!(
        group_peers(compute.ip_permissions_egress()).contains(&(Some(443), vec![eg_id.clone()])),
        "compute reaches the endpoints on 443: {:?}",
        compute.ip_permissions_egress()
    );

    let subnets = w.prod.ec2.describe_subnets().filters(f("vpc-id", &vpc)).send().await.unwrap();
    let zones: std::collections::BTreeSet<&str> =
        subnets.subnets().iter().filter_map(|s| s.availability_zone()).collect();
    let eps = endpoints(&w, &vpc).await;
    let interface: Vec<&VpcEndpoint> =
        eps.iter().filter(|e| e.vpc_endpoint_type() == Some(&VpcEndpointType::Interface)).collect();
    let mut services: Vec<&str> = interface.iter().filter_map(|e| e.service_name()).collect();
    services.sort();
    assert_eq!(services, ["com.amazonaws.us-east-1.kms", "com.amazonaws.us-east-1.ssm"]);
    for e in &interface {
        let sn = e.service_name().unwrap();
        assert_eq!(e.private_dns_enabled(), Some(true), "{sn}: private DNS");
        let groups: Vec<&str> = e.groups().iter().filter_map(|g| g.group_id()).collect();
        assert_eq!(groups, [eg_id.as_str()], "{sn}: in the endpoints group only");
        // One subnet per zone.
        let their_zones: std::collections::BTreeSet<&str> = e
            .subnet_ids()
            .iter()
            .map(|id| {
                subnets.subnets().iter().find(|s| s.subnet_id() == Some(id)).unwrap().availability_zone().unwrap()
            })
            .collect();
        assert_eq!(their_zones.len(), e.subnet_ids().len(), "{sn}: one subnet per zone");
        assert_eq!(their_zones, zones, "{sn}: every prod zone");
        let tags: std::collections::BTreeMap<&str, &str> =
            e.tags().iter().filter_map(|t| Some((t.key()?, t.value()?))).collect();
        assert_eq!(tags.get("paymig:suffix"), Some(&"prod"), "{sn}: {tags:?}");
        assert_eq!(tags.get("CostCenter"), Some(&"payments"), "{sn}: {tags:?}");
        // The policy admits what the execution roles are granted, named.
        let policy: serde_json::Value = serde_json::from_str(e.policy_document().unwrap()).unwrap();
        let text = policy.to_string();
        let actions: Vec<&str> = policy["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|st| st["Action"].as_array().unwrap().iter().filter_map(|a| a.as_str()))
            .collect();
        assert!(!actions.is_empty() && actions.iter().all(|a| !a.contains('*')), "{sn}: named actions only: {text}");
        if sn.ends_with(".ssm") {
            assert!(text.contains("ssm:GetParameter") && text.contains(":parameter/prod/*"), "{text}");
            assert!(!text.contains("kms:"), "{text}");
        } else {
            assert!(text.contains("kms:Decrypt") && text.contains(":key/*"), "{text}");
        }
    }

    // Converged: a re-apply changes nothing; validate checks the endpoints
    // and names the hostnames difference as intended.
    let again = w.paymig(["apply", "--yes"]).run();
    again.expect_code(0);
    assert_eq!(again.mutating_calls(), 0, "{}", again.stderr);
    let run = w.paymig(["validate", "--format", "json"]).run();
    run.expect_code(0);
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let checks: Vec<&serde_json::Value> =
        report["checks"].as_array().unwrap().iter().filter(|c| c["id"] == "network.interface_endpoints").collect();
    assert_eq!(checks.len(), 2, "{checks:?}");
    assert!(checks.iter().all(|c| c["passed"] == true), "{checks:?}");
    let vpc_row = report["resources"].as_array().unwrap().iter().find(|r| r["kind"] == "vpc").unwrap();
    let diff = vpc_row["differences"].as_array().unwrap().iter().find(|d| d["field"] == "enableDnsHostnames");
    assert_eq!(diff.map(|d| d["expected"].clone()), Some(serde_json::Value::Bool(true)), "{vpc_row}");

    // Drift is seen: an endpoint moved out of its group fails its check.
    let ssm = interface.iter().find(|e| e.service_name().unwrap().ends_with(".ssm")).unwrap();
    w.prod
        .ec2
        .modify_vpc_endpoint()
        .vpc_endpoint_id(ssm.vpc_endpoint_id().unwrap())
        .add_security_group_ids(&compute_id)
        .remove_security_group_ids(&eg_id)
        .send()
        .await
        .unwrap();
    let run = w.paymig(["validate", "--format", "json"]).run();
    run.expect_code(3);
    assert!(run.stdout.contains("security groups"), "{}", run.stdout);
    // apply puts it back and rollback of that run moves it again.
    w.paymig(["apply", "--yes"]).run().expect_code(0);
    let back = endpoints(&w, &vpc).await;
    let ssm_now = back.iter().find(|e| e.vpc_endpoint_id() == ssm.vpc_endpoint_id()).unwrap();
    assert_eq!(ssm_now.groups().iter().filter_map(|g| g.group_id()).collect::<Vec<_>>(), [eg_id.as_str()]);
    w.paymig(["rollback", "--yes"]).run().expect_code(0);
    let rolled = endpoints(&w, &vpc).await;
    let ssm_now = rolled.iter().find(|e| e.vpc_endpoint_id() == ssm.vpc_endpoint_id()).unwrap();
    assert_eq!(ssm_now.groups().iter().filter_map(|g| g.group_id()).collect::<Vec<_>>(), [compute_id.as_str()]);

    // destroy removes them with everything else.
    w.paymig(["destroy", "--yes"]).run().expect_code(0);
    let left = w.prod.ec2.describe_vpc_endpoints().send().await.unwrap();
    assert!(
        left.vpc_endpoints().iter().all(|e| e.state().is_some_and(|s| s.as_str().eq_ignore_ascii_case("deleted"))),
        "{:?}",
        left.vpc_endpoints()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn interface_endpoints_are_configurable_and_unknown_services_are_refused_before_anything_changes() {
    let w = World::with(Default::default(), |t| {
        with_endpoints(crate::without_database(t), "[\"sts\", \"nosuch\", \"alsonot\"]")
    })
    .await;
    let run = w.paymig(["apply", "--yes"]).run();
    run.expect_code(2);
    for needle in
        ["\"nosuch\"", "\"alsonot\"", "com.amazonaws.us-east-1.nosuch", "[network] interface_endpoints", "help:"]
    {
        assert!(run.stderr.contains(needle), "{needle} in\n{}", run.stderr);
    }
    assert_eq!(run.mutating_calls(), 0, "{}", run.stderr);

    // A gateway service is refused by the config check, naming the key.
    let text = std::fs::read_to_string(&w.config).unwrap();
    std::fs::write(&w.config, text.replace("\"nosuch\", \"alsonot\"", "\"s3\"")).unwrap();
    let run = w.paymig(["plan"]).run();
    run.expect_code(2);
    assert!(run.stderr.contains("network.interface_endpoints") && run.stderr.contains("gateway"), "{}", run.stderr);

    // The listed services replace the derived ones.
    let text = std::fs::read_to_string(&w.config).unwrap();
    std::fs::write(&w.config, text.replace("[\"sts\", \"s3\"]", "[\"sts\"]")).unwrap();
    w.paymig(["apply", "--yes"]).run().expect_code(0);
    let vpc = prod_vpc(&w).await;
    let eps = endpoints(&w, &vpc).await;
    let mut names: Vec<&str> = eps.iter().filter_map(|e| e.service_name()).collect();
    names.sort();
    assert_eq!(
        names,
        ["com.amazonaws.us-east-1.dynamodb", "com.amazonaws.us-east-1.s3", "com.amazonaws.us-east-1.sts"],
        "the gateway endpoints and sts only"
    );
    // No execution role grants sts: AWS's default policy applies, and
    // validate does not call it paymig's.
    let run = w.paymig(["validate", "--format", "json"]).run();
    run.expect_code(0);

    // An empty list: no interface endpoint, no endpoints group.
    let w = World::with(Default::default(), |t| with_endpoints(crate::without_database(t), "[]")).await;
    w.paymig(["apply", "--yes"]).run().expect_code(0);
    let vpc = prod_vpc(&w).await;
    assert_eq!(endpoints(&w, &vpc).await.len(), 2, "gateway endpoints only");
    let out = w.prod.ec2.describe_security_groups().filters(f("group-name", "payments-endpoints-sg-prod")).send().await;
    assert!(out.unwrap().security_groups().is_empty(), "no endpoints group");
}
