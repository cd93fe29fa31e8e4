//! A bucket's settings as a table ([`BucketSetting`], driven by
//! [`crate::steps::common::settings::converge`]), replication and its
//! propagation after CreateBucket.

use super::*;

/// How long S3 may take to show a new bucket to every call (terraform's
/// `s3BucketPropagationTimeout`: two minutes).
pub(crate) const BUCKET_PROPAGATION: std::time::Duration = std::time::Duration::from_secs(120);

/// Whether S3 has not caught up with a bucket just created or just
/// versioned: right after CreateBucket, settings calls may answer
/// `NoSuchBucket` (more often in the replica region), and
/// PutBucketReplication "Versioning must be 'Enabled' on the bucket".
pub(crate) fn is_not_propagated(e: &StepError) -> bool {
    e.is_code("NoSuchBucket") || (e.is_code("InvalidRequest") && e.message_contains("Versioning must be"))
}

/// `write`, retried while S3 has not caught up with the bucket.
pub(crate) async fn propagated<F, Fut>(what: &str, write: F) -> Result<(), StepError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), StepError>>,
{
    crate::engine::retry_until(what, BUCKET_PROPAGATION, is_not_propagated, write).await
}

pub(super) async fn converge_replication(ctx: &Ctx, prod: &str, replica: &str, role: &str) -> Result<(), StepError> {
    let c = &ctx.aws.target;
    let res = Res::new(STEP, kind::S3_BUCKET, format!("bucket/{prod}"), prod);
    let exists = !ctx.is_plan() || bucket_state(c, prod).await?.is_some();
    let have = if exists { read_replication(c, prod).await? } else { Value::Null };
    let want = json!({"role": role, "rules": [{"id": REPLICATION_RULE, "status": "Enabled", "destination": format!("arn:aws:s3:::{replica}")}]});
    if have != want {
        ctx.update(
            &res,
            prod,
            "replication",
            SettingBefore { setting: "replication".into(), value: have.clone() },
            || propagated("replication", || write_replication(c, prod, &want)),
        )
        .await?;
    }
    Ok(())
}

/// Replication as compared: role and (id, status, destination) per rule.
/// Delete-marker replication is sent Enabled but not compared: moto reports
/// it Disabled whatever was sent.
pub(super) async fn read_replication(c: &Clients, bucket: &str) -> Result<Value, StepError> {
    match c
        .s3
        .get_bucket_replication()
        .bucket(bucket)
        .send()
        .await
        .unless(bucket, "GetBucketReplication", |e| e.is_code("ReplicationConfigurationNotFoundError"))?
    {
        Some(out) => {
            let Some(cfg) = out.replication_configuration else { return Ok(Value::Null) };
            let rules: Vec<Value> = cfg
                .rules()
                .iter()
                .map(|r| {
                    json!({
                        "id": r.id(), "status": r.status().as_str(), "destination": r.destination().map(|d| d.bucket()),
                    })
                })
                .collect();
            Ok(json!({"role": cfg.role(), "rules": rules}))
        }
        None => Ok(Value::Null),
    }
}

pub(super) async fn write_replication(c: &Clients, bucket: &str, v: &Value) -> Result<(), StepError> {
    if v.is_null() {
        c.s3.delete_bucket_replication().bucket(bucket).send().await.on(bucket, "DeleteBucketReplication")?;
        return Ok(());
    }
    let mut rules = Vec::new();
    for r in v["rules"].as_array().cloned().unwrap_or_default() {
        let rule = ReplicationRule::builder()
            .id(r["id"].as_str().unwrap_or(REPLICATION_RULE))
            .priority(1)
            .status(ReplicationRuleStatus::from(r["status"].as_str().unwrap_or("Enabled")))
            .filter(ReplicationRuleFilter::builder().prefix("").build())
            .delete_marker_replication(
                DeleteMarkerReplication::builder().status(DeleteMarkerReplicationStatus::Enabled).build(),
            )
            .destination(
                Destination::builder()
                    .bucket(r["destination"].as_str().unwrap_or_default())
                    .build()
                    .map_err(|e| StepError::Invalid(e.to_string()))?,
            )
            .build()
            .map_err(|e| StepError::Invalid(e.to_string()))?;
        rules.push(rule);
    }
    let cfg = ReplicationConfiguration::builder()
        .role(v["role"].as_str().unwrap_or_default())
        .set_rules(Some(rules))
        .build()
        .map_err(|e| StepError::Invalid(e.to_string()))?;
    c.s3.put_bucket_replication()
        .bucket(bucket)
        .replication_configuration(cfg)
        .send()
        .await
        .on(bucket, "PutBucketReplication")?;
    Ok(())
}

