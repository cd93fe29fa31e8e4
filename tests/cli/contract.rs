//! SPEC contract items that are about the command line rather than one
//! service: `plan --detailed-exitcode`, `rollback --dry-run` / `--run ID`,
//! `destroy --dry-run`, `unlock`, and SIGINT/SIGTERM handling. Every
//! outcome is checked in the journal and in prod through the SDK.

use std::time::Duration;

use crate::campaigns::check_journal;
use crate::support::proxy::{Proxy, ProxyConfig};
use crate::support::World;
use crate::without_database;

fn journal_bytes(w: &World) -> Vec<u8> {
    std::fs::read(w.journal_path()).unwrap_or_default()
}

fn run_ids(w: &World) -> Vec<String> {
    w.journal_lines()
        .iter()
        .filter(|l| l["type"] == "run_start")
        .filter_map(|l| l["run"].as_str().map(str::to_owned))
        .collect()
}

async fn rotation(w: &World) -> bool {
    let key = w.prod.kms.describe_key().key_id("alias/payments-prod").send().await.unwrap().key_metadata.unwrap();
    w.prod.kms.get_key_rotation_status().key_id(key.key_id()).send().await.unwrap().key_rotation_enabled()
}

#[tokio::test(flavor = "multi_thread")]
async fn detailed_exitcode_dry_runs_and_named_rollbacks() {
    let w = World::with(Default::default(), without_database).await;
    let pending = w.paymig(["plan", "--detailed-exitcode"]).guard_dev(&w.moto.endpoint).run();
    pending.expect_code(5);
    assert!(pending.stdout.contains("to create"), "the plan is printed: {}", pending.stdout);
    assert!(!pending.stderr.contains("error:"), "changes pending is no error: {}", pending.stderr);
    w.paymig(["plan"]).run().expect_code(0);
    w.paymig(["apply", "--yes"]).run().expect_code(0);
    w.paymig(["plan", "--detailed-exitcode"]).run().expect_code(0);

    // Drift on a resource of the first run, mended by a second run.
    let key = w.prod.kms.describe_key().key_id("alias/payments-prod").send().await.unwrap().key_metadata.unwrap();
    w.prod.kms.disable_key_rotation().key_id(key.key_id()).send().await.unwrap();
    w.paymig(["plan", "--detailed-exitcode"]).run().expect_code(5);
    w.paymig(["apply", "--yes"]).run().expect_code(0);
    assert!(rotation(&w).await);
    let runs = run_ids(&w);
    let (first, second) = (runs[0].clone(), runs[runs.len() - 1].clone());

    // Dry runs list what they would do and change nothing.
    let before = journal_bytes(&w);
    let dry = w.paymig(["rollback", "--dry-run"]).guard_dev(&w.moto.endpoint).run();
    dry.expect_code(0);
    assert!(dry.stdout.contains(&format!("would undo run {second}")), "{}", dry.stdout);
    assert!(dry.stdout.contains("account 123456789012, region us-east-1"), "{}", dry.stdout);
    assert!(dry.stdout.contains("restore kms_key alias/payments-prod"), "{}", dry.stdout);
    assert_eq!(dry.mutating_calls(), 0);
    let all = w.paymig(["destroy", "--dry-run"]).run();
    all.expect_code(0);
    assert!(all.stdout.contains("delete vpc payments-prod (vpc-"), "{}", all.stdout);
    assert!(all.stdout.contains("nothing was changed"));
    assert_eq!(all.mutating_calls(), 0);
    assert_eq!(journal_bytes(&w), before, "dry runs write nothing to the journal");
    assert!(rotation(&w).await, "dry runs change nothing in prod");

    // The first run cannot be rolled back while the second depends on it.
    let refused = w.paymig(["rollback", "--run", &first, "--yes"]).run();
    refused.expect_code(2);
    assert!(refused.stderr.contains(&format!("in run {second}")), "names the later run: {}", refused.stderr);
    w.paymig(["rollback", "--run", "no-such-run", "--yes"]).run().expect_code(2);
    assert_eq!(journal_bytes(&w), before);

    // The second run by name: rotation back off, the first run's key stays.
    let named = w.paymig(["rollback", "--run", &second, "--yes"]).run();
    named.expect_code(0);
    assert!(named.stdout.contains("done [kms] restore kms_key"), "{}", named.stdout);
    assert!(!rotation(&w).await);

    // Destroy after another drift-and-mend: the setting change of a key the
    // journal created goes with the key, with no call to revert it.
    w.paymig(["apply", "--yes"]).run().expect_code(0);
    assert!(rotation(&w).await);
    let item = aws_sdk_dynamodb::types::AttributeValue::S("s-1".into());
    w.prod.dynamodb.put_item().table_name("sessions-prod").item("session_id", item).send().await.unwrap();
    let destroy = w.paymig(["--log-format", "json", "destroy", "--yes"]).run();
    destroy.expect_code(0);
    // Unattended, the events name the data at stake and every deletion.
    let at_risk = destroy.events("data at risk");
    assert!(
        at_risk.iter().any(|e| e["name"] == "sessions-prod" && e["holds"].as_str().unwrap().contains("1 item")),
        "{at_risk:?}"
    );
    let undone = destroy.events("undone");
    for (kind, name) in
        [("dynamodb_table", "sessions-prod"), ("vpc", "payments-prod"), ("kms_key", "alias/payments-prod")]
    {
        assert!(
            undone.iter().any(|e| e["action"] == "deleted" && e["kind"] == kind && e["name"] == name),
            "{kind} {name} in {undone:?}"
        );
    }
    let ops = destroy.operations();
    assert_eq!(ops["kms"]["DisableKeyRotation"], serde_json::Value::Null, "no revert before the delete: {ops}");
    assert!(ops["kms"]["ScheduleKeyDeletion"].as_u64() >= Some(1), "{ops}");
    check_journal(&w.journal_path(), true).unwrap();
    let keys = w.prod.kms.describe_key().key_id(key.key_id()).send().await.unwrap().key_metadata.unwrap();
    assert_eq!(keys.key_state().map(|s| s.as_str()), Some("PendingDeletion"));
}

