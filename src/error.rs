//! The one error type that reaches `main`, and the single place where an
//! error is turned into an exit code (SPEC "Exit codes").

/// Exit codes from SPEC.md.
pub mod exit {
    pub const OK: i32 = 0;
    pub const STEP_FAILED: i32 = 1;
    pub const USAGE: i32 = 2;
    pub const DRIFT: i32 = 3;
    pub const LOCKED: i32 = 4;
    pub const CHANGES_PENDING: i32 = 5;
    pub const SIGINT: i32 = 130;
    pub const SIGTERM: i32 = 143;
}

/// Everything that can end a paymig command early.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),

    #[error("preflight failed:\n{}\nhelp: nothing was changed; fix each problem above (the configuration, or the resource it names) and re-run", .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Preflight(Vec<String>),

    #[error("preflight could not read what it must check (nothing was changed):\n{}\nhelp: check connectivity and credentials, then re-run", .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    PreflightFailed(Vec<String>),

    #[error("{0}")]
    Usage(String),

    /// The operator answered no at the prompt: nothing changed, and that is
    /// not an error (exit 0).
    #[error("not confirmed: nothing was changed")]
    Declined,

    #[error(transparent)]
    Journal(#[from] crate::engine::journal::JournalError),

    #[error("another paymig run holds the lock {location}: {holder}\nhelp: {help}")]
    Locked { location: String, holder: String, help: String },

    /// `lines`: one per failed (or blocked) step or resource.
    #[error("the command did not finish ({}):\n{}\nhelp: the journal is consistent; fix the cause and re-run the same command to resume", if .lines.len() == 1 { "1 failure".to_owned() } else { format!("{} failures", .lines.len()) }, .lines.iter().map(|l| format!("  - {}", l.replace('\n', "\n    "))).collect::<Vec<_>>().join("\n"))]
    StepsFailed { lines: Vec<String> },

    #[error("{0}")]
    Aws(String),

    #[error("validate found {0}")]
    Drift(String),

    /// `plan --detailed-exitcode` found changes to make: an outcome, not a
    /// failure (the plan itself was printed).
    #[error("{0} change(s) pending")]
    ChangesPending(usize),

    /// SIGINT/SIGTERM: scheduling stopped, the calls in flight finished and
    /// were journaled, the lock was released.
    #[error("interrupted by {signal}: stopped after the calls in flight finished and were journaled\nhelp: re-run the same command to resume")]
    Interrupted { signal: &'static str },
}

impl Error {
    /// The process exit code for this error; decided here and nowhere else.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config(_) | Error::Preflight(_) | Error::Usage(_) => exit::USAGE,
            Error::Declined => exit::OK,
            Error::Journal(e) if e.is_usage() => exit::USAGE,
            Error::Journal(_) => exit::STEP_FAILED,
            Error::Locked { .. } => exit::LOCKED,
            Error::StepsFailed { .. } | Error::Aws(_) | Error::PreflightFailed(_) => exit::STEP_FAILED,
            Error::Drift(_) => exit::DRIFT,
            Error::ChangesPending(_) => exit::CHANGES_PENDING,
            Error::Interrupted { signal } => {
                if *signal == "SIGINT" {
                    exit::SIGINT
                } else {
                    exit::SIGTERM
                }
            }
        }
    }

    /// Whether this is a result the command already reported, not an error
    /// to print (`plan --detailed-exitcode` finding changes).
    pub fn is_outcome(&self) -> bool {
        matches!(self, Error::ChangesPending(_) | Error::Declined)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
