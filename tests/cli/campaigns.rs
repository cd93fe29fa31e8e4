//! Reliability campaigns on the full demo stack: runs killed (SIGKILL) at
//! journal boundaries and at seeded random times, and runs through a proxy
//! injecting seeded faults. After each: convergence, no duplicate of any
//! resource kind, a consistent journal, a destroy that leaves nothing — and
//! dev untouched (fingerprinted around each round, [`DevGuard`]).
//!
//! Each round migrates to its own environment suffix (`k001`, `k002`…) with
//! its own journal, so rounds run side by side on one emulator without
//! meeting each other's resources.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures::StreamExt;
use rand::{Rng, SeedableRng};

use crate::support::inventory::{duplicates, prod_inventory, Inventory};
use crate::support::proxy::{Fault, Proxy, ProxyConfig};
use crate::support::{DevGuard, Paymig, Run, World};

/// A config for environment `suffix` with its own journal.
pub fn round_config(w: &World, suffix: &str) -> PathBuf {
    let text = std::fs::read_to_string(&w.config).unwrap();
    let text = text
        .replace("environment_suffix = \"prod\"", &format!("environment_suffix = \"{suffix}\""))
        .replace("parameter_path = \"/prod/\"", &format!("parameter_path = \"/{suffix}/\""))
        .replace(
            &format!("journal = \"{}\"", w.dir.path().join("journal").display()),
            &format!("journal = \"{}\"", w.dir.path().join(format!("journal-{suffix}")).display()),
        );
    let path = w.dir.path().join(format!("{suffix}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

pub fn journal_file(w: &World, suffix: &str) -> PathBuf {
    w.dir.path().join(format!("journal-{suffix}/payments/journal.jsonl"))
}

/// Checks the journal's invariants: sequence numbers 1..n without a gap,
/// every outcome for an earlier intent and at most one per intent, and (when
/// `settled`) every intent with an outcome. Returns the number of lines.
pub fn check_journal(path: &std::path::Path, settled: bool) -> Result<usize, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).map_err(|e| format!("bad line {l:?}: {e}")))
        .collect::<Result<_, _>>()?;
    let mut intents: BTreeMap<u64, u32> = BTreeMap::new();
    for (i, l) in lines.iter().enumerate() {
        let seq = l["seq"].as_u64().ok_or("line without seq")?;
        if seq != i as u64 + 1 {
            return Err(format!("line {} has seq {seq}", i + 1));
        }
        match l["type"].as_str() {
            Some("intent") => {
                intents.insert(seq, 0);
            }
            Some("done") => {
                let n =
                    intents.get_mut(&l["intent"].as_u64().unwrap_or(0)).ok_or(format!("done for no intent: {l}"))?;
                *n += 1;
                if *n > 1 {
                    return Err(format!("second outcome for intent {}", l["intent"]));
                }
            }
            Some("undone") => {
                if !intents.contains_key(&l["intent"].as_u64().unwrap_or(0)) {
                    return Err(format!("undone for no intent: {l}"));
                }
            }
            Some("run_start" | "run_end") => {}
            other => return Err(format!("unknown line type {other:?}")),
        }
    }
    if settled {
        let undone: std::collections::BTreeSet<u64> =
            lines.iter().filter(|l| l["type"] == "undone").filter_map(|l| l["intent"].as_u64()).collect();
        let open: Vec<u64> =
            intents.iter().filter(|(seq, n)| **n == 0 && !undone.contains(seq)).map(|(s, _)| *s).collect();
        if !open.is_empty() {
            return Err(format!("intents without outcome: {open:?}"));
        }
    }
    Ok(lines.len())
}

/// The inventory with the round's suffix and generated ids taken out, so
/// rounds compare with the reference.
pub fn shape(inv: &Inventory, suffix: &str) -> BTreeMap<&'static str, Vec<String>> {
    inv.iter()
        .map(|(k, names)| {
            let names = names
                .iter()
                .map(|n| if *k == "kms_key" { "key".to_owned() } else { n.replace(suffix, "SUFFIX") })
                .collect();
            (*k, names)
        })
        .collect()
}

#[derive(Debug, Clone, Copy)]
pub enum Kill {
    /// The process SIGKILLs itself right after its Nth fsynced journal write.
    AfterWrites(u64),
    /// SIGKILL from outside after this long.
    After(Duration),
}

