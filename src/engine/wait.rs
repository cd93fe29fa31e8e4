//! Waiting on AWS: retrying eventual-consistency errors and polling a
//! state with a delay that grows with the time already waited.

use std::future::Future;
use std::time::Duration;

use super::*;

/// Retries `op` with exponential backoff while `retryable` says the error is
/// transient (IAM/EC2 eventual consistency); bounded in attempts.
pub async fn retry_eventual<T, Fut: Future<Output = Result<T, StepError>>>(
    what: &str,
    retryable: impl Fn(&StepError) -> bool,
    op: impl FnMut() -> Fut,
) -> Result<T, StepError> {
    let backoff = backon::ExponentialBuilder::default().with_min_delay(Duration::from_millis(250));
    retry_with(what, backoff.with_max_delay(Duration::from_secs(15)).with_max_times(8), retryable, op).await
}

/// Retries `op` while `retryable` says AWS is not ready yet, for as long as
/// AWS may take (`bound`, from `[migration] max_wait_minutes`): backoff from
/// 1 s to 30 s, with jitter. For states that last minutes — ENIs that keep a
/// security group in use for up to 45 minutes, backups not yet available on
/// a new table — where [`retry_eventual`]'s eight attempts would give up.
pub async fn retry_until<T, Fut: Future<Output = Result<T, StepError>>>(
    what: &str,
    bound: Duration,
    retryable: impl Fn(&StepError) -> bool,
    op: impl FnMut() -> Fut,
) -> Result<T, StepError> {
    let backoff = backon::ExponentialBuilder::default().with_min_delay(Duration::from_secs(1));
    let backoff = backoff.with_max_delay(Duration::from_secs(30)).without_max_times().with_total_delay(Some(bound));
    retry_with(what, backoff, retryable, op).await
}

/// The delay before the next read of a resource that has been waited for
/// `elapsed`: a twentieth of it, between 1 s and 15 s. Whatever the scale of
/// the wait, the state change is seen at most ~5% (or 1 s) late; a
/// 10-minute Aurora restore is read every 15 s.
pub fn poll_delay(elapsed: Duration) -> Duration {
    (elapsed / 20).clamp(Duration::from_secs(1), Duration::from_secs(15))
}

/// Reads `check` until it answers `Some` (the resource reached `what`), at
/// [`poll_delay`] intervals, for at most `[migration] max_wait_minutes`
/// (then [`StepError::Timeout`]), with a progress line. `check` returns an
/// error for a state from which `what` cannot be reached. Used instead of
/// the SDK's waiters where they back off far past the moment AWS is ready
/// (RDS's: 30 s doubling up to 30 minutes, a random delay in between, so a
/// 10-minute restore is commonly seen 5–10 minutes late).
pub async fn poll_until<T, F, Fut>(
    ctx: &Ctx,
    step: &str,
    resource: &str,
    what: &str,
    mut check: F,
) -> Result<T, StepError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>, StepError>>,
{
    let started = std::time::Instant::now();
    let bound = ctx.max_wait();
    let polled = async {
        loop {
            if let Some(v) = check().await? {
                return Ok(v);
            }
            let elapsed = started.elapsed();
            if elapsed >= bound {
                return Err(StepError::Timeout { resource: resource.to_owned(), what: what.to_owned(), waited: bound });
            }
            tokio::time::sleep(poll_delay(elapsed).min(bound - elapsed)).await;
        }
    };
    crate::progress::while_waiting(step, &format!("{resource} to become {what}"), polled).await
}

/// The one retry loop behind both: `backoff` with jitter, each retry logged
/// with the error and the delay.
async fn retry_with<T, F, Fut>(
    what: &str,
    backoff: backon::ExponentialBuilder,
    retryable: impl Fn(&StepError) -> bool,
    op: F,
) -> Result<T, StepError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StepError>>,
{
    use backon::Retryable;
    op.retry(backoff.with_jitter())
        .when(retryable)
        .notify(
            |e, d| tracing::info!(what, error = %e, delay_ms = d.as_millis() as u64, "AWS is not ready yet; retrying"),
        )
        .await
}

#[cfg(test)]
mod poll_tests {
    use super::*;

    #[test]
    fn polls_are_a_twentieth_of_the_wait_between_one_and_fifteen_seconds() {
        assert_eq!(poll_delay(Duration::ZERO), Duration::from_secs(1));
        assert_eq!(poll_delay(Duration::from_secs(60)), Duration::from_secs(3));
        assert_eq!(poll_delay(Duration::from_secs(600)), Duration::from_secs(15));
        assert_eq!(poll_delay(Duration::from_secs(3600)), Duration::from_secs(15));
    }
}
