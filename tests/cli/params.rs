//! SSM parameter migration, checked through the SDK.

use aws_sdk_ssm::types::ParameterType;
use futures::StreamExt;

use super::support::World;
use super::without_database;

async fn put(w: &World, name: &str, value: &str, ty: ParameterType) {
    w.prod.ssm.put_parameter().name(name).value(value).r#type(ty).overwrite(true).send().await.unwrap();
}

async fn get(w: &World, name: &str) -> Option<String> {
    w.prod.ssm.get_parameter().name(name).send().await.ok().and_then(|o| o.parameter?.value)
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_are_excluded_by_type_and_name_and_their_values_never_appear() {
    let w = World::with(Default::default(), without_database).await;
    const CANARIES: [&str; 3] = ["CANARY-SECURE-7c1f", "CANARY-TOKEN-19ab", "CANARY-KEY-55e0"];
    put(&w, "/dev/payments/ledger-secret", CANARIES[0], ParameterType::SecureString).await;
    put(&w, "/dev/payments/api-token", CANARIES[1], ParameterType::String).await;
    put(&w, "/dev/payments/stripe-private-key", CANARIES[2], ParameterType::String).await;

    let mut outputs = String::new();
    for args in [
        &["plan"][..],
        &["params", "--dry-run"],
        &["apply", "--yes"],
        &["params", "--yes"],
        &["status"],
        &["--log-format", "json", "apply", "--yes"],
        &["rollback", "--yes"],
    ] {
        let run = w.paymig(args).run();
        assert!(run.code == Some(0), "{args:?}: {}", run.stderr);
        outputs.push_str(&run.stdout);
        outputs.push_str(&run.stderr);
    }
    for format in ["md", "json", "html"] {
        let run = w.paymig(["validate", "--format", format]).run();
        outputs.push_str(&run.stdout);
        outputs.push_str(&run.stderr);
    }
    let dry = w.paymig(["params", "--dry-run"]).run();
    for name in [
        "/dev/payments/ledger-secret (SecureString",
        "/dev/payments/api-token (excluded by",
        "/dev/payments/stripe-private-key (excluded by",
        "/dev/payments/db-password (SecureString",
    ] {
        assert!(dry.stdout.contains(name), "{name} not reported: {}", dry.stdout);
    }
    outputs.push_str(&std::fs::read_to_string(w.journal_path()).unwrap());
    for c in CANARIES.iter().chain(["dev-only-password"].iter()) {
        assert!(!outputs.contains(c), "secret value {c} leaked");
    }
    w.paymig(["apply", "--yes"]).run().expect_code(0);
    for name in [
        "/prod/payments/ledger-secret",
        "/prod/payments/api-token",
        "/prod/payments/stripe-private-key",
        "/prod/payments/db-password",
    ] {
        assert!(get(&w, name).await.is_none(), "{name} was copied");
    }
    assert_eq!(get(&w, "/prod/payments/table").await.as_deref(), Some("sessions-prod"));
}

#[tokio::test(flavor = "multi_thread")]
async fn values_are_rewritten_or_flagged_and_a_conflict_is_only_overwritten_on_request() {
    let w = World::with(Default::default(), without_database).await;
    put(&w, "/dev/payments/db-host", "payments-dev.cluster-abc.us-east-1.rds.amazonaws.com", ParameterType::String)
        .await;
    put(&w, "/dev/payments/legacy-url", "http://legacy-dev.internal:8080", ParameterType::String).await;
    put(&w, "/dev/payments/tables", "sessions-dev,payments-audit-dev", ParameterType::StringList).await;
    put(&w, "/prod/payments/log-level", "INFO", ParameterType::String).await;

    let apply = w.paymig(["apply", "--yes"]).run();
    apply.expect_code(0);
    assert!(apply.stdout.contains("conflict: /prod/payments/log-level"), "{}", apply.stdout);
    assert!(apply.stdout.contains("! /dev/payments/legacy-url: legacy-dev is copied unchanged"), "{}", apply.stdout);
    assert_eq!(
        get(&w, "/prod/payments/log-level").await.as_deref(),
        Some("INFO"),
        "not overwritten without --overwrite"
    );
    // An endpoint is never rewritten by text (its `cluster-<id>` part is one
    // cluster's): with no prod cluster to map it to, it is named and copied
    // unchanged (the database case is in `references`).
    assert_eq!(
        get(&w, "/prod/payments/db-host").await.as_deref(),
        Some("payments-dev.cluster-abc.us-east-1.rds.amazonaws.com")
    );
    assert!(
        apply.stdout.contains(
            "! /dev/payments/db-host: payments-dev.cluster-abc.us-east-1.rds.amazonaws.com is copied unchanged"
        ),
        "{}",
        apply.stdout
    );
    assert_eq!(
        get(&w, "/prod/payments/legacy-url").await.as_deref(),
        Some("http://legacy-dev.internal:8080"),
        "flagged values are copied unchanged"
    );
    let list = w.prod.ssm.get_parameter().name("/prod/payments/tables").send().await.unwrap().parameter.unwrap();
    assert_eq!(list.r#type(), Some(&ParameterType::StringList), "type preserved");
    assert_eq!(list.value(), Some("sessions-prod,payments-audit-prod"));

    let over = w.paymig(["params", "--overwrite", "--yes"]).run();
    over.expect_code(0);
    assert_eq!(get(&w, "/prod/payments/log-level").await.as_deref(), Some("DEBUG"));
    let again = w.paymig(["params", "--yes"]).run();
    again.expect_code(0);
    assert_eq!(again.mutating_calls(), 0, "{}", again.stderr);

    // Rollback undoes the newest run that changed something: the overwrite.
    w.paymig(["rollback", "--yes"]).run().expect_code(0);
    assert_eq!(get(&w, "/prod/payments/log-level").await.as_deref(), Some("INFO"), "the previous value is restored");
    assert!(get(&w, "/prod/payments/db-host").await.is_some(), "the apply run's copies stay");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_thousand_parameters_migrate_without_a_failure() {
    let w = World::with(Default::default(), without_database).await;
    let puts = (0..2000).map(|i| {
        let ssm = w.prod.ssm.clone();
        async move {
            ssm.put_parameter()
                .name(format!("/dev/bulk/group{:02}/p{i:04}", i % 40))
                .value(format!("value-{i}"))
                .r#type(ParameterType::String)
                .send()
                .await
                .unwrap();
        }
    });
    futures::stream::iter(puts).buffer_unordered(16).collect::<Vec<_>>().await;
    let run = w.paymig(["params", "--yes"]).run();
    run.expect_code(0);
    let count = || async {
        let mut pages = w
            .prod
            .ssm
            .describe_parameters()
            .max_results(50)
            .parameter_filters(
                aws_sdk_ssm::types::ParameterStringFilter::builder()
                    .key("Path")
                    .option("Recursive")
                    .values("/prod/bulk")
                    .build()
                    .unwrap(),
            )
            .into_paginator()
            .send();
        let mut count = 0;
        while let Some(p) = pages.next().await {
            count += p.unwrap().parameters().len();
        }
        count
    };
    assert_eq!(count().await, 2000);
    assert_eq!(get(&w, "/prod/bulk/group07/p1847").await.as_deref(), Some("value-1847"));
    let tags = w
        .prod
        .ssm
        .list_tags_for_resource()
        .resource_type(aws_sdk_ssm::types::ResourceTypeForTagging::Parameter)
        .resource_id("/prod/bulk/group07/p1847")
        .send()
        .await
        .unwrap();
    assert!(tags.tag_list().iter().any(|t| t.key() == "paymig:migration" && t.value() == "payments"));
    let again = w.paymig(["params", "--yes"]).run();
    again.expect_code(0);
    assert_eq!(again.mutating_calls(), 0);

    // Rollback deletes the copies ten at a time (DeleteParameters), not one
    // call per parameter, and every one is gone.
    // Counted on the wire, not by paymig's own accounting.
    let proxy = crate::support::proxy::Proxy::start(crate::support::proxy::ProxyConfig::new(&w.moto.endpoint));
    let back = w.paymig(["rollback", "--yes"]).via(&proxy.endpoint).run();
    back.expect_code(0);
    let ops =
        |op: &str| proxy.stats.calls.lock().unwrap().iter().filter(|c| c.service == "ssm" && c.operation == op).count();
    assert_eq!(ops("DeleteParameter"), 0, "{}", back.stderr);
    assert!((200..=210).contains(&ops("DeleteParameters")), "{} batches", ops("DeleteParameters"));
    assert_eq!(count().await, 0);
    let journal = w.journal_lines();
    let undone = journal.iter().filter(|e| e["type"] == "undone").count();
    assert!(undone >= 2000, "every copy journaled as undone: {undone}");
}

#[tokio::test(flavor = "multi_thread")]
async fn no_command_verbose_or_json_leaks_a_secret_or_reads_one_decrypted() {
    use crate::support::proxy::{Proxy, ProxyConfig};
    // Without Aurora: each round re-creates the stack, and moto cannot
    // re-create a cluster within a minute of deleting it.
    let w = World::with(Default::default(), without_database).await;
    const CANARIES: [&str; 4] = ["CANARY-SECURE-a91c", "CANARY-PASSWORD-3d07", "CANARY-TOKEN-e2b4", "CANARY-ENV-77f0"];
    put(&w, "/dev/payments/ledger-secret", CANARIES[0], ParameterType::SecureString).await;
    put(&w, "/dev/payments/smtp-password", CANARIES[1], ParameterType::String).await;
    put(&w, "/dev/payments/webhook-token", CANARIES[2], ParameterType::String).await;
    let dev = crate::support::fixture::Clients::new(&w.moto.endpoint, "us-east-1", None).await;
    dev.lambda
        .update_function_configuration()
        .function_name("payment-processor-dev")
        .environment(aws_sdk_lambda::types::Environment::builder().variables("SIGNING_SECRET", CANARIES[3]).build())
        .send()
        .await
        .unwrap();
    // Every request goes through a proxy that sees each SSM read on the wire.
    let proxy = Proxy::start(ProxyConfig::new(&w.moto.endpoint));
    let report = w.dir.path().join("report.html");
    let report_arg = report.display().to_string();
    let mut outputs = String::new();
    for style in [&["-v"][..], &["-vv"], &["--log-format", "json"], &["--log-format", "json", "-v"]] {
        for args in [
            &["plan"][..],
            &["plan", "--format", "json"],
            &["params", "--dry-run"],
            &["apply", "--yes"],
            &["params", "--yes"],
            &["status"],
            &["status", "--format", "json"],
            &["iam-policy"],
            &["validate", "--format", "md"],
            &["validate", "--format", "json"],
            &["validate", "--format", "html", "--out", &report_arg],
            &["switch", "--to", "green", "--yes"],
            &["rollback", "--yes"],
            &["destroy", "--yes"],
        ] {
            let all: Vec<&str> = style.iter().chain(args).copied().collect();
            let run = w.paymig(&all).via(&proxy.endpoint).run();
            assert!(matches!(run.code, Some(0) | Some(3)), "{all:?}: {}", run.stderr);
            if style.contains(&"json") {
                let mut accounted = false;
                for line in run.stderr.lines() {
                    let event: serde_json::Value =
                        serde_json::from_str(line).unwrap_or_else(|_| panic!("{all:?}: not JSON: {line}"));
                    if event["message"] == "api calls" {
                        assert_eq!(event["decrypting_reads"], 0, "{all:?}: {line}");
                        accounted = true;
                    }
                }
                assert!(
                    accounted || ["status", "rollback"].contains(&args[0]),
                    "{all:?}: no api calls event in {}",
                    run.stderr
                );
            } else {
                assert!(!run.stderr.contains("WITH DECRYPTION"), "{all:?}: {}", run.stderr);
            }
            outputs.push_str(&run.stdout);
            outputs.push_str(&run.stderr);
            if report.exists() {
                outputs.push_str(&std::fs::read_to_string(&report).unwrap());
            }
        }
        outputs.push_str(&std::fs::read_to_string(w.journal_path()).unwrap());
    }
    assert!(outputs.len() > 100_000, "every command said something: {} bytes", outputs.len());
    for c in CANARIES {
        assert!(!outputs.contains(c), "secret value {c} leaked");
    }
    assert_eq!(proxy.stats.decrypting_ssm_reads.load(std::sync::atomic::Ordering::Relaxed), 0);
    assert!(proxy.stats.requests.load(std::sync::atomic::Ordering::Relaxed) > 500);
}

/// One SIGINT during the parameter writes: the step's line says
/// `interrupted: N copied, M not started (re-run to resume)` once, not a
/// phrase per parameter. A second signal ends the process at once with a
/// final line of its own (no running line left behind), and the next run
/// copies the rest.
#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_copy_is_summarised_and_a_second_signal_stops_at_once() {
    use crate::support::proxy::{Proxy, ProxyConfig};
    use std::time::Duration;
    let w = World::with(Default::default(), without_database).await;
    const BULK: usize = 300;
    futures::stream::iter(0..BULK)
        .for_each_concurrent(16, |i| {
            let w = &w;
            async move { put(w, &format!("/dev/payments/bulk/p{i:03}"), "v", ParameterType::String).await }
        })
        .await;
    let proxy = Proxy::start(ProxyConfig { latency: Duration::from_millis(40), ..ProxyConfig::new(&w.moto.endpoint) });
    let writes = |w: &World| w.journal_lines().iter().filter(|l| l["type"] == "intent").count();
    async fn wait_until(w: &World, writes: impl Fn(&World) -> usize, n: usize) {
        let t = std::time::Instant::now();
        while writes(w) < n && t.elapsed() < Duration::from_secs(60) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    let before = writes(&w);
    let child = w.paymig(["params", "--yes"]).via(&proxy.endpoint).spawn();
    wait_until(&w, writes, before + 20).await;
    // SAFETY: a plain kill(2) of our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let once =
        crate::support::to_run(tokio::task::spawn_blocking(move || child.wait_with_output().unwrap()).await.unwrap());
    once.expect_code(130);
    let summary = once.stdout.lines().find(|l| l.starts_with("paymig params: interrupted: ")).unwrap_or_else(|| {
        panic!("no summary line:\n{}", once.stdout);
    });
    assert!(summary.contains(" copied, ") && summary.ends_with(" not started (re-run to resume)"), "{summary}");
    let all = format!("{}{}", once.stdout, once.stderr);
    assert!(all.matches("asked to stop").count() <= 1, "the reason is said once:\n{all}");

    // Calls slow enough to be in flight when the second signal comes.
    let slow = Proxy::start(ProxyConfig { latency: Duration::from_millis(300), ..ProxyConfig::new(&w.moto.endpoint) });
    let before = writes(&w);
    let child = w.paymig(["params", "--yes"]).via(&slow.endpoint).spawn();
    wait_until(&w, writes, before + 1).await;
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    tokio::time::sleep(Duration::from_millis(100)).await;
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let twice =
        crate::support::to_run(tokio::task::spawn_blocking(move || child.wait_with_output().unwrap()).await.unwrap());
    twice.expect_code(130);
    let last = twice.stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default();
    assert!(last.contains("stopped at once by a second SIGINT") && last.contains("re-run"), "{}", twice.stderr);

    w.paymig(["params", "--yes"]).run().expect_code(0);
    for i in [0, BULK / 2, BULK - 1] {
        assert_eq!(get(&w, &format!("/prod/payments/bulk/p{i:03}")).await.as_deref(), Some("v"));
    }
}
