//! One file per command, each thin: load the config, take the lock, build the
//! context and the DAG, call the engine, print. What they share is here.

pub mod apply;
pub mod ci_template;
pub mod destroy;
pub mod iam_policy;
pub mod params;
pub mod plan;
pub mod rollback;
pub mod status;
pub mod switch;
pub mod undo;
pub mod unlock;
pub mod validate;

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;

use crate::aws::Aws;
use crate::cli::{Cli, Command};
use crate::config::{Config, JournalLocation};
use crate::engine::dag::Dag;
use crate::engine::journal::Journal;
use crate::engine::lock::Lock;
use crate::engine::store::file::FileStore;
use crate::engine::store::s3::{Remote, RemoteSpec};
use crate::engine::store::{Holder, Store, StoreError};
use crate::engine::{Ctx, Mode, StepError};
use crate::error::{Error, Result};

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> Result<()> {
    crate::aws::open_call_log();
    if let Command::Completions { shell } = cli.command {
        use clap::CommandFactory;
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "paymig", &mut script);
        // A closed pipe (`| head`) is not an error worth a message.
        let _ = std::io::stdout().write_all(&script);
        return Ok(());
    }
    if let Command::Man = cli.command {
        use clap::CommandFactory;
        let mut page = Vec::new();
        clap_mangen::Man::new(Cli::command())
            .render(&mut page)
            .map_err(|e| Error::Usage(format!("cannot render the manual page: {e}")))?;
        let _ = std::io::stdout().write_all(&page);
        return Ok(());
    }
    let cfg = Config::load(&cli.config)?;
    match cli.command {
        Command::Plan(args) => plan::run(cfg, args).await,
        Command::Apply(args) => apply::run(cfg, args).await,
        Command::Rollback(args) => rollback::run(cfg, args).await,
        Command::Destroy(args) => destroy::run(cfg, args).await,
        Command::Status(args) => status::run(cfg, args).await,
        Command::IamPolicy { side } => iam_policy::run(&cfg, side).await,
        Command::CiTemplate(args) => ci_template::run(&cfg, args),
        Command::Unlock { confirm } => unlock::run(cfg, confirm.yes),
        Command::Params(args) => params::run(cfg, args).await,
        Command::Validate(args) => validate::run(cfg, args).await,
        Command::Switch(args) => switch::run(cfg, args).await,
        Command::Completions { .. } | Command::Man => unreachable!("handled before the configuration is read"),
    }
}

