//! Test support: the moto harness, the dev-stack fixture, and a builder that
//! runs the real paymig binary as a user would.

#![allow(dead_code)]

pub mod behaviour;
pub mod enforce;
pub mod fixture;
pub mod inventory;
pub mod moto;
pub mod proxy;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub use moto::Moto;

/// The reference configuration, pointed at a seeded dev VPC and a journal in
/// `dir`.
pub fn config_text(vpc_id: &str, dir: &Path) -> String {
    let reference = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations.toml"))
        .expect("read migrations.toml");
    reference
        .replace("vpc-0a1b2c3d4e5f", vpc_id)
        .replace("journal = \".paymig\"", &format!("journal = \"{}\"", dir.join("journal").display()))
}

/// The DOM a headless Chromium makes of the page at `path` (no network:
/// the page must be self-contained).
pub fn headless_dom(path: &Path) -> String {
    let chromium = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|b| std::process::Command::new("which").arg(b).output().is_ok_and(|o| o.status.success()))
        .expect("chromium is installed by scripts/test");
    let profile = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("file://{}", path.display()))
        .output()
        .expect("run chromium");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether an SDK call failed because its resource does not exist, by the
/// typed failure (paymig's own predicate): a throttle, a denial or a
/// refused request is not "gone", and says so in the panic.
#[track_caller]
pub fn is_gone<T: std::fmt::Debug, E>(
    result: Result<T, aws_smithy_runtime_api::client::result::SdkError<E, aws_smithy_runtime_api::http::Response>>,
) -> bool
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + 'static,
{
    match result {
        Ok(found) => panic!("expected the resource to be gone, found: {found:?}"),
        Err(e) => {
            let failure = paymig::testing::AwsFailure::of(&e);
            assert!(failure.is_not_found(), "expected a not-found answer, got: {failure}");
            true
        }
    }
}

/// The id of the security group called `name`.
pub async fn group_id(c: &fixture::Clients, name: &str) -> String {
    let out = c
        .ec2
        .describe_security_groups()
        .filters(aws_sdk_ec2::types::Filter::builder().name("group-name").values(name).build())
        .send()
        .await
        .unwrap();
    out.security_groups()
        .first()
        .and_then(|g| g.group_id())
        .unwrap_or_else(|| panic!("no security group {name}"))
        .to_owned()
}

/// Every paymig subcommand, as `paymig --help` lists them.
pub const COMMANDS: [&str; 14] = [
    "plan",
    "apply",
    "params",
    "validate",
    "switch",
    "rollback",
    "destroy",
    "status",
    "iam-policy",
    "ci-template",
    "unlock",
    "completions",
    "man",
    "help",
];

/// Panics, showing where, when dev's fingerprint changed across `what`.
#[track_caller]
fn dev_unchanged(before: &str, after: &str, what: &str, stderr: &str) {
    if before != after {
        let first = before.lines().zip(after.lines()).position(|(a, b)| a != b).unwrap_or(0);
        let ctx = |t: &str| t.lines().skip(first.saturating_sub(8)).take(16).collect::<Vec<_>>().join("\n");
        panic!(
            "{what} changed the dev environment (line {first} of its fingerprint)\n--- before\n{}\n--- after\n{}\n--- stderr\n{stderr}",
            ctx(before),
            ctx(after),
        );
    }
}

/// Dev as it was before a sequence of paymig runs (a crash round: a killed
/// apply, its resume, a no-op apply, a destroy), to check after the last:
/// one pair of full reads of dev for the sequence instead of one per run.
pub struct DevGuard {
    endpoint: String,
    before: String,
}

impl DevGuard {
    pub async fn take(endpoint: &str) -> DevGuard {
        DevGuard { endpoint: endpoint.to_owned(), before: inventory::dev_fingerprint(endpoint).await }
    }

