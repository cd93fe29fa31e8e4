//! One way to call AWS. Every SDK call's result goes through [`Call`]: `on`
//! names the resource and the operation in the error, `found` is a read that
//! may find nothing, `gone` a delete for which "already gone" is success,
//! `unless` a call for which one named answer is expected. There is one
//! "not found" rule ([`crate::aws::AwsFailure::is_not_found`]), and a denied
//! or throttled call is never taken for "not found".

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::engine::StepError;

/// The result of one SDK call, read the same way everywhere.
pub trait Call<T>: Sized {
    /// The answer, or a [`StepError::Aws`] naming `resource` and `op`.
    fn on(self, resource: impl Into<String>, op: &'static str) -> Result<T, StepError>;

    /// A read of one resource: `None` when AWS answers that it does not
    /// exist; any other failure is an error.
    fn found(self, resource: impl Into<String>, op: &'static str) -> Result<Option<T>, StepError> {
        self.unless(resource, op, StepError::is_not_found)
    }

    /// A delete: done, or the resource was already gone.
    fn gone(self, resource: impl Into<String>, op: &'static str) -> Result<(), StepError> {
        self.found(resource, op).map(|_| ())
    }

    /// `None` when the failure is the expected one `expected` names (a
    /// code, "no such configuration"); any other failure is an error.
    fn unless(
        self,
        resource: impl Into<String>,
        op: &'static str,
        expected: impl FnOnce(&StepError) -> bool,
    ) -> Result<Option<T>, StepError> {
        match self.on(resource, op) {
            Ok(v) => Ok(Some(v)),
            Err(e) if expected(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl<T, E> Call<T> for Result<T, SdkError<E, HttpResponse>>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    fn on(self, resource: impl Into<String>, op: &'static str) -> Result<T, StepError> {
        self.map_err(|e| StepError::sdk(resource, op, &e))
    }
}

/// The service's error code of an SDK error, if the service answered (S3's
/// "no such configuration" errors and many EC2 conditions have no modelled
/// variant: their code is how they are told apart).
pub fn code<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> Option<&str> {
    e.as_service_error().and_then(|s| s.code())
}

/// The same rules for a result already named (a helper's, or one [`Call::on`]
/// mapped).
pub trait Named<T>: Sized {
    /// `None` when the resource does not exist; any other failure stays.
    fn found(self) -> Result<Option<T>, StepError>;

    /// Done, or the resource was already gone.
    fn gone(self) -> Result<(), StepError> {
        self.found().map(|_| ())
    }
}

impl<T> Named<T> for Result<T, StepError> {
    fn found(self) -> Result<Option<T>, StepError> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }
}