/// A run's duration as a person reads it: `7.9s`, `18m 12s`, `1h 02m`.
pub fn elapsed(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{:.1}s", d.as_secs_f64()),
        60..=3599 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// Where the journal lives, for messages.
pub fn journal_location(cfg: &Config) -> String {
    match &cfg.journal {
        JournalLocation::Local(dir) => FileStore::new(dir, &cfg.migration.name).location(),
        JournalLocation::S3 { .. } => cfg.journal.to_string(),
    }
}

/// The journal's and the lock's store, as `[migration] journal` says: the
/// one place that chooses between a local directory and S3.
pub(crate) fn store(cfg: &Config) -> Result<Arc<dyn Store>> {
    match &cfg.journal {
        JournalLocation::Local(dir) => Ok(Arc::new(FileStore::new(dir, &cfg.migration.name))),
        JournalLocation::S3 { bucket, prefix } => {
            let spec = RemoteSpec {
                bucket: bucket.to_owned(),
                prefix: prefix.to_owned(),
                migration: cfg.migration.name.clone(),
                region: cfg.migration.region.clone(),
                profile: cfg.target.profile.clone(),
                role_arn: cfg.target.role_arn.clone(),
                lease_seconds: crate::engine::store::s3::lease_seconds_from_env(),
                sdk: None,
            };
            Ok(Arc::new(Remote::connect(spec).map_err(|e| Error::Journal(StoreError::from(e).into()))?))
        }
    }
}

/// What a command that changes prod runs with, opened once: the lock it
/// holds until it ends (released when this is dropped), the journal
/// (repaired if a crash tore its last line) and the context in apply mode.
pub struct Writing {
    pub ctx: Ctx,
    pub journal: Arc<Journal>,
    pub lock: Lock,
}

/// Takes the lock (waiting up to `--lock-timeout`), opens the journal, then
/// connects: everything a writing command needs, in that order.
pub async fn open_writing(cfg: Config, command: &str, confirm: &crate::cli::Confirm) -> Result<Writing> {
    let (lock, journal) = lock_and_open(&cfg, command, confirm.lock_timeout).await?;
    let ctx = connect(cfg, Mode::Apply, Some(journal.clone())).await?;
    Ok(Writing { ctx, journal, lock })
}

/// What a command that only reads runs with: the journal, if there is one
/// (never locked, never repaired), inside a context in plan mode.
pub async fn open_reading(cfg: Config) -> Result<Ctx> {
    let journal = open_read_only(&cfg)?;
    connect(cfg, Mode::Plan, journal).await
}

/// Takes the migration's lock — waiting up to `--lock-timeout` for another
/// run to release it — then opens (and if needed repairs) its journal.
pub async fn lock_and_open(cfg: &Config, command: &str, timeout: std::time::Duration) -> Result<(Lock, Arc<Journal>)> {
    let started = std::time::Instant::now();
    let mut said = false;
    loop {
        match try_lock_and_open(cfg, command) {
            Err(Error::Locked { holder, .. }) if started.elapsed() < timeout => {
                if !said {
                    tracing::warn!(
                        "another run holds the lock ({holder}); waiting up to {}s for it (--lock-timeout)",
                        timeout.as_secs()
                    );
                    said = true;
                }
                tokio::time::sleep(std::time::Duration::from_secs(2).min(timeout.saturating_sub(started.elapsed())))
                    .await;
            }
            other => return other,
        }
    }
}

fn try_lock_and_open(cfg: &Config, command: &str) -> Result<(Lock, Arc<Journal>)> {
    let store = store(cfg)?;
    // The lock is released when `lock` is dropped, also if opening fails.
    let lock =
        Lock::take(store.clone(), command).map_err(|e| Error::Journal(e.into()))?.map_err(|held| Error::Locked {
            location: held.location,
            holder: held.holder.map_or_else(|| "an unknown process".to_owned(), |h| h.to_string()),
            help: held.help,
        })?;
    if let Some(h) = &lock.stale {
        tracing::warn!("{}", store.took_over(h));
    }
    let (journal, repair) = Journal::open(store, &cfg.migration.name, true)?;
    if let Some(aside) = repair.torn_line_saved_to {
        tracing::warn!(path = %aside.display(), "the journal's last line was torn by a crash; it was moved aside and every complete entry is kept");
    }
    Ok((lock, Arc::new(journal)))
}

/// Opens the journal read-only, if there is one.
pub fn open_read_only(cfg: &Config) -> Result<Option<Arc<Journal>>> {
    Ok(inspect(cfg, false)?.0)
}

/// The journal (read-only, if there is one) and, when `with_holder`, who
/// holds the lock now.
pub fn inspect(cfg: &Config, with_holder: bool) -> Result<(Option<Arc<Journal>>, Option<Holder>)> {
    let store = store(cfg)?;
    let holder = if with_holder { store.holder().map_err(|e| Error::Journal(e.into()))? } else { None };
    let (journal, _) = Journal::open(store, &cfg.migration.name, false)?;
    Ok(((!journal.is_empty()).then(|| Arc::new(journal)), holder))
}

/// Connects to AWS and builds the context; the target account must answer.
pub async fn connect(cfg: Config, mode: Mode, journal: Option<Arc<Journal>>) -> Result<Ctx> {
    let aws = Aws::connect(&cfg).await;
    let account = aws.target.account_id().await.map_err(|e| {
        if e.contains("\nhelp:") {
            Error::Preflight(vec![e])
        } else {
            Error::Preflight(vec![format!(
                "{e}\nhelp: check the target credentials ([target] profile/role_arn, AWS_PROFILE, AWS_ENDPOINT_URL)"
            )])
        }
    })?;
    Ok(Ctx::new(cfg, aws, mode, journal, account))
}

/// Says, before the reads start, what they are: a plan of a large stack
/// reads for a while before its first line.
pub fn announce_reads(ctx: &Ctx) {
    let s = &ctx.cfg.source;
    let mut dev = vec![s.vpc_id.clone()];
    let count = |n: usize, what: &str| (n > 0).then(|| format!("{n} {what}{}", if n == 1 { "" } else { "s" }));
    dev.extend(count(s.dynamodb_tables.len(), "table"));
    dev.extend(count(s.lambda_functions.len(), "function"));
    dev.extend(count(s.audit_buckets.len(), "audit bucket"));
    dev.extend(count(s.dashboards.len(), "dashboard"));
    if !s.db_cluster.is_empty() {
        dev.push(format!("cluster {}", s.db_cluster));
    }
    dev.push(format!("parameters under {}", s.parameter_path));
    tracing::info!(
        "reading dev ({}) and prod (account {}, {}): preflight, then every step's plan",
        dev.join(", "),
        ctx.account,
        ctx.cfg.migration.region
    );
}

/// Every step's preflight checks, concurrently; any problem stops the command
/// before anything changes.
pub async fn preflight(ctx: &Ctx, dag: &Dag) -> Result<()> {
    let checks = dag.steps().iter().map(|s| crate::aws::in_lane(format!("preflight/{}", s.id()), s.preflight(ctx)));
    let problems: Vec<StepError> = futures::future::join_all(checks).await.into_iter().flatten().collect();
    if problems.is_empty() {
        return Ok(());
    }
    report_calls(&ctx.aws);
    // A read that failed (after the SDK's retries) is a runtime failure, not
    // bad input: exit 1, and the same command can simply be run again.
    let (invalid, failed): (Vec<_>, Vec<_>) = problems.into_iter().partition(|p| matches!(p, StepError::Invalid(_)));
    if failed.is_empty() {
        Err(Error::Preflight(invalid.iter().map(ToString::to_string).collect()))
    } else {
        let all: Vec<String> = failed.iter().chain(&invalid).map(ToString::to_string).collect();
        Err(Error::PreflightFailed(all))
    }
}

/// The step DAG.
pub fn build_dag() -> Result<Dag> {
    Dag::new(crate::steps::all()).map_err(|e| Error::Usage(format!("internal: invalid step graph: {e}")))
}

/// Refuses at once, before any AWS call, when confirmation would be needed
/// but there is no terminal to ask on.
pub fn require_confirmable(yes: bool, what: &str) -> Result<()> {
    if yes || std::io::stdin().is_terminal() {
        Ok(())
    } else {
        Err(Error::Usage(format!("{what}: refusing without --yes (no terminal to confirm on); nothing was changed")))
    }
}

/// Asks for confirmation on a terminal; refuses without one.
pub fn confirm(yes: bool, question: &str) -> Result<()> {
    confirm_with(yes, question, None)
}

/// [`confirm`], asking the operator to type `word` (the migration's name)
/// instead of `yes` when `word` is given: when data would be deleted.
/// Declining is not an error: nothing changed (exit 0).
pub fn confirm_with(yes: bool, question: &str, word: Option<&str>) -> Result<()> {
    if yes {
        return Ok(());
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(Error::Usage(format!("{question}: refusing without --yes (no terminal to confirm on)")));
    }
    match word {
        Some(w) => eprint!("{question}? Type the migration's name ({w}) to continue: "),
        None => eprint!("{question}? [y/N] "),
    }
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer).map_err(|e| Error::Usage(format!("cannot read the confirmation: {e}")))?;
    let answer = answer.trim();
    let accepted = match word {
        Some(w) => answer == w,
        None => matches!(answer.to_ascii_lowercase().as_str(), "y" | "yes"),
    };
    if accepted {
        Ok(())
    } else {
        eprintln!("paymig: not confirmed: nothing was changed");
        Err(Error::Declined)
    }
}

