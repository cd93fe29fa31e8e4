//! `paymig iam-policy`: the IAM policy paymig itself needs, derived from the
//! actions each step declares — no hand-kept list, no wildcard action.

use std::collections::BTreeSet;

use serde_json::json;

use crate::config::Config;
use crate::error::Result;

pub fn run(cfg: &Config) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(&policy(cfg)).expect("policy serializes"));
    Ok(())
}

/// One statement per step with the step's declared actions, plus the reads
/// every command makes.
pub fn policy(_cfg: &Config) -> serde_json::Value {
    let mut statements = vec![json!({
        "Sid": "Identity",
        "Effect": "Allow",
        "Action": ["sts:GetCallerIdentity"],
        "Resource": "*"
    })];
    for step in crate::steps::all() {
        let actions: BTreeSet<&str> = step.actions().iter().copied().collect();
        if actions.is_empty() {
            continue;
        }
        let sid: String = step
            .id()
            .split('_')
            .map(|w| {
                let mut c = w.chars();
                c.next().map(|f| f.to_uppercase().collect::<String>() + c.as_str()).unwrap_or_default()
            })
            .collect();
        // Resource-level scoping per step arrives with the IAM tier; every
        // action is named explicitly already.
        statements.push(json!({"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": "*"}));
    }
    json!({"Version": "2012-10-17", "Statement": statements})
}
