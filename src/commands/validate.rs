//! `paymig validate`: every step's dev-vs-prod comparison and compliance
//! checks, rendered as Markdown (default), JSON (SPEC schema) or one
//! self-contained HTML page. Reads only; exit 3 on drift, a missing
//! component or a failed check.

use std::path::PathBuf;

use crate::cli::ReportFormat;
use crate::config::Config;
use crate::engine::Mode;
use crate::error::{Error, Result};

pub async fn run(cfg: Config, format: ReportFormat, out: Option<PathBuf>) -> Result<()> {
    let journal = super::open_read_only(&cfg)?;
    let dag = super::build_dag()?;
    let ctx = super::connect(cfg, Mode::Plan, journal).await?;
    super::preflight(&ctx, &dag).await?;
    let report = match crate::engine::validate::run(&ctx, &dag).await {
        Ok(report) => report,
        Err(lines) => {
            super::report_calls(&ctx.aws);
            return Err(Error::StepsFailed { lines });
        }
    };
    let title = format!(
        "paymig validate: {} ({} -> {})",
        ctx.cfg.migration.name,
        ctx.cfg.source.name_suffix.trim_start_matches('-'),
        ctx.suffix()
    );
    let text = match format {
        ReportFormat::Md => report.to_markdown(&title),
        ReportFormat::Json => report.to_json(),
        ReportFormat::Html => report.to_html(&title),
    };
    match &out {
        Some(path) => std::fs::write(path, &text)
            .map_err(|e| Error::Usage(format!("cannot write the report to {}: {e}", path.display())))?,
        None => println!("{text}"),
    }
    let s = &report.summary;
    tracing::info!(
        resources = s.resources,
        matching = s.matching,
        differing = s.differing,
        missing = s.missing,
        checks_failed = s.checks_failed,
        "validate: {} resources, {} matching, {} with drift, {} missing; {} of {} checks failed",
        s.resources,
        s.matching,
        s.differing,
        s.missing,
        s.checks_failed,
        report.checks.len()
    );
    super::report_calls(&ctx.aws);
    if report.is_clean() {
        Ok(())
    } else {
        Err(Error::Drift(format!(
            "{} drifted, {} missing, {} failed check(s)",
            s.differing, s.missing, s.checks_failed
        )))
    }
}
