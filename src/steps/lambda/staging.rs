//! Packages too large to send inline. Lambda refuses a CreateFunction or
//! UpdateFunctionCode request over 69,905,067 bytes; with the package
//! base64-encoded in the body, that is a zip of about 50 MB. Such a package
//! is staged in `<migration>-lambda-staging-<suffix>`, a prod bucket created
//! only when a dev function needs it. The bucket is SSE-KMS with the prod
//! key (whose requests AWS accepts only over TLS or SigV4), has all four
//! public-access blocks, is tagged, and expires what is left in it after a
//! day. It has no bucket policy: a TLS-only Deny would also refuse paymig
//! against a plain-HTTP endpoint (the local emulator), and the objects are
//! the account's own for minutes. The package is deployed from
//! there (S3Bucket/S3Key) and its object deleted once Lambda has taken its
//! copy. Undo empties the bucket and deletes it.

use crate::aws::Call;
use aws_sdk_lambda::types::FunctionCode;
use aws_sdk_s3::types::{
    AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, ExpirationStatus, LifecycleExpiration, LifecycleRule,
    LifecycleRuleFilter, PublicAccessBlockConfiguration, ServerSideEncryption, ServerSideEncryptionByDefault,
    ServerSideEncryptionConfiguration, ServerSideEncryptionRule, Tag, Tagging,
};
use serde_json::Value;
use sha2::Digest;

use super::{DevFunction, STEP};
use crate::engine::{Created, Ctx, Res, StepError};

/// Lambda's limit on one CreateFunction/UpdateFunctionCode request.
pub const MAX_REQUEST: u64 = 69_905_067;
/// Room kept for the rest of a CreateFunction request (configuration,
/// environment, tags: a few KB; kept generous).
const REQUEST_ROOM: u64 = 256 * 1024;

/// Whether a package of `code_size` bytes must go through S3: its base64
/// form and the rest of the request would pass [`MAX_REQUEST`].
pub fn needs_staging(code_size: i64) -> bool {
    let encoded = (code_size.max(0) as u64).div_ceil(3) * 4;
    encoded + REQUEST_ROOM > MAX_REQUEST
}

/// Whether any of the dev functions needs the staging bucket.
pub fn needed(dev: &[DevFunction]) -> bool {
    dev.iter().any(|f| needs_staging(f.config.code_size()))
}

pub fn bucket(ctx: &Ctx) -> String {
    ctx.cfg.names.own("lambda-staging")
}

/// A name another account already owns would fail mid-apply: refused in
/// preflight, when the bucket is needed.
pub async fn check_bucket(ctx: &Ctx, dev: &[DevFunction]) -> Option<StepError> {
    if !needed(dev) {
        return None;
    }
    let name = bucket(ctx);
    if !crate::naming::is_valid_bucket_name(&name) {
        return Some(StepError::Invalid(format!(
            "[migration] name: the staging bucket name {name} (for packages over Lambda's inline limit) is not a valid S3 bucket name (3-63 lower-case letters, digits, '.' and '-')\nhelp: shorten [migration] name or environment_suffix"
        )));
    }
    match crate::steps::audit::bucket_state(&ctx.aws.target, &name).await {
        Ok(Some(false)) => Some(StepError::Invalid(format!(
            "[migration] name: the staging bucket {name} for packages over Lambda's inline limit is owned by another account\nhelp: choose another [migration] name or environment_suffix"
        ))),
        Ok(_) => None,
        Err(e) => Some(e),
    }
}

/// The staging bucket converged when a dev function needs it: created with
/// every setting, or found tagged for the migration.
pub async fn converge_bucket(ctx: &Ctx, dev: &[DevFunction]) -> Result<(), StepError> {
    if !needed(dev) {
        return Ok(());
    }
    let c = &ctx.aws.target;
    let name = bucket(ctx);
    let res = Res::new(STEP, super::kind::STAGING_BUCKET, format!("bucket/{name}"), &name);
    let arn = format!("arn:aws:s3:::{name}");
    if crate::steps::audit::bucket_state(c, &name).await? == Some(true) {
        let tags =
            c.s3.get_bucket_tagging()
                .bucket(&name)
                .send()
                .await
                .found(&name, "GetBucketTagging")?
                .map(|out| out.tag_set)
                .unwrap_or_default();
        let ours = crate::steps::common::is_ours(ctx, tags.iter().map(|t| (t.key(), t.value())));
        return ctx.existing(&res, &name, Some(&arn), crate::engine::Ownership::of(ours));
    }
    let key = crate::steps::kms::key_arn(ctx);
    ctx.create(&res, "for packages over Lambda's inline limit", Value::Null, || async {
        let mut req = c.s3.create_bucket().bucket(&name);
        if ctx.cfg.migration.region != "us-east-1" {
            let region = aws_sdk_s3::types::BucketLocationConstraint::from(ctx.cfg.migration.region.as_str());
            req = req.create_bucket_configuration(
                aws_sdk_s3::types::CreateBucketConfiguration::builder().location_constraint(region).build(),
            );
        }
        req.send().await.on(&name, "CreateBucket")?;
        // Right after CreateBucket S3 may not know the bucket yet.
        crate::steps::audit::propagated("the staging bucket's settings", || configure(ctx, &name, &key)).await?;
        Ok(Created { value: (), id: name.clone(), arn: Some(arn.clone()), data: Value::Null })
    })
    .await?;
    Ok(())
}

