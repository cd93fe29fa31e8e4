//! The command line: one enum of commands, every flag documented. This file is
//! `paymig --help`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Migrates the payments stack from the dev AWS environment to production:
/// an ordered DAG of idempotent steps with a write-ahead rollback journal.
#[derive(Debug, Parser)]
#[command(name = "paymig", version, about, long_about = None, after_help = "Example:\n  paymig plan && paymig apply --yes && paymig validate")]
pub struct Cli {
    /// Path of the migration configuration.
    #[arg(long, global = true, default_value = "migrations.toml", env = "PAYMIG_CONFIG")]
    pub config: PathBuf,

    /// Log format on stderr (`json` emits one event per line, for CodeBuild).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// More log detail (-v: debug, -vv: trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Only warnings and errors on stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,

    #[command(subcommand)]
    pub command: Command,
}

/// `90`, `90s`, `5m`, `1h` -> a duration.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let n: u64 = number.parse().map_err(|_| format!("{text:?} is not a duration like 30s, 5m or 1h"))?;
    let seconds = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("{text:?}: the unit is s, m or h (30s, 5m, 1h)")),
    };
    Ok(std::time::Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(parse_duration("90").unwrap().as_secs(), 90);
        assert_eq!(parse_duration("30s").unwrap().as_secs(), 30);
        assert_eq!(parse_duration("5m").unwrap().as_secs(), 300);
        assert_eq!(parse_duration("1h").unwrap().as_secs(), 3600);
        assert!(parse_duration("5 minutes").is_err());
        assert!(parse_duration("m").is_err());
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// For people.
    Text,
    /// One JSON document (for scripts and CI).
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatusFormat {
    /// For people.
    Text,
    /// One JSON document (for scripts and CI).
    Json,
    /// One run drawn as a timeline: a bar per step, the waits on AWS in them, the critical path highlighted (one self-contained page).
    Html,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    /// A summary: failed checks, drift and missing resources first, then the totals.
    Text,
    /// The whole report as Markdown tables.
    Md,
    /// The whole report as one JSON document (SPEC "validate report").
    Json,
    /// The whole report as one self-contained HTML page.
    Html,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PolicySide {
    // What the prod identity needs.
    Target,
    // The dev side's reads (the role paymig assumes there, or the dev identity).
    Source,
    // Every principal with its policy, and the dev role's trust policy.
    Principals,
}

/// Which account's CloudFormation template `ci-template` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TemplateSide {
    /// The prod account: state bucket, CodeBuild project, its role, the schedule.
    Target,
    /// The dev account: the read role the build assumes.
    Source,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Color {
    Blue,
    Green,
}

#[derive(Debug, Clone, Copy, Args)]
pub struct Confirm {
    /// Do not ask for confirmation (required when there is no terminal).
    #[arg(long)]
    pub yes: bool,
    /// How long to wait for another run's lock (`30s`, `5m`, `1h`); 0 (the
    /// default) fails at once with exit 4.
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_duration)]
    pub lock_timeout: std::time::Duration,
}

/// The confirmation of `unlock`, which takes no lock.
#[derive(Debug, Clone, Copy, Args)]
pub struct ConfirmOnly {
    /// Do not ask for confirmation (required when there is no terminal).
    #[arg(long)]
    pub yes: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Preflight checks, then what `apply` would create, update or leave, per step.
    #[command(
        after_help = "Examples:\n  paymig plan --format json > plan.json\n  paymig plan --detailed-exitcode   # CI gate: 0 nothing to do, 5 changes pending, 1 error, 2 bad input"
    )]
    Plan(PlanArgs),
    /// Runs the whole DAG against prod; resumes where a crashed or failed run stopped.
    #[command(after_help = "Example:\n  paymig apply --yes --parallelism 4")]
    Apply(ApplyArgs),
    /// The SSM parameter migration step alone.
    #[command(after_help = "Example:\n  paymig params --dry-run")]
    Params(ParamsArgs),
    /// Dev-vs-prod comparison report plus security and compliance checks.
    #[command(after_help = "Example:\n  paymig validate --format html --out report.html")]
    Validate(ValidateArgs),
    /// Blue-green traffic shift on the ALB listener.
    #[command(after_help = "Example:\n  paymig switch --to green --canary 10 --interval 60 --yes")]
    Switch(SwitchArgs),
    /// Undoes the most recent apply/switch/params run (or the one named) from the journal, in reverse order.
    #[command(
        after_help = "Examples:\n  paymig rollback --dry-run\n  paymig rollback --yes\n  paymig rollback --run 20261129T101500Z-4242 --yes"
    )]
    Rollback(RollbackArgs),
    /// Undoes every journaled run in reverse order, then sweeps resources tagged for this migration.
    #[command(after_help = "Examples:\n  paymig destroy --dry-run\n  paymig destroy --yes")]
    Destroy(DestroyArgs),
    /// Journal summary: runs, resources per step, lock holder.
    #[command(after_help = "Examples:\n  paymig status --format json\n  paymig status --format html --out run.html")]
    Status(StatusArgs),
    /// Prints the least-privilege IAM policy paymig itself needs for this config.
    #[command(
        name = "iam-policy",
        after_help = "Examples:\n  paymig iam-policy > paymig-prod-policy.json\n  paymig iam-policy --side source > paymig-dev-read-only.json"
    )]
    IamPolicy {
        /// `target`: the prod identity's policy (with `sts:AssumeRole` on
        /// `[source] role_arn` when the source side has no profile of its
        /// own); `source`: the read-only dev side; `principals`: every
        /// principal with its policy, and the dev role's trust policy.
        #[arg(long, value_enum, default_value_t = PolicySide::Target)]
        side: PolicySide,
    },
    /// Prints a CloudFormation template (YAML) for scheduled runs in CodeBuild.
    #[command(
        name = "ci-template",
        after_help = "Examples:\n  paymig ci-template > paymig-prod.yaml\n  aws cloudformation deploy --template-file paymig-prod.yaml --stack-name paymig-prod --capabilities CAPABILITY_NAMED_IAM --parameter-overrides SourceLocation=https://github.com/acme/payments-migration\n  paymig ci-template --side source > paymig-dev.yaml"
    )]
    CiTemplate(CiTemplateArgs),
    /// Removes a lock note or lease a killed run left behind, after showing
    /// its holder; refuses while the holder is provably alive.
    #[command(after_help = "Example:\n  paymig status && paymig unlock")]
    Unlock {
        #[command(flatten)]
        confirm: ConfirmOnly,
    },
    /// Prints a shell completion script (reads no configuration).
    #[command(
        after_help = "Examples:\n  paymig completions bash > /etc/bash_completion.d/paymig\n  paymig completions zsh > \"${fpath[1]}/_paymig\"\n  paymig completions fish > ~/.config/fish/completions/paymig.fish"
    )]
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Prints the manual page (roff), generated from this help (reads no configuration).
    #[command(after_help = "Example:\n  paymig man > /usr/local/share/man/man1/paymig.1 && man paymig")]
    Man,
}

