//! The operator's experience: help text and plan output as snapshots
//! (`tests/snapshots/`; `PAYMIG_UPDATE_SNAPSHOTS=1 scripts/test` rewrites
//! them after an intended change), shell completions.

use std::path::{Path, PathBuf};

use crate::support::{Paymig, World, COMMANDS};

fn snapshot_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots").join(name)
}

#[track_caller]
fn assert_snapshot(name: &str, actual: &str) {
    let path = snapshot_path(name);
    if std::env::var_os("PAYMIG_UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("no snapshot {}; run with PAYMIG_UPDATE_SNAPSHOTS=1 to create it", path.display()));
    if expected != actual {
        let line = expected.lines().zip(actual.lines()).position(|(a, b)| a != b).unwrap_or(0);
        panic!(
            "{name} differs from its snapshot at line {}:\n  snapshot: {:?}\n  actual:   {:?}\n(PAYMIG_UPDATE_SNAPSHOTS=1 rewrites it after an intended change)\n--- actual\n{actual}",
            line + 1,
            expected.lines().nth(line).unwrap_or(""),
            actual.lines().nth(line).unwrap_or("")
        );
    }
}

#[test]
fn help_text_matches_its_snapshots_and_every_command_has_an_example() {
    let help = |args: &[&str]| {
        let run = Paymig::new("http://127.0.0.1:9", Path::new("unused.toml")).env("COLUMNS", "100").args(args).run();
        assert_eq!(run.code, Some(0), "{args:?}: {}", run.stderr);
        run.stdout
    };
    let top = help(&["--help"]);
    assert_snapshot("help.txt", &top);
    for cmd in COMMANDS.iter().filter(|c| **c != "help") {
        let text = help(&[cmd, "--help"]);
        assert!(text.contains("Example"), "`paymig {cmd} --help` has an example:\n{text}");
        assert!(top.contains(cmd), "`paymig --help` lists {cmd}");
        assert_snapshot(&format!("help-{cmd}.txt"), &text);
    }
}

#[test]
fn completions_are_generated_for_bash_zsh_and_fish() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        // No configuration is read: the file does not even exist.
        let run = Paymig::new("http://127.0.0.1:9", &dir.path().join("absent.toml")).args(["completions", shell]).run();
        assert_eq!(run.code, Some(0), "{shell}: {}", run.stderr);
        for word in ["apply", "destroy", "iam-policy", "parallelism", "log-format"] {
            assert!(run.stdout.contains(word), "{shell} completion lacks {word}");
        }
        if shell == "bash" {
            let script = dir.path().join("paymig.bash");
            std::fs::write(&script, &run.stdout).unwrap();
            let check = std::process::Command::new("bash").arg("-n").arg(&script).output().unwrap();
            assert!(check.status.success(), "bash -n: {}", String::from_utf8_lossy(&check.stderr));
        }
    }
    let bad = Paymig::new("http://127.0.0.1:9", Path::new("x.toml")).args(["completions", "tcsh"]).run();
    assert_eq!(bad.code, Some(2));
    assert!(bad.stderr.contains("bash") && bad.stderr.contains("fish"), "names the choices: {}", bad.stderr);
}

