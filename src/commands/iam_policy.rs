//! `paymig iam-policy`: prints the IAM policy paymig itself needs for this
//! config on one side ([`crate::permissions`]).

use crate::cli::Side;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::permissions::{policy, source_policy};

pub async fn run(cfg: &Config, side: Side) -> Result<()> {
    // The account of that side, for the ARNs (one read).
    let aws = crate::aws::Aws::connect(cfg).await;
    let doc = match side {
        Side::Target => {
            let account = aws.target.account_id().await.map_err(|e| Error::Preflight(vec![e]))?;
            // Dev in another account: its snapshot key is granted there.
            let dev = match aws.source.account_id().await {
                Ok(dev) => Some(dev),
                Err(e) => {
                    tracing::warn!("the dev account could not be read ({e}): the policy assumes dev is in {account}");
                    None
                }
            };
            policy(cfg, &account, dev.as_deref())
        }
        Side::Source => source_policy(cfg, &aws.source.account_id().await.map_err(|e| Error::Preflight(vec![e]))?),
    };
    println!("{}", serde_json::to_string_pretty(&doc).expect("policy serializes"));
    super::report_calls(&aws);
    Ok(())
}
