//! The benchmark (`scripts/bench`; `#[ignore]`d in the suite): the scale
//! fixture — 2,000 SSM parameters, 50 Lambda functions, 20 DynamoDB tables
//! with GSIs, 5 audit buckets, plus the rest of the demo stack — migrated
//! through a proxy adding a fixed delay per call (default 20 ms,
//! `PAYMIG_BENCH_DELAY_MS`). Reports wall time of a cold apply at
//! `--parallelism 1` and at the default, a no-op re-apply, destroy, API calls
//! per service, peak RSS, paymig's and each emulator process's CPU time,
//! and the critical-path lower bound computed from the run's own call log;
//! writes `bench/results.md` (`PAYMIG_BENCH_OUT`). SSM and DynamoDB get
//! their own moto processes (`PAYMIG_BENCH_EMULATOR=single`: one).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use futures::StreamExt;

use crate::support::fixture::{seed_table, zip_one, Clients, TableSpec};
use crate::support::proxy::{Proxy, ProxyConfig};
use crate::support::{Paymig, World};

const PARAMS: usize = 2000;
const FUNCTIONS: usize = 50;
const TABLES: usize = 20;
const BUCKETS: usize = 5;

/// Adds the scale resources to the seeded dev stack; returns the config edit.
async fn seed_scale(endpoint: &str) -> impl Fn(String) -> String {
    let c = Clients::new(endpoint, "us-east-1", None).await;
    let c = &c;
    futures::stream::iter(0..PARAMS)
        .map(|i| async move {
            c.ssm
                .put_parameter()
                .name(format!("/dev/bench/group-{:02}/param-{i:04}", i % 40))
                .value(format!("value {i} for sessions-dev"))
                .r#type(aws_sdk_ssm::types::ParameterType::String)
                .send()
                .await
                .expect("bench parameter");
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    let role = c.iam.get_role().role_name("payment-processor-dev-role").send().await.unwrap();
    let role_arn = role.role().unwrap().arn().to_owned();
    let functions: Vec<String> = (1..FUNCTIONS).map(|i| format!("bench-fn-{i:02}-dev")).collect();
    futures::stream::iter(functions.iter().cloned())
        .map(|name| {
            let role_arn = role_arn.clone();
            async move {
                let zip = zip_one("handler.py", format!("# {name}\ndef handler(e, c):\n    return 1\n").as_bytes());
                let key = format!("lambda/{name}.zip");
                c.s3.put_object().bucket("payments-artifacts-dev").key(&key).body(zip.into()).send().await.unwrap();
                c.lambda
                    .create_function()
                    .function_name(&name)
                    .runtime(aws_sdk_lambda::types::Runtime::Python312)
                    .handler("handler.handler")
                    .role(role_arn)
                    .code(
                        aws_sdk_lambda::types::FunctionCode::builder()
                            .s3_bucket("payments-artifacts-dev")
                            .s3_key(key)
                            .build(),
                    )
                    .send()
                    .await
                    .expect("bench function");
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
    let tables: Vec<String> = (1..TABLES).map(|i| format!("bench-table-{i:02}-dev")).collect();
    for t in &tables {
        let spec = TableSpec {
            name: t.clone(),
            range: true,
            gsis: vec![("by-owner".into(), "owner".into(), "amount".into())],
            lsi: false,
            ttl: Some("expires".into()),
            stream: None,
            provisioned: Some((10, 10)),
        };
        seed_table(c, &spec).await;
    }
    let buckets: Vec<String> = (1..BUCKETS).map(|i| format!("bench-audit-{i:02}-dev")).collect();
    for b in &buckets {
        c.s3.create_bucket().bucket(b).send().await.unwrap();
    }
    let quoted = |v: &[String]| v.iter().map(|s| format!("\"{s}\"")).collect::<Vec<_>>().join(", ");
    let (functions, tables, buckets) = (quoted(&functions), quoted(&tables), quoted(&buckets));
    move |t: String| {
        t.replace("[\"payment-processor-dev\"]", &format!("[\"payment-processor-dev\", {functions}]"))
            .replace("[\"sessions-dev\"]", &format!("[\"sessions-dev\", {tables}]"))
            .replace("[\"payments-audit-dev\"]", &format!("[\"payments-audit-dev\", {buckets}]"))
    }
}

/// One measured command.
#[derive(Debug, Default)]
struct Measured {
    wall: Duration,
    rss_kb: i64,
    read: u64,
    mutating: u64,
    retries: u64,
    /// service -> (read, mutating)
    by_service: BTreeMap<String, (u64, u64)>,
    bound: Duration,
    chain_calls: usize,
    /// The same chain with each call's own duration (delay + service time).
    chain_time: Duration,
    code: Option<i32>,
    /// paymig's own CPU time (user + system).
    cpu: Duration,
    /// CPU time each emulator process spent during the run.
    emulator_cpu: Vec<(String, Duration)>,
}

impl Measured {
    /// The busiest emulator process's CPU time: moto serves a process's
    /// requests on one interpreter, so no run can be shorter than this.
    fn emulator_floor(&self) -> Duration {
        self.emulator_cpu.iter().map(|(_, d)| *d).max().unwrap_or_default()
    }
}

/// Runs paymig with stdout/stderr to files, timing it and reading its peak
/// RSS from `wait4`.
#[allow(clippy::zombie_processes)] // reaped by wait4, which also gives the RSS
fn measured(p: Paymig, dir: &Path, tag: &str) -> (Measured, String) {
    let (out, err) = (dir.join(format!("{tag}.out")), dir.join(format!("{tag}.err")));
    let t = Instant::now();
    let child = p.spawn_to(&out, &err);
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waiting for our own child, with valid pointers.
    let rc = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    assert!(rc > 0, "wait4 failed");
    let wall = t.elapsed();
    let stderr = std::fs::read_to_string(&err).unwrap();
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    let tv = |t: libc::timeval| Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64);
    let cpu = tv(usage.ru_utime) + tv(usage.ru_stime);
    let mut m = Measured { wall, rss_kb: usage.ru_maxrss, code, cpu, ..Default::default() };
    for line in stderr.lines() {
        let Ok(e) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        if e["message"] != "api calls" {
            continue;
        }
        m.read = e["read"].as_u64().unwrap_or(0);
        m.mutating = e["mutating"].as_u64().unwrap_or(0);
        m.retries = e["retries"].as_u64().unwrap_or(0);
        let ops: BTreeMap<String, BTreeMap<String, u64>> =
            serde_json::from_str(e["by_operation"].as_str().unwrap_or("{}")).unwrap_or_default();
        for (service, ops) in ops {
            let entry = m.by_service.entry(service).or_default();
            for (op, n) in ops {
                if paymig::testing::is_read_operation(&op) {
                    entry.0 += n;
                } else {
                    entry.1 += n;
                }
            }
        }
    }
    (m, stderr)
}

/// The critical-path lower bound from a call log: calls in one lane
/// (`step` or `step/resource`) are sequential in the code, so each lane is a
/// chain; a step's chain is its own lane plus its longest resource lane;
/// preflight lanes run side by side; steps follow the DAG. The bound is the
/// longest such chain in calls, times the delay.
/// Returns the chain both in calls and in the calls' own durations.
fn critical_path(log: &Path) -> (usize, Duration) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    // lane -> (calls, total ms)
    let mut lanes: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for line in text.lines() {
        let e: serde_json::Value = serde_json::from_str(line).unwrap();
        let ms = e["end_ms"].as_f64().unwrap_or(0.0) - e["start_ms"].as_f64().unwrap_or(0.0);
        let l = lanes.entry(e["lane"].as_str().unwrap_or("").to_owned()).or_default();
        l.0 += 1.0;
        l.1 += ms;
    }
    let measure = |pick: fn(&(f64, f64)) -> f64| {
        let top = |name: &str| lanes.get(name).map_or(0.0, pick);
        let longest_sub = |prefix: &str| {
            lanes.iter().filter(|(l, _)| l.starts_with(&format!("{prefix}/"))).map(|(_, v)| pick(v)).fold(0.0, f64::max)
        };
        let mut chain: BTreeMap<&'static str, f64> = BTreeMap::new();
        // Steps in dependency order (the DAG sorts them).
        let dag = paymig::testing::Dag::new(paymig::testing::all_steps()).unwrap();
        for s in dag.steps() {
            let own = top(s.id()) + longest_sub(s.id());
            let before = s.deps().iter().map(|d| chain[d]).fold(0.0, f64::max);
            chain.insert(s.id(), before + own);
        }
        top("") + longest_sub("preflight") + chain.values().copied().fold(0.0, f64::max)
    };
    (measure(|v| v.0) as usize, Duration::from_secs_f64(measure(|v| v.1) / 1000.0))
}

fn row(what: &str, m: &Measured, delay: Duration) -> String {
    let bound = delay * m.chain_calls as u32;
    let ratio =
        if bound.is_zero() { "—".to_owned() } else { format!("{:.2}×", m.wall.as_secs_f64() / bound.as_secs_f64()) };
    let emulator =
        m.emulator_cpu.iter().map(|(name, d)| format!("{name} {:.1}", d.as_secs_f64())).collect::<Vec<_>>().join(" · ");
    format!(
        "| {what} | {:.1} s | {} | {} | {} | {:.1} MB | {} calls = {:.1} s | {ratio} | {:.1} s | {:.1} s | {emulator} s |",
        m.wall.as_secs_f64(),
        m.read,
        m.mutating,
        m.retries,
        m.rss_kb as f64 / 1024.0,
        m.chain_calls,
        bound.as_secs_f64(),
        m.chain_time.as_secs_f64(),
        m.cpu.as_secs_f64(),
    )
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "the benchmark: run by scripts/bench"]
async fn benchmark() {
    let delay_ms: u64 = std::env::var("PAYMIG_BENCH_DELAY_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let delay = Duration::from_millis(delay_ms);
    let seed_started = Instant::now();
    // The emulator: by default SSM and DynamoDB each get their own moto
    // process (on AWS every service is its own fleet; in one moto process
    // all requests share one interpreter). `PAYMIG_BENCH_EMULATOR=single`
    // measures against one process.
    let single = std::env::var("PAYMIG_BENCH_EMULATOR").is_ok_and(|v| v == "single");
    let moto =
        if single { crate::support::Moto::start() } else { crate::support::Moto::start_sharded(&["ssm", "dynamodb"]) };
    let dev = crate::support::fixture::seed(&moto.endpoint, &Default::default()).await;
    let edit = seed_scale(&moto.endpoint).await;
    let w = World::adopt(moto, dev, edit).await;
    eprintln!("bench: scale fixture seeded in {:.1}s", seed_started.elapsed().as_secs_f64());
    let proxy =
        Proxy::start(ProxyConfig { latency: delay, routes: w.moto.routes.clone(), ..ProxyConfig::new(&w.moto.direct) });
    let dir = w.dir.path();

    let mut results: Vec<(String, Measured)> = Vec::new();
    let mut run = |label: &str, suffix: &str, args: &[&str]| {
        let cfg = crate::campaigns::round_config(&w, suffix);
        let log = dir.join(format!("{suffix}-{}.calls.jsonl", label.replace(' ', "-")));
        let mut all = vec!["--log-format", "json"];
        all.extend_from_slice(args);
        let p = Paymig::new(&proxy.endpoint, &cfg).args(&all).env("PAYMIG_CALL_LOG", log.to_str().unwrap());
        let before = w.moto.cpu();
        let (mut m, stderr) = measured(p, dir, &format!("{suffix}-{}", label.replace(' ', "-")));
        m.emulator_cpu =
            w.moto.cpu().into_iter().zip(before).map(|((name, after), (_, b))| (name, after - b)).collect();
        assert_eq!(m.code, Some(0), "{label}: {stderr}");
        (m.chain_calls, m.chain_time) = critical_path(&log);
        m.bound = delay * m.chain_calls as u32;
        eprintln!("bench: {}", row(label, &m, delay));
        results.push((label.to_owned(), m));
    };
    // Both cold applies meet the same emulator state (dev only): the first
    // stack is destroyed before the second is applied.
    run("cold apply, --parallelism 1", "bp1", &["apply", "--yes", "--parallelism", "1"]);
    run("destroy, --parallelism 1", "bp1", &["destroy", "--yes", "--parallelism", "1"]);
    run("cold apply, default parallelism", "bpd", &["apply", "--yes"]);
    run("no-op re-apply", "bpd", &["apply", "--yes"]);
    run("destroy", "bpd", &["destroy", "--yes"]);

    let serial = &results[0].1;
    let serial_destroy = &results[1].1;
    let default = &results[2].1;
    let noop = &results[3].1;
    let destroy = &results[4].1;
    let resources: usize = std::fs::read_to_string(crate::campaigns::journal_file(&w, "bpd"))
        .unwrap()
        .lines()
        .filter(|l| l.contains("\"type\":\"intent\"") && l.contains("\"op\":\"create\""))
        .count();
    let speedup = serial.wall.as_secs_f64() / default.wall.as_secs_f64();
    let bound_ratio = default.wall.as_secs_f64() / default.bound.as_secs_f64();
    let peak = results.iter().map(|(_, m)| m.rss_kb).max().unwrap_or(0) as f64 / 1024.0;
    let target = |ok: bool| if ok { "met" } else { "**missed**" };

    let mut md = String::new();
    md.push_str("# paymig benchmark\n\n");
    md.push_str(&format!(
        "Produced by `scripts/bench` (`cargo test --test cli bench::benchmark -- --ignored`), debug build, on {}.\n\n",
        std::env::var("PAYMIG_BENCH_MACHINE").unwrap_or_else(|_| "this machine".into())
    ));
    md.push_str(&format!(
        "Scale fixture: {PARAMS} SSM parameters (+ the demo's), {FUNCTIONS} Lambda functions, {TABLES} DynamoDB tables with a GSI each, {BUCKETS} audit buckets (each with a replica), plus the rest of the demo stack (VPC, Aurora, ALB, monitoring). Every call goes through a loopback proxy adding {delay_ms} ms. Each cold apply migrates into its own environment suffix and the first stack is destroyed before the second is applied, so both start from the same emulator state (dev only). {}\n\n",
        if single {
            "The emulator is one moto process.".to_owned()
        } else {
            format!(
                "The emulator is {} moto processes: {} each on its own, every other service on one more (`PAYMIG_BENCH_EMULATOR=single` for one process).",
                w.moto.routes.len() + 1,
                w.moto.routes.iter().map(|(s, _)| s.as_str()).collect::<Vec<_>>().join(" and ")
            )
        }
    ));
    md.push_str("| run | wall | read | mutating | retries | peak RSS | critical path (× delay) | wall / bound | same chain, measured call times | paymig CPU | emulator CPU per process |\n|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (label, m) in &results {
        md.push_str(&row(label, m, delay));
        md.push('\n');
    }
    md.push_str("\n## Targets\n\n");
    md.push_str(&format!(
        "- default parallelism ≥ 5× faster than `--parallelism 1`: **{speedup:.1}×** — {}\n",
        target(speedup >= 5.0)
    ));
    let destroy_speedup = serial_destroy.wall.as_secs_f64() / destroy.wall.as_secs_f64();
    md.push_str(&format!(
        "- destroy ≥ 3× faster than `destroy --parallelism 1`: **{destroy_speedup:.1}×** — {}\n",
        target(destroy_speedup >= 3.0)
    ));
    md.push_str(&format!(
        "- cold apply within 1.5× of the critical-path bound: **{bound_ratio:.2}×** — {}\n",
        target(bound_ratio <= 1.5)
    ));
    md.push_str(&format!(
        "- the same cold apply against the emulator's own floor (the busiest moto process's CPU time, {:.1} s: one interpreter serves that process's requests one at a time, so no run can be shorter): **{:.2}×**; paymig itself used {:.1} s of CPU\n",
        default.emulator_floor().as_secs_f64(),
        default.wall.as_secs_f64() / default.emulator_floor().as_secs_f64().max(0.001),
        default.cpu.as_secs_f64(),
    ));
    md.push_str(&format!(
        "- no-op re-apply: **{} mutating** calls, **{} reads for {resources} resources** ({:.2} per resource) — {}\n",
        noop.mutating,
        noop.read,
        noop.read as f64 / resources.max(1) as f64,
        target(noop.mutating == 0 && noop.read as usize <= resources)
    ));
    md.push_str(&format!("- peak RSS under 100 MB: **{peak:.1} MB** — {}\n", target(peak < 100.0)));
    md.push_str("\n## API calls per service (read / mutating)\n\n| service |");
    for (label, _) in &results {
        md.push_str(&format!(" {label} |"));
    }
    md.push_str("\n|---|");
    md.push_str(&"---|".repeat(results.len()));
    md.push('\n');
    let services: std::collections::BTreeSet<&String> = results.iter().flat_map(|(_, m)| m.by_service.keys()).collect();
    for s in services {
        md.push_str(&format!("| {s} |"));
        for (_, m) in &results {
            let (r, w) = m.by_service.get(s).copied().unwrap_or_default();
            md.push_str(&format!(" {r} / {w} |"));
        }
        md.push('\n');
    }
    md.push_str("\nThe critical path is computed from each run's own call log (`PAYMIG_CALL_LOG`): every call carries its lane — the step, or `step/resource` inside a step's per-resource fan-out. Calls in one lane are sequential code, so a lane is a chain; a step's chain is its own lane plus its longest resource lane; steps follow the DAG; preflight lanes run side by side. Concurrent calls inside one resource's lane are counted as a chain, so the bound errs high, never low. Bound = calls on the longest chain × the delay; it ignores the emulator's own service time.\n");
    if let Ok(notes) = std::fs::read_to_string(format!("{}/bench/notes.md", env!("CARGO_MANIFEST_DIR"))) {
        md.push_str(&notes);
    }
    let out = std::env::var("PAYMIG_BENCH_OUT")
        .unwrap_or_else(|_| format!("{}/bench/results.md", env!("CARGO_MANIFEST_DIR")));
    std::fs::create_dir_all(Path::new(&out).parent().unwrap()).unwrap();
    std::fs::write(&out, &md).unwrap();
    eprintln!("{md}");
}

/// Each step's span (ms) from a JSON log: the `done` event's elapsed time.
fn step_spans(stderr: &str) -> BTreeMap<String, Duration> {
    stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["event"] == "step" && e["state"] == "done")
        .filter_map(|e| Some((e["step"].as_str()?.to_owned(), Duration::from_millis(e["elapsed_ms"].as_u64()?))))
        .collect()
}

/// The AWS-timed benchmark (`scripts/bench aws`): the demo stack against
/// every AWS behaviour with AWS's typical durations times
/// `PAYMIG_BENCH_AWS_FACTOR` (default 0.1: Aurora's 10-minute restore takes
/// 60 s, a deleted function's ENIs linger 2 minutes), 20 ms per call. It
/// measures how soon paymig sees each state change: the database step
/// against the nominal restore + instance, destroy against the ENI linger.
/// Writes `bench/aws-timed.md` (`PAYMIG_BENCH_AWS_OUT`).
#[tokio::test(flavor = "multi_thread")]
#[ignore = "the AWS-timed benchmark: run by scripts/bench aws"]
async fn aws_timed() {
    use crate::support::behaviour::{AwsBehaviour, Durations, Windows};
    let factor: f64 = std::env::var("PAYMIG_BENCH_AWS_FACTOR").ok().and_then(|v| v.parse().ok()).unwrap_or(0.1);
    let delay = Duration::from_millis(20);
    let durations = Durations::aws(factor);
    let w = World::new().await;
    let b = std::sync::Arc::new(AwsBehaviour::timed(&crate::support::behaviour::ALL, durations, Windows::aws(factor)));
    let proxy =
        Proxy::start(ProxyConfig { latency: delay, behaviour: Some(b.clone()), ..ProxyConfig::new(&w.moto.endpoint) });
    let dir = w.dir.path();
    // The estimate runs on the same clock as the emulated AWS.
    let scale = factor.to_string();
    let run = |tag: &str, args: &[&str]| {
        let mut all = vec!["--log-format", "json"];
        all.extend_from_slice(args);
        let (m, stderr) = measured(w.paymig(&all).via(&proxy.endpoint).env("PAYMIG_TYPICAL_SCALE", &scale), dir, tag);
        assert_eq!(m.code, Some(0), "{tag}: {stderr}");
        (m, step_spans(&stderr))
    };
    let expected = |tag: &str| -> (f64, String) {
        let (_, _) = run(tag, &["plan", "--format", "json"]);
        let doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join(format!("{tag}.out"))).unwrap()).unwrap();
        let e = &doc["expected_duration"];
        let path: Vec<&str> =
            e["critical_path"].as_array().unwrap().iter().filter_map(|s| s["step"].as_str()).collect();
        (e["seconds"].as_f64().unwrap(), path.join(" → "))
    };
    let (first_estimate, first_path) = expected("aws-plan-typical");
    let (apply, spans) = run("aws-apply", &["apply", "--yes"]);
    let (_, _) = run("aws-destroy-dry", &["destroy", "--dry-run"]);
    let teardown_estimate = std::fs::read_to_string(dir.join("aws-destroy-dry.out"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("expected duration"))
        .map(str::to_owned)
        .unwrap_or_default();
    let (destroy, _) = run("aws-destroy", &["destroy", "--yes"]);
    let (observed_estimate, _) = expected("aws-plan-observed");
    let aurora = durations.cluster_creating + durations.instance_creating;
    let database = spans.get("database").copied().unwrap_or_default();
    let ratio = database.as_secs_f64() / aurora.as_secs_f64();
    let linger = durations.eni_linger;
    let target = |ok: bool| if ok { "met" } else { "**missed**" };
    let secs = |d: Duration| format!("{:.1} s", d.as_secs_f64());
    let mut md = String::new();
    md.push_str("# paymig against AWS's timings\n\n");
    md.push_str(&format!(
        "Produced by `scripts/bench aws` (`cargo test --test cli bench::aws_timed -- --ignored`), debug build, on {}. The demo stack (VPC, Aurora, DynamoDB, Lambda, ALB, monitoring) through the test proxy in AWS behaviour mode with every behaviour on and AWS's typical durations times **{factor}**, 20 ms per call.\n\n",
        std::env::var("PAYMIG_BENCH_MACHINE").unwrap_or_else(|_| "this machine".into())
    ));
    md.push_str("| state | AWS typical | here |\n|---|---|---|\n");
    for (what, aws, here) in [
        ("Aurora cluster restored from a snapshot", "~10 min", durations.cluster_creating),
        ("Aurora instance created", "~8 min", durations.instance_creating),
        ("Lambda function Pending / update InProgress", "~10 s", durations.function_pending),
        ("DynamoDB table CREATING", "~20 s", durations.table_creating),
        ("GSI CREATING", "~1 min", durations.index_creating),
        ("interface endpoint pending", "~90 s", durations.endpoint_pending),
        ("ALB provisioning", "~3 min", durations.alb_provisioning),
        ("deleted function's ENIs", "20–45 min", durations.eni_linger),
    ] {
        md.push_str(&format!("| {what} | {aws} | {} |\n", secs(here)));
    }
    md.push_str("\n| run | wall | read | mutating | retries |\n|---|---|---|---|---|\n");
    for (what, m) in [("cold apply", &apply), ("destroy", &destroy)] {
        md.push_str(&format!("| {what} | {} | {} | {} | {} |\n", secs(m.wall), m.read, m.mutating, m.retries));
    }
    md.push_str("\n| step (cold apply) | span |\n|---|---|\n");
    for (step, d) in &spans {
        md.push_str(&format!("| {step} | {} |\n", secs(*d)));
    }
    // Where destroy spent its time: the step times it recorded.
    let ended: Vec<serde_json::Value> = w.journal_lines().into_iter().filter(|l| l["type"] == "run_end").collect();
    if let Some(steps) = ended.last().and_then(|e| e["observed"]["steps"].as_array().cloned()) {
        md.push_str("\n| step (destroy) | started at | span |\n|---|---|---|\n");
        let mut steps = steps;
        steps.sort_by(|a, b| a["start_s"].as_f64().unwrap_or(0.0).total_cmp(&b["start_s"].as_f64().unwrap_or(0.0)));
        for s in steps {
            md.push_str(&format!(
                "| {} | {:.1} s | {:.1} s |\n",
                s["step"].as_str().unwrap_or("?"),
                s["start_s"].as_f64().unwrap_or(0.0),
                s["seconds"].as_f64().unwrap_or(0.0)
            ));
        }
    }
    md.push_str("\n## Targets\n\n");
    md.push_str(&format!(
        "- the database step within 1.05× of Aurora's own restore + one instance ({}): **{} = {ratio:.2}×** — {}\n",
        secs(aurora),
        secs(database),
        target(ratio <= 1.05)
    ));
    md.push_str(&format!(
        "- the cold apply within 1.15× of that chain (everything else runs in its shadow): **{} = {:.2}×** — {}\n",
        secs(apply.wall),
        apply.wall.as_secs_f64() / aurora.as_secs_f64(),
        target(apply.wall.as_secs_f64() <= 1.15 * aurora.as_secs_f64())
    ));
    md.push_str(&format!(
        "- destroy within 1.10× of the ENI linger ({}): **{} = {:.2}×** — {}\n",
        secs(linger),
        secs(destroy.wall),
        destroy.wall.as_secs_f64() / linger.as_secs_f64(),
        target(destroy.wall.as_secs_f64() <= 1.10 * linger.as_secs_f64())
    ));
    let off = |estimate: f64| (estimate - apply.wall.as_secs_f64()).abs() / apply.wall.as_secs_f64();
    md.push_str(&format!(
        "- the first plan's estimate (AWS's typical figures × {factor}) within 25% of the measured apply: **{first_estimate:.1} s against {}, {:.0}% off** (critical path: {first_path}) — {}\n",
        secs(apply.wall),
        off(first_estimate) * 100.0,
        target(off(first_estimate) <= 0.25)
    ));
    md.push_str(&format!(
        "- after one observed apply, the next cold plan's estimate within 10%: **{observed_estimate:.1} s, {:.0}% off** — {}\n",
        off(observed_estimate) * 100.0,
        target(off(observed_estimate) <= 0.10)
    ));
    md.push_str(&format!("- `destroy --dry-run` before the destroy above said: {teardown_estimate}\n"));
    md.push_str(&format!("\nBehaviours that fired: {:?}\n", b.fired()));
    md.push_str("\nThe waits poll every elapsed/20, between 1 and 15 s (`engine::poll_delay`), so a state change is seen within 5% of the time waited so far. The SDK's RDS waiters, which paymig used before, start at 30 s and double up to 30 minutes with a random delay: against a 10-minute restore they commonly see `available` minutes late.\n");
    let out = std::env::var("PAYMIG_BENCH_AWS_OUT")
        .unwrap_or_else(|_| format!("{}/bench/aws-timed.md", env!("CARGO_MANIFEST_DIR")));
    std::fs::write(&out, &md).unwrap();
    eprintln!("{md}");
}
