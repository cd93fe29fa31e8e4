//! The customer-managed policies the execution roles need when a role's
//! whole policy would exceed IAM's inline limit (10,240 characters for all
//! the inline policies of one role together: about 60 tables). The table
//! statement then moves into `<migration>-tables-<n>-<suffix>` policies of
//! at most 6,144 characters each, shared by every execution role (every
//! function is granted the same tables).
//!
//! A policy is created tagged; a changed document becomes a new default
//! version (the oldest other version deleted first once IAM's five are in
//! use) with the previous document journaled. The attachments of a role are
//! a setting of the role. Undo detaches a policy from everything, deletes
//! its other versions, then the policy (IAM refuses DeletePolicy before).

use crate::aws::call::Named;
use crate::aws::Call;
use std::collections::BTreeSet;

use aws_sdk_iam::types::PolicyVersion;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::STEP;
use crate::config::Config;
use crate::engine::journal::Record;
use crate::engine::{Created, Ctx, Res, StepError};
use crate::steps::common::policy::decode_policy;
use crate::steps::common::tags::{is_ours, prod_tags_as};

/// IAM's limit on one customer-managed policy document, in characters.
pub const MAX_MANAGED_CHARS: usize = 6_144;
/// Managed policies one role may have attached (IAM's default quota).
pub const MAX_ATTACHED: usize = 10;
/// Versions IAM keeps of one managed policy.
const MAX_VERSIONS: usize = 5;

/// One managed policy paymig wants.
#[derive(Debug, Clone, PartialEq)]
pub struct Managed {
    pub name: String,
    pub document: Value,
}

impl std::fmt::Display for Managed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

pub fn arn(account: &str, name: &str) -> String {
    format!("arn:aws:iam::{account}:policy/{name}")
}

