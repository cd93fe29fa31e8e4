//! IAM execution roles and Lambda functions, checked through the SDK.

use std::collections::BTreeSet;
use std::io::{Read, Write};

use serde_json::Value;

use super::support::fixture;
use super::support::{is_gone, Paymig, World};
use super::without_database;

#[tokio::test(flavor = "multi_thread")]
async fn the_function_is_deployed_from_dev_with_a_least_privilege_role() {
    let w = World::with(Default::default(), without_database).await;
    w.paymig(["apply", "--yes"]).run().expect_code(0);
    let dev = w
        .prod
        .lambda
        .get_function()
        .function_name("payment-processor-dev")
        .send()
        .await
        .unwrap()
        .configuration
        .unwrap();
    let out = w.prod.lambda.get_function().function_name("payment-processor-prod").send().await.unwrap();
    let f = out.configuration.unwrap();
    assert_eq!(
        (f.runtime(), f.handler(), f.memory_size(), f.timeout()),
        (dev.runtime(), dev.handler(), dev.memory_size(), dev.timeout())
    );
    assert_eq!(f.code_sha256(), dev.code_sha256(), "dev's exact package");
    let env = f.environment().unwrap().variables().unwrap();
    assert_eq!(env.get("TABLE_NAME").map(String::as_str), Some("sessions-prod"), "dev names rewritten");
    assert_eq!(env.get("PARAM_PATH").map(String::as_str), Some("/prod/"));
    assert_eq!(env.get("LOG_LEVEL").map(String::as_str), Some("INFO"), "override from [lambda.overrides]");
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
    assert_eq!(f.kms_key_arn(), Some(key.as_str()));
    let prod_subnets = w.prod.ec2.describe_subnets().set_filters(Some(super::tag_filters())).send().await.unwrap();
    let want: BTreeSet<&str> = prod_subnets.subnets().iter().filter_map(|s| s.subnet_id()).collect();
    let vpc = f.vpc_config().unwrap();
    assert_eq!(vpc.subnet_ids().iter().map(String::as_str).collect::<BTreeSet<_>>(), want, "the prod private subnets");
    let sg = super::support::group_id(&w.prod, "payments-compute-sg-prod").await;
    assert_eq!(vpc.security_group_ids(), [sg]);
    let reserved =
        w.prod.lambda.get_function_concurrency().function_name("payment-processor-prod").send().await.unwrap();
    assert_eq!(
        reserved.reserved_concurrent_executions(),
        Some(100),
        "the override wins over [lambda] reserved_concurrency"
    );
    for alias in ["blue", "green"] {
        w.prod.lambda.get_alias().function_name("payment-processor-prod").name(alias).send().await.unwrap();
    }

    // The role: specific ARNs, no wildcard action, "*" only for the ENI actions.
    assert_eq!(f.role(), Some("arn:aws:iam::123456789012:role/payment-processor-prod-role"));
    let doc = w
        .prod
        .iam
        .get_role_policy()
        .role_name("payment-processor-prod-role")
        .policy_name("paymig-execution")
        .send()
        .await
        .unwrap();
    let policy = paymig::testing::decode_policy(doc.policy_document());
    for st in policy["Statement"].as_array().unwrap() {
        let actions: Vec<&str> = st["Action"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
        assert!(actions.iter().all(|a| !a.contains('*')), "wildcard action in {st}");
        if st["Resource"] == "*" {
            assert!(
                actions.iter().all(
                    |a| a.starts_with("ec2:") && a.contains("NetworkInterface") || a.contains("PrivateIpAddresses")
                ),
                "only ENI actions on *: {st}"
            );
        }
    }
    let text = policy.to_string();
    for arn in [
        "arn:aws:dynamodb:us-east-1:123456789012:table/sessions-prod",
        "arn:aws:logs:us-east-1:123456789012:log-group:/aws/lambda/payment-processor-prod",
        "arn:aws:ssm:us-east-1:123456789012:parameter/prod/*",
        "arn:aws:s3:::payments-audit-prod/*",
        key.as_str(),
    ] {
        assert!(text.contains(arn), "{arn} not in {text}");
    }

    let again = w.paymig(["apply", "--yes"]).run();
    again.expect_code(0);
    assert_eq!(again.mutating_calls(), 0, "{}", again.stderr);

    // validate catches a reservation changed behind paymig's back.
    w.prod
        .lambda
        .put_function_concurrency()
        .function_name("payment-processor-prod")
        .reserved_concurrent_executions(7)
        .send()
        .await
        .unwrap();
    let run = w.paymig(["validate", "--format", "json"]).run();
    assert_eq!(run.code, Some(3));
    let doc: Value = serde_json::from_str(&run.stdout).unwrap();
    assert!(doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["id"] == "lambda.reserved_concurrency" && c["passed"] == false));

    w.paymig(["destroy", "--yes"]).run().expect_code(0);
    assert!(is_gone(w.prod.lambda.get_function().function_name("payment-processor-prod").send().await));
    assert!(is_gone(w.prod.iam.get_role().role_name("payment-processor-prod-role").send().await));
    assert!(w.prod.lambda.get_function().function_name("payment-processor-dev").send().await.is_ok(), "dev untouched");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_package_that_is_not_devs_is_refused() {
    let w = World::with(Default::default(), without_database).await;
    let other = fixture::zip_one("handler.py", b"def handler(e, c):\n    return 'not dev'\n");
    w.prod
        .s3
        .put_object()
        .bucket("payments-artifacts-dev")
        .key("lambda/payment-processor-dev.zip")
        .body(other.into())
        .send()
        .await
        .unwrap();
    let run = w.paymig(["apply", "--yes"]).run();
    run.expect_code(1);
    assert!(run.stdout.contains("refusing to deploy a package that is not dev's"), "{}", run.stdout);
    assert!(
        is_gone(w.prod.lambda.get_function().function_name("payment-processor-prod").send().await),
        "nothing deployed"
    );
}

/// Lambda's runtime deprecation table: a runtime past its block-create
/// date is refused before anything changes, naming the function and the
/// date; a deprecated one that AWS still creates is a warning with its
/// dates, until its block-create date comes.
#[tokio::test(flavor = "multi_thread")]
async fn runtimes_past_their_block_create_date_fail_preflight_and_deprecated_ones_are_warned_about() {
    let w = World::with(Default::default(), without_database).await;
    let role = w.prod.iam.get_role().role_name("payment-processor-dev-role").send().await.unwrap().role.unwrap().arn;
    for (name, runtime) in [
        ("old-batch-dev", aws_sdk_lambda::types::Runtime::Python38),
        ("legacy-dev", aws_sdk_lambda::types::Runtime::Python39),
    ] {
        w.prod
            .lambda
            .create_function()
            .function_name(name)
            .runtime(runtime)
            .handler("h.h")
            .role(&role)
            .code(
                aws_sdk_lambda::types::FunctionCode::builder()
                    .zip_file(aws_smithy_types::Blob::new(fixture::zip_one("h.py", b"x")))
                    .build(),
            )
            .send()
            .await
            .unwrap();
    }
    let text = std::fs::read_to_string(&w.config).unwrap();
    let with = |f: &str| {
        let cfg = w.dir.path().join(format!("{f}.toml"));
        let edited = text.replace("[\"payment-processor-dev\"]", &format!("[\"payment-processor-dev\", \"{f}\"]"));
        std::fs::write(&cfg, edited).unwrap();
        cfg
    };
    let plan = |cfg: &std::path::Path, today: &str| {
        Paymig::new(&w.moto.endpoint, cfg).env("PAYMIG_TODAY", today).args(["plan"]).guard_dev(&w.moto.endpoint).run()
    };
    let blocked = plan(&with("old-batch-dev"), "2026-12-06");
    blocked.expect_code(2);
    for s in ["old-batch-dev", "python3.8", "2025-02-28"] {
        assert!(blocked.stderr.contains(s), "{s}: {}", blocked.stderr);
    }
    assert_eq!(blocked.mutating_calls(), 0);
    let legacy = with("legacy-dev");
    let warned = plan(&legacy, "2026-12-06");
    warned.expect_code(0);
    let out = format!("{}{}", warned.stdout, warned.stderr);
    for s in ["legacy-dev", "python3.9", "deprecated since 2025-12-15", "2027-02-01", "2027-03-03"] {
        assert!(out.contains(s), "{s}: {out}");
    }
    let later = plan(&legacy, "2027-02-01");
    later.expect_code(2);
    assert!(later.stderr.contains("legacy-dev") && later.stderr.contains("since 2027-02-01"), "{}", later.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_package_is_downloaded_from_its_code_location() {
    // moto's Code.Location cannot be downloaded; a loopback server stands in.
    let zip = fixture::zip_one("handler.py", b"def handler(e, c):\n    return 1\n");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let body = zip.clone();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 2048];
        let _ = s.read(&mut buf).unwrap();
        write!(s, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len()).unwrap();
        s.write_all(&body).unwrap();
    });
    let got =
        paymig::testing::download(&format!("http://{addr}/snapshots/123/payment-processor-dev?X-Amz-Signature=abc"))
            .await
            .unwrap();
    server.join().unwrap();
    assert_eq!(got, zip);
    assert_eq!(paymig::testing::code_sha256(&got), paymig::testing::code_sha256(&zip));
    // A missing object is an error, not an empty package.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 2048];
        let _ = s.read(&mut buf);
        let _ = s.write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    });
    let err = paymig::testing::download(&format!("http://{addr}/x")).await.unwrap_err();
    assert_eq!(err.status, Some(403), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_alb_forwards_to_the_live_colour_through_scoped_target_groups() {
    let w = World::with(Default::default(), without_database).await;
    w.paymig(["apply", "--yes"]).run().expect_code(0);
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&fixture::sdk_config(&w.moto.endpoint, "us-east-1").await);
    let lb = elb.describe_load_balancers().names("payments-alb-prod").send().await.unwrap().load_balancers()[0].clone();
    assert_eq!(lb.scheme().map(|s| s.as_str()), Some("internal"));
    let sg = super::support::group_id(&w.prod, "payments-alb-sg-prod").await;
    assert_eq!(lb.security_groups(), [sg]);
    let mut arns = std::collections::BTreeMap::new();
    for colour in ["blue", "green"] {
        let tg =
            elb.describe_target_groups().names(format!("payments-{colour}-prod")).send().await.unwrap().target_groups()
                [0]
            .clone();
        assert_eq!(tg.target_type().map(|t| t.as_str()), Some("lambda"));
        assert_eq!((tg.health_check_enabled(), tg.health_check_path()), (Some(true), Some("/health")));
        let arn = tg.target_group_arn().unwrap().to_owned();
        let health = elb.describe_target_health().target_group_arn(&arn).send().await.unwrap();
        let targets: Vec<&str> = health.target_health_descriptions().iter().filter_map(|d| d.target()?.id()).collect();
        assert_eq!(
            targets,
            [format!("arn:aws:lambda:us-east-1:123456789012:function:payment-processor-prod:{colour}")]
        );
        let policy = w
            .prod
            .lambda
            .get_policy()
            .function_name("payment-processor-prod")
            .qualifier(colour)
            .send()
            .await
            .unwrap()
            .policy
            .unwrap();
        assert!(
            policy.contains("elasticloadbalancing.amazonaws.com") && policy.contains(&arn),
            "invoke permission scoped to {arn}: {policy}"
        );
        arns.insert(colour, arn);
    }
    let listeners = elb.describe_listeners().load_balancer_arn(lb.load_balancer_arn().unwrap()).send().await.unwrap();
    let l = &listeners.listeners()[0];
    assert_eq!(l.port(), Some(80));
    let weights: std::collections::BTreeMap<&str, i32> = l.default_actions()[0]
        .forward_config()
        .unwrap()
        .target_groups()
        .iter()
        .map(|t| {
            (
                arns.iter().find(|(_, a)| Some(a.as_str()) == t.target_group_arn()).map(|(c, _)| *c).unwrap(),
                t.weight().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        weights,
        std::collections::BTreeMap::from([("blue", 100), ("green", 0)]),
        "the live colour takes all traffic"
    );

    assert_eq!(w.paymig(["apply", "--yes"]).run().mutating_calls(), 0);
    w.paymig(["destroy", "--yes"]).run().expect_code(0);
    assert!(is_gone(elb.describe_load_balancers().names("payments-alb-prod").send().await));
    assert!(is_gone(elb.describe_target_groups().names("payments-blue-prod").send().await));
}

/// Waits (up to 20 s) until the listener forwards with `want`: a switch's
/// canary step has taken effect.
async fn wait_for_weights(elb: &aws_sdk_elasticloadbalancingv2::Client, want: std::collections::BTreeMap<String, i32>) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while live_weights(elb).await != want {
        assert!(std::time::Instant::now() < deadline, "the canary step never appeared");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

async fn live_weights(elb: &aws_sdk_elasticloadbalancingv2::Client) -> std::collections::BTreeMap<String, i32> {
    let lb = elb.describe_load_balancers().names("payments-alb-prod").send().await.unwrap().load_balancers()[0]
        .load_balancer_arn()
        .unwrap()
        .to_owned();
    let l = elb.describe_listeners().load_balancer_arn(lb).send().await.unwrap().listeners()[0].clone();
    let mut out = std::collections::BTreeMap::new();
    for colour in ["blue", "green"] {
        let arn =
            elb.describe_target_groups().names(format!("payments-{colour}-prod")).send().await.unwrap().target_groups()
                [0]
            .target_group_arn()
            .unwrap()
            .to_owned();
        let w = l.default_actions()[0]
            .forward_config()
            .unwrap()
            .target_groups()
            .iter()
            .find(|t| t.target_group_arn() == Some(arn.as_str()))
            .and_then(|t| t.weight())
            .unwrap();
        out.insert(colour.to_owned(), w);
    }
    out
}

fn weights(blue: i32, green: i32) -> std::collections::BTreeMap<String, i32> {
    std::collections::BTreeMap::from([("blue".to_owned(), blue), ("green".to_owned(), green)])
}

#[tokio::test(flavor = "multi_thread")]
async fn switch_shifts_in_canary_steps_reverts_on_alarm_and_rolls_back() {
    let w = World::with(Default::default(), without_database).await;
    w.paymig(["apply", "--yes"]).run().expect_code(0);
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&fixture::sdk_config(&w.moto.endpoint, "us-east-1").await);
    assert_eq!(live_weights(&elb).await, weights(100, 0));

    // A one-second canary is shorter than any alarm can react (the error
    // rate's five-minute period plus Lambda's metrics delay, the slowest; a
    // replicated dev alarm's two minutes): said before the first change,
    // naming the alarm and the interval that would do, and the alarms are
    // watched for that window after the last step (scaled down here).
    let started = std::time::Instant::now();
    let run = w
        .paymig(["--log-format", "json", "switch", "--to", "green", "--canary", "10", "--interval", "1", "--yes"])
        .env("PAYMIG_ALARM_WINDOW_SCALE", "0.02")
        .run();
    run.expect_code(0);
    assert!(run.stdout.contains("green 10%") && run.stdout.contains("green 100%"), "{}", run.stdout);
    assert_eq!(live_weights(&elb).await, weights(0, 100));
    let warning = run
        .stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|e| e["level"] == "WARN" && e["alarm"].is_string())
        .unwrap_or_else(|| panic!("no warning event: {}", run.stderr));
    assert_eq!(warning["alarm"], "payment-processor-prod-error-rate", "the slowest alarm: {warning}");
    assert_eq!((warning["interval_s"].as_u64(), warning["suggested_interval_s"].as_u64()), (Some(1), Some(360)));
    assert!(run.stdout.contains("watching the alarms for 7s"), "{}", run.stdout);
    assert!(started.elapsed() >= std::time::Duration::from_secs(7), "it watched after the last step");
    let steps = w
        .journal_lines()
        .iter()
        .filter(|l| l["type"] == "intent" && l["kind"] == "listener" && l["op"] == "update")
        .count();
    assert_eq!(steps, 2, "each step journaled with the previous weights");

    // rollback restores the weights the switch started from.
    w.paymig(["rollback", "--yes"]).run().expect_code(0);
    assert_eq!(live_weights(&elb).await, weights(100, 0));

    // SIGTERM (CodeBuild stopping the build) during the canary interval:
    // nothing more is changed, the run ends `interrupted` with exit 143 and
    // says how to go back; rollback restores the starting weights, and the
    // lock is released (the switches below run).
    let child = w.paymig(["switch", "--to", "green", "--canary", "30", "--interval", "30", "--yes"]).spawn();
    wait_for_weights(&elb, weights(70, 30)).await;
    // SAFETY: a plain kill(2) of our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let out =
        super::support::to_run(tokio::task::spawn_blocking(move || child.wait_with_output()).await.unwrap().unwrap());
    assert_eq!(out.code, Some(143), "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("SIGTERM: stopped with green at 30%") && out.stdout.contains("paymig rollback"),
        "{}",
        out.stdout
    );
    assert_eq!(live_weights(&elb).await, weights(70, 30), "nothing changed after the signal");
    let runs: Vec<serde_json::Value> = w.journal_lines().into_iter().filter(|l| l["type"] == "run_end").collect();
    assert_eq!(runs.last().map(|r| r["status"].clone()), Some(serde_json::json!("interrupted")), "{runs:?}");
    w.paymig(["rollback", "--yes"]).run().expect_code(0);
    assert_eq!(live_weights(&elb).await, weights(100, 0), "rollback restores the weights it started from");

    // An alarm firing during the canary interval reverts the shift.
    let child = w.paymig(["switch", "--to", "green", "--canary", "20", "--interval", "20", "--yes"]).spawn();
    wait_for_weights(&elb, weights(80, 20)).await;
    w.prod
        .cloudwatch
        .set_alarm_state()
        .alarm_name("payment-processor-prod-error-rate")
        .state_value(aws_sdk_cloudwatch::types::StateValue::Alarm)
        .state_reason("test: errors")
        .send()
        .await
        .unwrap();
    let out =
        super::support::to_run(tokio::task::spawn_blocking(move || child.wait_with_output()).await.unwrap().unwrap());
    assert_eq!(out.code, Some(1), "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("reverted") && out.stderr.contains("payment-processor-prod-error-rate"),
        "{}",
        out.stderr
    );
    assert_eq!(live_weights(&elb).await, weights(100, 0), "back to the weights it started from");

    // While an alarm is in ALARM, switch refuses before changing anything.
    let refused = w.paymig(["switch", "--to", "green", "--yes"]).run();
    refused.expect_code(2);
    assert!(refused.stderr.contains("alarms in ALARM"), "{}", refused.stderr);
    assert_eq!(live_weights(&elb).await, weights(100, 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn ip_target_groups_drain_connections_where_lambda_ones_cannot() {
    let w = World::with(Default::default(), |t| {
        without_database(t).replace("target_type = \"lambda\"", "target_type = \"ip\"")
    })
    .await;
    w.paymig(["apply", "--yes"]).run().expect_code(0);
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&fixture::sdk_config(&w.moto.endpoint, "us-east-1").await);
    for colour in ["blue", "green"] {
        let tg =
            elb.describe_target_groups().names(format!("payments-{colour}-prod")).send().await.unwrap().target_groups()
                [0]
            .clone();
        assert_eq!(tg.target_type().map(|t| t.as_str()), Some("ip"));
        let attrs = elb
            .describe_target_group_attributes()
            .target_group_arn(tg.target_group_arn().unwrap())
            .send()
            .await
            .unwrap();
        let delay = attrs
            .attributes()
            .iter()
            .find(|a| a.key() == Some("deregistration_delay.timeout_seconds"))
            .and_then(|a| a.value());
        assert_eq!(delay, Some("30"));
    }
    // IP targets sit in the compute group: the ALB reaches them (traffic and
    // health checks) on the target port, and nothing else is opened.
    let ec2 = aws_sdk_ec2::Client::new(&fixture::sdk_config(&w.moto.endpoint, "us-east-1").await);
    let group = |name: &'static str| {
        let ec2 = ec2.clone();
        async move {
            let out = ec2
                .describe_security_groups()
                .filters(aws_sdk_ec2::types::Filter::builder().name("group-name").values(name).build())
                .send()
                .await
                .unwrap();
            out.security_groups()[0].clone()
        }
    };
    let (alb, compute) = (group("payments-alb-sg-prod").await, group("payments-compute-sg-prod").await);
    let peers = |perms: &[aws_sdk_ec2::types::IpPermission]| -> Vec<(Option<i32>, Vec<String>)> {
        perms
            .iter()
            .map(|p| {
                (
                    p.from_port(),
                    p.user_id_group_pairs().iter().filter_map(|g| g.group_id().map(str::to_owned)).collect::<Vec<_>>(),
                )
            })
            .filter(|(_, groups)| !groups.is_empty())
            .collect()
    };
    let port = Some(80);
    assert_eq!(alb.ip_permissions_egress().len(), 1, "the ALB group's only egress: {:?}", alb.ip_permissions_egress());
    assert_eq!(peers(alb.ip_permissions_egress()), [(port, vec![compute.group_id().unwrap().to_owned()])]);
    assert!(
        peers(compute.ip_permissions()).contains(&(port, vec![alb.group_id().unwrap().to_owned()])),
        "compute admits the ALB on the target port: {:?}",
        compute.ip_permissions()
    );
    assert_eq!(w.paymig(["apply", "--yes"]).run().mutating_calls(), 0);
    w.paymig(["validate", "--format", "json"]).run().expect_code(0);
}

#[tokio::test(flavor = "multi_thread")]
async fn environment_values_never_reach_the_journal_or_the_report() {
    const CANARY: &str = "CANARY-ENV-SECRET-3f9a";
    let w = World::with(Default::default(), without_database).await;
    // Dev's function carries a secret in its environment.
    w.prod
        .lambda
        .update_function_configuration()
        .function_name("payment-processor-dev")
        .environment(
            aws_sdk_lambda::types::Environment::builder()
                .variables("TABLE_NAME", "sessions-dev")
                .variables("DB_PASSWORD", CANARY)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let mut outputs = String::new();
    let apply = w.paymig(["apply", "--yes"]).run();
    apply.expect_code(0);
    let prod = w.prod.lambda.get_function_configuration().function_name("payment-processor-prod").send().await.unwrap();
    assert_eq!(
        prod.environment().unwrap().variables().unwrap().get("DB_PASSWORD").map(String::as_str),
        Some(CANARY),
        "deployed as dev has it"
    );
    // Drift behind paymig's back: validate reports it, apply journals the
    // previous configuration.
    w.prod
        .lambda
        .update_function_configuration()
        .function_name("payment-processor-prod")
        .environment(
            aws_sdk_lambda::types::Environment::builder().variables("DB_PASSWORD", "CANARY-PROD-EDIT-77c1").build(),
        )
        .send()
        .await
        .unwrap();
    for args in [
        &["validate", "--format", "json"][..],
        &["validate"],
        &["validate", "--format", "html"],
        &["apply", "--yes"],
        &["status"],
    ] {
        let run = w.paymig(args).run();
        outputs.push_str(&run.stdout);
        outputs.push_str(&run.stderr);
    }
    assert!(outputs.contains("environment"), "the drift is reported by field");
    outputs.push_str(&apply.stdout);
    outputs.push_str(&apply.stderr);
    outputs.push_str(&std::fs::read_to_string(w.journal_path()).unwrap());
    for secret in [CANARY, "CANARY-PROD-EDIT-77c1"] {
        assert!(!outputs.contains(secret), "{secret} leaked");
    }
}