/// A run of a round; dev is guarded around the whole round ([`DevGuard`]).
async fn paymig(w: &World, via: Option<&str>, config: &std::path::Path, args: &[&str], kill: Option<Kill>) -> Run {
    let mut p = Paymig::new(via.unwrap_or(&w.moto.endpoint), config).args(args);
    match kill {
        None => tokio::task::spawn_blocking(move || p.run()).await.unwrap(),
        Some(Kill::AfterWrites(n)) => {
            p = p.env("PAYMIG_TEST_KILL_AFTER_WRITES", &n.to_string());
            tokio::task::spawn_blocking(move || p.run()).await.unwrap()
        }
        Some(Kill::After(d)) => {
            let mut child = p.spawn();
            tokio::time::sleep(d).await;
            let _ = child.kill();
            tokio::task::spawn_blocking(move || crate::support::to_run(child.wait_with_output().unwrap()))
                .await
                .unwrap()
        }
    }
}

/// One round: a killed apply, a resume, the checks, a destroy. Returns
/// whether the kill landed before the run finished.
pub async fn crash_round(
    w: &World,
    via: Option<&str>,
    suffix: String,
    kill: Kill,
    expected: &BTreeMap<&'static str, Vec<String>>,
) -> bool {
    let config = round_config(w, &suffix);
    let dev = DevGuard::take(&w.moto.endpoint).await;
    let killed = paymig(w, via, &config, &["apply", "--yes"], Some(kill)).await;
    let landed = killed.code.is_none();
    if matches!(kill, Kill::AfterWrites(_)) {
        assert!(killed.killed, "{suffix}: {kill:?} did not kill the run: {:?}\n{}", killed.code, killed.stderr);
    }
    let journal = journal_file(w, &suffix);
    if journal.exists() {
        check_journal(&journal, false).unwrap_or_else(|e| panic!("{suffix} after {kill:?}: {e}"));
    }
    let resumed = paymig(w, via, &config, &["apply", "--yes"], None).await;
    assert_eq!(resumed.code, Some(0), "{suffix}: resume after {kill:?}\n{}", resumed.stderr);
    let inv = prod_inventory(&w.moto.endpoint, &suffix).await;
    assert!(duplicates(&inv).is_empty(), "{suffix} after {kill:?}: duplicates {:?}", duplicates(&inv));
    assert_eq!(&shape(&inv, &suffix), expected, "{suffix}: converged to the reference stack after {kill:?}");
    let again = paymig(w, via, &config, &["apply", "--yes"], None).await;
    assert_eq!(again.code, Some(0));
    assert_eq!(
        again.mutating_calls(),
        0,
        "{suffix}: converged after {kill:?}\ncalls: {:?}\n{}",
        again.mutating_operations(),
        again.stderr
    );
    check_journal(&journal, true).unwrap_or_else(|e| panic!("{suffix} after {kill:?}: {e}"));
    let destroy = paymig(w, via, &config, &["destroy", "--yes"], None).await;
    assert_eq!(destroy.code, Some(0), "{suffix}: destroy after {kill:?}\n{}", destroy.stderr);
    let left = prod_inventory(&w.moto.endpoint, &suffix).await;
    assert!(left.is_empty(), "{suffix}: destroy after {kill:?} left {left:?}");
    dev.check(&format!("crash round {suffix} (killed {kill:?}, resumed, re-applied, destroyed)")).await;
    landed
}

/// Which journal writes a campaign kills after.
pub enum Boundaries {
    /// The first write of each kind in the reference apply: its run's
    /// start, and per step its first intent and its first outcome (a kill
    /// before a call, and between a call and its record, in every step).
    EachKind,
    /// Every `n`th write of the reference apply.
    Every(usize),
}