/// Every setting of a new staging bucket.
async fn configure(ctx: &Ctx, name: &str, key: &str) -> Result<(), StepError> {
    let s3 = &ctx.aws.target.s3;
    let inv = |e: aws_smithy_types::error::operation::BuildError| StepError::Invalid(e.to_string());
    let tags = crate::steps::common::prod_tags_as(ctx, |k, v| Tag::builder().key(k).value(v).build());
    let tags: Vec<Tag> = tags.into_iter().collect::<Result<_, _>>().map_err(inv)?;
    s3.put_bucket_tagging()
        .bucket(name)
        .tagging(Tagging::builder().set_tag_set(Some(tags)).build().map_err(inv)?)
        .send()
        .await
        .on(name, "PutBucketTagging")?;
    let default = ServerSideEncryptionByDefault::builder()
        .sse_algorithm(ServerSideEncryption::AwsKms)
        .kms_master_key_id(key)
        .build()
        .map_err(inv)?;
    let rule =
        ServerSideEncryptionRule::builder().apply_server_side_encryption_by_default(default).bucket_key_enabled(true);
    s3.put_bucket_encryption()
        .bucket(name)
        .server_side_encryption_configuration(
            ServerSideEncryptionConfiguration::builder().rules(rule.build()).build().map_err(inv)?,
        )
        .send()
        .await
        .on(name, "PutBucketEncryption")?;
    let block = PublicAccessBlockConfiguration::builder()
        .block_public_acls(true)
        .ignore_public_acls(true)
        .block_public_policy(true)
        .restrict_public_buckets(true)
        .build();
    s3.put_public_access_block()
        .bucket(name)
        .public_access_block_configuration(block)
        .send()
        .await
        .on(name, "PutPublicAccessBlock")?;
    let rule = LifecycleRule::builder()
        .id("paymig-staged-packages")
        .status(ExpirationStatus::Enabled)
        .filter(LifecycleRuleFilter::builder().prefix("").build())
        .expiration(LifecycleExpiration::builder().days(1).build())
        .abort_incomplete_multipart_upload(AbortIncompleteMultipartUpload::builder().days_after_initiation(1).build())
        .build()
        .map_err(inv)?;
    s3.put_bucket_lifecycle_configuration()
        .bucket(name)
        .lifecycle_configuration(BucketLifecycleConfiguration::builder().rules(rule).build().map_err(inv)?)
        .send()
        .await
        .on(name, "PutBucketLifecycleConfiguration")?;
    Ok(())
}

/// A package ready to deploy: inline, or staged in the bucket.
pub enum Package {
    Inline(Vec<u8>),
    Staged { bucket: String, key: String },
}

impl Package {
    /// `zip` of the function `prod` as Lambda should receive it: staged
    /// first when too large to send inline.
    pub async fn of(ctx: &Ctx, prod: &str, zip: Vec<u8>) -> Result<Package, StepError> {
        if !needs_staging(zip.len() as i64) {
            return Ok(Package::Inline(zip));
        }
        let (bucket, key) = (bucket(ctx), format!("{prod}/{}.zip", hex::encode(sha2::Sha256::digest(&zip))));
        tracing::info!(function = prod, bytes = zip.len(), bucket, "staging the package: over Lambda's inline limit");
        ctx.aws
            .target
            .s3
            .put_object()
            .bucket(&bucket)
            .key(&key)
            .body(aws_sdk_s3::primitives::ByteStream::from(zip))
            .send()
            .await
            .on(format!("s3://{bucket}/{key}"), "PutObject")?;
        Ok(Package::Staged { bucket, key })
    }

    pub fn code(&self) -> FunctionCode {
        match self {
            Package::Inline(zip) => FunctionCode::builder().zip_file(aws_smithy_types::Blob::new(zip.clone())).build(),
            Package::Staged { bucket, key } => FunctionCode::builder().s3_bucket(bucket).s3_key(key).build(),
        }
    }

    /// UpdateFunctionCode with this package.
    pub fn update(
        &self,
        req: aws_sdk_lambda::operation::update_function_code::builders::UpdateFunctionCodeFluentBuilder,
    ) -> aws_sdk_lambda::operation::update_function_code::builders::UpdateFunctionCodeFluentBuilder {
        match self {
            Package::Inline(zip) => req.zip_file(aws_smithy_types::Blob::new(zip.clone())),
            Package::Staged { bucket, key } => req.s3_bucket(bucket).s3_key(key),
        }
    }

    /// Once Lambda has its copy: the staged object deleted (the bucket's
    /// lifecycle expires one a failed run left behind).
    pub async fn release(self, ctx: &Ctx) -> Result<(), StepError> {
        if let Package::Staged { bucket, key } = self {
            let out = ctx.aws.target.s3.delete_object().bucket(&bucket).key(&key).send().await;
            out.on(format!("s3://{bucket}/{key}"), "DeleteObject")?;
        }
        Ok(())
    }
}

/// Undo of the bucket's creation: emptied, then deleted.
pub async fn delete_bucket(ctx: &Ctx, name: &str) -> Result<(), StepError> {
    let c = &ctx.aws.target;
    if crate::steps::audit::bucket_state(c, name).await? != Some(true) {
        return Ok(());
    }
    crate::steps::audit::empty_bucket(c, name).await?;
    c.s3.delete_bucket().bucket(name).send().await.gone(name, "DeleteBucket")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packages_past_the_request_limit_are_staged() {
        assert!(!needs_staging(0));
        assert!(!needs_staging(10 * 1024 * 1024));
        assert!(!needs_staging(52_000_000), "base64 69.3 MB plus the rest fits");
        assert!(needs_staging(52_428_800), "50 MiB: its base64 alone is 69,905,068 bytes");
        assert!(needs_staging(200_000_000));
    }
}
