//! The generated IAM policies cover every call paymig makes: a full life
//! cycle (plan, apply, no-op apply, params, validate, switch, rollback,
//! destroy) is run with JSON logs, and every operation of its call
//! accounting must be granted by `paymig iam-policy` (prod and replica
//! sides) or `paymig iam-policy --side source` (the dev side), and be
//! declared by some step (`Declared::actions` / `source_actions`): a call a
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

/// What the steps declare they call: `(target, source)` actions. The engine
/// itself calls only `sts:GetCallerIdentity` (the account of each side).
fn declared_by_steps() -> (BTreeSet<String>, BTreeSet<String>) {
    let steps = paymig::testing::all_steps();
    let engine = std::iter::once("sts:GetCallerIdentity".to_owned());
    let target = steps.iter().flat_map(|s| s.actions().iter().map(|a| a.to_string())).chain(engine.clone());
    let source = steps.iter().flat_map(|s| s.source_actions().iter().map(|a| a.to_string())).chain(engine);
    (target.collect(), source.collect())
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

    let (declared_target, declared_source) = declared_by_steps();
    let mut missing = BTreeSet::new();
    let mut undeclared = BTreeSet::new();
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
                let declared = if side == "source" { &declared_source } else { &declared_target };
                if !declared.contains(&action) {
                    undeclared.insert(format!("{side} {action} (paymig {})", args.join(" ")));
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
    assert!(
        undeclared.is_empty(),
        "calls no step declares:\n{}",
        undeclared.into_iter().collect::<Vec<_>>().join("\n")
    );
}

/// The access keys of the two sides in the enforced-IAM tests.
const DEV_KEY: &str = "AKIADEVSIDE000000001";
const PROD_KEY: &str = "AKIAPRODSIDE00000001";

/// An AWS config and credentials file with a `dev` and a `prod` profile.
fn profile_files(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let config = dir.join("aws-config");
    let credentials = dir.join("aws-credentials");
    std::fs::write(&config, "[profile dev]\nregion = us-east-1\n[profile prod]\nregion = us-east-1\n").unwrap();
    std::fs::write(
        &credentials,
        format!(
            "[dev]\naws_access_key_id = {DEV_KEY}\naws_secret_access_key = dev-secret\n[prod]\naws_access_key_id = {PROD_KEY}\naws_secret_access_key = prod-secret\n"
        ),
    )
    .unwrap();
    (config, credentials)
}

/// The reference configuration with the two sides on their own profiles.
fn with_profiles(t: String) -> String {
    t.replacen("[source]\n", "[source]\nprofile = \"dev\"\n", 1).replacen(
        "[target]\n",
        "[target]\nprofile = \"prod\"\n",
        1,
    )
}

/// A world whose paymig runs go through an enforcing proxy, with the
/// generated policies in force: the prod key has exactly `paymig
/// iam-policy`, the dev key exactly `paymig iam-policy --side source`.
struct Enforced {
    w: World,
    proxy: crate::support::proxy::Proxy,
    enforcer: std::sync::Arc<crate::support::enforce::Enforcer>,
    files: (std::path::PathBuf, std::path::PathBuf),
    target: Value,
}

impl Enforced {
    async fn new(edit: impl FnOnce(String) -> String) -> Enforced {
        use crate::support::proxy::{Proxy, ProxyConfig};
        // A refused delete must fail the test, not wait out an hour of
        // DependencyViolation retries behind it.
        let w = World::with(Default::default(), |t| {
            edit(with_profiles(t)).replace("max_wait_minutes = 60", "max_wait_minutes = 2")
        })
        .await;
        let enforcer = std::sync::Arc::new(crate::support::enforce::Enforcer::default());
        let proxy =
            Proxy::start(ProxyConfig { enforcer: Some(enforcer.clone()), ..ProxyConfig::new(&w.moto.endpoint) });
        let files = profile_files(w.dir.path());
        let e = Enforced { w, proxy, enforcer, files, target: Value::Null };
        // GetCallerIdentity (the account for the ARNs) is all these need.
        let target = e.run(&["iam-policy"]);
        target.expect_code(0);
        let source = e.run(&["iam-policy", "--side", "source"]);
        source.expect_code(0);
        let target: Value = serde_json::from_str(&target.stdout).unwrap();
        let source: Value = serde_json::from_str(&source.stdout).unwrap();
        e.enforcer.set_policy(PROD_KEY, target.clone());
        e.enforcer.set_policy(DEV_KEY, source);
        Enforced { target, ..e }
    }

    fn run(&self, args: &[&str]) -> crate::support::Run {
        self.w.paymig(args).via(&self.proxy.endpoint).profiles(&self.files).run()
    }
}

/// The life cycle every enforced test drives.
const LIFE_CYCLE: [&[&str]; 8] = [
    &["plan"],
    &["apply", "--yes"],
    &["apply", "--yes"],
    &["params", "--overwrite", "--yes"],
    &["switch", "--to", "green", "--yes"],
    &["rollback", "--yes"],
    &["validate", "--format", "json"],
    &["destroy", "--yes"],
];

/// paymig runs with exactly the policies it generates, enforced by action
/// and resource as AWS does (implied `iam:PassRole`, RDS's default groups,
/// versioned deletes): every command of the life cycle succeeds and no
/// request is refused.
#[tokio::test(flavor = "multi_thread")]
async fn the_generated_policies_are_sufficient_when_iam_is_enforced() {
    let e = Enforced::new(|t| t).await;
    for args in LIFE_CYCLE {
        let run = e.run(args);
        assert_eq!(
            run.code,
            Some(0),
            "paymig {} with exactly the generated policies\ndenied: {:?}\nunmapped: {:?}\n--- stderr\n{}",
            args.join(" "),
            e.enforcer.denied(),
            e.enforcer.unmapped(),
            run.stderr
        );
    }
    assert!(e.enforcer.denied().is_empty(), "refused: {:?}", e.enforcer.denied());
    assert!(e.enforcer.unmapped().is_empty(), "requests the authorizer could not read: {:?}", e.enforcer.unmapped());
    let allowed = e.enforcer.allowed_actions();
    for a in
        ["rds:RestoreDBClusterFromSnapshot", "iam:PassRole", "lambda:CreateFunction", "s3:PutReplicationConfiguration"]
    {
        assert!(allowed.iter().any(|x| x == a), "{a} was authorized (the life cycle reached it): {allowed:?}");
    }
    let left = crate::support::inventory::prod_inventory(&e.w.moto.endpoint, "prod").await;
    assert!(left.is_empty(), "destroy left: {left:?}");
}

/// The same life cycle with one action (drawn with a fixed seed from those
/// the sufficient run needed) taken out of the prod policy: a command fails,
/// its error names the action, and nothing else was refused. The journal is
/// the S3 remote one here, so its first, sufficient pass also proves the
/// policy's statements for the state bucket.
#[tokio::test(flavor = "multi_thread")]
async fn a_policy_missing_one_action_fails_naming_it() {
    use crate::remote_journal::{keys, remote_journal, BUCKET};
    // The life cycle runs twice here: moto cannot re-create a cluster of the
    // same name within the minute (its automated snapshot name is kept), so
    // the database tier is left to the sufficiency test above.
    let e = Enforced::new(|t| remote_journal(crate::without_database(t))).await;
    let journal = e.target["Statement"].as_array().unwrap().iter().find(|s| s["Sid"] == "JournalObjects").cloned();
    assert_eq!(
        journal.map(|s| s["Resource"].clone()),
        Some(serde_json::json!([format!("arn:aws:s3:::{BUCKET}/builds*")])),
        "the state bucket's objects, scoped to the prefix"
    );
    e.w.prod.s3.create_bucket().bucket(BUCKET).send().await.unwrap();
    // Which actions the prod side needs: one sufficient run through.
    for args in LIFE_CYCLE {
        let run = e.run(args);
        assert_eq!(run.code, Some(0), "{}: denied {:?}\n{}", args.join(" "), e.enforcer.denied(), run.stderr);
    }
    assert!(e.enforcer.denied().is_empty(), "refused: {:?}", e.enforcer.denied());
    let written = keys(&e.w, "builds").await;
    assert!(written.iter().any(|k| k.contains("journal")), "the journal lives in S3, written as enforced: {written:?}");
    let needed: Vec<String> = actions_of(&e.target.to_string())
        .into_iter()
        .filter(|a| e.enforcer.allowed_actions().contains(a) && a != "sts:GetCallerIdentity")
        .collect();
    assert!(needed.len() > 50, "the life cycle needs many actions: {needed:?}");
    let seed: u64 = std::env::var("PAYMIG_IAM_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(20261202);
    let removed = needed[(seed % needed.len() as u64) as usize].clone();
    let mut policy = e.target.clone();
    for s in policy["Statement"].as_array_mut().unwrap() {
        if let Some(actions) = s["Action"].as_array_mut() {
            actions.retain(|a| a.as_str() != Some(removed.as_str()));
        }
    }
    e.enforcer.set_policy(PROD_KEY, policy);
    e.enforcer.clear();
    let mut failed = None;
    for args in LIFE_CYCLE {
        let run = e.run(args);
        if run.code != Some(0) {
            failed = Some((args.join(" "), run));
            break;
        }
    }
    let (command, run) = failed.unwrap_or_else(|| panic!("without {removed} every command still succeeded"));
    assert!(
        run.stderr.contains(&removed) || run.stdout.contains(&removed),
        "paymig {command} failed without {removed}, but its output does not name it:\n{}\n{}",
        run.stdout,
        run.stderr
    );
    let denied = e.enforcer.denied();
    assert!(!denied.is_empty() && denied.iter().all(|d| d.starts_with(&format!("{removed} "))), "{denied:?}");
}

/// The CodeBuild shape: no profiles, one base identity (the build's service
/// role; here an IAM user of the prod account), `[source] role_arn` a read
/// role in dev's account. `iam-policy --side principals` says who needs
/// what: the build identity gets the prod policy with `sts:AssumeRole` on
/// the dev role, the dev role the reads and a trust policy naming the build
/// identity. With exactly those in force — permissions by key, the role's
/// trust checked on AssumeRole — the life cycle runs; without the build
/// identity's AssumeRole, dev cannot be read, and the refusal names it.
#[tokio::test(flavor = "multi_thread")]
async fn one_build_identity_assumes_the_dev_read_role_when_iam_is_enforced() {
    use crate::support::enforce::Enforcer;
    use crate::support::fixture;
    use crate::support::proxy::{Proxy, ProxyConfig};
    const DEV: &str = "111111111111";
    let role = format!("arn:aws:iam::{DEV}:role/paymig-read-dev");
    let opts = fixture::Options { account: Some(DEV.into()), ..Default::default() };
    let w = World::with(opts, |t| {
        crate::without_database(t)
            .replace(
                "# role_arn = \"arn:aws:iam::111111111111:role/paymig-read-dev\"",
                &format!("role_arn = \"{role}\""),
            )
            .replace("max_wait_minutes = 60", "max_wait_minutes = 2")
    })
    .await;
    let user = w.prod.iam.create_user().user_name("paymig-build").send().await.unwrap().user.unwrap().arn;
    let key = w.prod.iam.create_access_key().user_name("paymig-build").send().await.unwrap().access_key.unwrap();
    let (id, secret) = (key.access_key_id, key.secret_access_key);
    let enforcer = std::sync::Arc::new(Enforcer::default());
    let proxy = Proxy::start(ProxyConfig { enforcer: Some(enforcer.clone()), ..ProxyConfig::new(&w.moto.endpoint) });
    let run = |args: &[&str]| {
        w.paymig(args).via(&proxy.endpoint).env("AWS_ACCESS_KEY_ID", &id).env("AWS_SECRET_ACCESS_KEY", &secret).run()
    };
    let principals = run(&["iam-policy", "--side", "principals"]);
    principals.expect_code(0);
    let doc: Value = serde_json::from_str(&principals.stdout).unwrap();
    let find = |who: &str| {
        doc["principals"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["principal"] == who)
            .cloned()
            .unwrap_or_else(|| panic!("{who}: {doc}"))
    };
    let (prod, dev_role) = (find("prod identity"), find("dev read role"));
    let assume =
        prod["policy"]["Statement"].as_array().unwrap().iter().find(|s| s["Sid"] == "AssumeSourceRole").cloned();
    assert_eq!(assume.map(|s| s["Resource"].clone()), Some(serde_json::json!([role])), "{prod}");
    assert_eq!(dev_role["who"], role.as_str());
    assert_eq!(dev_role["trust_policy"]["Statement"][0]["Principal"]["AWS"], user.as_str(), "{dev_role}");
    // `--side target` is the prod identity's policy; `--side source` the
    // role's reads, with no AssumeRole (the role does not assume itself).
    let target: Value = serde_json::from_str(&run(&["iam-policy"]).stdout).unwrap();
    assert_eq!(target, prod["policy"]);
    let source = run(&["iam-policy", "--side", "source"]).stdout;
    assert!(!source.contains("sts:AssumeRole"), "{source}");

    enforcer.set_principal(&id, &user);
    enforcer.set_policy(&id, prod["policy"].clone());
    enforcer.set_role(&role, dev_role["policy"].clone(), dev_role["trust_policy"].clone());
    for args in [&["plan"][..], &["apply", "--yes"], &["apply", "--yes"], &["validate"], &["destroy", "--yes"]] {
        let r = run(args);
        assert_eq!(r.code, Some(0), "paymig {}: denied {:?}\n{}", args.join(" "), enforcer.denied(), r.stderr);
    }
    assert!(enforcer.denied().is_empty(), "{:?}", enforcer.denied());
    assert!(enforcer.allowed_actions().iter().any(|a| a == "sts:AssumeRole"));
    assert!(enforcer.allowed_actions().iter().any(|a| a == "ec2:DescribeVpcs"), "dev was read through the role");

    // The policy `iam-policy --side source` alone used to carry the
    // AssumeRole: without it in the build identity's policy, nothing of dev
    // can be read.
    let mut without = prod["policy"].clone();
    without["Statement"].as_array_mut().unwrap().retain(|s| s["Sid"] != "AssumeSourceRole");
    enforcer.set_policy(&id, without);
    enforcer.clear();
    let refused = run(&["plan"]);
    assert_ne!(refused.code, Some(0), "{}", refused.stderr);
    assert!(enforcer.denied().iter().any(|d| d.starts_with("sts:AssumeRole ")), "{:?}", enforcer.denied());
}

/// A delete AWS refuses holds back what it may still be part of: destroy
/// without `ec2:DeleteSubnet` deletes everything else, never tries the VPC
/// (it could only meet DependencyViolation until `max_wait_minutes`), says
/// how much it held back, and keeps it journaled — the next destroy, with
/// the permission back, finishes.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_delete_holds_back_what_it_may_be_part_of_and_the_next_destroy_finishes() {
    use crate::support::inventory::prod_inventory;
    let e = Enforced::new(crate::without_database).await;
    e.run(&["apply", "--yes"]).expect_code(0);
    let mut policy = e.target.clone();
    for s in policy["Statement"].as_array_mut().unwrap() {
        if let Some(actions) = s["Action"].as_array_mut() {
            actions.retain(|a| a != "ec2:DeleteSubnet");
        }
    }
    e.enforcer.set_policy(PROD_KEY, policy);
    let refused = e.run(&["--log-format", "json", "destroy", "--yes"]);
    assert_eq!(refused.code, Some(1), "{}", refused.stderr);
    let attempted: Vec<&str> = refused.call_log.iter().flatten().filter_map(|c| c["operation"].as_str()).collect();
    assert!(attempted.contains(&"DeleteSubnet"), "{attempted:?}");
    assert!(!attempted.contains(&"DeleteVpc"), "the VPC behind the refused subnets is not tried: {attempted:?}");
    let summary = refused.events("destroy failed");
    let summary: Value = serde_json::from_str(summary.last().expect("a summary event")["summary"].as_str().unwrap())
        .expect("the summary is JSON");
    assert!(summary["held_back"].as_u64().unwrap_or(0) >= 1, "{summary}");
    assert!(refused.stderr.contains("held back"), "{}", refused.stderr);
    // What was refused or held back is still there, everything else is gone.
    let left = prod_inventory(&e.w.moto.endpoint, "prod").await;
    assert!(left.contains_key("vpc") && left.contains_key("subnet"), "{left:?}");
    assert!(!left.contains_key("dynamodb_table") && !left.contains_key("lambda_function"), "{left:?}");
    // With the permission back, the journal finishes the job.
    e.enforcer.set_policy(PROD_KEY, e.target.clone());
    e.run(&["destroy", "--yes"]).expect_code(0);
    assert!(prod_inventory(&e.w.moto.endpoint, "prod").await.is_empty());
}
