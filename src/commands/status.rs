//! `paymig status`: the journal summarized — runs, live resources per step,
//! and who holds the lock. Reads only the journal; no AWS call.

use std::collections::BTreeMap;

use serde_json::json;

use crate::cli::OutputFormat;
use crate::config::Config;
use crate::error::Result;

pub async fn run(cfg: Config, format: OutputFormat) -> Result<()> {
    let (journal, holder) = super::inspect(&cfg, true)?;
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
    match format {
        OutputFormat::Json => {
            let doc = json!({
                "migration": cfg.migration.name,
                "journal": super::journal_location(&cfg),
                "entries": journal.as_ref().map_or(0, |j| j.len()),
                "lock": holder,
                "runs": runs,
                "resources": per_step,
                "pending": pending.iter().map(|r| json!({"step": r.intent.step, "kind": r.intent.kind, "name": r.intent.name, "run": r.run})).collect::<Vec<_>>(),
            });
            println!("{}", serde_json::to_string_pretty(&doc).expect("status serializes"));
        }
        OutputFormat::Text => {
            println!("migration: {}", cfg.migration.name);
            match &journal {
                Some(j) => println!("journal:   {} ({} entries)", j.location(), j.len()),
                None => println!("journal:   none yet ({})", super::journal_location(&cfg)),
            }
            match &holder {
                Some(h) => println!("lock:      held by {h}"),
                None => println!("lock:      free"),
            }
            println!("runs:");
            if runs.is_empty() {
                println!("  none yet");
            }
            for r in &runs {
                let undone = match (&r.rolled_back_by, &r.rolled_back_at) {
                    (Some(by), Some(at)) => format!(" — rolled back by {by} at {at}"),
                    _ => String::new(),
                };
                println!(
                    "  {}  {:<8} {:<11} {} (pid {} on {}){undone}",
                    r.id,
                    r.command,
                    r.status.as_deref().unwrap_or("unfinished"),
                    r.started,
                    r.pid,
                    r.host
                );
            }
            println!("resources:");
            if per_step.is_empty() {
                println!("  none live (nothing created, or everything undone)");
            }
            for (step, kinds) in &per_step {
                let list: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
                println!("  [{step}] {}", list.join(", "));
            }
            for r in &pending {
                println!(
                    "  ! [{}] {} {} has an intent without outcome (run {}); the next apply or destroy resolves it",
                    r.intent.step, r.intent.kind, r.intent.name, r.run
                );
            }
        }
    }
    Ok(())
}