/// Whether `policy_arn` names one of the migration's table policies
/// (`<migration>-tables-<n>-<suffix>` in `account`): only those are
/// attached or detached; any other attachment of a role is left alone.
pub fn is_table_policy(cfg: &Config, account: &str, policy_arn: &str) -> bool {
    let prefix = arn(account, &format!("{}-tables-", cfg.migration.name));
    policy_arn
        .strip_prefix(&prefix)
        .and_then(|rest| rest.strip_suffix(&format!("-{}", cfg.migration.environment_suffix)))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Spreads `items` (groups of resource ARNs that stay together) over as few
/// documents as fit [`MAX_MANAGED_CHARS`], each built by `document`.
pub fn split(items: Vec<Vec<String>>, document: impl Fn(&[String]) -> Value) -> Vec<Value> {
    let mut docs = Vec::new();
    let mut current: Vec<String> = Vec::new();
    for item in items {
        let mut trial = current.clone();
        trial.extend(item.iter().cloned());
        if !current.is_empty() && document(&trial).to_string().len() > MAX_MANAGED_CHARS {
            docs.push(document(&current));
            current = item;
        } else {
            current = trial;
        }
    }
    if !current.is_empty() {
        docs.push(document(&current));
    }
    docs
}

/// A policy converged: created when missing, adopted only when tagged for
/// the migration, its default version replaced when the document differs.
/// Returns its ARN.
pub async fn converge_policy(ctx: &Ctx, m: &Managed) -> Result<String, StepError> {
    let iam = &ctx.aws.target.iam;
    let policy_arn = arn(&ctx.account, &m.name);
    let res = Res::new(STEP, super::kind::IAM_POLICY, format!("policy/{}", m.name), &m.name);
    let found = iam.get_policy().policy_arn(&policy_arn).send().await.found(&m.name, "GetPolicy")?;
    let Some(policy) = found.and_then(|out| out.policy) else {
        let tags = prod_tags_as(ctx, |k, v| aws_sdk_iam::types::Tag::builder().key(k).value(v).build().expect("set"));
        let description = format!("paymig {}: the prod tables, for every execution role", ctx.cfg.migration.name);
        ctx.create(&res, "tables of the execution roles", Value::Null, || async {
            iam.create_policy()
                .policy_name(&m.name)
                .policy_document(m.document.to_string())
                .description(description)
                .set_tags(Some(tags))
                .send()
                .await
                .on(&m.name, "CreatePolicy")?;
            Ok(Created { value: (), id: m.name.clone(), arn: Some(policy_arn.clone()), data: Value::Null })
        })
        .await?;
        return Ok(policy_arn);
    };
    let ours = is_ours(ctx, policy.tags().iter().map(|t| (t.key(), t.value())));
    ctx.existing(&res, &m.name, Some(&policy_arn), crate::engine::Ownership::of(ours))?;
    let have = document(ctx, &policy_arn, policy.default_version_id().unwrap_or("v1")).await?;
    if have != m.document {
        ctx.update(&res, &m.name, "policy document", DocumentBefore { document: have.clone() }, || {
            set_document(ctx, &policy_arn, &m.document)
        })
        .await?;
    }
    Ok(policy_arn)
}

/// The document of one version of a policy (`Null` when gone).
async fn document(ctx: &Ctx, policy_arn: &str, version: &str) -> Result<Value, StepError> {
    let out = ctx.aws.target.iam.get_policy_version().policy_arn(policy_arn).version_id(version).send().await;
    Ok(out
        .found(policy_arn, "GetPolicyVersion")?
        .and_then(|o| o.policy_version)
        .and_then(|v| v.document)
        .map(|d| decode_policy(&d))
        .unwrap_or(Value::Null))
}

/// A policy's versions, the default one last.
async fn versions(ctx: &Ctx, policy_arn: &str) -> Result<Vec<PolicyVersion>, StepError> {
    let out = ctx.aws.target.iam.list_policy_versions().policy_arn(policy_arn).into_paginator().items().send();
    let mut all: Vec<PolicyVersion> = match out.try_collect().await {
        Ok(v) => v,
        Err(e) => return Err(StepError::sdk(policy_arn, "ListPolicyVersions", &e)),
    };
    all.sort_by_key(|v| (v.is_default_version, v.create_date.map(|d| d.secs())));
    Ok(all)
}

/// Makes `document` the policy's default version, first deleting the
/// oldest other version when IAM's five are in use.
async fn set_document(ctx: &Ctx, policy_arn: &str, document: &Value) -> Result<(), StepError> {
    let iam = &ctx.aws.target.iam;
    let all = versions(ctx, policy_arn).await?;
    if all.len() >= MAX_VERSIONS {
        if let Some(oldest) = all.iter().find(|v| !v.is_default_version).and_then(|v| v.version_id()) {
            iam.delete_policy_version()
                .policy_arn(policy_arn)
                .version_id(oldest)
                .send()
                .await
                .on(policy_arn, "DeletePolicyVersion")?;
        }
    }
    iam.create_policy_version()
        .policy_arn(policy_arn)
        .policy_document(document.to_string())
        .set_as_default(true)
        .send()
        .await
        .on(policy_arn, "CreatePolicyVersion")?;
    Ok(())
}

/// The migration's table policies attached to `role` (empty when the role
/// does not exist yet).
async fn attached(ctx: &Ctx, role: &str) -> Result<BTreeSet<String>, StepError> {
    let pages = ctx.aws.target.iam.list_attached_role_policies().role_name(role).into_paginator().items().send();
    let all: Vec<_> = match pages.try_collect().await {
        Ok(all) => all,
        Err(e) => {
            let e = StepError::sdk(role, "ListAttachedRolePolicies", &e);
            return if e.is_not_found() { Ok(BTreeSet::new()) } else { Err(e) };
        }
    };
    Ok(all.into_iter().filter_map(|p| p.policy_arn).filter(|a| is_table_policy(&ctx.cfg, &ctx.account, a)).collect())
}

/// Attaches exactly `want` of the migration's table policies to the role of
/// `res` (the previous set journaled).
pub async fn converge_attached(ctx: &Ctx, res: &Res, want: &[String]) -> Result<(), StepError> {
    let have = attached(ctx, &res.name).await?;
    let want: BTreeSet<String> = want.iter().cloned().collect();
    if have == want {
        return Ok(());
    }
    let prev = AttachedBefore { attached: have.clone() };
    ctx.update(res, &res.name, "attached policies", prev, || attach_exactly(ctx, &res.name, &have, &want)).await
}

async fn attach_exactly(
    ctx: &Ctx,
    role: &str,
    have: &BTreeSet<String>,
    want: &BTreeSet<String>,
) -> Result<(), StepError> {
    let iam = &ctx.aws.target.iam;
    for a in want.difference(have) {
        let out = iam.attach_role_policy().role_name(role).policy_arn(a).send().await;
        // A policy deleted since (undo restoring an old set) is skipped.
        out.found(role, "AttachRolePolicy")?;
    }
    for a in have.difference(want) {
        let out = iam.detach_role_policy().role_name(role).policy_arn(a).send().await;
        out.found(role, "DetachRolePolicy")?;
    }
    Ok(())
}

/// A role's attached table policies before an update.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttachedBefore {
    pub attached: BTreeSet<String>,
}