/// Plan output with the run's generated ids (VPC, subnets, account…) masked.
fn masked(text: &str, w: &World) -> String {
    let mut out = text.replace(&w.dev.vpc_id, "vpc-DEV");
    for (id, _) in &w.dev.subnets {
        out = out.replace(id, "subnet-DEV");
    }
    let ids = regex::Regex::new(r"\b(igw|rtb|sg|subnet|vpc|vpce|pl|rtbassoc|snap)-[0-9a-f]{8,17}\b").unwrap();
    let out = ids.replace_all(&out, "$1-ID");
    let times = regex::Regex::new(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z").unwrap();
    times.replace_all(&out, "TIME").into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_output_is_grouped_by_step_with_counts_in_text_and_json() {
    let w = World::new().await;
    let plan = w.paymig(["plan"]).env("COLUMNS", "100").run();
    plan.expect_code(0);
    assert_snapshot("plan-fresh.txt", &masked(&plan.stdout, &w));
    let json = w.paymig(["plan", "--format", "json"]).run();
    json.expect_code(0);
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let steps = doc["steps"].as_array().expect("steps");
    assert!(steps.len() >= 9, "{doc}");
    let creates: u64 = steps.iter().map(|s| s["create"].as_u64().unwrap_or(0)).sum();
    assert_eq!(doc["summary"]["create"].as_u64(), Some(creates), "the summary adds up the steps: {doc}");

    let apply = w.paymig(["apply", "--yes"]).run();
    apply.expect_code(0);
    // The plan listed every resource apply created (the functions' aliases
    // and the ALB's invoke permissions too): its totals are apply's.
    let total = regex::Regex::new(r"paymig apply: ok: (\d+) created, (\d+) updated").unwrap();
    let totals = total.captures(&apply.stdout).unwrap_or_else(|| panic!("{}", apply.stdout));
    assert_eq!(
        (totals[1].parse::<u64>().unwrap(), totals[2].parse::<u64>().unwrap()),
        (creates, doc["summary"]["update"].as_u64().unwrap()),
        "plan {}\napply {}",
        doc["summary"],
        apply.stdout
    );
    let converged = w.paymig(["plan"]).env("COLUMNS", "100").run();
    converged.expect_code(0);
    assert_snapshot("plan-converged.txt", &masked(&converged.stdout, &w));

    // The validate report, with one alarm changed behind paymig's back:
    // metadata first, the drifted alarm first with a path-level difference,
    // expected differences by field name.
    let cpu = w.prod.cloudwatch.describe_alarms().alarm_names("payments-prod-cpu-high").send().await.unwrap();
    let a = cpu.metric_alarms()[0].clone();
    w.prod
        .cloudwatch
        .put_metric_alarm()
        .alarm_name("payments-prod-cpu-high")
        .set_namespace(a.namespace().map(str::to_owned))
        .set_metric_name(a.metric_name().map(str::to_owned))
        .set_dimensions(Some(a.dimensions().to_vec()))
        .set_statistic(a.statistic().cloned())
        .set_period(a.period())
        .set_evaluation_periods(a.evaluation_periods())
        .threshold(95.0)
        .set_comparison_operator(a.comparison_operator().cloned())
        .set_alarm_actions(Some(a.alarm_actions().to_vec()))
        .set_ok_actions(Some(a.ok_actions().to_vec()))
        .set_treat_missing_data(a.treat_missing_data().map(str::to_owned))
        .set_alarm_description(a.alarm_description().map(str::to_owned))
        .send()
        .await
        .unwrap();
    let report = w.paymig(["validate"]).run();
    report.expect_code(3);
    let text = masked(&report.stdout, &w);
    let runs = regex::Regex::new(r"\d{8}T\d{6}Z-[0-9a-f]{4}").unwrap();
    let text = runs.replace_all(&text, "RUN").replace(env!("CARGO_PKG_VERSION"), "VERSION");
    assert_snapshot("validate-drift.md", &text);
    // No Rust Debug text reaches people: no `Some(…)`, `None`, quoted
    // struct dumps.
    for (what, out) in [("plan", &plan.stdout), ("converged plan", &converged.stdout), ("validate", &report.stdout)] {
        for debug in ["Some(", "None", "\"}"] {
            assert!(!out.contains(debug), "{what} shows {debug:?}:\n{out}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn progress_is_a_line_per_step_transition_or_a_json_event_for_codebuild() {
    let w = World::with(Default::default(), crate::without_database).await;
    let apply = w.paymig(["apply", "--yes"]).run();
    apply.expect_code(0);
    // Not a terminal: plain lines, one per transition, no escape codes.
    for step in ["kms", "network", "endpoints", "dynamodb", "audit", "iam", "lambda", "alb", "monitoring", "params"] {
        assert!(apply.stderr.contains(&format!("paymig apply: [{step}] running")), "{step}:\n{}", apply.stderr);
        assert!(apply.stderr.contains(&format!("paymig apply: [{step}] done ")), "{step}:\n{}", apply.stderr);
    }
    assert!(apply.stderr.contains("paymig apply: [database] skipped"), "{}", apply.stderr);
    let copied = regex::Regex::new(r"\[params\] (\d+)/(\d+) parameters copied").unwrap();
    let last = copied.captures_iter(&apply.stderr).last().expect("a parameter counter");
    assert_eq!(last[1], last[2], "the counter ends at its total");
    assert!(!apply.stderr.contains('\x1b'), "no terminal escapes off a terminal");

    // JSON: one event per step transition and a final summary, every line JSON.
    let destroy = w.paymig(["--log-format", "json", "destroy", "--yes"]).run();
    destroy.expect_code(0);
    let events: Vec<serde_json::Value> = destroy.stderr.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let steps: Vec<(String, String)> = events
        .iter()
        .filter(|e| e["event"] == "step")
        .map(|e| (e["step"].as_str().unwrap().to_owned(), e["state"].as_str().unwrap().to_owned()))
        .collect();
    for step in ["network", "audit", "params"] {
        assert!(steps.contains(&(step.into(), "running".into())), "{steps:?}");
        assert!(steps.contains(&(step.into(), "done".into())), "{steps:?}");
    }
    let summary = events.iter().find(|e| e["event"] == "summary").expect("a summary event");
    assert_eq!(summary["status"], "ok");
    assert!(events.iter().all(|e| e["elapsed_ms"].is_u64() || e["event"] != "step"));
}

/// A shell script run at a real terminal (a detached tmux session of
/// `cols` × `rows`) against the test's emulator; the session ends on drop.
struct Terminal {
    session: String,
}

impl Terminal {
    /// Runs `body` (shell lines; `$PAYMIG` is the binary with the test's
    /// configuration) in a new session.
    fn start(w: &World, name: &str, cols: u16, rows: u16, body: &str) -> Terminal {
        let session = format!("paymig-{name}-{}", std::process::id());
        let script = w.dir.path().join(format!("{name}.sh"));
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nexport AWS_ENDPOINT_URL={} AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_EC2_METADATA_DISABLED=true\nPAYMIG=\"{} --config {}\"\n{body}\nsleep 60\n",
                w.moto.endpoint,
                env!("CARGO_BIN_EXE_paymig"),
                w.config.display()
            ),
        )
        .unwrap();
        let t = Terminal { session };
        let (x, y) = (cols.to_string(), rows.to_string());
        let started =
            t.tmux(&["new-session", "-d", "-s", &t.session, "-x", &x, "-y", &y, "sh", script.to_str().unwrap()]);
        assert!(started.status.success(), "{}", String::from_utf8_lossy(&started.stderr));
        t
    }

    fn tmux(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new("tmux").args(args).output().expect("tmux is installed by scripts/test")
    }

    /// Everything on screen and in the scrollback, wrapped lines joined.
    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.tmux(&["capture-pane", "-p", "-J", "-S", "-20000", "-t", &self.session]).stdout)
            .into_owned()
    }

    /// The screen once `text` is on it `times` times (or after a minute).
    fn wait_for(&self, text: &str, times: usize) -> String {
        tokio::task::block_in_place(|| {
            let t = std::time::Instant::now();
            loop {
                let s = self.screen();
                if s.matches(text).count() >= times || t.elapsed() > std::time::Duration::from_secs(90) {
                    return s;
                }
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
        })
    }

    /// Types `keys` and Enter.
    fn answer(&self, keys: &str) {
        self.tmux(&["send-keys", "-t", &self.session, keys, "Enter"]);
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        self.tmux(&["kill-session", "-t", &self.session]);
    }
}

/// At a real terminal (tmux), `apply` without `--yes` shows the plan —
/// every resource it would create — with the account and region, then asks;
/// anything but `y`/`yes` changes nothing, and declining is not an error
/// (exit 0); `y` applies.
#[tokio::test(flavor = "multi_thread")]
async fn apply_at_a_terminal_shows_the_plan_first_and_changes_nothing_unless_confirmed() {
    let w = World::with(Default::default(), crate::without_database).await;
    let term = Terminal::start(
        &w,
        "apply",
        160,
        50,
        "$PAYMIG apply\necho EXIT=$?\n$PAYMIG apply\necho AGAIN=$?\n$PAYMIG validate\necho VALIDATED=$?",
    );
    let asked = term.wait_for("[y/N]", 1);
    assert!(asked.contains("[y/N]"), "no prompt:\n{asked}");
    let plan_at = asked.find("Plan: ").expect("the plan is shown");
    assert!(plan_at < asked.find("[y/N]").unwrap(), "the plan comes before the question:\n{asked}");
    assert!(asked.contains("+ vpc payments-prod"), "each resource is listed:\n{asked}");
    assert!(asked.contains("account 123456789012 (us-east-1)"), "account and region are named:\n{asked}");
    term.answer("no");
    let done = term.wait_for("EXIT=", 1);
    assert!(done.contains("not confirmed: nothing was changed") && done.contains("EXIT=0"), "{done}");
    let left = crate::support::inventory::prod_inventory(&w.moto.endpoint, "prod").await;
    assert!(left.is_empty(), "nothing was created: {left:?}");
    // The same question again: `y` is yes.
    let again = term.wait_for("[y/N]", 2);
    assert_eq!(again.matches("[y/N]").count(), 2, "{again}");
    term.answer("y");
    let applied = term.wait_for("AGAIN=", 1);
    assert!(applied.contains("AGAIN=0") && applied.contains("paymig apply: ok: "), "{applied}");
    assert!(!crate::support::inventory::prod_inventory(&w.moto.endpoint, "prod").await.is_empty());
    // validate at a terminal: the summary, not Markdown tables.
    let validated = term.wait_for("VALIDATED=", 1);
    assert!(validated.contains("VALIDATED=0"), "{validated}");
    assert!(validated.contains("Every resource matches dev and every check passes."), "{validated}");
    assert!(!validated.contains("| tier |"), "no Markdown at a terminal:\n{validated}");
}

/// Before a destroy deletes data (items in a table, objects in a bucket)
/// it says what is at stake above the prompt, lists the resources per step
/// by kind with the totals, and shows what the sweep would remove beyond
/// the journal; at a terminal the migration's name must be typed (`yes` is
/// not enough); the dry run names every change and where the sweep looks,
/// and a KMS key is scheduled for deletion, not deleted.
#[tokio::test(flavor = "multi_thread")]
async fn destroy_names_the_data_at_risk_and_asks_for_the_migration_name_at_a_terminal() {
    use aws_sdk_dynamodb::types::AttributeValue;
    use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};
    let w = World::with(Default::default(), crate::without_database).await;
    w.paymig(["apply", "--yes"]).run().expect_code(0);
    for i in 0..3 {
        let item = AttributeValue::S(format!("s-{i}"));
        w.prod.dynamodb.put_item().table_name("sessions-prod").item("session_id", item).send().await.unwrap();
    }
    // The bucket's TLS-only policy refuses the emulator's plain HTTP; the
    // owner may lift it to write the test's objects.
    w.prod.s3.delete_bucket_policy().bucket("payments-audit-prod").send().await.unwrap();
    for key in ["2026/12/01.log", "2026/12/02.log"] {
        let body = aws_sdk_s3::primitives::ByteStream::from_static(b"audit");
        w.prod.s3.put_object().bucket("payments-audit-prod").key(key).body(body).send().await.unwrap();
    }
    // A group tagged for the migration that the journal never saw.
    let vpc = w.prod.ec2.describe_vpcs().set_filters(Some(crate::tag_filters())).send().await.unwrap();
    let vpc = vpc.vpcs()[0].vpc_id().unwrap().to_owned();
    let tags = TagSpecification::builder()
        .resource_type(ResourceType::SecurityGroup)
        .tags(Tag::builder().key("paymig:migration").value("payments").build())
        .tags(Tag::builder().key("paymig:suffix").value("prod").build())
        .build();
    let stray = w
        .prod
        .ec2
        .create_security_group()
        .group_name("stray-prod")
        .description("made by hand")
        .vpc_id(&vpc)
        .tag_specifications(tags)
        .send()
        .await
        .unwrap()
        .group_id
        .unwrap();

    let dry = w.paymig(["destroy", "--dry-run"]).run();
    dry.expect_code(0);
    for line in [
        "data that would be deleted:",
        "  ! sessions-prod: DynamoDB table, 3 items",
        "  ! payments-audit-prod: S3 bucket, 2 object versions",
        &format!("sweep security group {stray}"),
        "looking only at:",
        "schedule deletion of kms_key",
        "deleted after a 7-day window",
    ] {
        assert!(dry.stdout.contains(line), "{line:?} in\n{}", dry.stdout);
    }
    assert!(
        dry.stdout.contains("delete security_group payments-db-sg-prod"),
        "the dry run names every change:\n{}",
        dry.stdout
    );

    let term = Terminal::start(&w, "destroy", 160, 60, "$PAYMIG destroy\necho EXIT=$?\n$PAYMIG destroy\necho AGAIN=$?");
    let asked = term.wait_for("Type the migration's name (payments)", 1);
    let prompt_at = asked.find("Type the migration's name").expect("asks for the name");
    for text in
        ["! sessions-prod: DynamoDB table, 3 items", &format!("sweep security group {stray}"), "change(s) to undo: "]
    {
        let at = asked.find(text).unwrap_or_else(|| panic!("{text:?} before the prompt:\n{asked}"));
        assert!(at < prompt_at, "{text:?} comes before the question:\n{asked}");
    }
    assert!(
        asked.contains("] delete 4 security_group named payments-"),
        "resources by kind, not one line each:\n{asked}"
    );
    assert!(!asked.contains("delete security_group payments-db-sg-prod"), "{asked}");
    term.answer("yes");
    let declined = term.wait_for("EXIT=", 1);
    assert!(declined.contains("not confirmed: nothing was changed") && declined.contains("EXIT=0"), "{declined}");
    assert!(w.prod.dynamodb.describe_table().table_name("sessions-prod").send().await.is_ok(), "the table is kept");
    term.wait_for("Type the migration's name (payments)", 2);
    term.answer("payments");
    let done = term.wait_for("AGAIN=", 1);
    assert!(done.contains("AGAIN=0") && done.contains("paymig destroy: ok: "), "{done}");
    assert!(done.contains(&format!("swept [network] security group {stray}")), "{done}");
    assert!(w.prod.dynamodb.describe_table().table_name("sessions-prod").send().await.is_err());
    let groups = w.prod.ec2.describe_security_groups().group_ids(&stray).send().await;
    assert!(groups.map_or(true, |g| g.security_groups().is_empty()), "the stray group was swept");
}

/// The live progress block at a real terminal (tmux, 80 columns): every
/// line printed while it is on screen — the per-record lines of destroy on
/// stdout, `-v` log events on stderr — stays on screen (none is erased by a
/// redraw), and the block's own lines fit the width.
#[tokio::test(flavor = "multi_thread")]
async fn the_live_block_never_erases_what_is_printed_above_it() {
    use std::process::Command;
    let w = World::with(Default::default(), crate::without_database).await;
    w.paymig(["apply", "--yes"]).run().expect_code(0);
    let undo_records = w.journal_lines().iter().filter(|l| l["type"] == "intent" && l["op"] != "update").count();
    let session = format!("paymig-live-{}", std::process::id());
    let tmux = |args: &[&str]| Command::new("tmux").args(args).output().expect("tmux is installed by scripts/test");
    let script = w.dir.path().join("destroy.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nexport AWS_ENDPOINT_URL={} AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_EC2_METADATA_DISABLED=true\n{} --config {} -v destroy --yes\necho EXIT=$?\nsleep 60\n",
            w.moto.endpoint,
            env!("CARGO_BIN_EXE_paymig"),
            w.config.display()
        ),
    )
    .unwrap();
    let started = tmux(&["new-session", "-d", "-s", &session, "-x", "80", "-y", "40", "sh", script.to_str().unwrap()]);
    assert!(started.status.success(), "{}", String::from_utf8_lossy(&started.stderr));
    let screen = tokio::task::block_in_place(|| {
        let t = std::time::Instant::now();
        loop {
            let out = tmux(&["capture-pane", "-p", "-S", "-20000", "-t", &session]);
            let s = String::from_utf8_lossy(&out.stdout).into_owned();
            if s.contains("EXIT=") || t.elapsed() > std::time::Duration::from_secs(90) {
                return s;
            }
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
    });
    tmux(&["kill-session", "-t", &session]);
    assert!(screen.contains("EXIT=0"), "{screen}");
    let done = screen.lines().filter(|l| l.trim_start().starts_with("done [")).count();
    assert!(
        done >= undo_records,
        "every undone record's line is still on screen ({done} of at least {undo_records}):\n{screen}"
    );
    assert!(screen.contains("undone") || screen.contains("DEBUG"), "the -v events are on screen too:\n{screen}");
    for step in ["network", "kms", "lambda"] {
        let line = screen
            .lines()
            .rev()
            .find(|l| l.starts_with(&format!("[{step}] ")))
            .unwrap_or_else(|| panic!("the block's line for {step}:\n{screen}"));
        assert!(line.contains("done"), "{line}");
    }
    for l in screen.lines().filter(|l| l.starts_with('[') && l.contains("] ")) {
        assert!(l.chars().count() <= 80, "a block line wider than the terminal: {l:?}");
    }
}

#[test]
fn the_manual_page_is_generated_from_the_help() {
    let run = Paymig::new("http://127.0.0.1:9", Path::new("unused.toml")).args(["man"]).run();
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stdout.starts_with(".ie") || run.stdout.contains(".TH paymig"),
        "roff: {}",
        &run.stdout[..200.min(run.stdout.len())]
    );
    let text = run.stdout.replace("\\-", "-");
    for cmd in COMMANDS.iter().filter(|c| !matches!(**c, "help" | "man")) {
        assert!(text.contains(cmd), "the page names {cmd}");
    }
}

