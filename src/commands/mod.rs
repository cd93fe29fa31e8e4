//! One file per command, each thin: load the config, take the lock, build the
//! context and the DAG, call the engine, print. What they share is here.

pub mod apply;
pub mod iam_policy;
pub mod params;
pub mod plan;
pub mod status;
pub mod switch;
pub mod undo;
pub mod validate;

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::aws::Aws;
use crate::cli::{Cli, Command};
use crate::config::{Config, JournalLocation};
use crate::engine::dag::Dag;
use crate::engine::journal::{Journal, JournalError};
use crate::engine::lock::{self, Lock, LockError};
use crate::engine::{Ctx, Mode};
use crate::error::{Error, Result};

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> Result<()> {
    let cfg = Config::load(&cli.config)?;
    match cli.command {
        Command::Plan { format } => plan::run(cfg, format).await,
        Command::Apply { confirm, parallelism } => apply::run(cfg, confirm.yes, usize::from(parallelism)).await,
        Command::Rollback { confirm } => undo::rollback(cfg, confirm.yes).await,
        Command::Destroy { confirm } => undo::destroy(cfg, confirm.yes).await,
        Command::Status { format } => status::run(cfg, format).await,
        Command::IamPolicy => iam_policy::run(&cfg).await,
        Command::Params { dry_run, overwrite, confirm } => params::run(cfg, dry_run, overwrite, confirm.yes).await,
        Command::Validate { format, out } => validate::run(cfg, format, out).await,
        Command::Switch { to, canary, interval, confirm } => switch::run(cfg, to, canary, interval, confirm.yes).await,
    }
}

/// The local journal directory.
pub fn journal_dir(cfg: &Config) -> Result<PathBuf> {
    match &cfg.journal {
        JournalLocation::Local(p) => Ok(p.clone()),
        JournalLocation::S3 { .. } => Err(Error::Journal(JournalError::Unsupported(format!(
            "{}: [migration] journal = \"{}\": remote (s3://) journals are not supported by this version yet\nhelp: use a local directory such as \".paymig\"",
            cfg.path.display(),
            cfg.journal
        )))),
    }
}

/// Takes the migration's lock, then opens (and if needed repairs) its journal.
pub fn lock_and_open(cfg: &Config, command: &str) -> Result<(Lock, Arc<Journal>)> {
    let dir = journal_dir(cfg)?;
    let lock = lock::acquire(&dir, &cfg.migration.name, command).map_err(|e| match e {
        LockError::Held { path, holder } => Error::Locked { path, holder },
        LockError::Io { path, source } => Error::Journal(JournalError::Open { path, source }),
    })?;
    if let Some(h) = &lock.stale {
        let alive = h.host == lock::hostname() && lock::is_alive(h.pid);
        tracing::warn!(
            "took over the lock left by {h}{}; its journal entries are kept and this run resumes them",
            if alive { "" } else { ", which is no longer running" }
        );
    }
    let (journal, repair) = Journal::open(&dir, &cfg.migration.name)?;
    if let Some(aside) = repair.torn_line_saved_to {
        tracing::warn!(path = %aside.display(), "the journal's last line was torn by a crash; it was moved aside and every complete entry is kept");
    }
    Ok((lock, Arc::new(journal)))
}

/// Opens the journal read-only, if there is one.
pub fn open_read_only(cfg: &Config) -> Result<Option<Arc<Journal>>> {
    let dir = journal_dir(cfg)?;
    Ok(Journal::open_read_only(&dir, &cfg.migration.name)?.map(Arc::new))
}

/// Connects to AWS and builds the context; the target account must answer.
pub async fn connect(cfg: Config, mode: Mode, journal: Option<Arc<Journal>>) -> Result<Ctx> {
    let aws = Aws::connect(&cfg).await;
    let account = aws.target.account_id().await.map_err(|e| {
        Error::Preflight(vec![format!(
            "{e}\nhelp: check the target credentials ([target] profile/role_arn, AWS_PROFILE, AWS_ENDPOINT_URL)"
        )])
    })?;
    Ok(Ctx::new(cfg, aws, mode, journal, account))
}

/// Every step's preflight checks, concurrently; any problem stops the command
/// before anything changes.
pub async fn preflight(ctx: &Ctx, dag: &Dag) -> Result<()> {
    let checks = dag.steps().iter().map(|s| s.preflight(ctx));
    let problems: Vec<String> = futures::future::join_all(checks).await.into_iter().flatten().collect();
    if problems.is_empty() {
        Ok(())
    } else {
        report_calls(&ctx.aws);
        Err(Error::Preflight(problems))
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
    if yes {
        return Ok(());
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(Error::Usage(format!("{question}: refusing without --yes (no terminal to confirm on)")));
    }
    eprint!("{question}? Type 'yes' to continue: ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer).map_err(|e| Error::Usage(format!("cannot read the confirmation: {e}")))?;
    if answer.trim() == "yes" {
        Ok(())
    } else {
        Err(Error::Usage("not confirmed: nothing was changed".into()))
    }
}

/// Prints the API-call accounting to stderr (and as a structured event).
pub fn report_calls(aws: &Aws) {
    let s = aws.stats.summary();
    tracing::info!(
        read = s.read,
        mutating = s.mutating,
        retries = s.retries,
        by_operation = %serde_json::to_string(&s.by_operation).unwrap_or_default(),
        "api calls"
    );
    if !crate::logging::is_json() {
        eprintln!("{s}");
    }
}

/// The path shown for the config in messages.
pub fn shown(path: &Path) -> String {
    path.display().to_string()
}