    /// Panics if dev changed since [`DevGuard::take`].
    pub async fn check(self, what: &str) {
        let after = inventory::dev_fingerprint(&self.endpoint).await;
        dev_unchanged(&self.before, &after, what, "");
    }
}

/// A paymig invocation.
pub struct Paymig {
    cmd: Command,
    /// Where paymig logs each API call (`PAYMIG_CALL_LOG`), read by [`Run`].
    call_log: PathBuf,
    /// Whether that file is the harness's own (removed once read).
    own_log: bool,
    /// Fingerprint dev on this endpoint before and after the run, and fail
    /// if anything changed.
    dev_guard: Option<String>,
}

/// What a paymig run left.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub killed: bool,
    /// The signal that ended the process, if one did.
    pub signal: Option<i32>,
    /// One JSON object per API call (`PAYMIG_CALL_LOG`); `None` when paymig
    /// wrote no log, and for a run started with `spawn` (read with [`to_run`]).
    pub call_log: Option<Vec<serde_json::Value>>,
}

impl Run {
    /// How many mutating API calls paymig made (attempted ones included:
    /// a call the read-only guard refused is still logged).
    pub fn mutating_calls(&self) -> u64 {
        self.calls().1
    }

    /// The mutating calls, one `service:Operation (lane)` each, for a
    /// failure message.
    pub fn mutating_operations(&self) -> Vec<String> {
        self.call_log
            .iter()
            .flatten()
            .filter(|c| c["mutating"] == true)
            .map(|c| {
                format!(
                    "{}:{} ({})",
                    c["service"].as_str().unwrap_or("?"),
                    c["operation"].as_str().unwrap_or("?"),
                    c["lane"].as_str().unwrap_or("")
                )
            })
            .collect()
    }

    /// `(read, mutating)` calls, from paymig's own call log — not from the
    /// human accounting line.
    pub fn calls(&self) -> (u64, u64) {
        let log = self.call_log.as_ref().unwrap_or_else(|| {
            panic!("no call log for this run (a spawned run has none: use Paymig::run):\n{}", self.stderr)
        });
        let mutating = log.iter().filter(|c| c["mutating"] == true).count() as u64;
        (log.len() as u64 - mutating, mutating)
    }

    /// `service -> operation -> calls` from the JSON `api calls` event
    /// (the run must use `--log-format json`); the target side's services
    /// by name, the others as `source:ec2`, `replica:s3`.
    /// The JSON events on stderr (`--log-format json`) whose message is
    /// `message`.
    pub fn events(&self, message: &str) -> Vec<serde_json::Value> {
        self.stderr
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["message"] == message)
            .collect()
    }

    pub fn operations(&self) -> serde_json::Value {
        let event = self
            .stderr
            .lines()
            .rev()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["message"] == "api calls")
            .unwrap_or_else(|| panic!("no JSON `api calls` event (run with --log-format json):\n{}", self.stderr));
        serde_json::from_str(event["by_operation"].as_str().expect("by_operation")).expect("by_operation is JSON")
    }

    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code,
            Some(code),
            "expected exit {code}\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout,
            self.stderr
        );
        self
    }
}

impl Paymig {
    /// paymig against `endpoint` with static test credentials; nothing from
    /// the developer's own AWS set-up leaks in.
    pub fn new(endpoint: &str, config: &Path) -> Paymig {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_paymig"));
        cmd.arg("--config").arg(config);
        for var in [
            "AWS_PROFILE",
            "AWS_DEFAULT_PROFILE",
            "AWS_SESSION_TOKEN",
            "AWS_ROLE_ARN",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "PAYMIG_TEST_KILL_AFTER_WRITES",
            "PAYMIG_LOG",
        ] {
            cmd.env_remove(var);
        }
        // Empty AWS config files: nothing from the developer's set-up leaks in.
        let empty = std::env::temp_dir().join("paymig-test-empty-aws-config");
        if !empty.exists() {
            let _ = std::fs::write(&empty, "");
        }
        static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let call_log = std::env::temp_dir().join(format!("paymig-test-calls-{}-{n}.jsonl", std::process::id()));
        let _ = std::fs::remove_file(&call_log);
        cmd.env("PAYMIG_CALL_LOG", &call_log);
        cmd.env("AWS_ENDPOINT_URL", endpoint)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_CONFIG_FILE", &empty)
            .env("AWS_SHARED_CREDENTIALS_FILE", &empty)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_SDK_UA_APP_ID", "paymig-tests")
            .stdin(Stdio::null());
        Paymig { cmd, call_log, own_log: true, dev_guard: None }
    }

