//! iam: an execution role per prod function (`<prod function>-role`, trusted
//! by lambda.amazonaws.com) with one inline policy naming specific ARNs: its
//! own log group, the prod tables and their indexes, the prod key, the prod
//! parameter path and the audit buckets. The ENI actions AWS grants only on
//! `*` (AWS_FACTS §3, §10) are the one wildcard-resource statement; no
//! statement anywhere names a wildcard action. When that policy would exceed
//! IAM's inline limit (about 60 tables), the table statement moves into
//! customer-managed policies attached to every role ([`managed`]).

use crate::aws::Call;
use serde_json::{json, Value};

mod managed;

use crate::config::Config;
use crate::engine::journal::{Op, Record};
use crate::engine::{About, Ctx, Declared, Outcome, Res, Step, StepError};

pub struct Iam;

/// What the iam step publishes for the lambda step: each execution role's
/// ARN, by dev function name.
#[derive(Debug, Clone, Default)]
pub struct ExecutionRoles(pub std::collections::BTreeMap<String, String>);

const STEP: &str = "iam";
pub const POLICY_NAME: &str = "paymig-execution";

/// The resource kinds this step records in the journal (what undo matches on).
pub mod kind {
    pub const IAM_POLICY: &str = "iam_policy";
    pub const IAM_ROLE: &str = "iam_role";
}

static ABOUT: About = About {
    id: STEP,
    deps: &["kms", "dynamodb", "audit"],
    // A role's policy may name a deleted table, bucket or key: those go
    // while the roles wait for the functions' interfaces.
    undo_apart: &["kms", "dynamodb", "audit"],
    kinds: &[kind::IAM_POLICY, kind::IAM_ROLE],
    actions: &[
        "iam:GetRole",
        "iam:CreateRole",
        "iam:DeleteRole",
        "iam:TagRole",
        "iam:GetRolePolicy",
        "iam:PutRolePolicy",
        "iam:DeleteRolePolicy",
        "iam:ListRolePolicies",
        "iam:GetPolicy",
        "iam:GetPolicyVersion",
        "iam:ListPolicyVersions",
        "iam:CreatePolicy",
        "iam:CreatePolicyVersion",
        "iam:DeletePolicyVersion",
        "iam:DeletePolicy",
        "iam:TagPolicy",
        "iam:ListEntitiesForPolicy",
        "iam:ListAttachedRolePolicies",
        "iam:AttachRolePolicy",
        "iam:DetachRolePolicy",
        // Undo: an execution role outlives its functions' network interfaces.
        "lambda:GetFunction",
        "ec2:DescribeSecurityGroups",
        "ec2:DescribeNetworkInterfaces",
    ],
    // Whether dev's functions run with active tracing (their roles then need X-Ray).
    source_actions: &["lambda:GetFunction"],
    scopes: &[("iam", execution_roles), ("lambda", crate::steps::common::arns::functions)],
    ..About::NONE
};

impl Declared for Iam {
    fn about(&self) -> &'static About {
        &ABOUT
    }
}

impl Step for Iam {
    /// An execution policy over IAM's inline limit would fail mid-apply:
    /// refused before anything changes.
    async fn preflight(&self, ctx: &Ctx) -> Vec<StepError> {
        oversized_policies(ctx)
    }

    crate::step_functions!(run => converge, undo => undo, validate => validate);
}

/// IAM's limit on the inline policies of one role, in characters, all of
/// them together (AWS does not count white space; paymig's documents have
/// none).
pub const MAX_INLINE_CHARS: usize = 10_240;

/// What the execution roles are granted on the prod tables.
const TABLE_ACTIONS: [&str; 10] = [
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:Query",
    "dynamodb:Scan",
    "dynamodb:BatchGetItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:ConditionCheckItem",
    "dynamodb:DescribeTable",
];

/// What a function with active X-Ray tracing sends (AWS grants them only on
/// `*`: see [`crate::permissions::needs_star`]).
pub const XRAY_ACTIONS: [&str; 2] = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"];

/// A key ARN of the real length (the key may not exist yet when sizes are
/// measured).
fn placeholder_key(cfg: &Config, account: &str) -> String {
    format!("arn:aws:kms:{}:{account}:key/00000000-0000-0000-0000-000000000000", cfg.migration.region)
}

