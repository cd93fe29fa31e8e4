//! `paymig status`: the journal summarized — runs, live resources per step,
//! and who holds the lock. Reads only the journal; no AWS call.

use std::collections::BTreeMap;

use serde_json::json;

use crate::cli::StatusFormat;
use crate::config::Config;
use crate::error::{Error, Result};

pub async fn run(cfg: Config, args: crate::cli::StatusArgs) -> Result<()> {
    let crate::cli::StatusArgs { format, out, run } = args;
    let (journal, holder) = super::inspect(&cfg, true)?;
    if format == StatusFormat::Html {
        return timeline(&cfg, journal.as_deref(), out, run);
    }
    let runs = journal.as_ref().map(|j| j.runs()).unwrap_or_default();
    let records = journal.as_ref().map(|j| j.records()).unwrap_or_default();
    let mut per_step: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    let mut pending = Vec::new();
    for r in records.iter().filter(|r| r.is_live() && r.intent.op != crate::engine::journal::Op::Update) {
        *per_step.entry(r.intent.step.clone()).or_default().entry(r.intent.kind.clone()).or_default() += 1;
        if r.id.is_none() {
            pending.push(r);
        }
    }
    let mut out_text: Vec<String> = Vec::new();
    match format {
        StatusFormat::Html => unreachable!("drawn above"),
        StatusFormat::Json => {
            let doc = json!({
                "migration": cfg.migration.name,
                "journal": super::journal_location(&cfg),
                "entries": journal.as_ref().map_or(0, |j| j.len()),
                "lock": holder,
                "runs": runs,
                "resources": per_step,
                "pending": pending.iter().map(|r| json!({"step": r.intent.step, "kind": r.intent.kind, "name": r.intent.name, "run": r.run})).collect::<Vec<_>>(),
            });
            out_text.push(serde_json::to_string_pretty(&doc).expect("status serializes"));
        }
        StatusFormat::Text => {
            let say = &mut out_text;
            say.push(format!("migration: {}", cfg.migration.name));
            say.push(match &journal {
                Some(j) => format!("journal:   {} ({} entries)", j.location(), j.len()),
                None => format!("journal:   none yet ({})", super::journal_location(&cfg)),
            });
            say.push(match &holder {
                Some(h) => format!("lock:      held by {h}"),
                None => "lock:      free".to_owned(),
            });
            say.push("runs:".to_owned());
            if runs.is_empty() {
                say.push("  none yet".to_owned());
            }
            for r in &runs {
                let undone = match (&r.rolled_back_by, &r.rolled_back_at) {
                    (Some(by), Some(at)) => format!(" — rolled back by {by} at {at}"),
                    _ => String::new(),
                };
                say.push(format!(
                    "  {}  {:<8} {:<11} {} (pid {} on {}){undone}",
                    r.id,
                    r.command,
                    r.status.as_deref().unwrap_or("unfinished"),
                    r.started,
                    r.pid,
                    r.host
                ));
            }
            say.push("resources:".to_owned());
            if per_step.is_empty() {
                say.push("  none live (nothing created, or everything undone)".to_owned());
            }
            for (step, kinds) in &per_step {
                let list: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
                say.push(format!("  [{step}] {}", list.join(", ")));
            }
            for r in &pending {
                say.push(format!(
                    "  ! [{}] {} {} has an intent without outcome (run {}); the next apply or destroy resolves it",
                    r.intent.step, r.intent.kind, r.intent.name, r.run
                ));
            }
        }
    }
    write_out(out.as_deref(), &(out_text.join("\n") + "\n"))
}

/// `text` to `out` (saying where) or stdout.
fn write_out(out: Option<&std::path::Path>, text: &str) -> Result<()> {
    match out {
        Some(path) => {
            std::fs::write(path, text).map_err(|e| Error::Usage(format!("cannot write to {}: {e}", path.display())))?;
            println!("paymig status: wrote {}", path.display());
        }
        None => print!("{text}"),
    }
    Ok(())
}

/// `status --format html`: the run drawn as a timeline.
fn timeline(
    cfg: &Config,
    journal: Option<&crate::engine::journal::Journal>,
    out: Option<std::path::PathBuf>,
    id: Option<String>,
) -> Result<()> {
    let Some(journal) = journal else {
        return Err(Error::Usage(format!(
            "no journal yet at {}: no run to draw\nhelp: paymig apply writes one",
            super::journal_location(cfg)
        )));
    };
    let runs = journal.runs();
    let run = match &id {
        Some(id) => runs.iter().find(|r| &r.id == id).ok_or_else(|| {
            let known: Vec<String> = runs.iter().map(|r| format!("{} ({})", r.id, r.command)).collect();
            Error::Usage(format!("--run {id}: no such run in the journal\nhelp: known runs: {}", known.join(", ")))
        })?,
        // The newest run that changed or tried to change something.
        None => runs
            .iter()
            .rev()
            .find(|r| matches!(r.command.as_str(), "apply" | "rollback" | "destroy" | "params" | "switch"))
            .or(runs.last())
            .ok_or_else(|| Error::Usage("the journal holds no run yet\nhelp: paymig apply writes one".into()))?,
    };
    let steps = crate::steps::all();
    let undo = matches!(run.command.as_str(), "rollback" | "destroy");
    let deps = |step: &str| -> Vec<String> {
        if undo {
            steps.iter().filter(|s| s.deps().contains(&step)).map(|s| s.id().to_owned()).collect()
        } else {
            steps
                .iter()
                .find(|s| s.id() == step)
                .map_or_else(Vec::new, |s| s.deps().iter().map(|d| (*d).to_owned()).collect())
        }
    };
    let t = crate::report::timeline::Timeline::of(run, &journal.step_spans(&run.id), deps);
    let title = format!("paymig {} {} — run {}", cfg.migration.name, run.command, run.id);
    write_out(out.as_deref(), &t.to_html(&title))
}