    /// Asserts that the run leaves every dev resource on `endpoint` exactly
    /// as it found it.
    pub fn guard_dev(mut self, endpoint: &str) -> Self {
        self.dev_guard = Some(endpoint.to_owned());
        self
    }

    /// No dev fingerprint around this run: for a sequence of runs that a
    /// [`DevGuard`] brackets as a whole.
    pub fn unguarded(mut self) -> Self {
        self.dev_guard = None;
        self
    }

    /// Talks to `endpoint` (a proxy in front of the emulator) instead.
    pub fn via(mut self, endpoint: &str) -> Self {
        self.cmd.env("AWS_ENDPOINT_URL", endpoint);
        self
    }

    pub fn env(mut self, k: &str, v: &str) -> Self {
        if k == "PAYMIG_CALL_LOG" {
            self.call_log = PathBuf::from(v);
            self.own_log = false;
        }
        self.cmd.env(k, v);
        self
    }

    /// Runs with `[source] profile = "dev"` and `[target] profile = "prod"`
    /// credentials from `files` (config, credentials) instead of the one
    /// static key of every other test.
    pub fn profiles(mut self, files: &(PathBuf, PathBuf)) -> Self {
        self.cmd
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env("AWS_CONFIG_FILE", &files.0)
            .env("AWS_SHARED_CREDENTIALS_FILE", &files.1);
        self
    }

    /// Runs with no credentials anywhere (no keys, empty config files, no
    /// instance metadata).
    pub fn without_credentials(mut self) -> Self {
        self.cmd.env_remove("AWS_ACCESS_KEY_ID").env_remove("AWS_SECRET_ACCESS_KEY");
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: AsRef<std::ffi::OsStr>>(mut self, args: I) -> Self {
        self.cmd.args(args);
        self
    }

    /// Starts paymig with stdout and stderr going to files.
    pub fn spawn_to(mut self, out: &Path, err: &Path) -> std::process::Child {
        let out = std::fs::File::create(out).expect("stdout file");
        let err = std::fs::File::create(err).expect("stderr file");
        self.cmd.stdout(out).stderr(err).spawn().expect("spawn paymig")
    }

    /// Runs with stdout a pipe whose reader is already gone (`| head` once
    /// head has exited): every write to stdout fails.
    pub fn run_into_closed_pipe(mut self) -> Run {
        use std::os::fd::{FromRawFd, OwnedFd};
        let mut fds = [0; 2];
        // SAFETY: pipe(2) fills two new descriptors, each owned once below.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0, "pipe");
        let (reader, writer) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        drop(reader);
        let out = self.cmd.stdout(Stdio::from(writer)).stderr(Stdio::piped()).output().expect("run paymig");
        to_run(out)
    }

    pub fn spawn(mut self) -> std::process::Child {
        self.cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn paymig")
    }

    /// Whether this invocation cannot write anywhere: `plan`, `validate`,
    /// `status`, `iam-policy`, `ci-template`, `help`/`--help`, or a `--dry-run`.
    fn is_read_only(&self) -> bool {
        let args: Vec<String> = self.cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        let command = args.iter().find(|a| COMMANDS.contains(&a.as_str()));
        args.iter().any(|a| a == "--dry-run" || a == "--help" || a == "-h")
            || command.is_some_and(|c| {
                ["plan", "validate", "status", "iam-policy", "ci-template", "help"].contains(&c.as_str())
            })
    }

    pub fn run(mut self) -> Run {
        let fingerprint = |endpoint: &str| {
            tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(inventory::dev_fingerprint(endpoint))
            })
        };
        // A command that cannot write is proven read-only by its call log
        // (below); the fingerprint, two full reads of dev, is for the rest.
        let read_only = self.is_read_only();
        let before = self.dev_guard.as_deref().filter(|_| !read_only).map(fingerprint);
        let out: Output = self.cmd.output().expect("run paymig");
        let mut run = to_run(out);
        // paymig opens the log at start: a missing file is a missing log,
        // never "no calls" (which would pass every zero-calls assertion).
        if let Ok(log) = std::fs::read_to_string(&self.call_log) {
            run.call_log =
                Some(log.lines().map(|l| serde_json::from_str(l).expect("a call log line is JSON")).collect());
        }
        if self.own_log {
            let _ = std::fs::remove_file(&self.call_log);
        }
        if read_only && self.dev_guard.is_some() {
            // paymig opens its call log before its first call, and logs a
            // call the read-only guard refused too: no log, no call.
            let source_writes: Vec<&serde_json::Value> =
                run.call_log.iter().flatten().filter(|c| c["mutating"] == true).collect();
            assert!(
                source_writes.is_empty(),
                "paymig {:?} cannot write, yet made mutating calls: {source_writes:?}\n{}",
                self.cmd.get_args().collect::<Vec<_>>(),
                run.stderr
            );
        }
        if let (Some(before), Some(endpoint)) = (before, self.dev_guard.as_deref()) {
            let what = format!("paymig {:?}", self.cmd.get_args().collect::<Vec<_>>());
            dev_unchanged(&before, &fingerprint(endpoint), &what, &run.stderr);
        }
        run
    }
}

