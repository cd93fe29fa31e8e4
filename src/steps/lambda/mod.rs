//! lambda: each `[source] lambda_functions` entry deployed to prod from dev's
//! own package — from `[source] lambda_artifacts` (S3) when set, else
//! GetFunction's presigned Code.Location — after checking that its SHA-256
//! equals dev's CodeSha256 (a mismatch is an error, never a silent deploy).
//! Dev's runtime, handler, memory, timeout, architectures, layers, tracing
//! and ephemeral storage; environment values naming dev resources rewritten
//! through the name map plus `[lambda.overrides]`, encrypted with the prod
//! key; the prod private subnets with the compute group; reserved
//! concurrency; a published version with aliases `blue` and `green`. A
//! package too large to send inline goes through a prod staging bucket
//! ([`staging`]).

use crate::aws::Call;
use crate::engine::estimate::{Compose, Wait};
use std::collections::BTreeMap;

use aws_sdk_lambda::types::{Environment, EphemeralStorage, FunctionConfiguration, TracingConfig, VpcConfig};
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::Digest;

use crate::engine::journal::{Op, Record};
use crate::engine::{is_planned, retry_until, About, Created, Ctx, Declared, Detail, Outcome, Res, Step, StepError};
use crate::steps::common::arns;
use crate::steps::common::references::{self, Counterparts};

mod dev;
mod environment;
mod function;
mod package;
mod runtimes;
mod staging;
mod teardown;
mod validate;
use dev::*;
pub use environment::*;
use function::*;
pub use package::*;
use teardown::*;
use validate::*;

const STEP: &str = "lambda";
/// AWS keeps at least this much concurrency unreserved per account.
const MIN_UNRESERVED: i32 = 100;
pub const ALIASES: [&str; 2] = ["blue", "green"];

/// The lambda step; dev's functions are read once per command.
#[derive(Default)]
pub struct Lambda {
    dev: tokio::sync::OnceCell<Vec<DevFunction>>,
}

/// What the migration reads of a dev function.
#[derive(Debug, Clone)]
pub struct DevFunction {
    pub name: String,
    pub config: FunctionConfiguration,
}

impl std::fmt::Display for DevFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

impl Lambda {
    async fn dev(&self, ctx: &Ctx) -> Result<&Vec<DevFunction>, StepError> {
        self.dev.get_or_try_init(|| read_dev(ctx)).await
    }
}

/// The resource kinds this step records in the journal (what undo matches on).
pub mod kind {
    pub const STAGING_BUCKET: &str = "staging_bucket";
    pub const LAMBDA_FUNCTION: &str = "lambda_function";
    pub const LAMBDA_ALIAS: &str = "lambda_alias";
}

static ABOUT: About = About {
    id: STEP,
    // Not `database`: a function needs nothing of the cluster (its
    // environment names it through the name map), so the functions deploy
    // while Aurora restores — on AWS the restore and its instances take
    // 15–30 minutes, and everything else fits in their shadow.
    deps: &["iam", "network"],
    kinds: &[kind::STAGING_BUCKET, kind::LAMBDA_FUNCTION, kind::LAMBDA_ALIAS],
    actions: &[
        "lambda:GetFunction",
        "lambda:GetAccountSettings",
        "lambda:CreateFunction",
        "lambda:UpdateFunctionConfiguration",
        "lambda:UpdateFunctionCode",
        "lambda:DeleteFunction",
        "lambda:PutFunctionConcurrency",
        "lambda:DeleteFunctionConcurrency",
        "lambda:GetFunctionConcurrency",
        "lambda:PublishVersion",
        "lambda:ListVersionsByFunction",
        "lambda:CreateAlias",
        "lambda:GetAlias",
        "lambda:DeleteAlias",
        "lambda:TagResource",
        "lambda:ListTags",
        // CreateFunction with dev's layers reads each layer version.
        "lambda:GetLayerVersion",
        "iam:PassRole",
        "s3:GetObject",
        // The staging bucket, for packages over the inline limit.
        "s3:ListBucket",
        "s3:CreateBucket",
        "s3:GetBucketTagging",
        "s3:PutBucketTagging",
        "s3:PutEncryptionConfiguration",
        "s3:PutBucketPublicAccessBlock",
        "s3:DeleteBucketPolicy",
        "s3:PutLifecycleConfiguration",
        "s3:PutObject",
        "s3:DeleteObject",
        "s3:ListBucketVersions",
        "s3:DeleteObjectVersion",
        "s3:ListBucketMultipartUploads",
        "s3:AbortMultipartUpload",
        "s3:DeleteBucket",
        "kms:GenerateDataKey",
        "kms:Decrypt",
    ],
    source_actions: &["lambda:GetFunction", "lambda:GetLayerVersionPolicy", "s3:ListBucket", "s3:GetObject"],
    scopes: &[("lambda", arns::functions), ("kms", arns::kms_keys), ("s3", arns::packages)],
    waits: &[("lambda_function", Wait::FunctionActive, Compose::Side)],
    undo_waits: &[("lambda_function", Wait::InterfacesReleased, Compose::Side)],
    ..About::NONE
};

