//! iam: an execution role per prod function (`<prod function>-role`, trusted
//! by lambda.amazonaws.com) with one inline policy naming specific ARNs: its
//! own log group, the prod tables and their indexes, the prod key, the prod
//! parameter path and the audit buckets. The ENI actions AWS grants only on
//! `*` (AWS_FACTS §3, §10) are the one wildcard-resource statement; no
//! statement anywhere names a wildcard action.

use futures::future::BoxFuture;
use serde_json::{json, Value};
use tracing::Instrument;

use crate::engine::journal::{Op, Record};
use crate::engine::{Created, Ctx, Outcome, Res, Step, StepError};

pub struct Iam;

const STEP: &str = "iam";
pub const POLICY_NAME: &str = "paymig-execution";

impl Step for Iam {
    fn id(&self) -> &'static str {
        STEP
    }

    fn deps(&self) -> &'static [&'static str] {
        &["kms", "dynamodb", "audit"]
    }

    /// An execution policy over IAM's inline limit would fail mid-apply:
    /// refused before anything changes.
    fn preflight<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Vec<StepError>> {
        Box::pin(async move { oversized_policies(ctx) })
    }

    fn run<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Result<Outcome, StepError>> {
        Box::pin(converge(ctx).instrument(tracing::info_span!("step", step = STEP)))
    }

    fn undo<'a>(&'a self, ctx: &'a Ctx, record: &'a Record) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(undo(ctx, record).instrument(tracing::info_span!("undo", step = STEP, key = %record.intent.key)))
    }

    fn validate<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Result<crate::report::Findings, StepError>> {
        Box::pin(validate(ctx))
    }

    fn actions(&self) -> &'static [&'static str] {
        &[
            "iam:GetRole",
            "iam:CreateRole",
            "iam:DeleteRole",
            "iam:TagRole",
            "iam:GetRolePolicy",
            "iam:PutRolePolicy",
            "iam:DeleteRolePolicy",
            "iam:ListRolePolicies",
            "iam:PassRole",
        ]
    }
}

fn trust_policy(service: &str) -> Value {
    json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}]})
}

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
    let arn = match iam.get_role().role_name(&name).send().await {
        Ok(out) => {
            let role = out.role.ok_or_else(|| StepError::Invalid(format!("GetRole {name} returned no role")))?;
            let ours = role
                .tags()
                .iter()
                .any(|t| t.key() == crate::config::TAG_MIGRATION && t.value() == ctx.cfg.migration.name);
            ctx.existing(res, &name, Some(role.arn()), ours)?;
            Some(role.arn)
        }
        Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_entity_exception()) => {
            let tags: Vec<aws_sdk_iam::types::Tag> = ctx
                .cfg
                .prod_tags()
                .into_iter()
                .map(|(k, v)| aws_sdk_iam::types::Tag::builder().key(k).value(v).build().expect("key and value set"))
                .collect();
            ctx.create(res, format!("trusted by {service}"), Value::Null, || async {
                let out = iam
                    .create_role()
                    .role_name(&name)
                    .assume_role_policy_document(trust_policy(service).to_string())
                    .description(description)
                    .set_tags(Some(tags))
                    .send()
                    .await
                    .map_err(StepError::aws(&name, "CreateRole"))?;
                let arn = out.role.map(|r| r.arn).unwrap_or_default();
                Ok(Created { value: arn.clone(), id: name.clone(), arn: Some(arn), data: Value::Null })
            })
            .await?
        }
        Err(e) => return Err(StepError::aws(&name, "GetRole")(e)),
    };
    // A role only planned has no policy to read yet.
    let have = match &arn {
        None => Value::Null,
        Some(_) => match iam.get_role_policy().role_name(&name).policy_name(policy_name).send().await {
            Ok(out) => super::audit::decode_policy(out.policy_document()),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_entity_exception()) => Value::Null,
            Err(e) => return Err(StepError::aws(&name, "GetRolePolicy")(e)),
        },
    };
    if have != *policy {
        let prev = json!({"role_policy": have, "policy_name": policy_name});
        ctx.update(res, &name, format!("inline policy {policy_name}"), prev, || async {
            iam.put_role_policy()
                .role_name(&name)
                .policy_name(policy_name)
                .policy_document(policy.to_string())
                .send()
                .await
                .map_err(StepError::aws(&name, "PutRolePolicy"))?;
            Ok(())
        })
        .await?;
    }
    Ok(arn.unwrap_or_else(|| format!("arn:aws:iam::{}:role/{name}", ctx.account)))
}

/// IAM's limit on the inline policies of one role, in characters, all of
/// them together (AWS does not count white space; paymig's documents have
/// none).
pub const MAX_INLINE_CHARS: usize = 10_240;

