//! validate: the audit buckets and their replicas against the compliance
//! checks (SSE-S3, versioning, public access blocked, TLS only, lifecycle).

use super::*;

pub(super) async fn validate(ctx: &Ctx) -> Result<crate::report::Findings, StepError> {
    use crate::report::{diff, Check, Findings, Resource};
    let mut f = Findings::default();
    let role = ctx.cfg.names.own("s3-replication");
    let role_arn = ctx
        .aws
        .target
        .iam
        .get_role()
        .role_name(&role)
        .send()
        .await
        .found(&role, "GetRole")?
        .and_then(|o| o.role.map(|r| r.arn));
    for dev in &ctx.cfg.source.audit_buckets {
        let (prod, replica) = (ctx.cfg.names.prod(dev), ctx.cfg.names.replica_bucket(dev));
        for (place, name) in [(Place::Prod, &prod), (Place::Replica, &replica)] {
            let c = client(ctx, place);
            if bucket_state(c, name).await? != Some(true) {
                f.resources.push(Resource::missing(kind_of(place), dev, name));
                continue;
            }
            let mut d = Vec::new();
            diff(&mut d, "name", dev, name, true);
            f.resources.push(Resource::compared(kind_of(place), dev, name, d));
            let mut values = BTreeMap::new();
            let bucket = Bucket::new(place, name);
            for &setting in BucketSetting::ALL {
                values.insert(setting.name(), setting.read(ctx, &bucket).await?);
            }
            let is = |s: BucketSetting| values[s.name()] == s.desired(ctx, &bucket, &values[s.name()]);
            // A failed check names what the bucket has instead.
            let check = |id: &str, s: BucketSetting, wanted: &str| {
                Check::wanted(id, name, is(s), wanted, found_text(&values[s.name()]))
            };
            f.checks.push(check("s3.versioning", BucketSetting::Versioning, "versioning enabled"));
            f.checks.push(check("s3.encryption", BucketSetting::Encryption, "SSE-S3 (AES256) default encryption"));
            f.checks.push(check(
                "s3.public_access_block",
                BucketSetting::PublicAccess,
                "all four public-access blocks",
            ));
            let lifecycle =
                format!("GLACIER after {} days, incomplete uploads aborted", ctx.cfg.audit.glacier_after_days);
            f.checks.push(check("s3.lifecycle", BucketSetting::Lifecycle, &lifecycle));
            f.checks.push(check("s3.tls_only", BucketSetting::Policy, "bucket policy denies non-TLS access"));
            let tags: BTreeMap<String, String> = serde_json::from_value(values["tags"].clone()).unwrap_or_default();
            f.checks.extend(crate::steps::common::common_checks(ctx, name, &tags));
        }
        if bucket_state(&ctx.aws.target, &prod).await? == Some(true) {
            let rep = read_replication(&ctx.aws.target, &prod).await?;
            let want = json!({"role": role_arn, "rules": [{"id": REPLICATION_RULE, "status": "Enabled", "destination": format!("arn:aws:s3:::{replica}")}]});
            f.checks.push(Check::new(
                "s3.replication",
                &prod,
                role_arn.is_some() && rep == want,
                format!("replicates to {replica}"),
            ));
        }
    }
    if role_arn.is_some() {
        let doc = crate::steps::common::roles::role_policy(ctx, &role, ROLE_POLICY).await?;
        let wild = crate::steps::common::wildcard_actions(&doc);
        f.checks.push(Check::new(
            "iam.no_wildcard_action",
            &role,
            wild.is_empty() && !doc.is_null(),
            if wild.is_empty() { "exact replication actions".to_owned() } else { wild.join(", ") },
        ));
    }
    Ok(f)
}