#[tokio::test(flavor = "multi_thread")]
async fn unlock_removes_a_dead_runs_lock_and_never_a_live_one() {
    let w = World::with(Default::default(), without_database).await;
    w.paymig(["unlock", "--yes"]).run().expect_code(0);
    // A run killed while holding the lock leaves its note behind.
    let killed = w.paymig(["apply", "--yes"]).env("PAYMIG_TEST_KILL_AFTER_WRITES", "3").run();
    assert!(killed.killed, "{}", killed.stderr);
    let lock = w.dir.path().join("journal/payments/lock");
    assert!(!std::fs::read_to_string(&lock).unwrap().trim().is_empty(), "the dead run's note is left");
    w.paymig(["unlock"]).run().expect_code(2); // no terminal, no --yes
    let unlocked = w.paymig(["unlock", "--yes"]).run();
    unlocked.expect_code(0);
    assert!(unlocked.stdout.contains("removed the lock left by"), "{}", unlocked.stdout);
    assert!(std::fs::read_to_string(&lock).unwrap().trim().is_empty());

    // A live holder (a slow apply) is never unlocked.
    // Slow enough (150 ms a call) that the holder is still running through
    // the unlock and the short wait below, on a loaded machine too.
    let proxy = Proxy::start(ProxyConfig { latency: Duration::from_millis(150), ..ProxyConfig::new(&w.moto.endpoint) });
    let mut child = w.paymig(["apply", "--yes"]).via(&proxy.endpoint).spawn();
    let t = std::time::Instant::now();
    while std::fs::read_to_string(&lock).unwrap_or_default().trim().is_empty() && t.elapsed() < Duration::from_secs(30)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Started while the holder surely holds the lock: it must wait for it.
    // (No dev fingerprint before it: it must start at once.)
    let waiter =
        crate::support::Paymig::new(&w.moto.endpoint, &w.config).args(["apply", "--yes", "--lock-timeout", "5m"]);
    let waiter = tokio::task::spawn_blocking(move || waiter.run());
    let refused = w.paymig(["unlock", "--yes"]).run();
    refused.expect_code(4);
    assert!(refused.stderr.contains("alive"), "{}", refused.stderr);
    // --lock-timeout: a short wait still meets the holder (exit 4); a long
    // one waits for it and then runs.
    let short = w.paymig(["apply", "--yes", "--lock-timeout", "1s"]).run();
    short.expect_code(4);
    assert!(short.stderr.contains("waiting up to 1s"), "{}", short.stderr);
    // The help says what to do: wait, or `paymig unlock` (never "by hand").
    assert!(short.stderr.contains("`paymig unlock`") && !short.stderr.contains("by hand"), "{}", short.stderr);
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap()).await.unwrap();
    assert_eq!(status.code(), Some(0));
    let waited = waiter.await.unwrap();
    waited.expect_code(0);
    assert!(waited.stderr.contains("waiting up to 300s"), "{}", waited.stderr);
    assert_eq!(waited.mutating_calls(), 0, "it ran after the holder finished: {}", waited.stderr);
    check_journal(&w.journal_path(), true).unwrap();
}