/// Limits the execution policies would break, refused before anything
/// changes: an inline policy over [`MAX_INLINE_CHARS`] even without the
/// tables, or more table policies than IAM attaches to one role.
fn oversized_policies(ctx: &Ctx) -> Vec<StepError> {
    let (cfg, account) = (&ctx.cfg, &ctx.account);
    let key = placeholder_key(cfg, account);
    let managed = table_policies(cfg, account);
    let mut errors: Vec<StepError> = cfg
        .source
        .lambda_functions
        .iter()
        .filter_map(|f| {
            let size = policy_of(cfg, account, f, &key, managed.is_empty(), true).to_string().len();
            (size > MAX_INLINE_CHARS).then(|| {
                StepError::Invalid(format!(
                    "[source] audit_buckets: the execution role of {} would need an inline policy of {size} characters without its tables; IAM allows {MAX_INLINE_CHARS} per role\nhelp: split [source] audit_buckets across two migrations",
                    cfg.names.prod(f)
                ))
            })
        })
        .collect();
    if managed.len() > managed::MAX_ATTACHED {
        errors.push(StepError::Invalid(format!(
            "[source] dynamodb_tables: {} tables need {} managed policies of at most {} characters on every execution role; IAM attaches at most {} to a role\nhelp: split [source] dynamodb_tables across two migrations",
            cfg.source.dynamodb_tables.len(),
            managed.len(),
            managed::MAX_MANAGED_CHARS,
            managed::MAX_ATTACHED
        )));
    }
    errors
}

/// The execution policy of one prod function, whole (every grant, as the
/// interface endpoints' policies read it).
pub fn execution_policy(ctx: &Ctx, dev_function: &str, key_arn: &str) -> Value {
    policy_of(&ctx.cfg, &ctx.account, dev_function, key_arn, true, false)
}

/// Per prod table, its ARN and its indexes'.
fn table_arns(cfg: &Config, account: &str) -> Vec<Vec<String>> {
    let region = &cfg.migration.region;
    cfg.source
        .dynamodb_tables
        .iter()
        .map(|t| cfg.names.prod(t))
        .map(|t| {
            vec![
                format!("arn:aws:dynamodb:{region}:{account}:table/{t}"),
                format!("arn:aws:dynamodb:{region}:{account}:table/{t}/index/*"),
            ]
        })
        .collect()
}

fn tables_statement(arns: &[String]) -> Value {
    json!({"Sid": "ProdTables", "Effect": "Allow", "Action": TABLE_ACTIONS, "Resource": arns})
}

/// The functions' execution roles, and their table policies when the
/// tables do not fit inline.
fn execution_roles(cfg: &crate::config::Config, account: &str) -> Vec<String> {
    cfg.source
        .lambda_functions
        .iter()
        .map(|f| format!("arn:aws:iam::{account}:role/{}", cfg.names.lambda_role(f)))
        .chain(table_policies(cfg, account).into_iter().map(|m| format!("arn:aws:iam::{account}:policy/{}", m.name)))
        .collect()
}

/// The managed policies holding the table statement, shared by every
/// execution role: none when every role's whole policy fits inline.
pub fn table_policies(cfg: &Config, account: &str) -> Vec<managed::Managed> {
    let key = placeholder_key(cfg, account);
    let fits = |f: &String| policy_of(cfg, account, f, &key, true, true).to_string().len() <= MAX_INLINE_CHARS;
    if cfg.source.lambda_functions.iter().all(fits) {
        return Vec::new();
    }
    let document = |arns: &[String]| json!({"Version": "2012-10-17", "Statement": [tables_statement(arns)]});
    managed::split(table_arns(cfg, account), document)
        .into_iter()
        .enumerate()
        .map(|(i, document)| managed::Managed { name: cfg.names.own(&format!("tables-{}", i + 1)), document })
        .collect()
}