/// A bucket and where it is (which clients serve it): what its settings
/// belong to.
pub(super) struct Bucket {
    pub(super) place: Place,
    pub(super) name: String,
}

impl Bucket {
    pub(super) fn new(place: Place, name: &str) -> Bucket {
        Bucket { place, name: name.to_owned() }
    }
}

/// One bucket setting paymig owns, read and written in a comparable JSON form.
#[derive(Debug, Clone, Copy)]
pub(super) enum BucketSetting {
    Tags,
    Versioning,
    Encryption,
    PublicAccess,
    Lifecycle,
    Policy,
}

impl Setting for BucketSetting {
    type Of = Bucket;

    const ALL: &'static [BucketSetting] = &[
        BucketSetting::Tags,
        BucketSetting::Versioning,
        BucketSetting::Encryption,
        BucketSetting::PublicAccess,
        BucketSetting::Lifecycle,
        BucketSetting::Policy,
    ];

    fn name(self) -> &'static str {
        match self {
            BucketSetting::Tags => "tags",
            BucketSetting::Versioning => "versioning",
            BucketSetting::Encryption => "encryption",
            BucketSetting::PublicAccess => "public access block",
            BucketSetting::Lifecycle => "lifecycle",
            BucketSetting::Policy => "policy",
        }
    }

    fn desired(self, ctx: &Ctx, of: &Self::Of, have: &Value) -> Value {
        let bucket = &of.name;
        match self {
            BucketSetting::Tags => {
                let mut t: BTreeMap<String, String> = serde_json::from_value(have.clone()).unwrap_or_default();
                t.extend(ctx.cfg.prod_tags());
                json!(t)
            }
            BucketSetting::Versioning => json!("Enabled"),
            BucketSetting::Encryption => json!("AES256"),
            BucketSetting::PublicAccess => json!([true, true, true, true]),
            BucketSetting::Lifecycle => {
                let d = ctx.cfg.audit.glacier_after_days;
                json!([{"id": LIFECYCLE_RULE, "status": "Enabled", "transition": [d, "GLACIER"], "noncurrent": [d, "GLACIER"], "abort_days": 7}])
            }
            BucketSetting::Policy => tls_only_policy(bucket),
        }
    }

    async fn read(self, ctx: &Ctx, of: &Self::Of) -> Result<Value, StepError> {
        let (s3, bucket) = (&client(ctx, of.place).s3, of.name.as_str());
        Ok(match self {
            BucketSetting::Tags => match s3.get_bucket_tagging().bucket(bucket).send().await.unless(bucket, "GetBucketTagging", |e| e.is_code("NoSuchTagSet"))? {
                Some(out) => json!(out.tag_set().iter().map(|t| (t.key().to_owned(), t.value().to_owned())).collect::<BTreeMap<_, _>>()),
                None => json!({}),
            },
            BucketSetting::Versioning => match s3.get_bucket_versioning().bucket(bucket).send().await {
                Ok(out) => out.status().map_or(Value::Null, |s| json!(s.as_str())),
                // moto names the root element GetBucketVersioningResponse
                // (AWS: VersioningConfiguration), which the SDK cannot
                // deserialize: read <Status> from the raw 200 body instead.
                Err(aws_smithy_runtime_api::client::result::SdkError::ServiceError(se)) if se.raw().status().as_u16() == 200 => {
                    let body = se.raw().body().bytes().map(String::from_utf8_lossy).unwrap_or_default();
                    xml_status(&body).map_or(Value::Null, |s| json!(s))
                }
                Err(e) => return Err(StepError::sdk(bucket, "GetBucketVersioning", &e)),
            },
            BucketSetting::Encryption => match s3.get_bucket_encryption().bucket(bucket).send().await.unless(bucket, "GetBucketEncryption", |e| e.is_code("ServerSideEncryptionConfigurationNotFoundError"))? {
                Some(out) => out
                    .server_side_encryption_configuration()
                    .and_then(|c| c.rules().first())
                    .and_then(|r| r.apply_server_side_encryption_by_default())
                    .map_or(Value::Null, |d| json!(d.sse_algorithm().as_str())),
                None => Value::Null,
            },
            BucketSetting::PublicAccess => match s3.get_public_access_block().bucket(bucket).send().await.unless(bucket, "GetPublicAccessBlock", |e| e.is_code("NoSuchPublicAccessBlockConfiguration"))? {
                Some(out) => out.public_access_block_configuration().map_or(Value::Null, |p| {
                    json!([p.block_public_acls() == Some(true), p.ignore_public_acls() == Some(true), p.block_public_policy() == Some(true), p.restrict_public_buckets() == Some(true)])
                }),
                None => Value::Null,
            },
            BucketSetting::Lifecycle => match s3.get_bucket_lifecycle_configuration().bucket(bucket).send().await.unless(bucket, "GetBucketLifecycleConfiguration", |e| e.is_code("NoSuchLifecycleConfiguration"))? {
                Some(out) => json!(out.rules().iter().map(|r| json!({
                    "id": r.id(),
                    "status": r.status().as_str(),
                    "transition": r.transitions().first().map(|t| json!([t.days(), t.storage_class().map(|c| c.as_str())])),
                    "noncurrent": r.noncurrent_version_transitions().first().map(|t| json!([t.noncurrent_days(), t.storage_class().map(|c| c.as_str())])),
                    "abort_days": r.abort_incomplete_multipart_upload().and_then(|a| a.days_after_initiation()),
                })).collect::<Vec<_>>()),
                None => Value::Null,
            },
            BucketSetting::Policy => match s3.get_bucket_policy().bucket(bucket).send().await.unless(bucket, "GetBucketPolicy", |e| e.is_code("NoSuchBucketPolicy"))? {
                Some(out) => out.policy().and_then(|p| serde_json::from_str(p).ok()).unwrap_or(Value::Null),
                None => Value::Null,
            },
        })
    }

    /// Writes `v` (the comparable form); `null` removes the setting.
    async fn write(self, ctx: &Ctx, of: &Self::Of, _have: &Value, v: &Value) -> Result<(), StepError> {
        let (s3, bucket) = (&client(ctx, of.place).s3, of.name.as_str());
        let inv = |e: aws_smithy_types::error::operation::BuildError| StepError::Invalid(e.to_string());
        match self {
            BucketSetting::Tags => {
                let tags: BTreeMap<String, String> = serde_json::from_value(v.clone()).unwrap_or_default();
                if tags.is_empty() {
                    s3.delete_bucket_tagging().bucket(bucket).send().await.on(bucket, "DeleteBucketTagging")?;
                } else {
                    let set = tags
                        .iter()
                        .map(|(k, v)| Tag::builder().key(k).value(v).build())
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(inv)?;
                    s3.put_bucket_tagging()
                        .bucket(bucket)
                        .tagging(Tagging::builder().set_tag_set(Some(set)).build().map_err(inv)?)
                        .send()
                        .await
                        .on(bucket, "PutBucketTagging")?;
                }
            }
            BucketSetting::Versioning => {
                // A versioned bucket can only be suspended, never unversioned.
                let status = if v.as_str() == Some("Enabled") {
                    BucketVersioningStatus::Enabled
                } else {
                    BucketVersioningStatus::Suspended
                };
                s3.put_bucket_versioning()
                    .bucket(bucket)
                    .versioning_configuration(VersioningConfiguration::builder().status(status).build())
                    .send()
                    .await
                    .on(bucket, "PutBucketVersioning")?;
            }
            BucketSetting::Encryption => match v.as_str() {
                Some(alg) => {
                    let rule = ServerSideEncryptionRule::builder()
                        .apply_server_side_encryption_by_default(
                            ServerSideEncryptionByDefault::builder()
                                .sse_algorithm(ServerSideEncryption::from(alg))
                                .build()
                                .map_err(inv)?,
                        )
                        .build();
                    s3.put_bucket_encryption()
                        .bucket(bucket)
                        .server_side_encryption_configuration(
                            ServerSideEncryptionConfiguration::builder().rules(rule).build().map_err(inv)?,
                        )
                        .send()
                        .await
                        .on(bucket, "PutBucketEncryption")?;
                }
                None => {
                    s3.delete_bucket_encryption().bucket(bucket).send().await.on(bucket, "DeleteBucketEncryption")?;
                }
            },
            BucketSetting::PublicAccess => match v.as_array() {
                Some(f) => {
                    let b = |i: usize| f.get(i).and_then(Value::as_bool).unwrap_or(false);
                    s3.put_public_access_block()
                        .bucket(bucket)
                        .public_access_block_configuration(
                            PublicAccessBlockConfiguration::builder()
                                .block_public_acls(b(0))
                                .ignore_public_acls(b(1))
                                .block_public_policy(b(2))
                                .restrict_public_buckets(b(3))
                                .build(),
                        )
                        .send()
                        .await
                        .on(bucket, "PutPublicAccessBlock")?;
                }
                None => {
                    s3.delete_public_access_block()
                        .bucket(bucket)
                        .send()
                        .await
                        .on(bucket, "DeletePublicAccessBlock")?;
                }
            },
            BucketSetting::Lifecycle => match v.as_array().filter(|r| !r.is_empty()) {
                Some(rules) => {
                    let mut out = Vec::new();
                    for r in rules {
                        let mut b = LifecycleRule::builder()
                            .set_id(r["id"].as_str().map(String::from))
                            .status(ExpirationStatus::from(r["status"].as_str().unwrap_or("Enabled")))
                            .filter(LifecycleRuleFilter::builder().prefix("").build());
                        if let Some(t) = r["transition"].as_array() {
                            b = b.transitions(
                                Transition::builder()
                                    .set_days(t[0].as_i64().map(|d| d as i32))
                                    .storage_class(TransitionStorageClass::from(t[1].as_str().unwrap_or("GLACIER")))
                                    .build(),
                            );
                        }
                        if let Some(t) = r["noncurrent"].as_array() {
                            b = b.noncurrent_version_transitions(
                                NoncurrentVersionTransition::builder()
                                    .set_noncurrent_days(t[0].as_i64().map(|d| d as i32))
                                    .storage_class(TransitionStorageClass::from(t[1].as_str().unwrap_or("GLACIER")))
                                    .build(),
                            );
                        }
                        if let Some(d) = r["abort_days"].as_i64() {
                            b = b.abort_incomplete_multipart_upload(
                                AbortIncompleteMultipartUpload::builder().days_after_initiation(d as i32).build(),
                            );
                        }
                        out.push(b.build().map_err(inv)?);
                    }
                    s3.put_bucket_lifecycle_configuration()
                        .bucket(bucket)
                        .lifecycle_configuration(
                            BucketLifecycleConfiguration::builder().set_rules(Some(out)).build().map_err(inv)?,
                        )
                        .send()
                        .await
                        .on(bucket, "PutBucketLifecycleConfiguration")?;
                }
                None => {
                    s3.delete_bucket_lifecycle().bucket(bucket).send().await.on(bucket, "DeleteBucketLifecycle")?;
                }
            },
            BucketSetting::Policy => {
                if v.is_null() {
                    s3.delete_bucket_policy().bucket(bucket).send().await.on(bucket, "DeleteBucketPolicy")?;
                } else {
                    s3.put_bucket_policy()
                        .bucket(bucket)
                        .policy(v.to_string())
                        .send()
                        .await
                        .on(bucket, "PutBucketPolicy")?;
                }
            }
        }
        Ok(())
    }

    /// A new bucket's settings, retried while S3 catches up with it.
    async fn converge_write(self, ctx: &Ctx, of: &Self::Of, have: &Value, want: &Value) -> Result<(), StepError> {
        propagated(self.name(), || self.write(ctx, of, have, want)).await
    }
}

/// The `<Status>` of a versioning document, if any.
pub(super) fn xml_status(body: &str) -> Option<String> {
    let start = body.find("<Status>")? + "<Status>".len();
    let end = body[start..].find("</Status>")? + start;
    Some(body[start..end].trim().to_owned())
}