/// `paymig plan`'s arguments.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Output format on stdout.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
    /// Exit 5 when changes are pending (0 when there are none), as
    /// `terraform plan -detailed-exitcode` does with its 2.
    #[arg(long)]
    pub detailed_exitcode: bool,
}

/// `paymig apply`'s arguments.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub confirm: Confirm,
    /// How many steps, and within a step how many resources (tables,
    /// functions, buckets, parameters), are worked on at once; 1 is fully
    /// sequential.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub parallelism: u16,
}

/// `paymig params`'s arguments.
#[derive(Debug, Args)]
pub struct ParamsArgs {
    /// Print what would be copied, rewritten, skipped; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Overwrite prod parameters whose value differs (the previous value is journaled).
    #[arg(long)]
    pub overwrite: bool,
    #[command(flatten)]
    pub confirm: Confirm,
}

/// `paymig validate`'s arguments.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Report format [default: text at a terminal, md when piped or with --out].
    #[arg(long, value_enum)]
    pub format: Option<ReportFormat>,
    /// Write the report here instead of stdout (then says where, with the totals).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `paymig switch`'s arguments.
#[derive(Debug, Args)]
pub struct SwitchArgs {
    /// The colour that should receive the traffic.
    #[arg(long, value_enum)]
    pub to: Color,
    /// Shift this percentage first, then the rest after --interval.
    #[arg(long, requires = "interval")]
    pub canary: Option<u8>,
    /// Seconds to watch the migration's alarms after each shift (an alarm in
    /// ALARM reverts to the starting weights).
    #[arg(long, requires = "canary")]
    pub interval: Option<u64>,
    #[command(flatten)]
    pub confirm: Confirm,
}

/// `paymig rollback`'s arguments.
#[derive(Debug, Args)]
pub struct RollbackArgs {
    #[command(flatten)]
    pub confirm: Confirm,
    /// List what would be undone (account, region, each change); change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Undo this run (an id from `paymig status`) instead of the newest;
    /// refused while a later run depends on it.
    #[arg(long, value_name = "ID")]
    pub run: Option<String>,
    /// How many steps, and within a step how many resources, are undone
    /// at once; 1 is fully sequential.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub parallelism: u16,
}

/// `paymig destroy`'s arguments.
#[derive(Debug, Args)]
pub struct DestroyArgs {
    #[command(flatten)]
    pub confirm: Confirm,
    /// List what would be deleted or restored (account, region, each change); change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// How many steps, and within a step how many resources, are undone
    /// at once; 1 is fully sequential.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub parallelism: u16,
}

/// `paymig status`'s arguments.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = StatusFormat::Text)]
    pub format: StatusFormat,
    /// Write it here instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The run to draw (`--format html`; an id from `paymig status`); the newest by default.
    #[arg(long, value_name = "ID")]
    pub run: Option<String>,
}

/// `paymig ci-template`'s arguments.
#[derive(Debug, Args)]
pub struct CiTemplateArgs {
    /// `target`: the prod account (state bucket, CodeBuild project and
    /// role, schedule); `source`: the dev account's read role.
    #[arg(long, value_enum, default_value_t = TemplateSide::Target)]
    pub side: TemplateSide,
    /// When the build runs (an EventBridge schedule expression; the
    /// template's default, changeable at deploy time).
    #[arg(long, value_name = "EXPR", default_value = crate::cicd::NIGHTLY)]
    pub schedule: String,
}
