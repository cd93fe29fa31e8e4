//! How a step fails: [`StepError`], naming the resource and the call, and
//! how failures are summarised and classified.

use std::time::Duration;

use super::journal::JournalError;

/// A step failure, naming the resource and the call.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// An AWS call failed (after the SDK's retries); the failure is typed.
    #[error("{resource}: {op} failed: {failure}")]
    Aws { resource: String, op: String, failure: Box<crate::aws::AwsFailure> },
    /// A wait for AWS (a cluster becoming available, a table ACTIVE, ENIs
    /// released) ran past its bound: the resource is slow, not wrong.
    #[error("{resource}: {what} not reached within {}s\nhelp: AWS is still working on it; re-run the same command to resume the wait (or raise [migration] max_wait_minutes)", .waited.as_secs())]
    Timeout { resource: String, what: String, waited: Duration },
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("{0}")]
    Invalid(String),
    /// A signal asked the run to stop before this change was started.
    #[error("not started: the run was asked to stop (re-run to resume)")]
    Interrupted,
    /// A signal stopped a step part way: what it did and what it left, in
    /// words (`444 copied, 1,056 not started`).
    #[error("interrupted: {0} (re-run to resume)")]
    Stopped(String),
    /// Two desired states for one resource in one run (a paymig bug).
    #[error("{0}: two desired states for one resource in one run; nothing was written for the second (one resource, one definition)\nhelp: this is a defect in paymig; please report it with the output of `paymig plan`")]
    Conflict(String),
}

impl StepError {
    /// Whether a signal, not a failure, ended the work.
    pub fn is_interrupted(&self) -> bool {
        matches!(self, StepError::Interrupted | StepError::Stopped(_))
    }

    /// Many items' errors as one: those a signal kept from starting are
    /// counted (`interrupted: 444 copied, 1,056 not started`), distinct
    /// failures named once each with how often they occurred.
    pub fn summarise(done: usize, verb: &str, errors: Vec<StepError>) -> Option<StepError> {
        use crate::engine::step::thousands;
        let total = errors.len();
        let (stopped, failed): (Vec<StepError>, Vec<StepError>) =
            errors.into_iter().partition(|e| matches!(e, StepError::Interrupted));
        if failed.is_empty() {
            return (!stopped.is_empty()).then(|| {
                StepError::Stopped(format!(
                    "{} {verb}, {} not started",
                    thousands(done as u64),
                    thousands(stopped.len() as u64)
                ))
            });
        }
        let mut seen: Vec<(String, usize)> = Vec::new();
        for e in &failed {
            let text = e.to_string();
            match seen.iter_mut().find(|(t, _)| *t == text) {
                Some((_, n)) => *n += 1,
                None => seen.push((text, 1)),
            }
        }
        let listed: Vec<String> =
            seen.into_iter().map(|(t, n)| if n == 1 { t } else { format!("{t} (×{n})") }).collect();
        let stopped = match stopped.len() {
            0 => String::new(),
            n => format!("; {} not started: the run was asked to stop (re-run to resume)", thousands(n as u64)),
        };
        Some(StepError::Invalid(format!(
            "{} of {} failed ({} {verb}): {}{stopped}",
            thousands(failed.len() as u64),
            thousands(total as u64 + done as u64),
            thousands(done as u64),
            listed.join("; ")
        )))
    }

    /// An error-mapping closure for an SDK call on `resource`.
    pub fn aws<E>(
        resource: impl Into<String>,
        op: &'static str,
    ) -> impl FnOnce(
        aws_smithy_runtime_api::client::result::SdkError<E, aws_smithy_runtime_api::client::orchestrator::HttpResponse>,
    ) -> StepError
    where
        E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + 'static,
    {
        move |e| StepError::sdk(resource, op, &e)
    }