/// The journal writes (1-based) of the reference apply `boundaries` picks.
fn kill_points(journal: &std::path::Path, boundaries: &Boundaries) -> Vec<u64> {
    let lines: Vec<serde_json::Value> =
        std::fs::read_to_string(journal).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let run = lines.first().map(|l| l["run"].clone()).unwrap_or_default();
    let apply: Vec<&serde_json::Value> = lines.iter().take_while(|l| l["run"] == run).collect();
    match boundaries {
        Boundaries::Every(n) => (1..=apply.len() as u64).step_by((*n).max(1)).collect(),
        Boundaries::EachKind => {
            let mut step_of: BTreeMap<u64, String> = BTreeMap::new();
            let mut seen = std::collections::BTreeSet::new();
            let mut points = Vec::new();
            for (i, l) in apply.iter().enumerate() {
                let kind = match l["type"].as_str() {
                    Some("intent") => {
                        let step = l["step"].as_str().unwrap_or_default().to_owned();
                        step_of.insert(l["seq"].as_u64().unwrap_or(0), step.clone());
                        format!("intent {step}")
                    }
                    Some("done") => {
                        format!("done {}", step_of.get(&l["intent"].as_u64().unwrap_or(0)).cloned().unwrap_or_default())
                    }
                    Some(other) => other.to_owned(),
                    None => continue,
                };
                if seen.insert(kind) {
                    points.push(i as u64 + 1);
                }
            }
            points
        }
    }
}

/// A clean apply of the reference round: the expected stack, the number of
/// journal writes, the wall time of the apply, and its journal.
async fn reference(w: &World) -> (BTreeMap<&'static str, Vec<String>>, u64, Duration, std::path::PathBuf) {
    let config = round_config(w, "k000");
    let dev = DevGuard::take(&w.moto.endpoint).await;
    let t = Instant::now();
    paymig(w, None, &config, &["apply", "--yes"], None).await.expect_code(0);
    let took = t.elapsed();
    let writes = check_journal(&journal_file(w, "k000"), true).unwrap() as u64;
    let inv = prod_inventory(&w.moto.endpoint, "k000").await;
    assert!(duplicates(&inv).is_empty());
    for kind in ["vpc", "subnet", "kms_key", "db_cluster", "dynamodb_table", "lambda_function", "s3_bucket", "alarm"] {
        assert!(inv.contains_key(kind), "the reference stack has a {kind}: {inv:?}");
    }
    paymig(w, None, &config, &["destroy", "--yes"], None).await.expect_code(0);
    assert!(prod_inventory(&w.moto.endpoint, "k000").await.is_empty());
    dev.check("the reference apply and its destroy").await;
    (shape(&inv, "k000"), writes, took, journal_file(w, "k000"))
}

/// Runs the campaign: kills at `boundaries` (journal writes) and at
/// `random_times` seeded random moments within the reference apply's wall
/// time, `parallel` rounds at a time. Prints each round as it ends and the
/// verdict.
async fn campaign(boundaries: Boundaries, random_times: usize, seed: u64, parallel: usize) {
    let w = World::new().await;
    let (expected, writes, took, journal) = reference(&w).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let points = kill_points(&journal, &boundaries);
    let mut kills: Vec<Kill> = points.into_iter().filter(|n| *n < writes).map(Kill::AfterWrites).collect();
    for _ in 0..random_times {
        kills.push(Kill::After(Duration::from_millis(rng.random_range(50..took.as_millis().max(100) as u64))));
    }
    let total = kills.len();
    let started = Instant::now();
    let finished = std::sync::atomic::AtomicUsize::new(0);
    let landed: Vec<bool> = futures::stream::iter(kills.into_iter().enumerate())
        .map(|(i, k)| {
            let (w, expected, finished) = (&w, &expected, &finished);
            async move {
                let landed = crash_round(w, None, format!("k{:03}", i + 1), k, expected).await;
                let n = finished.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                eprintln!(
                    "crash campaign: round k{:03} ({k:?}) converged — {n}/{total} after {:.0}s",
                    i + 1,
                    started.elapsed().as_secs_f64()
                );
                landed
            }
        })
        .buffer_unordered(parallel)
        .collect()
        .await;
    eprintln!(
        "crash campaign: VERDICT: every round converged — reference apply {} journal writes in {:.1}s; {total} kill points tried, {} landed mid-run, {total} converged (seed {seed})",
        writes,
        took.as_secs_f64(),
        landed.iter().filter(|l| **l).count()
    );
}

