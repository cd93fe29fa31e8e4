//! Scheduled runs set up as code (`paymig ci-template`) and a run drawn as a
//! timeline (`paymig status --format html`).

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::support::{Moto, Paymig, World};

fn venv_bin(name: &str) -> PathBuf {
    let venv = std::env::var_os("PAYMIG_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/paymig/venv"));
    venv.join("bin").join(name)
}

/// The template as JSON (PyYAML from the emulator's virtualenv reads it
/// back: the YAML is what CloudFormation receives).
fn yaml_to_json(path: &Path) -> Value {
    let out = std::process::Command::new(venv_bin("python"))
        .args(["-c", "import json,sys,yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))"])
        .arg(path)
        .output()
        .expect("python from the emulator's virtualenv");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `Fn::Sub` strings with the account put in, everything else as is.
fn resolved(v: &Value, account: &str) -> Value {
    match v {
        Value::Object(m) if m.len() == 1 && m.contains_key("Fn::Sub") => {
            Value::String(m["Fn::Sub"].as_str().unwrap().replace("${AWS::AccountId}", account))
        }
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), resolved(v, account))).collect()),
        Value::Array(a) => Value::Array(a.iter().map(|x| resolved(x, account)).collect()),
        other => other.clone(),
    }
}

fn cfn_lint(path: &Path) {
    let out =
        std::process::Command::new(venv_bin("cfn-lint")).arg(path).output().expect("cfn-lint (installed with moto)");
    assert!(
        out.status.success() && out.stdout.is_empty(),
        "cfn-lint {}:\n{}{}",
        path.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Both templates lint clean, and their policies are exactly the generated
/// ones: every statement of `iam-policy` in the build role's managed
/// policies, every statement of `iam-policy --side source` in the dev read
/// role; a configuration that cannot run on a schedule is refused naming
/// the key.
#[tokio::test(flavor = "multi_thread")]
async fn ci_templates_lint_clean_and_grant_exactly_the_generated_policies() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let text = crate::support::config_text("vpc-0a1b2c3d4e5f", dir.path());
    let local = dir.path().join("local.toml");
    std::fs::write(&local, &text).unwrap();
    let refused = Paymig::new(&moto.endpoint, &local).args(["ci-template"]).run();
    refused.expect_code(2);
    assert!(
        refused.stderr.contains("[migration] journal") && refused.stderr.contains("[source] role_arn"),
        "{}",
        refused.stderr
    );

    let cfg = dir.path().join("scheduled.toml");
    let journal = format!("journal = \"{}\"", dir.path().join("journal").display());
    std::fs::write(
        &cfg,
        text.replace(&journal, "journal = \"s3://paymig-state-prod/payments\"").replace(
            "# role_arn = \"arn:aws:iam::111111111111:role/paymig-read-dev\"",
            "role_arn = \"arn:aws:iam::111111111111:role/paymig-read-dev\"",
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let r = Paymig::new(&moto.endpoint, &cfg).args(args).run();
        r.expect_code(0);
        r.stdout
    };
    let target = dir.path().join("prod.yaml");
    std::fs::write(&target, run(&["ci-template", "--schedule", "cron(0 2 * * ? *)"])).unwrap();
    let source = dir.path().join("dev.yaml");
    std::fs::write(&source, run(&["ci-template", "--side", "source"])).unwrap();
    cfn_lint(&target);
    cfn_lint(&source);

    let account = "123456789012";
    let prod = resolved(&yaml_to_json(&target), account);
    let resources = prod["Resources"].as_object().unwrap();
    let mut granted: Vec<Value> = resources
        .iter()
        .filter(|(id, _)| id.starts_with("PaymigPolicy"))
        .flat_map(|(_, r)| r["Properties"]["PolicyDocument"]["Statement"].as_array().unwrap().clone())
        .collect();
    let policy: Value = serde_json::from_str(&run(&["iam-policy"])).unwrap();
    let mut wanted = policy["Statement"].as_array().unwrap().clone();
    let key = |s: &Value| s.to_string();
    granted.sort_by_key(key);
    wanted.sort_by_key(key);
    assert_eq!(granted, wanted, "the build role holds exactly paymig's prod policy");
    assert_eq!(prod["Parameters"]["ScheduleExpression"]["Default"], "cron(0 2 * * ? *)");
    let bucket = &resources["StateBucket"]["Properties"];
    assert_eq!(bucket["BucketName"], "paymig-state-prod");
    assert_eq!(bucket["VersioningConfiguration"]["Status"], "Enabled");
    let start = &resources["ScheduleRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"][0];
    assert_eq!(start["Action"], serde_json::json!(["codebuild:StartBuild"]));
    assert_eq!(start["Resource"], serde_json::json!({"Fn::GetAtt": ["Project", "Arn"]}), "this project only");
    // Every taggable resource carries the tags; every name the suffix.
    for (id, r) in resources {
        let props = &r["Properties"];
        if let Some(tags) = props["Tags"].as_array() {
            assert!(tags.iter().any(|t| t["Key"] == "Environment" && t["Value"] == "production"), "{id}");
            assert!(tags.iter().any(|t| t["Key"] == "paymig:migration"), "{id}");
        }
        for name in ["RoleName", "Name", "ManagedPolicyName"] {
            if let Some(n) = props[name].as_str() {
                assert!(n.contains("prod"), "{id} {name} {n}");
            }
        }
    }

    let dev = resolved(&yaml_to_json(&source), "111111111111");
    let role = &dev["Resources"]["ReadRole"]["Properties"];
    assert_eq!(role["RoleName"], "paymig-read-dev");
    assert_eq!(
        role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]["AWS"],
        serde_json::json!({"Ref": "BuildRoleArn"}),
        "trusts only the prod build role"
    );
    let mut read: Vec<Value> = role["Policies"][0]["PolicyDocument"]["Statement"].as_array().unwrap().clone();
    let src: Value = serde_json::from_str(&run(&["iam-policy", "--side", "source"])).unwrap();
    let mut want: Vec<Value> = src["Statement"].as_array().unwrap().clone();
    read.sort_by_key(key);
    want.sort_by_key(key);
    assert_eq!(read, want, "the read role holds exactly the dev side's policy");
}

/// `status --format html` draws the last run: a bar per step, the waits on
/// AWS inside them, the critical path highlighted; checked in a headless
/// browser as the validation report is.
#[tokio::test(flavor = "multi_thread")]
async fn status_draws_the_last_run_as_a_timeline() {
    let w = World::new().await;
    w.paymig(["apply", "--yes"]).run().expect_code(0);
    let page = w.dir.path().join("run.html");
    let drawn = w.paymig(["status", "--format", "html", "--out"]).args([&page]).run();
    drawn.expect_code(0);
    assert!(drawn.stdout.contains(&format!("wrote {}", page.display())), "{}", drawn.stdout);
    let dom = crate::support::headless_dom(&page);
    for step in ["kms", "network", "database", "lambda", "monitoring"] {
        assert!(dom.contains(&format!("data-step=\"{step}\"")), "{step} has a bar: {dom}");
    }
    assert!(dom.contains("data-wait=\"aurora_restore\"") && dom.contains("data-wait=\"aurora_instance\""), "{dom}");
    // The critical path ends with the step that ended last, and its bars
    // are the highlighted ones.
    let path = dom.split("id=\"critical\" data-steps=\"").nth(1).and_then(|s| s.split('"').next()).unwrap_or_default();
    assert!(!path.is_empty(), "{dom}");
    for step in path.split(' ') {
        assert!(dom.contains(&format!("critical\" data-step=\"{step}\"")), "{step} highlighted: {dom}");
    }
    let highlighted = dom.matches(" critical\" data-step=").count();
    assert_eq!(highlighted, path.split(' ').count(), "only the path is highlighted");
    assert!(!dom.contains("<script"), "no JavaScript");
    let runs = w.journal_lines().iter().filter(|l| l["type"] == "run_start").count();
    assert_eq!(runs, 1);
    let unknown = w.paymig(["status", "--format", "html", "--run", "no-such-run"]).run();
    unknown.expect_code(2);
}
