//! `paymig validate`: every step's dev-vs-prod comparison and compliance
//! checks, rendered as Markdown (default), JSON (SPEC schema) or one
//! self-contained HTML page. Reads only; exit 3 on drift, a missing
//! component or a failed check.

use crate::cli::ReportFormat;
use crate::config::Config;
use crate::error::{Error, Result};

pub async fn run(cfg: Config, args: crate::cli::ValidateArgs) -> Result<()> {
    let crate::cli::ValidateArgs { format, out } = args;
    // A person at a terminal gets the summary; a pipe, a file or a CI log
    // the whole report.
    let format = format.unwrap_or_else(|| {
        if out.is_none() && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
            ReportFormat::Text
        } else {
            ReportFormat::Md
        }
    });
    let dag = super::build_dag()?;
    let ctx = super::open_reading(cfg).await?;
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
        ReportFormat::Text => report.to_text(&title, super::colour_on_stdout()),
        ReportFormat::Md => report.to_markdown(&title),
        ReportFormat::Json => report.to_json(),
        ReportFormat::Html => report.to_html(&title),
    };
    let s = &report.summary;
    match &out {
        Some(path) => {
            std::fs::write(path, &text)
                .map_err(|e| Error::Usage(format!("cannot write the report to {}: {e}", path.display())))?;
            let format = format!("{format:?}").to_lowercase();
            println!("paymig validate: wrote the {format} report to {}", path.display());
            println!("{}", report.totals());
        }
        None => println!("{text}"),
    }
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