/// Deletes a role paymig created: every inline policy first (ListRolePolicies,
/// so none is left to block DeleteRole), then the role. False when it was
/// gone.
pub async fn delete_role(ctx: &Ctx, name: &str) -> Result<bool, StepError> {
    let iam = &ctx.aws.target.iam;
    let policies: Vec<String> =
        match iam.list_role_policies().role_name(name).into_paginator().items().send().try_collect().await {
            Ok(p) => p,
            Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_entity_exception()) => return Ok(false),
            Err(e) => return Err(StepError::aws(name, "ListRolePolicies")(e)),
        };
    for policy in policies {
        match iam.delete_role_policy().role_name(name).policy_name(&policy).send().await {
            Ok(_) => {}
            Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_entity_exception()) => {}
            Err(e) => return Err(StepError::aws(name, "DeleteRolePolicy")(e)),
        }
    }
    match iam.delete_role().role_name(name).send().await {
        Ok(_) => Ok(true),
        Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_entity_exception()) => Ok(false),
        Err(e) => Err(StepError::aws(name, "DeleteRole")(e)),
    }
}

/// Reverses a journaled inline-policy change of a role: the previous
/// document put back, or the policy removed when there was none. The policy
/// name is journaled with the change (`default` for journals of versions
/// that had one policy per role).
pub async fn restore_role_policy(ctx: &Ctx, r: &Record, default: &str) -> Result<(), StepError> {
    let iam = &ctx.aws.target.iam;
    let name = r.intent.name.as_str();
    let prev = &r.intent.prev["role_policy"];
    let policy = r.intent.prev["policy_name"].as_str().unwrap_or(default);
    let result = if prev.is_null() {
        iam.delete_role_policy()
            .role_name(name)
            .policy_name(policy)
            .send()
            .await
            .map(|_| ())
            .map_err(StepError::aws(name, "DeleteRolePolicy"))
    } else {
        iam.put_role_policy()
            .role_name(name)
            .policy_name(policy)
            .policy_document(prev.to_string())
            .send()
            .await
            .map(|_| ())
            .map_err(StepError::aws(name, "PutRolePolicy"))
    };
    match result {
        Err(e) if e.is_not_found() => Ok(()),
        other => other,
    }
}

/// Execution policies that would exceed [`MAX_INLINE_CHARS`] (measured with
/// a key ARN of the real length; the key may not exist yet).
fn oversized_policies(ctx: &Ctx) -> Vec<StepError> {
    let key =
        format!("arn:aws:kms:{}:{}:key/00000000-0000-0000-0000-000000000000", ctx.cfg.migration.region, ctx.account);
    ctx.cfg
        .source
        .lambda_functions
        .iter()
        .filter_map(|f| {
            let size = execution_policy(ctx, f, &key).to_string().len();
            (size > MAX_INLINE_CHARS).then(|| {
                StepError::Invalid(format!(
                    "[source] dynamodb_tables: the execution role of {} would need an inline policy of {size} characters; IAM allows {MAX_INLINE_CHARS} per role\nhelp: split [source] dynamodb_tables across two migrations (paymig does not attach customer-managed policies yet)",
                    ctx.cfg.names.prod(f)
                ))
            })
        })
        .collect()
}

