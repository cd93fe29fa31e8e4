//! Emptying and deleting buckets (every version, in batches), undo, sweep
//! and data at risk.

use super::*;

/// Deletes every object version, delete marker and multipart upload, in
/// batches of 1,000, logging progress; returns how many were removed.
pub async fn empty_bucket(c: &Clients, bucket: &str) -> Result<u64, StepError> {
    let s3 = &c.s3;
    // A TLS-only policy (Deny with a Condition) would block this over plain
    // HTTP endpoints; AWS lets the owner remove it first.
    match s3.delete_bucket_policy().bucket(bucket).send().await {
        Ok(_) => {}
        Err(e) if crate::aws::call::code(&e).is_some_and(|c| c == "NoSuchBucketPolicy" || c == "NoSuchBucket") => {}
        Err(e) => return Err(StepError::sdk(bucket, "DeleteBucketPolicy", &e)),
    }
    let started = Instant::now();
    let mut removed = 0u64;
    let mut batch: Vec<ObjectIdentifier> = Vec::with_capacity(DELETE_BATCH);
    let inv = |e: aws_smithy_types::error::operation::BuildError| StepError::Invalid(e.to_string());
    // Each round lists the first page of what is left (at most 1,000
    // versions and delete markers) and deletes exactly that, until nothing
    // is left: constant memory, and no pagination marker can point at a
    // version an earlier batch already deleted.
    loop {
        let page = s3
            .list_object_versions()
            .bucket(bucket)
            .max_keys(DELETE_BATCH as i32)
            .send()
            .await
            .on(bucket, "ListObjectVersions")?;
        let versions = page.versions().iter().map(|v| (v.key(), v.version_id()));
        let markers = page.delete_markers().iter().map(|m| (m.key(), m.version_id()));
        for (key, version) in versions.chain(markers) {
            let Some(key) = key else { continue };
            batch.push(
                ObjectIdentifier::builder().key(key).set_version_id(version.map(str::to_owned)).build().map_err(inv)?,
            );
            if batch.len() == DELETE_BATCH {
                removed += delete_batch(c, bucket, &mut batch).await?;
            }
        }
        if batch.is_empty() && page.versions().is_empty() && page.delete_markers().is_empty() {
            break;
        }
        if !batch.is_empty() {
            removed += delete_batch(c, bucket, &mut batch).await?;
        }
        tracing::debug!(bucket, removed, "emptying bucket");
        crate::progress::counter(STEP, &format!("versions deleted from {bucket}"), removed, None);
    }
    if !batch.is_empty() {
        removed += delete_batch(c, bucket, &mut batch).await?;
    }
    // Uploads the same way: abort the first page of what is left until none
    // is (ListMultipartUploads has no generated paginator).
    loop {
        let page = s3.list_multipart_uploads().bucket(bucket).send().await.on(bucket, "ListMultipartUploads")?;
        let uploads: Vec<(String, String)> =
            page.uploads().iter().filter_map(|u| Some((u.key()?.to_owned(), u.upload_id()?.to_owned()))).collect();
        if uploads.is_empty() {
            break;
        }
        for (key, id) in uploads {
            s3.abort_multipart_upload()
                .bucket(bucket)
                .key(key)
                .upload_id(id)
                .send()
                .await
                .on(bucket, "AbortMultipartUpload")?;
            removed += 1;
        }
    }
    tracing::debug!(bucket, removed, elapsed_ms = started.elapsed().as_millis() as u64, "bucket emptied");
    Ok(removed)
}

pub(super) async fn delete_batch(
    c: &Clients,
    bucket: &str,
    batch: &mut Vec<ObjectIdentifier>,
) -> Result<u64, StepError> {
    let objects = std::mem::take(batch);
    let n = objects.len() as u64;
    let delete = Delete::builder()
        .set_objects(Some(objects))
        .quiet(true)
        .build()
        .map_err(|e| StepError::Invalid(e.to_string()))?;
    let out = c.s3.delete_objects().bucket(bucket).delete(delete).send().await.on(bucket, "DeleteObjects")?;
    if let Some(err) = out.errors().first() {
        return Err(StepError::Invalid(format!(
            "{bucket}: DeleteObjects left {} object(s), e.g. {:?}: {:?}",
            out.errors().len(),
            err.key(),
            err.message()
        )));
    }
    Ok(n)
}

pub(super) async fn delete_bucket(ctx: &Ctx, place: Place, bucket: &str) -> Result<bool, StepError> {
    let c = client(ctx, place);
    if bucket_state(c, bucket).await? != Some(true) {
        return Ok(false);
    }
    let removed = empty_bucket(c, bucket).await?;
    match c
        .s3
        .delete_bucket()
        .bucket(bucket)
        .send()
        .await
        .unless(bucket, "DeleteBucket", |e| e.is_code("NoSuchBucket"))?
    {
        Some(_) => {}
        None => return Ok(false),
    }
    tracing::debug!(bucket, removed, "bucket deleted");
    Ok(true)
}