/// A managed policy's default document before an update.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct DocumentBefore {
    document: Value,
}

/// Reverses a journaled change of a role's attachments.
pub async fn restore_attached(ctx: &Ctx, r: &Record, before: AttachedBefore) -> Result<(), StepError> {
    let want = before.attached;
    let have = attached(ctx, &r.intent.name).await?;
    attach_exactly(ctx, &r.intent.name, &have, &want).await
}

/// Reverses a journaled document change: the previous document made the
/// default again.
pub async fn restore_document(ctx: &Ctx, r: &Record) -> Result<(), StepError> {
    let DocumentBefore { document } = r.prev()?;
    let prev = &document;
    if prev.is_null() {
        return Ok(());
    }
    set_document(ctx, &arn(&ctx.account, &r.intent.name), prev).await.gone()
}

/// Deletes a policy paymig created: detached from every role, its other
/// versions deleted, then the policy. Already gone is done.
pub async fn delete_policy(ctx: &Ctx, name: &str) -> Result<(), StepError> {
    let iam = &ctx.aws.target.iam;
    let policy_arn = arn(&ctx.account, name);
    let pages = iam.list_entities_for_policy().policy_arn(&policy_arn).into_paginator().send();
    let pages: Vec<_> = match pages.try_collect().await {
        Ok(p) => p,
        Err(e) => {
            let e = StepError::sdk(name, "ListEntitiesForPolicy", &e);
            return if e.is_not_found() { Ok(()) } else { Err(e) };
        }
    };
    for role in pages.iter().flat_map(|p| p.policy_roles()).filter_map(|r| r.role_name()) {
        let out = iam.detach_role_policy().role_name(role).policy_arn(&policy_arn).send().await;
        out.found(role, "DetachRolePolicy")?;
    }
    for v in versions(ctx, &policy_arn).await?.iter().filter(|v| !v.is_default_version) {
        let out = iam.delete_policy_version().policy_arn(&policy_arn).set_version_id(v.version_id.clone()).send().await;
        out.found(name, "DeletePolicyVersion")?;
    }
    let out = iam.delete_policy().policy_arn(&policy_arn).send().await;
    out.found(name, "DeletePolicy")?;
    Ok(())
}

/// The documents of the policies attached to `role` that are the
/// migration's (for validate's wildcard check), with their ARNs.
pub async fn attached_documents(ctx: &Ctx, role: &str) -> Result<Vec<(String, Value)>, StepError> {
    let mut out = Vec::new();
    for a in attached(ctx, role).await? {
        let found = ctx.aws.target.iam.get_policy().policy_arn(&a).send().await.found(&a, "GetPolicy")?;
        let version = found.and_then(|o| o.policy).and_then(|p| p.default_version_id).unwrap_or_else(|| "v1".into());
        out.push((a.clone(), document(ctx, &a, &version).await?));
    }
    Ok(out)
}

/// The attachments a role should have, as ARNs.
pub fn arns(account: &str, managed: &[Managed]) -> Vec<String> {
    managed.iter().map(|m| arn(account, &m.name)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_are_spread_over_documents_that_fit_and_kept_whole() {
        let doc = |arns: &[String]| serde_json::json!({"Statement": [{"Resource": arns}]});
        let items: Vec<Vec<String>> = (0..200)
            .map(|i| {
                vec![
                    format!("arn:aws:dynamodb:us-east-1:123456789012:table/t{i:04}"),
                    format!("arn:aws:dynamodb:us-east-1:123456789012:table/t{i:04}/index/*"),
                ]
            })
            .collect();
        let docs = split(items, doc);
        assert!(docs.len() > 1, "200 pairs do not fit one document");
        let mut seen = Vec::new();
        for d in &docs {
            assert!(d.to_string().len() <= MAX_MANAGED_CHARS, "{} characters", d.to_string().len());
            let r: Vec<&str> =
                d["Statement"][0]["Resource"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
            assert_eq!(r.len() % 2, 0, "a pair was cut");
            seen.extend(r.into_iter().map(String::from));
        }
        let expected: Vec<String> = (0..200)
            .flat_map(|i| {
                [
                    format!("arn:aws:dynamodb:us-east-1:123456789012:table/t{i:04}"),
                    format!("arn:aws:dynamodb:us-east-1:123456789012:table/t{i:04}/index/*"),
                ]
            })
            .collect();
        assert_eq!(seen, expected, "every ARN once, in order");
        assert!(split(Vec::new(), doc).is_empty());
    }
}