/// Whether stdout takes colour: a terminal, and `NO_COLOR` not set.
pub fn colour_on_stdout() -> bool {
    use std::io::IsTerminal;
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none())
}

/// `text` in an ANSI colour when stdout takes colour; as it is in pipes
/// and files.
pub fn paint(colour: &str, text: &str) -> String {
    if colour_on_stdout() {
        format!("\x1b[{colour}m{text}\x1b[0m")
    } else {
        text.to_owned()
    }
}

/// How a journaled run ended: by a signal, with failures, or cleanly.
pub struct Ended {
    /// `interrupted`, `failed` or `ok`, as the journal records it.
    pub status: &'static str,
    interrupted: Option<&'static str>,
    failures: Vec<String>,
}

/// Closes the journal's run (its status and mutating calls) and sends the
/// final progress event: `fields` and the call counts.
pub fn end_run(ctx: &Ctx, journal: &Journal, failures: Vec<String>, mut fields: serde_json::Value) -> Result<Ended> {
    let stats = ctx.aws.stats.summary();
    let interrupted = crate::signals::received();
    let status = match (interrupted, failures.is_empty()) {
        (Some(_), _) => "interrupted",
        (None, true) => "ok",
        (None, false) => "failed",
    };
    journal.end_run_observed(status, stats.mutating, Some(ctx.observation()))?;
    fields["read_calls"] = stats.read.into();
    fields["mutating_calls"] = stats.mutating.into();
    fields["retries"] = stats.retries.into();
    crate::progress::finish(status, &fields);
    Ok(Ended { status, interrupted, failures })
}

impl Ended {
    pub fn failures(&self) -> usize {
        self.failures.len()
    }

    /// Prints the call counts and turns the ending into the exit: a signal,
    /// then failures, decide it.
    pub fn exit(self, aws: &Aws) -> Result<()> {
        report_calls(aws);
        if let Some(signal) = self.interrupted {
            Err(Error::Interrupted { signal })
        } else if self.failures.is_empty() {
            Ok(())
        } else {
            Err(Error::StepsFailed { lines: self.failures })
        }
    }
}

/// Prints the API-call accounting to stderr (and as a structured event).
pub fn report_calls(aws: &Aws) {
    let s = aws.stats.summary();
    let by_operation = serde_json::to_string(&s.by_operation).unwrap_or_default();
    if crate::logging::is_json() {
        tracing::info!(
            read = s.read,
            mutating = s.mutating,
            retries = s.retries,
            decrypting_reads = s.decrypting_reads,
            by_operation = %by_operation,
            "api calls"
        );
    } else {
        // The per-operation dump is for -vv; the one line below is for people.
        tracing::trace!(by_operation = %by_operation, "api calls");
        eprintln!("{s}");
    }
}

/// The path shown for the config in messages.
pub fn shown(path: &Path) -> String {
    path.display().to_string()
}