/// SIGTERM (how CodeBuild stops a build) and SIGINT in the middle of an
/// apply: no new call starts, the calls in flight finish and are journaled,
/// the lock is released, exit 143/130 saying to re-run; the re-run resumes
/// to the same stack with nothing duplicated.
#[tokio::test(flavor = "multi_thread")]
async fn a_signal_mid_run_stops_cleanly_and_the_next_run_resumes() {
    use crate::support::inventory::{duplicates, prod_inventory};
    let w = World::new().await;
    let proxy = Proxy::start(ProxyConfig { latency: Duration::from_millis(25), ..ProxyConfig::new(&w.moto.endpoint) });
    for (signal, code) in [(libc::SIGTERM, 143), (libc::SIGINT, 130)] {
        let lines_before = w.journal_lines().len();
        let child = w.paymig(["apply", "--yes"]).via(&proxy.endpoint).spawn();
        let t = std::time::Instant::now();
        while w.journal_lines().len() < lines_before + 12 && t.elapsed() < Duration::from_secs(60) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // SAFETY: a plain kill(2) of our own child.
        unsafe { libc::kill(child.id() as libc::pid_t, signal) };
        let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap()).await.unwrap();
        let run = crate::support::to_run(out);
        run.expect_code(code);
        assert!(run.stderr.contains("re-run the same command to resume"), "{}", run.stderr);
        check_journal(&w.journal_path(), true).expect("every intent journaled with its outcome");
        let ends: Vec<String> = w
            .journal_lines()
            .iter()
            .filter(|l| l["type"] == "run_end")
            .filter_map(|l| l["status"].as_str().map(str::to_owned))
            .collect();
        assert_eq!(ends.last().map(String::as_str), Some("interrupted"), "{ends:?}");
        let lock = w.dir.path().join("journal/payments/lock");
        assert!(std::fs::read_to_string(&lock).unwrap().trim().is_empty(), "the lock is released");
    }
    let resumed = w.paymig(["apply", "--yes"]).guard_dev(&w.moto.endpoint).run();
    resumed.expect_code(0);
    let inv = prod_inventory(&w.moto.endpoint, "prod").await;
    assert!(duplicates(&inv).is_empty(), "{:?}", duplicates(&inv));
    let again = w.paymig(["apply", "--yes"]).run();
    again.expect_code(0);
    assert_eq!(again.mutating_calls(), 0, "{}", again.stderr);
}