/// `paymig status | head`, `plan | head`, `validate | head`: once the
/// reader is gone, the command ends quietly (SIGPIPE, as `ls | head` does),
/// never with a panic about a broken pipe.
#[tokio::test(flavor = "multi_thread")]
async fn a_closed_pipe_ends_a_command_quietly() {
    let w = World::with(Default::default(), crate::without_database).await;
    let apply = w.paymig(["apply", "--yes"]).run();
    apply.expect_code(0);
    // apply ends with its total, as rollback and destroy do.
    let last = apply.stdout.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("paymig apply: ok: ") && last.contains(" created, ") && last.contains(" updated, 0 failed ("),
        "{}",
        apply.stdout
    );
    for args in [&["status"][..], &["plan"], &["validate"], &["iam-policy"], &["destroy", "--dry-run"]] {
        let run = w.paymig(args).run_into_closed_pipe();
        assert!(!run.stderr.contains("panicked"), "{args:?}: {}", run.stderr);
        assert_eq!((run.code, run.signal), (None, Some(libc::SIGPIPE)), "{args:?}: {}", run.stderr);
    }
}

/// An update shows each setting's value before and after, in text and JSON,
/// and rollback's list shows what it puts back; `+ ~ -` mark actions only
/// (a new resource's settings are indented with `·`), uncoloured in pipes.
#[tokio::test(flavor = "multi_thread")]
async fn plan_and_rollback_show_values_and_mark_actions_only() {
    let w = World::with(Default::default(), crate::without_database).await;
    let fresh = w.paymig(["plan"]).run();
    fresh.expect_code(0);
    assert!(
        !fresh.stdout.lines().any(|l| l.trim_start().starts_with("- ")),
        "no sub-line reads as a deletion:\n{}",
        fresh.stdout
    );
    assert!(fresh.stdout.contains("      · reserved concurrency"), "{}", fresh.stdout);
    assert!(!fresh.stdout.contains('\x1b'), "no colour in a pipe");
    assert!(fresh.stderr.contains("reading dev (vpc-"), "says what it reads before the first line: {}", fresh.stderr);
    w.paymig(["apply", "--yes"]).run().expect_code(0);
    // Drift behind paymig's back: concurrency 7 (100 configured), PITR off.
    w.prod
        .lambda
        .put_function_concurrency()
        .function_name("payment-processor-prod")
        .reserved_concurrent_executions(7)
        .send()
        .await
        .unwrap();
    w.prod
        .dynamodb
        .update_continuous_backups()
        .table_name("sessions-prod")
        .point_in_time_recovery_specification(
            aws_sdk_dynamodb::types::PointInTimeRecoverySpecification::builder()
                .point_in_time_recovery_enabled(false)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let plan = w.paymig(["plan"]).run();
    plan.expect_code(0);
    for line in [
        "~ lambda_function payment-processor-prod (reserved concurrency: 7 → 100)",
        "~ dynamodb_table sessions-prod (point-in-time recovery: off → on)",
    ] {
        assert!(plan.stdout.contains(line), "{line}\n{}", plan.stdout);
    }
    let json: serde_json::Value = serde_json::from_str(&w.paymig(["plan", "--format", "json"]).run().stdout).unwrap();
    let values: Vec<serde_json::Value> = json["steps"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["changes"].as_array().unwrap().iter())
        .flat_map(|c| c["values"].as_array().cloned().unwrap_or_default())
        .collect();
    assert!(
        values.contains(&serde_json::json!({"setting": "reserved concurrency", "from": "7", "to": "100"})),
        "{values:?}"
    );
    w.paymig(["apply", "--yes"]).run().expect_code(0);
    // Rollback of that apply restores the drift, and says so before asking.
    let dry = w.paymig(["rollback", "--dry-run"]).run();
    dry.expect_code(0);
    for line in [
        "restore lambda_function payment-processor-prod: reserved concurrency: 100 → 7",
        "restore dynamodb_table sessions-prod: point-in-time recovery: on → off",
    ] {
        assert!(dry.stdout.contains(line), "{line}\n{}", dry.stdout);
    }
    // After the rollback, status says which run undid that apply and when.
    w.paymig(["rollback", "--yes"]).run().expect_code(0);
    let status = w.paymig(["status"]).run();
    status.expect_code(0);
    let apply_line = status.stdout.lines().rfind(|l| l.contains(" apply ")).unwrap_or_default().to_owned();
    assert!(apply_line.contains("— rolled back by "), "{}", status.stdout);
    let json: serde_json::Value = serde_json::from_str(&w.paymig(["status", "--format", "json"]).run().stdout).unwrap();
    let runs = json["runs"].as_array().unwrap();
    let rollback = runs.iter().rev().find(|r| r["command"] == "rollback").unwrap();
    let applies: Vec<&serde_json::Value> = runs.iter().filter(|r| r["command"] == "apply").collect();
    assert_eq!(applies.last().unwrap()["rolled_back_by"], rollback["id"], "{json}");
    assert!(applies[0]["rolled_back_by"].is_null(), "the first apply still stands: {json}");
}

/// plan says how long the apply will take on AWS's clock and what it waits
/// for: AWS's typical figures at first (the Aurora restore and an instance,
/// the instances side by side), then — after an apply recorded its waits in
/// the journal — what this account took. destroy --dry-run says the same
/// for teardown (Lambda's interfaces).
#[tokio::test(flavor = "multi_thread")]
async fn plan_and_destroy_dry_run_estimate_the_duration_from_typical_then_observed_waits() {
    let w = World::new().await;
    let waits = |doc: &serde_json::Value| -> Vec<serde_json::Value> {
        doc["expected_duration"]["steps"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| s["waits"].as_array().unwrap().clone())
            .collect()
    };
    let first = w.paymig(["plan"]).run();
    first.expect_code(0);
    assert!(
        first.stdout.contains("expected duration ≈ 18 min on AWS's clock (critical path: ")
            && first.stdout.contains("database (restore ≈ 10 min, instances ≈ 8 min)"),
        "{}",
        first.stdout
    );
    let doc: serde_json::Value = serde_json::from_str(&w.paymig(["plan", "--format", "json"]).run().stdout).unwrap();
    let restore = waits(&doc).into_iter().find(|x| x["wait"] == "aurora_restore").expect("the restore is estimated");
    assert_eq!((restore["basis"].as_str(), restore["seconds"].as_f64()), (Some("typical"), Some(600.0)));
    let path: Vec<&str> = doc["expected_duration"]["critical_path"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["step"].as_str())
        .collect();
    assert!(path.contains(&"database"), "{path:?}");

    w.paymig(["apply", "--yes"]).run().expect_code(0);
    let end = w.journal_lines().into_iter().rev().find(|l| l["type"] == "run_end").unwrap();
    let observed = end["observed"]["waits"].as_array().expect("the apply recorded its waits").clone();
    assert!(observed.iter().any(|x| x["wait"] == "aurora_restore" && x["resource"] == "payments-prod"), "{end}");
    assert!(end["observed"]["steps"].as_array().unwrap().iter().any(|s| s["step"] == "database"), "{end}");

    let teardown = w.paymig(["destroy", "--dry-run"]).run();
    teardown.expect_code(0);
    assert!(
        teardown.stdout.contains("expected duration ≈ ")
            && teardown.stdout.contains("Lambda's network interfaces released ≈ 20 min"),
        "{}",
        teardown.stdout
    );
    w.paymig(["destroy", "--yes"]).run().expect_code(0);
    // The second cold plan rests on what this account took (the emulator
    // restores at once).
    let doc: serde_json::Value = serde_json::from_str(&w.paymig(["plan", "--format", "json"]).run().stdout).unwrap();
    let restore = waits(&doc).into_iter().find(|x| x["wait"] == "aurora_restore").expect("the restore is estimated");
    assert_eq!(restore["basis"], "observed", "{restore}");
    assert_eq!(restore["runs"], 1);
    assert!(restore["seconds"].as_f64().unwrap() < 60.0, "{restore}");
    let text = w.paymig(["plan"]).run();
    assert!(text.stdout.contains("expected duration ≈ "), "{}", text.stdout);
    assert!(!text.stdout.contains("restore ≈ 10 min"), "no longer the typical figure: {}", text.stdout);
}
