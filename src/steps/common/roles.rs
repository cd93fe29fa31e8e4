//! The roles paymig creates for AWS services (a function's execution role,
//! S3's replication role): converged with exactly one inline policy,
//! deleted with their policies, and their policy changes reversed.

use crate::aws::call::Named;
use crate::aws::Call;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::policy::{decode_policy, trust_policy};
use super::tags::{is_ours, prod_tags_as};
use crate::engine::journal::Record;
use crate::engine::{Created, Ctx, Res, StepError};

/// A role trusted by `service` with exactly one inline policy, converged:
/// created (tagged) when missing, adopted only when tagged for the
/// migration, and its inline policy rewritten when it differs (the previous
/// document journaled). Shared by every step that needs a role. Returns the
/// role's ARN.
pub async fn converge_role(
    ctx: &Ctx,
    res: &Res,
    service: &str,
    description: String,
    policy_name: &str,
    policy: &Value,
) -> Result<String, StepError> {
    let iam = &ctx.aws.target.iam;
    let name = res.name.clone();
    let arn = match iam.get_role().role_name(&name).send().await.found(&name, "GetRole")? {
        Some(out) => {
            let role = out.role.ok_or_else(|| StepError::Invalid(format!("GetRole {name} returned no role")))?;
            let ours = is_ours(ctx, role.tags().iter().map(|t| (t.key(), t.value())));
            ctx.existing(res, &name, Some(role.arn()), crate::engine::Ownership::of(ours))?;
            Some(role.arn)
        }
        None => {
            let tags = prod_tags_as(ctx, |k, v| {
                aws_sdk_iam::types::Tag::builder().key(k).value(v).build().expect("key and value set")
            });
            ctx.create(res, format!("trusted by {service}"), Value::Null, || async {
                let out = iam
                    .create_role()
                    .role_name(&name)
                    .assume_role_policy_document(trust_policy(service).to_string())
                    .description(description)
                    .set_tags(Some(tags))
                    .send()
                    .await
                    .on(&name, "CreateRole")?;
                let arn = out.role.map(|r| r.arn).unwrap_or_default();
                Ok(Created { value: arn.clone(), id: name.clone(), arn: Some(arn), data: Value::Null })
            })
            .await?
        }
    };
    // A role only planned has no policy to read yet.
    let have = match &arn {
        None => Value::Null,
        Some(_) => role_policy(ctx, &name, policy_name).await?,
    };
    if have != *policy {
        let prev = RolePolicyBefore { role_policy: have.clone(), policy_name: Some(policy_name.to_owned()) };
        ctx.update(res, &name, format!("inline policy {policy_name}"), prev, || async {
            iam.put_role_policy()
                .role_name(&name)
                .policy_name(policy_name)
                .policy_document(policy.to_string())
                .send()
                .await
                .on(&name, "PutRolePolicy")?;
            Ok(())
        })
        .await?;
    }
    Ok(arn.unwrap_or_else(|| format!("arn:aws:iam::{}:role/{name}", ctx.account)))
}

/// A role's inline policy document; `Null` when the role or the policy does
/// not exist (any other failure is an error: a denied read is never "no
/// policy").
pub async fn role_policy(ctx: &Ctx, role: &str, policy_name: &str) -> Result<Value, StepError> {
    match ctx
        .aws
        .target
        .iam
        .get_role_policy()
        .role_name(role)
        .policy_name(policy_name)
        .send()
        .await
        .found(role, "GetRolePolicy")?
    {
        Some(out) => Ok(decode_policy(out.policy_document())),
        None => Ok(Value::Null),
    }
}

/// Deletes a role paymig created: every inline policy first (ListRolePolicies)
/// and every attached managed policy detached (ListAttachedRolePolicies), so
/// nothing is left to block DeleteRole, then the role. False when it was
/// gone.
pub async fn delete_role(ctx: &Ctx, name: &str) -> Result<bool, StepError> {
    let iam = &ctx.aws.target.iam;
    let pages = iam.list_attached_role_policies().role_name(name).into_paginator();
    let attached: Option<Vec<_>> = pages.items().send().try_collect().await.found(name, "ListAttachedRolePolicies")?;
    let Some(attached) = attached else { return Ok(false) };
    for policy in attached.iter().filter_map(|p| p.policy_arn()) {
        let out = iam.detach_role_policy().role_name(name).policy_arn(policy).send().await;
        out.found(name, "DetachRolePolicy")?;
    }
    let pages = iam.list_role_policies().role_name(name).into_paginator();
    let policies: Option<Vec<String>> = pages.items().send().try_collect().await.found(name, "ListRolePolicies")?;
    let Some(policies) = policies else { return Ok(false) };
    for policy in policies {
        iam.delete_role_policy().role_name(name).policy_name(&policy).send().await.gone(name, "DeleteRolePolicy")?;
    }
    Ok(iam.delete_role().role_name(name).send().await.found(name, "DeleteRole")?.is_some())
}

/// A role's inline policy before an update (`null`: none), as its intent
/// records it for rollback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolePolicyBefore {
    pub role_policy: Value,
    /// Absent in journals of versions that had one policy per role.
    #[serde(default)]
    pub policy_name: Option<String>,
}

/// Reverses a journaled inline-policy change of a role: the previous
/// document put back, or the policy removed when there was none. The policy
/// name is journaled with the change (`default` for journals of versions
/// that had one policy per role).
pub async fn restore_role_policy(
    ctx: &Ctx,
    r: &Record,
    before: RolePolicyBefore,
    default: &str,
) -> Result<(), StepError> {
    let iam = &ctx.aws.target.iam;
    let name = r.intent.name.as_str();
    let prev = &before.role_policy;
    let policy = before.policy_name.as_deref().unwrap_or(default);
    let result = if prev.is_null() {
        iam.delete_role_policy()
            .role_name(name)
            .policy_name(policy)
            .send()
            .await
            .map(|_| ())
            .on(name, "DeleteRolePolicy")
    } else {
        iam.put_role_policy()
            .role_name(name)
            .policy_name(policy)
            .policy_document(prev.to_string())
            .send()
            .await
            .map(|_| ())
            .on(name, "PutRolePolicy")
    };
    result.gone()
}