#[tokio::test(flavor = "multi_thread")]
/// The demo stack without Aurora, killed after chosen journal writes one
/// round at a time, and a destroy killed half way.
async fn runs_killed_at_journal_boundaries_converge_without_duplicates() {
    let w = World::with(Default::default(), crate::without_database).await;
    // Each N kills the real process (SIGKILL) right after the Nth fsynced
    // journal write: between intents and outcomes, mid-step, across steps.
    // Between intents and outcomes, in the first steps, mid-step and late
    // (the crash campaign kills once per boundary kind of the full stack).
    // Dev is fingerprinted around each round (four runs), not each run.
    for n in [1, 2, 3, 5, 11, 24, 45] {
        let dev = DevGuard::take(&w.moto.endpoint).await;
        let apply = || w.paymig(["apply", "--yes"]).unguarded();
        let killed = apply().env("PAYMIG_TEST_KILL_AFTER_WRITES", &n.to_string()).run();
        assert!(killed.killed, "run with kill after {n} writes was not killed: {:?}\n{}", killed.code, killed.stderr);
        let resumed = apply().run();
        resumed.expect_code(0);
        assert_eq!(crate::inventory(&w).await, crate::full(), "after a kill at write {n}");
        // Converged: one more apply changes nothing.
        assert_eq!(apply().run().mutating_calls(), 0, "after a kill at write {n}");
        // A consistent journal: every intent has its outcome.
        check_journal(&w.journal_path(), true).unwrap_or_else(|e| panic!("after a kill at {n}: {e}"));
        w.paymig(["destroy", "--yes"]).unguarded().run().expect_code(0);
        assert_eq!(crate::inventory(&w).await, crate::Inventory::default(), "destroy after a kill at write {n}");
        dev.check(&format!("the round killed at write {n}")).await;
    }
    // A destroy killed half way finishes on the next call.
    w.paymig(["apply", "--yes"]).run().expect_code(0);
    let killed = w.paymig(["destroy", "--yes"]).env("PAYMIG_TEST_KILL_AFTER_WRITES", "6").run();
    assert!(killed.killed);
    assert_ne!(crate::inventory(&w).await, crate::Inventory::default());
    w.paymig(["destroy", "--yes"]).run().expect_code(0);
    assert_eq!(crate::inventory(&w).await, crate::Inventory::default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_campaign_at_journal_boundaries_and_random_times() {
    // CI size: one kill per kind of journal boundary (the run's start, each
    // step's first intent and first outcome) plus seeded random moments;
    // scripts/crash-campaign runs every second boundary.
    campaign(Boundaries::EachKind, 6, 20261124, 3).await;
}

/// The larger run (scripts/crash-campaign): every `PAYMIG_CRASH_EVERY`th
/// (default second; 1 for all) journal boundary of the full stack plus
/// `PAYMIG_CRASH_RANDOM` (default 20) random moments, with a line per round
/// and a verdict.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "long: run by scripts/crash-campaign"]
async fn crash_campaign_every_boundary() {
    let env = |k: &str, d: u64| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    campaign(
        Boundaries::Every(env("PAYMIG_CRASH_EVERY", 2) as usize),
        env("PAYMIG_CRASH_RANDOM", 20) as usize,
        env("PAYMIG_CRASH_SEED", 7),
        env("PAYMIG_CRASH_PARALLEL", 4) as usize,
    )
    .await;
}

fn proxied(w: &World, proxy: &Proxy, args: &[&str]) -> Paymig {
    w.paymig(args).via(&proxy.endpoint).env("PAYMIG_ATTEMPT_TIMEOUT_SECONDS", "3")
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_converges_through_ten_percent_faults_and_reports_its_retries() {
    let w = World::new().await;
    let proxy = Proxy::start(ProxyConfig {
        fault_rate: 0.10,
        seed: 42,
        client_timeout: Some(Duration::from_secs(3)),
        ..ProxyConfig::new(&w.moto.endpoint)
    });
    let apply = proxied(&w, &proxy, &["apply", "--yes"]).run();
    apply.expect_code(0);
    let injected = proxy.stats.injected();
    let kinds = proxy.stats.by_kind();
    assert!(injected >= 10, "at 10% some faults were met: {injected}");
    for k in [Fault::Http500, Fault::Http503, Fault::Throttle, Fault::Reset, Fault::Slow] {
        assert!(kinds.get(&k).copied().unwrap_or(0) > 0, "every kind of fault was met: {kinds:?}");
    }
    // Each injected fault cost one retry, and paymig says so. A request
    // that failed on its own (the client's 3 s attempt timeout on a loaded
    // machine, an emulator 5xx) costs one too: the proxy counts those.
    let line = apply.stderr.lines().rev().find(|l| l.starts_with("API calls:")).unwrap().to_owned();
    let retries: u64 = line.split(" retries").next().and_then(|p| p.rsplit(' ').next()).unwrap().parse().unwrap();
    let unplanned = proxy.stats.unplanned.load(std::sync::atomic::Ordering::Relaxed);
    assert!(unplanned <= 3, "few requests fail on their own: {unplanned}");
    assert_eq!(retries, injected + unplanned, "{kinds:?}, {unplanned} unplanned\n{}", apply.stderr);
    let inv = prod_inventory(&w.moto.endpoint, "prod").await;
    assert!(duplicates(&inv).is_empty(), "{:?}", duplicates(&inv));
    check_journal(&w.journal_path(), true).unwrap();

    // Converged under faults too, and destroy gets through them.
    let again = proxied(&w, &proxy, &["apply", "--yes"]).run();
    again.expect_code(0);
    assert_eq!(again.mutating_calls(), 0);
    proxied(&w, &proxy, &["destroy", "--yes"]).run().expect_code(0);
    assert!(prod_inventory(&w.moto.endpoint, "prod").await.is_empty());
    eprintln!(
        "fault campaign: {injected} faults injected at 10% ({kinds:?}), {unplanned} unplanned failures, {retries} retries reported, converged"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_service_that_always_fails_stops_the_run_and_the_next_apply_finishes() {
    let w = World::new().await;
    let failing = |writes_only| ProxyConfig {
        fault_rate: 1.0,
        only_service: Some("dynamodb".into()),
        writes_only,
        kinds: vec![Fault::Http500, Fault::Http503, Fault::Throttle, Fault::Reset],
        ..ProxyConfig::new(&w.moto.endpoint)
    };
    // Every DynamoDB call fails: preflight cannot read the dev tables, so
    // the run stops with exit 1 before anything changes.
    let proxy = Proxy::start(failing(false));
    let unread = proxied(&w, &proxy, &["apply", "--yes"]).run();
    unread.expect_code(1);
    assert!(
        unread.stderr.contains("sessions-dev") && unread.stderr.contains("nothing was changed"),
        "{}",
        unread.stderr
    );
    assert_eq!(unread.mutating_calls(), 0);
    assert!(prod_inventory(&w.moto.endpoint, "prod").await.is_empty());
    drop(proxy);

    // Every DynamoDB write fails: the other tiers go ahead, the table step
    // fails after its retries, exit 1.
    let proxy = Proxy::start(failing(true));
    let failed = proxied(&w, &proxy, &["apply", "--yes"]).run();
    failed.expect_code(1);
    assert!(failed.stderr.contains("dynamodb"), "the failing step is named: {}", failed.stderr);
    check_journal(&w.journal_path(), false).unwrap();
    assert!(proxy.stats.injected() > 0);
    // Other tiers went ahead; nothing was duplicated.
    let partial = prod_inventory(&w.moto.endpoint, "prod").await;
    assert!(partial.contains_key("vpc") && !partial.contains_key("dynamodb_table"), "{partial:?}");

    // Faults off: the next apply finishes the job from the journal.
    let next = w.paymig(["apply", "--yes"]).run();
    next.expect_code(0);
    let inv = prod_inventory(&w.moto.endpoint, "prod").await;
    assert!(inv.contains_key("dynamodb_table") && duplicates(&inv).is_empty(), "{inv:?}");
    assert_eq!(w.paymig(["apply", "--yes"]).run().mutating_calls(), 0);
    check_journal(&w.journal_path(), true).unwrap();
    w.paymig(["destroy", "--yes"]).run().expect_code(0);
    assert!(prod_inventory(&w.moto.endpoint, "prod").await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dev_fingerprint_sees_any_write_to_dev() {
    let w = World::new().await;
    let before = crate::support::inventory::dev_fingerprint(&w.moto.endpoint).await;
    assert_eq!(
        before,
        crate::support::inventory::dev_fingerprint(&w.moto.endpoint).await,
        "stable when nothing changes"
    );
    let dev = crate::support::fixture::Clients::new(&w.moto.endpoint, "us-east-1", None).await;
    dev.dynamodb
        .update_continuous_backups()
        .table_name("sessions-dev")
        .point_in_time_recovery_specification(
            aws_sdk_dynamodb::types::PointInTimeRecoverySpecification::builder()
                .point_in_time_recovery_enabled(true)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_ne!(before, crate::support::inventory::dev_fingerprint(&w.moto.endpoint).await);
}