impl Declared for Lambda {
    fn about(&self) -> &'static About {
        &ABOUT
    }

    fn grant(&self, cfg: &crate::config::Config, account: &str, action: &str) -> Option<crate::engine::Grant> {
        use crate::engine::Grant;
        match action {
            // The execution roles, passed to Lambda only.
            "iam:PassRole" => Some(Grant::passed_to(
                "PassExecutionRoles",
                cfg.source
                    .lambda_functions
                    .iter()
                    .map(|f| format!("arn:aws:iam::{account}:role/{}", cfg.names.lambda_role(f)))
                    .collect(),
                "lambda.amazonaws.com",
            )),
            // Dev's layers may live in any account (a shared layer): their
            // ARNs are known only once dev's functions are read.
            "lambda:GetLayerVersion" => Some(Grant {
                sid: "ReadLayers",
                resources: vec![format!("arn:aws:lambda:{}:*:layer:*:*", cfg.migration.region)],
                condition: None,
            }),
            _ => None,
        }
    }
}

impl Step for Lambda {
    async fn preflight(&self, ctx: &Ctx) -> Vec<StepError> {
        let dev = match self.dev(ctx).await {
            Ok(d) => d,
            Err(e) => return vec![e],
        };
        let today = runtimes::today();
        let mut problems = Vec::new();
        for f in dev {
            match runtimes::verdict(f.config.runtime().map(|r| r.as_str()).unwrap_or(""), today) {
                runtimes::Verdict::Supported => {}
                runtimes::Verdict::Deprecated(d) => ctx.notice(STEP, runtimes::warning(&f.name, &d)),
                runtimes::Verdict::Blocked(why) => {
                    problems.push(StepError::Invalid(format!("[source] lambda_functions: {}: {why}", f.name)))
                }
            }
        }
        if let Err(e) = check_concurrency(ctx).await {
            problems.push(e);
        }
        problems.extend(check_layers_shared(ctx, dev).await);
        problems.extend(staging::check_bucket(ctx, dev).await);
        problems
    }

    async fn run(&self, ctx: &Ctx) -> Result<Outcome, StepError> {
        let dev = self.dev(ctx).await?;
        if dev.is_empty() {
            return Ok(Outcome::Skipped("no [source] lambda_functions configured".into()));
        }
        staging::converge_bucket(ctx, dev).await?;
        let refs = &counterparts(ctx, dev).await?;
        ctx.each(dev.clone(), |f: DevFunction| async move { converge_function(ctx, refs, &f).await }).await?;
        Ok(Outcome::Done)
    }

    crate::step_functions!(undo => undo);

    async fn validate(&self, ctx: &Ctx) -> Result<crate::report::Findings, StepError> {
        let dev = self.dev(ctx).await?;
        validate(ctx, dev).await
    }
}

/// The reserved concurrency a prod function should have.
fn reserved_for(ctx: &Ctx, dev: &str) -> Option<i32> {
    ctx.cfg.lambda.overrides.get(dev).and_then(|o| o.reserved_concurrency).or(ctx.cfg.lambda.reserved_concurrency)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_values_are_only_digests() {
        let env: BTreeMap<String, String> = BTreeMap::from([("DB_PASSWORD".into(), "hunter2".into())]);
        let r = redact_environment(env.iter());
        assert!(r["DB_PASSWORD"].starts_with("sha256:") && !r["DB_PASSWORD"].contains("hunter2"));
        assert_eq!(r, redact_environment(env.iter()), "stable, so still comparable");
    }

    #[test]
    fn code_sha256_is_base64_of_the_digest() {
        assert_eq!(code_sha256(b""), "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
    }
}
