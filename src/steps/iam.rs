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
use crate::engine::{Ctx, Outcome, Res, Step, StepError};

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

    fn kinds(&self) -> &'static [&'static str] {
        &["iam_role"]
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
        ]
    }
}

/// IAM's limit on the inline policies of one role, in characters, all of
/// them together (AWS does not count white space; paymig's documents have
/// none).
pub const MAX_INLINE_CHARS: usize = 10_240;

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
        let arn = super::common::roles::converge_role(
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
            super::common::roles::delete_role(ctx, &r.intent.name).await?;
        }
        Op::Update => super::common::roles::restore_role_policy(ctx, r, POLICY_NAME).await?,
    }
    Ok(())
}

async fn validate(ctx: &Ctx) -> Result<crate::report::Findings, StepError> {
    use crate::report::{Check, Findings, Resource};
    let iam = &ctx.aws.target.iam;
    let mut f = Findings::default();
    for dev in &ctx.cfg.source.lambda_functions {
        let name = ctx.cfg.names.lambda_role(dev);
        // Missing is a finding; a read that failed (denied, throttled) is an
        // error, never "missing".
        let out = match iam.get_role().role_name(&name).send().await.map_err(StepError::aws(&name, "GetRole")) {
            Ok(out) => out,
            Err(e) if e.is_not_found() => {
                f.resources.push(Resource::missing("iam_role", dev, &name));
                continue;
            }
            Err(e) => return Err(e),
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
        let doc = super::common::roles::role_policy(ctx, &name, POLICY_NAME).await?;
        let wild = super::common::wildcard_actions(&doc);
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
        f.checks.extend(super::common::common_checks(ctx, &name, &tags));
    }
    Ok(f)
}