/// The inline execution policy of one prod function, with the table
/// statement when `tables` (the tables are otherwise in managed policies)
/// and X-Ray's two write actions when the function is `traced` (Lambda
/// refuses to create a function with active tracing whose role lacks them;
/// X-Ray grants them on `*` only).
fn policy_of(cfg: &Config, account: &str, dev_function: &str, key_arn: &str, tables: bool, traced: bool) -> Value {
    let region = &cfg.migration.region;
    let n = &cfg.names;
    let function = n.prod(dev_function);
    let log_group = format!("arn:aws:logs:{region}:{account}:log-group:/aws/lambda/{function}");
    let mut statements = vec![
        json!({"Sid": "OwnLogGroup", "Effect": "Allow", "Action": ["logs:CreateLogGroup"], "Resource": [log_group.clone()]}),
        json!({"Sid": "OwnLogStreams", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"], "Resource": [format!("{log_group}:*")]}),
        json!({"Sid": "NetworkInterfaces", "Effect": "Allow",
               "Action": ["ec2:CreateNetworkInterface", "ec2:DescribeNetworkInterfaces", "ec2:DeleteNetworkInterface", "ec2:AssignPrivateIpAddresses", "ec2:UnassignPrivateIpAddresses"],
               "Resource": "*"}),
        json!({"Sid": "ProdParameters", "Effect": "Allow", "Action": ["ssm:GetParameter", "ssm:GetParameters", "ssm:GetParametersByPath"],
               "Resource": [format!("arn:aws:ssm:{region}:{account}:parameter{}*", cfg.target.parameter_path)]}),
    ];
    if !key_arn.is_empty() {
        statements.push(json!({"Sid": "ProdKey", "Effect": "Allow", "Action": ["kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey"], "Resource": [key_arn]}));
    }
    let arns: Vec<String> = table_arns(cfg, account).into_iter().flatten().collect();
    if tables && !arns.is_empty() {
        statements.push(tables_statement(&arns));
    }
    let buckets: Vec<String> = cfg.source.audit_buckets.iter().map(|b| n.prod(b)).collect();
    if !buckets.is_empty() {
        statements.push(json!({"Sid": "AuditWrite", "Effect": "Allow", "Action": ["s3:PutObject", "s3:GetObject"],
            "Resource": buckets.iter().map(|b| format!("arn:aws:s3:::{b}/*")).collect::<Vec<_>>()}));
        statements.push(json!({"Sid": "AuditList", "Effect": "Allow", "Action": ["s3:ListBucket"],
            "Resource": buckets.iter().map(|b| format!("arn:aws:s3:::{b}")).collect::<Vec<_>>()}));
    }
    if traced {
        statements.push(json!({"Sid": "Tracing", "Effect": "Allow", "Action": XRAY_ACTIONS, "Resource": "*"}));
    }
    json!({"Version": "2012-10-17", "Statement": statements})
}

async fn converge(ctx: &Ctx) -> Result<Outcome, StepError> {
    if ctx.cfg.source.lambda_functions.is_empty() {
        return Ok(Outcome::Skipped("no [source] lambda_functions configured".into()));
    }
    let key_arn = crate::steps::kms::key_arn(ctx);
    let key_arn = &key_arn;
    let managed = table_policies(&ctx.cfg, &ctx.account);
    ctx.each(managed.clone(), |m| async move { managed::converge_policy(ctx, &m).await.map(|_| ()) }).await?;
    let (managed, attach) = (&managed, &managed::arns(&ctx.account, &managed));
    ctx.each(ctx.cfg.source.lambda_functions.clone(), |f: String| async move {
        let name = ctx.cfg.names.lambda_role(&f);
        let res = Res::new(STEP, kind::IAM_ROLE, format!("role/{name}"), &name);
        let description = format!("paymig {}: execution role of {}", ctx.cfg.migration.name, ctx.cfg.names.prod(&f));
        let inline = policy_of(&ctx.cfg, &ctx.account, &f, key_arn, managed.is_empty(), traced(ctx, &f).await?);
        let arn =
            super::common::roles::converge_role(ctx, &res, "lambda.amazonaws.com", description, POLICY_NAME, &inline)
                .await?;
        managed::converge_attached(ctx, &res, attach).await?;
        ctx.outputs.update(|roles: &mut ExecutionRoles| {
            roles.0.insert(f, arn);
        });
        Ok(())
    })
    .await?;
    Ok(Outcome::Done)
}

/// What a role update replaced: its attached table policies, or its
/// inline policy (untagged: the journal's own JSON shapes).
#[derive(Debug, serde::Deserialize)]
#[serde(untagged)]
enum RoleUpdate {
    Attached(managed::AttachedBefore),
    Policy(super::common::roles::RolePolicyBefore),
}

async fn undo(ctx: &Ctx, r: &Record) -> Result<(), StepError> {
    match (r.intent.kind.as_str(), r.intent.op) {
        (kind::IAM_POLICY, Op::Create | Op::Adopt) => managed::delete_policy(ctx, &r.intent.name).await?,
        (kind::IAM_POLICY, Op::Update) => managed::restore_document(ctx, r).await?,
        (_, Op::Create | Op::Adopt) => {
            roles_may_go(ctx).await?;
            super::common::roles::delete_role(ctx, &r.intent.name).await?;
        }
        (_, Op::Update) => match r.prev::<RoleUpdate>()? {
            RoleUpdate::Attached(before) => managed::restore_attached(ctx, r, before).await?,
            RoleUpdate::Policy(before) => {
                super::common::roles::restore_role_policy(ctx, r, before, POLICY_NAME).await?
            }
        },
    }
    Ok(())
}

/// Whether dev's function `f` runs with active X-Ray tracing (its prod copy
/// does too).
async fn traced(ctx: &Ctx, f: &str) -> Result<bool, StepError> {
    use aws_sdk_lambda::types::TracingMode;
    let out = ctx.aws.source.lambda.get_function().function_name(f).send().await;
    let out = out.on(format!("dev function {f}"), "GetFunction")?;
    Ok(out.configuration().and_then(|c| c.tracing_config()).and_then(|t| t.mode()) == Some(&TracingMode::Active))
}

/// Whether any prod function of the migration still exists.
/// Once per undo, shared by every role it deletes: whether any migration
/// function is left and, when none is, the wait for their interfaces.
#[derive(Debug, Clone, Default)]
struct RolesMayGo(std::sync::Arc<tokio::sync::OnceCell<()>>);

/// Lambda releases a deleted function's network interfaces with its
/// execution role: the roles stay until they are gone. While a function of
/// the migration lives, the interfaces it shares stay in use and are
/// released later with that function's role. Checked once per run (the
/// roles are deleted side by side and functions do not come back during an
/// undo), not once per role.
async fn roles_may_go(ctx: &Ctx) -> Result<(), StepError> {
    ctx.outputs.update(|_: &mut RolesMayGo| {});
    let gate = ctx.outputs.get::<RolesMayGo>();
    gate.0
        .get_or_try_init(|| async {
            if !any_function_left(ctx).await? {
                let released = crate::steps::network::wait_for_function_interfaces(ctx);
                ctx.timed("lambda", crate::engine::estimate::Wait::InterfacesReleased, "compute group", released)
                    .await?;
            }
            Ok::<(), StepError>(())
        })
        .await?;
    Ok(())
}

async fn any_function_left(ctx: &Ctx) -> Result<bool, StepError> {
    for f in &ctx.cfg.source.lambda_functions {
        let name = ctx.cfg.names.prod(f);
        let out = ctx.aws.target.lambda.get_function().function_name(&name).send().await;
        if out.found(&name, "GetFunction")?.is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}

async fn validate(ctx: &Ctx) -> Result<crate::report::Findings, StepError> {
    use crate::report::{Check, Findings, Resource};
    let iam = &ctx.aws.target.iam;
    let mut f = Findings::default();
    let want = table_policies(&ctx.cfg, &ctx.account);
    for dev in &ctx.cfg.source.lambda_functions {
        let name = ctx.cfg.names.lambda_role(dev);
        // Missing is a finding; a read that failed (denied, throttled) is an
        // error, never "missing".
        let out = match iam.get_role().role_name(&name).send().await.on(&name, "GetRole") {
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
        let attached = managed::attached_documents(ctx, &name).await?;
        let mut wild = super::common::wildcard_actions(&doc);
        wild.extend(attached.iter().flat_map(|(_, d)| super::common::wildcard_actions(d)));
        if !want.is_empty() || !attached.is_empty() {
            let have: Vec<&str> = attached.iter().map(|(a, _)| a.as_str()).collect();
            let ok = have.len() == want.len()
                && attached
                    .iter()
                    .all(|(a, d)| want.iter().any(|m| managed::arn(&ctx.account, &m.name) == *a && m.document == *d));
            f.checks.push(Check::new(
                "iam.table_policies",
                &name,
                ok,
                if ok {
                    format!("{} table policies attached, as configured", want.len())
                } else {
                    format!("attached: {}", have.join(", "))
                },
            ));
        }
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
