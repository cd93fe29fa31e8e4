//! The bad-input corpus against a seeded world with a journal holding a
//! real migration: every case exits 2 (bad input) or 1 (a runtime failure)
//! with a message naming the problem and what to do, sends no mutating call,
//! and leaves the journal byte for byte as it was. The config-only cases that
//! never reach AWS are in `malformed_configs_exit_2_naming_the_key_with_zero_aws_calls`.

use crate::support::proxy::{Fault, Proxy, ProxyConfig};
use crate::support::{Run, World};

struct Corpus<'w> {
    w: &'w World,
    journal: Vec<u8>,
    /// The prod side as the real apply left it, read through the SDK.
    prod: crate::support::inventory::Inventory,
    cases: Vec<String>,
}

impl Corpus<'_> {
    /// Writes a config edited by `edit` and returns its path.
    fn config(&self, name: &str, edit: impl FnOnce(String) -> String) -> std::path::PathBuf {
        let text = std::fs::read_to_string(&self.w.config).unwrap();
        let path = self.w.dir.path().join(format!("{name}.toml"));
        std::fs::write(&path, edit(text)).unwrap();
        path
    }

    async fn check(&mut self, what: &str, run: Run, code: i32, needles: &[&str]) {
        assert_eq!(run.code, Some(code), "{what}: expected exit {code}\n{}", run.stderr);
        for n in needles {
            assert!(run.stderr.contains(n), "{what}: {n:?} not in\n{}", run.stderr);
        }
        assert!(
            run.stderr.contains("help:") || run.stderr.contains("try '--help'"),
            "{what}: says what to do\n{}",
            run.stderr
        );
        if run.stderr.contains("API calls:") {
            assert_eq!(run.mutating_calls(), 0, "{what}: no mutating call\n{}", run.stderr);
        }
        assert_eq!(std::fs::read(self.w.journal_path()).unwrap(), self.journal, "{what}: the journal is untouched");
        // What AWS holds, not only what paymig says it did.
        let prod = crate::support::inventory::prod_inventory(&self.w.moto.endpoint, "prod").await;
        assert_eq!(prod, self.prod, "{what}: prod is exactly as the apply left it");
        self.cases.push(what.to_owned());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_refused_before_anything_changes_and_the_journal_is_kept() {
    let w = World::new().await;
    w.paymig(["apply", "--yes"]).run().expect_code(0);
    let prod = crate::support::inventory::prod_inventory(&w.moto.endpoint, "prod").await;
    assert!(prod.contains_key("dynamodb_table") && prod.contains_key("lambda_function"), "{prod:?}");
    let mut c = Corpus { w: &w, journal: std::fs::read(w.journal_path()).unwrap(), prod, cases: Vec::new() };
    let run = |cfg: &std::path::Path, args: &[&str]| {
        crate::support::Paymig::new(&w.moto.endpoint, cfg).args(args).guard_dev(&w.moto.endpoint).run()
    };

    // No credentials: one line as the AWS CLI says it, never the provider
    // chain's dump.
    let none = crate::support::Paymig::new(&w.moto.endpoint, &w.config).without_credentials().args(["plan"]).run();
    assert!(!none.stderr.contains("Attempted:") && !none.stderr.contains("FailedToLoad"), "{}", none.stderr);
    c.check(
        "no credentials",
        none,
        2,
        &["cannot identify the target account: no AWS credentials found", "AWS_PROFILE"],
    )
    .await;

    // Missing dev resources of every kind, one at a time.
    for (what, from, to, needle) in [
        ("missing dev VPC", "vpc_id = \"vpc-", "vpc_id = \"vpc-0000", "[source] vpc_id"),
        ("missing dev table", "[\"sessions-dev\"]", "[\"sessions-gone-dev\"]", "sessions-gone-dev"),
        ("missing dev bucket", "[\"payments-audit-dev\"]", "[\"payments-audit-gone-dev\"]", "payments-audit-gone-dev"),
        (
            "missing dev cluster",
            "db_cluster = \"payments-dev\"",
            "db_cluster = \"payments-gone-dev\"",
            "payments-gone-dev",
        ),
        ("missing dev snapshot", "db_snapshot = \"\"", "db_snapshot = \"payments-dev-gone\"", "payments-dev-gone"),
        (
            "missing dev dashboard",
            "dashboards = [\"payments-dev\"]",
            "dashboards = [\"payments-gone-dev\"]",
            "payments-gone-dev",
        ),
    ] {
        let cfg = c.config(what, |t| t.replace(from, to));
        c.check(what, run(&cfg, &["apply", "--yes"]), 2, &[needle]).await;
    }
    let cfg = c.config("missing function", |t| {
        t.replace("\"payment-processor-dev\"]", "\"gone-processor-dev\"]")
            .replace("[lambda.overrides.\"payment-processor-dev\"]", "[lambda.overrides.\"gone-processor-dev\"]")
    });
    c.check("missing dev function", run(&cfg, &["apply", "--yes"]), 2, &["gone-processor-dev"]).await;

    // A dev function on a deprecated runtime.
    let dev = crate::support::fixture::Clients::new(&w.moto.endpoint, "us-east-1", None).await;
    let role = dev.iam.get_role().role_name("payment-processor-dev-role").send().await.unwrap();
    dev.lambda
        .create_function()
        .function_name("old-batch-dev")
        .runtime(aws_sdk_lambda::types::Runtime::Python38)
        .role(role.role().unwrap().arn())
        .handler("app.handler")
        .code(
            aws_sdk_lambda::types::FunctionCode::builder()
                .zip_file(aws_sdk_lambda::primitives::Blob::new(crate::support::fixture::zip_one("app.py", b"x")))
                .build(),
        )
        .send()
        .await
        .unwrap();
    let cfg = c.config("old runtime", |t| {
        t.replace("[\"payment-processor-dev\"]", "[\"payment-processor-dev\", \"old-batch-dev\"]")
    });
    c.check("unsupported runtime", run(&cfg, &["apply", "--yes"]), 2, &["old-batch-dev", "python3.8"]).await;

    // The journal: another migration's, a corrupt line, not a directory.
    let journal_text = String::from_utf8(c.journal.clone()).unwrap();
    let other = w.dir.path().join("other-journal");
    std::fs::create_dir_all(other.join("payments")).unwrap();
    std::fs::write(other.join("payments/journal.jsonl"), journal_text.replace("\"payments\"", "\"ledger\"")).unwrap();
    let cfg = c.config("other migration", |t| {
        t.replace(&w.dir.path().join("journal").display().to_string(), &other.display().to_string())
    });
    c.check("journal of another migration", run(&cfg, &["apply", "--yes"]), 2, &["ledger", "journal"]).await;
    let corrupt = w.dir.path().join("corrupt-journal");
    std::fs::create_dir_all(corrupt.join("payments")).unwrap();
    let mut lines: Vec<&str> = journal_text.lines().collect();
    lines[3] = "{\"seq\":4,\"run\":";
    let corrupt_text = lines.join("\n") + "\n";
    std::fs::write(corrupt.join("payments/journal.jsonl"), &corrupt_text).unwrap();
    let cfg = c.config("corrupt", |t| {
        t.replace(&w.dir.path().join("journal").display().to_string(), &corrupt.display().to_string())
    });
    c.check("corrupted journal line", run(&cfg, &["apply", "--yes"]), 2, &["journal.jsonl:4", "corrupt"]).await;
    c.check("corrupted journal line (destroy)", run(&cfg, &["destroy", "--yes"]), 2, &["journal.jsonl:4"]).await;
    assert_eq!(std::fs::read_to_string(corrupt.join("payments/journal.jsonl")).unwrap(), corrupt_text, "kept as found");
    let file = w.dir.path().join("a-file");
    std::fs::write(&file, "not a directory").unwrap();
    let cfg = c.config("journal file", |t| {
        t.replace(&w.dir.path().join("journal").display().to_string(), &file.display().to_string())
    });
    c.check("unusable journal directory", run(&cfg, &["apply", "--yes"]), 2, &["cannot open the journal", "a-file"])
        .await;

    // A remote journal whose bucket does not exist.
    let cfg = c.config("no bucket", |t| {
        t.replace(&format!("\"{}\"", w.dir.path().join("journal").display()), "\"s3://paymig-state-missing/ci\"")
    });
    c.check("remote journal bucket missing", run(&cfg, &["apply", "--yes"]), 2, &["paymig-state-missing"]).await;

    // Derived names: a prod role name over IAM's 64 characters.
    let long = format!("{}-dev", "p".repeat(56));
    let cfg = c.config("long name", |t| {
        t.replace("\"payment-processor-dev\"]", &format!("\"{long}\"]"))
            .replace("[lambda.overrides.\"payment-processor-dev\"]", &format!("[lambda.overrides.\"{long}\"]"))
    });
    c.check("derived name over the length limit", run(&cfg, &["plan"]), 2, &[&long[..20], "64"]).await;

    // Duplicate entries.
    let cfg = c.config("dup bucket", |t| {
        t.replace("[\"payments-audit-dev\"]", "[\"payments-audit-dev\", \"payments-audit-dev\"]")
    });
    c.check("duplicate bucket", run(&cfg, &["plan"]), 2, &["source.audit_buckets"]).await;
    let cfg = c.config("dup function", |t| {
        t.replace("[\"payment-processor-dev\"]", "[\"payment-processor-dev\", \"payment-processor-dev\"]")
    });
    c.check("duplicate function", run(&cfg, &["plan"]), 2, &["source.lambda_functions"]).await;

    // The network and the credentials.
    let unreachable = crate::support::Paymig::new("http://127.0.0.1:9", &w.config).args(["apply", "--yes"]).run();
    c.check("unreachable endpoint", unreachable, 2, &["target", "AWS_ENDPOINT_URL"]).await;
    let expired = Proxy::start(ProxyConfig {
        fault_rate: 1.0,
        only_service: Some("sts".into()),
        kinds: vec![Fault::ExpiredToken],
        ..ProxyConfig::new(&w.moto.endpoint)
    });
    let run_expired = w.paymig(["apply", "--yes"]).via(&expired.endpoint).run();
    c.check("expired credentials", run_expired, 2, &["ExpiredToken", "credentials"]).await;

    // Command-line mistakes.
    c.check(
        "canary of 0%",
        w.paymig(["switch", "--to", "green", "--canary", "0", "--interval", "5", "--yes"]).run(),
        2,
        &["--canary"],
    )
    .await;
    let unknown_flag = w.paymig(["apply", "--yes", "--paralelism", "4"]).run();
    assert_eq!(unknown_flag.code, Some(2));
    assert!(unknown_flag.stderr.contains("--parallelism"), "suggests the flag: {}", unknown_flag.stderr);
    c.cases.push("misspelt flag".into());
    let as_dir = crate::support::Paymig::new(&w.moto.endpoint, w.dir.path()).args(["plan"]).run();
    c.check("config path is a directory", as_dir, 2, &[&w.dir.path().display().to_string()]).await;

    // With every case refused, the migration is still whole: a re-apply is a no-op.
    let again = w.paymig(["apply", "--yes"]).run();
    again.expect_code(0);
    assert_eq!(again.mutating_calls(), 0);
    eprintln!("bad-input corpus (world): {} cases: {}", c.cases.len(), c.cases.join("; "));
}