/// The execution policy of one prod function.
pub fn execution_policy(ctx: &Ctx, dev_function: &str, key_arn: &str) -> Value {
    let (region, account) = (&ctx.cfg.migration.region, &ctx.account);
    let n = &ctx.cfg.names;
    let function = n.prod(dev_function);
    let log_group = format!("arn:aws:logs:{region}:{account}:log-group:/aws/lambda/{function}");
    let mut statements = vec![
        json!({"Sid": "OwnLogGroup", "Effect": "Allow", "Action": ["logs:CreateLogGroup"], "Resource": [log_group.clone()]}),
        json!({"Sid": "OwnLogStreams", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"], "Resource": [format!("{log_group}:*")]}),
        json!({"Sid": "NetworkInterfaces", "Effect": "Allow",
               "Action": ["ec2:CreateNetworkInterface", "ec2:DescribeNetworkInterfaces", "ec2:DeleteNetworkInterface", "ec2:AssignPrivateIpAddresses", "ec2:UnassignPrivateIpAddresses"],
               "Resource": "*"}),
        json!({"Sid": "ProdParameters", "Effect": "Allow", "Action": ["ssm:GetParameter", "ssm:GetParameters", "ssm:GetParametersByPath"],
               "Resource": [format!("arn:aws:ssm:{region}:{account}:parameter{}*", ctx.cfg.target.parameter_path)]}),
    ];
    if !key_arn.is_empty() {
        statements.push(json!({"Sid": "ProdKey", "Effect": "Allow", "Action": ["kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey"], "Resource": [key_arn]}));
    }
    let tables: Vec<String> = ctx
        .cfg
        .source
        .dynamodb_tables
        .iter()
        .map(|t| n.prod(t))
        .flat_map(|t| {
            [
                format!("arn:aws:dynamodb:{region}:{account}:table/{t}"),
                format!("arn:aws:dynamodb:{region}:{account}:table/{t}/index/*"),
            ]
        })
        .collect();
    if !tables.is_empty() {
        statements.push(json!({"Sid": "ProdTables", "Effect": "Allow",
            "Action": ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:Query", "dynamodb:Scan",
                       "dynamodb:BatchGetItem", "dynamodb:BatchWriteItem", "dynamodb:ConditionCheckItem", "dynamodb:DescribeTable"],
            "Resource": tables}));
    }
    let buckets: Vec<String> = ctx.cfg.source.audit_buckets.iter().map(|b| n.prod(b)).collect();
    if !buckets.is_empty() {
        statements.push(json!({"Sid": "AuditWrite", "Effect": "Allow", "Action": ["s3:PutObject", "s3:GetObject"],
            "Resource": buckets.iter().map(|b| format!("arn:aws:s3:::{b}/*")).collect::<Vec<_>>()}));
        statements.push(json!({"Sid": "AuditList", "Effect": "Allow", "Action": ["s3:ListBucket"],
            "Resource": buckets.iter().map(|b| format!("arn:aws:s3:::{b}")).collect::<Vec<_>>()}));
    }
    json!({"Version": "2012-10-17", "Statement": statements})
}

async fn converge(ctx: &Ctx) -> Result<Outcome, StepError> {
    if ctx.cfg.source.lambda_functions.is_empty() {
        return Ok(Outcome::Skipped("no [source] lambda_functions configured".into()));
    }
    let key_arn = ctx.outputs().kms_key_arn.clone().unwrap_or_default();
    let key_arn = &key_arn;
    ctx.each(ctx.cfg.source.lambda_functions.clone(), |f: String| async move {
        let name = ctx.cfg.names.lambda_role(&f);
        let res = Res::new(STEP, "iam_role", format!("role/{name}"), &name);
        let description = format!("paymig {}: execution role of {}", ctx.cfg.migration.name, ctx.cfg.names.prod(&f));
        let arn = converge_role(
            ctx,
            &res,
            "lambda.amazonaws.com",
            description,
            POLICY_NAME,
            &execution_policy(ctx, &f, key_arn),
        )
        .await?;
        ctx.outputs().lambda_roles.insert(f, arn);
        Ok(())
    })
    .await?;
    Ok(Outcome::Done)
}

async fn undo(ctx: &Ctx, r: &Record) -> Result<(), StepError> {
    match r.intent.op {
        Op::Create | Op::Adopt => {
            delete_role(ctx, &r.intent.name).await?;
        }
        Op::Update => restore_role_policy(ctx, r, POLICY_NAME).await?,
    }
    Ok(())
}

async fn validate(ctx: &Ctx) -> Result<crate::report::Findings, StepError> {
    use crate::report::{Check, Findings, Resource};
    let iam = &ctx.aws.target.iam;
    let mut f = Findings::default();
    for dev in &ctx.cfg.source.lambda_functions {
        let name = ctx.cfg.names.lambda_role(dev);
        let Ok(out) = iam.get_role().role_name(&name).send().await else {
            f.resources.push(Resource::missing("iam_role", dev, &name));
            continue;
        };
        f.resources.push(Resource::compared(
            "iam_role",
            dev,
            &name,
            vec![crate::report::Difference {
                field: "role".into(),
                dev: "dev's role".into(),
                prod: "least-privilege per-function role".into(),
                expected: true,
            }],
        ));
        let doc = iam
            .get_role_policy()
            .role_name(&name)
            .policy_name(POLICY_NAME)
            .send()
            .await
            .ok()
            .map(|o| super::audit::decode_policy(o.policy_document()))
            .unwrap_or(Value::Null);
        let wild = super::wildcard_actions(&doc);
        f.checks.push(Check::new(
            "iam.no_wildcard_action",
            &name,
            wild.is_empty() && !doc.is_null(),
            if wild.is_empty() { "named actions only".to_owned() } else { wild.join(", ") },
        ));
        let tags = out
            .role
            .map(|r| r.tags().iter().map(|t| (t.key().to_owned(), t.value().to_owned())).collect())
            .unwrap_or_default();
        f.checks.extend(super::common_checks(ctx, &name, &tags));
    }
    Ok(f)
}
