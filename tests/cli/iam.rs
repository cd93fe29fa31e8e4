//! The generated IAM policies cover every call paymig makes: a full life
//! cycle (plan, apply, no-op apply, params, validate, switch, rollback,
//! destroy) is run with JSON logs, and every operation of its call
//! accounting must be granted by `paymig iam-policy` (prod and replica
//! sides) or `paymig iam-policy --side source` (the dev side). A call a
//! step forgets to declare fails here.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::support::World;

/// The IAM action an SDK operation is authorized as. Most are
/// `service:Operation`; S3 names many differently (the S3 API reference's
/// "Permissions" section of each operation).
fn iam_action(service: &str, operation: &str) -> String {
    let prefix = match service {
        "elastic load balancing v2" | "elasticloadbalancingv2" => "elasticloadbalancing",
        other => other,
    };
    let op = match (prefix, operation) {
        ("s3", "ListObjectsV2" | "HeadBucket") => "ListBucket",
        ("s3", "HeadObject") => "GetObject",
        ("s3", "DeleteObjects") => "DeleteObject",
        ("s3", "ListObjectVersions") => "ListBucketVersions",
        ("s3", "ListMultipartUploads") => "ListBucketMultipartUploads",
        ("s3", "PutPublicAccessBlock") => "PutBucketPublicAccessBlock",
        ("s3", "GetPublicAccessBlock") => "GetBucketPublicAccessBlock",
        ("s3", "PutBucketEncryption") => "PutEncryptionConfiguration",
        ("s3", "GetBucketEncryption") => "GetEncryptionConfiguration",
        ("s3", "PutBucketLifecycleConfiguration") => "PutLifecycleConfiguration",
        ("s3", "GetBucketLifecycleConfiguration") => "GetLifecycleConfiguration",
        ("s3", "PutBucketReplication" | "DeleteBucketReplication") => "PutReplicationConfiguration",
        ("s3", "GetBucketReplication") => "GetReplicationConfiguration",
        ("s3", "ListBuckets") => "ListAllMyBuckets",
        (_, op) => op,
    };
    format!("{prefix}:{op}")
}

fn actions_of(policy: &str) -> BTreeSet<String> {
    let doc: Value = serde_json::from_str(policy).expect("the policy is one JSON document");
    doc["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["Action"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_call_of_a_full_life_cycle_is_granted_by_the_generated_policies() {
    let w = World::new().await;
    let target = w.paymig(["iam-policy"]).run();
    target.expect_code(0);
    let source = w.paymig(["iam-policy", "--side", "source"]).run();
    source.expect_code(0);
    let (target, source) = (actions_of(&target.stdout), actions_of(&source.stdout));
    for policy in [&target, &source] {
        assert!(policy.iter().all(|a| !a.contains('*')), "no wildcard action: {policy:?}");
    }
    assert!(
        source.iter().all(|a| {
            let op = a.split(':').nth(1).unwrap_or("");
            ["Describe", "Get", "List", "Head"].iter().any(|p| op.starts_with(p))
        }),
        "the dev side only reads: {source:?}"
    );

    let mut missing = BTreeSet::new();
    let mut seen = 0;
    for (args, code) in [
        (&["plan"][..], 0),
        (&["apply", "--yes"], 0),
        (&["apply", "--yes"], 0),
        (&["params", "--overwrite", "--yes"], 0),
        (&["validate", "--format", "json"], 0),
        (&["switch", "--to", "green", "--yes"], 0),
        (&["rollback", "--yes"], 0),
        (&["destroy", "--yes"], 0),
    ] {
        let run = w.paymig(["--log-format", "json"]).args(args).run();
        run.expect_code(code);
        let ops = run.operations();
        for (service, calls) in ops.as_object().unwrap() {
            let (side, service) = service.split_once(':').unwrap_or(("target", service));
            for op in calls.as_object().unwrap().keys() {
                seen += 1;
                let action = iam_action(service, op);
                let granted = if side == "source" { &source } else { &target };
                if !granted.contains(&action) {
                    missing.insert(format!("{side} {action} (paymig {})", args.join(" ")));
                }
            }
        }
    }
    assert!(seen > 100, "the accounting lists the operations: {seen}");
    assert!(
        missing.is_empty(),
        "calls the generated policies do not grant:\n{}",
        missing.into_iter().collect::<Vec<_>>().join("\n")
    );
}