    /// The failure of an SDK call `op` on `resource`.
    pub fn sdk<E>(
        resource: impl Into<String>,
        op: &'static str,
        e: &aws_smithy_runtime_api::client::result::SdkError<
            E,
            aws_smithy_runtime_api::client::orchestrator::HttpResponse,
        >,
    ) -> StepError
    where
        E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + 'static,
    {
        StepError::Aws {
            resource: resource.into(),
            op: op.to_owned(),
            failure: Box::new(crate::aws::AwsFailure::of(e)),
        }
    }

    /// A read of `resource` by id: `None` when it answers that the resource
    /// does not exist, any other failure an error (a denied or throttled
    /// read must never pass for "gone").
    pub fn found<T, E>(
        result: Result<
            T,
            aws_smithy_runtime_api::client::result::SdkError<
                E,
                aws_smithy_runtime_api::client::orchestrator::HttpResponse,
            >,
        >,
        resource: impl Into<String>,
        op: &'static str,
    ) -> Result<Option<T>, StepError>
    where
        E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + 'static,
    {
        match result.map_err(StepError::aws(resource, op)) {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// An error-mapping closure for an SDK waiter on `resource` waiting for
    /// `what` (`"available"`, `"ACTIVE"`): running out of time is a
    /// [`StepError::Timeout`] (slow, resumable), a failed poll an AWS
    /// failure, a failure state (the resource will never get there) invalid.
    pub fn waiting<O, E>(
        resource: impl Into<String>,
        what: impl Into<String>,
        max_wait: Duration,
    ) -> impl FnOnce(aws_smithy_runtime_api::client::waiters::error::WaiterError<O, E>) -> StepError
    where
        E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + 'static,
    {
        use aws_smithy_runtime_api::client::waiters::error::WaiterError;
        let (resource, what) = (resource.into(), what.into());
        move |e| match e {
            WaiterError::ExceededMaxWait(_) => StepError::Timeout { resource, what, waited: max_wait },
            WaiterError::OperationFailed(op) => StepError::Aws {
                resource,
                op: format!("waiting for {what}"),
                failure: Box::new(crate::aws::AwsFailure::of(op.error())),
            },
            WaiterError::FailureState(_) => {
                StepError::Invalid(format!("{resource}: reached a state from which it cannot become {what}"))
            }
            other => StepError::Invalid(format!("{resource}: waiting for {what}: {other}")),
        }
    }

    /// The AWS failure behind this error, if it is one.
    pub fn failure(&self) -> Option<&crate::aws::AwsFailure> {
        match self {
            StepError::Aws { failure, .. } => Some(failure.as_ref()),
            _ => None,
        }
    }

    /// The call answered that its resource does not exist.
    pub fn is_not_found(&self) -> bool {
        self.failure().is_some_and(crate::aws::AwsFailure::is_not_found)
    }

    /// The call answered exactly this service error code.
    pub fn is_code(&self, code: &str) -> bool {
        self.failure().is_some_and(|f| f.is(code))
    }

    /// Another resource still depends on it (EC2 `DependencyViolation`).
    pub fn is_dependency_violation(&self) -> bool {
        self.failure().is_some_and(crate::aws::AwsFailure::is_dependency_violation)
    }

    /// The resource is busy with an earlier change.
    pub fn is_in_progress(&self) -> bool {
        self.failure().is_some_and(crate::aws::AwsFailure::is_in_progress)
    }

    /// The caller's identity may not make this call.
    pub fn is_access_denied(&self) -> bool {
        self.failure().is_some_and(crate::aws::AwsFailure::is_access_denied)
    }

    /// Throttled (after the SDK's own retries).
    pub fn is_throttle(&self) -> bool {
        self.failure().is_some_and(crate::aws::AwsFailure::is_throttle)
    }

    /// The service's message contains `text` (for the few conditions AWS
    /// tells only in words, such as IAM propagation).
    pub fn message_contains(&self, text: &str) -> bool {
        self.failure().is_some_and(|f| f.message.contains(text))
    }
}
