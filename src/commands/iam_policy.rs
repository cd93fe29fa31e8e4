//! `paymig iam-policy`: prints the IAM policy paymig itself needs for this
//! config on one side ([`crate::permissions`]).

use crate::cli::PolicySide;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::permissions::{policy, principals, source_policy};

pub async fn run(cfg: &Config, side: PolicySide) -> Result<()> {
    // The account of that side, for the ARNs (one read).
    let aws = crate::aws::Aws::connect(cfg).await;
    let doc = match side {
        PolicySide::Target => {
            let account = aws.target.account_id().await.map_err(|e| Error::Preflight(vec![e]))?;
            // Dev in another account: its snapshot key is granted there.
            let dev = match dev_account(cfg, &aws).await {
                Ok(dev) => Some(dev),
                Err(e) => {
                    tracing::warn!("the dev account could not be read ({e}): the policy assumes dev is in {account}");
                    None
                }
            };
            policy(cfg, &account, dev.as_deref())
        }
        PolicySide::Source => source_policy(cfg, &dev_account(cfg, &aws).await.map_err(|e| Error::Preflight(vec![e]))?),
        PolicySide::Principals => {
            let account = aws.target.account_id().await.map_err(|e| Error::Preflight(vec![e]))?;
            let dev = dev_account(cfg, &aws).await.map_err(|e| Error::Preflight(vec![e]))?;
            // Who assumes [source] role_arn: the source side's base identity.
            let assumer = match &cfg.source.role_arn {
                Some(_) => {
                    let base =
                        crate::aws::load_sdk_config(&cfg.migration.region, cfg.source.profile.as_deref(), None).await;
                    let who = aws_sdk_sts::Client::new(&base).get_caller_identity().send().await;
                    who.ok().and_then(|w| w.arn).map(|a| crate::permissions::principal_arn(&a))
                }
                None => None,
            };
            principals(cfg, &account, &dev, Some(dev.as_str()).filter(|d| *d != account), assumer.as_deref())
        }
    };
    println!("{}", serde_json::to_string_pretty(&doc).expect("policy serializes"));
    super::report_calls(&aws);
    Ok(())
}

/// The dev account: `[source] role_arn`'s (the role need not exist yet, nor
/// be assumable: the policies are what make it so), else the source side's
/// identity's.
async fn dev_account(cfg: &Config, aws: &crate::aws::Aws) -> std::result::Result<String, String> {
    match cfg.source.role_arn.as_deref().and_then(|r| r.split(':').nth(4)).filter(|a| !a.is_empty()) {
        Some(account) => Ok(account.to_owned()),
        None => aws.source.account_id().await,
    }
}