pub(super) async fn undo(ctx: &Ctx, r: &Record) -> Result<(), StepError> {
    let name = r.intent.name.as_str();
    match (r.intent.kind.as_str(), r.intent.op) {
        (kind::IAM_ROLE, Op::Create | Op::Adopt) => {
            crate::steps::common::roles::delete_role(ctx, name).await?;
        }
        (kind::IAM_ROLE, Op::Update) => {
            crate::steps::common::roles::restore_role_policy(ctx, r, r.prev()?, ROLE_POLICY).await?
        }
        (kind, Op::Create | Op::Adopt) => {
            delete_bucket(ctx, place_of(kind), name).await?;
        }
        (kind, Op::Update) => {
            // A bucket created in the same run is deleted by this same undo
            // (rollback undoes whole runs, destroy all of them): restoring its
            // settings first would only cost calls.
            let bucket_key = r.intent.key.split('#').next().unwrap_or_default();
            let created_same_run = ctx.journal.as_ref().is_some_and(|j| {
                j.records()
                    .iter()
                    .any(|c| c.intent.key == bucket_key && c.run == r.run && c.intent.op != Op::Update && !c.undone)
            });
            if created_same_run {
                return Ok(());
            }
            let c = client(ctx, place_of(kind));
            if bucket_state(c, name).await? != Some(true) {
                return Ok(());
            }
            let SettingBefore { setting: field, value } = r.prev()?;
            let prev = &value;
            if field == "replication" {
                write_replication(c, name, prev).await.gone()?;
            } else if field == "versioning" && !prev.is_string() {
                // A versioned bucket can never be unversioned again; suspending
                // is a different state, so it is left enabled.
                tracing::debug!(bucket = name, "versioning stays enabled: a bucket cannot return to never-versioned");
            } else if let Some(setting) = BucketSetting::from_name(&field) {
                match setting.write(ctx, &Bucket::new(place_of(kind), name), &Value::Null, prev).await {
                    Err(e) if e.is_not_found() => {}
                    other => other?,
                }
            }
        }
    }
    Ok(())
}

/// Buckets with objects: their versions and delete markers, counted up to
/// [`COUNT_AT_MOST`] (a deletion removes every one of them).
pub(super) async fn at_risk(ctx: &Ctx, resources: &[(String, String)]) -> Result<Vec<AtRisk>, StepError> {
    let mut out = Vec::new();
    for (kind, name) in resources.iter().filter(|(k, _)| k == "s3_bucket" || k == "s3_replica_bucket") {
        let c = client(ctx, place_of(kind));
        if bucket_state(c, name).await? != Some(true) {
            continue;
        }
        // ListObjectVersions has no paginator in the SDK: its two markers.
        let (mut count, mut key, mut version) = (0u64, None::<String>, None::<String>);
        loop {
            let page =
                c.s3.list_object_versions()
                    .bucket(name)
                    .set_key_marker(key.take())
                    .set_version_id_marker(version.take())
                    .send()
                    .await
                    .on(name, "ListObjectVersions")?;
            count += (page.versions().len() + page.delete_markers().len()) as u64;
            if count >= COUNT_AT_MOST || page.is_truncated() != Some(true) {
                break;
            }
            key = page.next_key_marker().map(str::to_owned);
            version = page.next_version_id_marker().map(str::to_owned);
        }
        if count > 0 {
            let holds = if count >= COUNT_AT_MOST {
                format!("S3 bucket, over {} object versions", thousands(COUNT_AT_MOST))
            } else {
                format!("S3 bucket, {} object version{}", thousands(count), if count == 1 { "" } else { "s" })
            };
            out.push(AtRisk { kind: kind.clone(), name: name.clone(), holds });
        }
    }
    Ok(out)
}

/// A bucket setting as a failed check names it: `none`, a word, or its
/// compact JSON (cut at 160 characters).
pub(super) fn found_text(v: &Value) -> String {
    let text = match v {
        Value::Null => "none".to_owned(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => crate::report::on_off(*b).to_owned(),
        other => other.to_string(),
    };
    if text.chars().count() > 160 {
        text.chars().take(159).chain(std::iter::once('…')).collect()
    } else {
        text
    }
}

/// Where counting a bucket's objects for the prompt stops.
pub(super) const COUNT_AT_MOST: u64 = 10_000;

pub(super) async fn sweep(ctx: &Ctx, look: bool) -> Result<Vec<Swept>, StepError> {
    let mut removed = Vec::new();
    for dev in &ctx.cfg.source.audit_buckets {
        for (place, name) in
            [(Place::Prod, ctx.cfg.names.prod(dev)), (Place::Replica, ctx.cfg.names.replica_bucket(dev))]
        {
            let c = client(ctx, place);
            if bucket_state(c, &name).await? != Some(true) {
                continue;
            }
            let tags = BucketSetting::Tags.read(ctx, &Bucket::new(place, &name)).await?;
            if is_ours(ctx, &tags) && (look || delete_bucket(ctx, place, &name).await?) {
                let kind = if place == Place::Replica { "s3_replica_bucket" } else { "s3_bucket" };
                removed.push(Swept::new(kind, name));
            }
        }
    }
    let role = ctx.cfg.names.own("s3-replication");
    if ctx.aws.target.iam.get_role().role_name(&role).send().await.is_ok()
        && (look || crate::steps::common::roles::delete_role(ctx, &role).await?)
    {
        removed.push(Swept::new("iam_role", role));
    }
    Ok(removed)
}