pub fn to_run(out: Output) -> Run {
    use std::os::unix::process::ExitStatusExt;
    Run {
        code: out.status.code(),
        killed: out.status.signal() == Some(9),
        signal: out.status.signal(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        call_log: None,
    }
}

/// A test's world: a moto server, a seeded dev stack, a config file.
pub struct World {
    pub moto: Moto,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub dev: fixture::DevStack,
    pub prod: fixture::Clients,
}

impl World {
    pub async fn new() -> World {
        Self::with(fixture::Options::default(), |t| t).await
    }

    /// A world whose config text is edited by `edit`.
    /// A world around an emulator already seeded with `dev`.
    pub async fn adopt(moto: Moto, dev: fixture::DevStack, edit: impl FnOnce(String) -> String) -> World {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("migrations.toml");
        std::fs::write(&config, edit(config_text(&dev.vpc_id, dir.path()))).expect("write config");
        let prod = fixture::Clients::new(&moto.endpoint, "us-east-1", None).await;
        World { moto, dir, config, dev, prod }
    }

    pub async fn with(opts: fixture::Options, edit: impl FnOnce(String) -> String) -> World {
        let moto = Moto::start();
        let dev = fixture::seed(&moto.endpoint, &opts).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("migrations.toml");
        std::fs::write(&config, edit(config_text(&dev.vpc_id, dir.path()))).expect("write config");
        let prod = fixture::Clients::new(&moto.endpoint, "us-east-1", None).await;
        World { moto, dir, config, dev, prod }
    }

    pub fn paymig<I: IntoIterator<Item = S>, S: AsRef<std::ffi::OsStr>>(&self, args: I) -> Paymig {
        Paymig::new(&self.moto.endpoint, &self.config).args(args).guard_dev(&self.moto.endpoint)
    }

    pub fn journal_path(&self) -> PathBuf {
        self.dir.path().join("journal/payments/journal.jsonl")
    }

    pub fn journal_lines(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.journal_path())
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("journal line is JSON"))
            .collect()
    }
}
