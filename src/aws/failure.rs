//! What an AWS call answered when it failed ([`AwsFailure`]) and its named
//! predicates, and the one-line account of a missing-credentials error.

use super::*;

/// What an AWS call answered when it failed, kept typed: the service's error
/// code, its message, the HTTP status and the request id (printed with every
/// error, as AWS support asks for it). Decisions are made with the named
/// predicates below, never by matching text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsFailure {
    /// The modelled or unmodelled service error code (`DependencyViolation`,
    /// `InvalidGroup.NotFound`); None when no response was received.
    pub code: Option<String>,
    pub message: String,
    pub status: Option<u16>,
    pub request_id: Option<String>,
}

impl AwsFailure {
    /// Reads an SDK error.
    pub fn of<E>(err: &SdkError<E, HttpResponse>) -> AwsFailure
    where
        E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + 'static,
    {
        use aws_types::request_id::RequestId;
        match err {
            SdkError::ServiceError(se) => {
                let e = se.err();
                let status = se.raw().status().as_u16();
                AwsFailure {
                    code: e.code().map(str::to_owned),
                    message: e
                        .message()
                        .map_or_else(|| e.to_string().chars().take(300).collect::<String>(), str::to_owned),
                    status: Some(status),
                    request_id: err.request_id().or_else(|| e.meta().request_id()).map(str::to_owned),
                }
            }
            other => {
                let mut message = other.to_string();
                let mut src = std::error::Error::source(other);
                while let Some(s) = src {
                    message.push_str(": ");
                    message.push_str(&s.to_string());
                    src = s.source();
                }
                let status = match other {
                    SdkError::ResponseError(r) => Some(r.raw().status().as_u16()),
                    _ => None,
                };
                AwsFailure { code: None, message, status, request_id: other.request_id().map(str::to_owned) }
            }
        }
    }

    pub(super) fn code(&self) -> &str {
        self.code.as_deref().unwrap_or("")
    }

    /// Whether the service answered with exactly this error code.
    pub fn is(&self, code: &str) -> bool {
        self.code() == code
    }

    /// The resource does not exist (every service's spelling of it).
    pub fn is_not_found(&self) -> bool {
        let c = self.code();
        c.ends_with(".NotFound")
            || c.ends_with("NotFound")
            || c.ends_with("NotFoundException")
            || c.ends_with("NotFoundFault")
            || c.ends_with("NotFoundError")
            || c.starts_with("NoSuch")
            || self.status == Some(404) && c.is_empty()
    }

    /// Another resource still uses it (EC2: an ENI on a security group or
    /// subnet, a subnet in a VPC).
    pub fn is_dependency_violation(&self) -> bool {
        self.is("DependencyViolation")
    }

    /// The service asked the caller to slow down.
    pub fn is_throttle(&self) -> bool {
        matches!(
            self.code(),
            "Throttling"
                | "ThrottlingException"
                | "ThrottledException"
                | "RequestLimitExceeded"
                | "TooManyRequestsException"
                | "SlowDown"
                | "RequestThrottled"
                | "RequestThrottledException"
                | "ProvisionedThroughputExceededException"
                | "PriorRequestNotComplete"
        ) || self.status == Some(429)
    }

    /// The resource is busy with an earlier change (creating, updating, a
    /// Lambda function Pending or InProgress): try again once it settles.
    pub fn is_in_progress(&self) -> bool {
        matches!(
            self.code(),
            "ResourceConflictException"
                | "ResourceInUseException"
                | "InvalidDBClusterStateFault"
                | "InvalidDBInstanceState"
                | "InvalidDBInstanceStateFault"
                | "OperationAborted"
                | "ConcurrentModification"
                | "ConcurrentModificationException"
                | "ContinuousBackupsUnavailableException"
                | "IncorrectState"
        )
    }

    /// The caller's identity may not make this call.
    pub fn is_access_denied(&self) -> bool {
        matches!(
            self.code(),
            "AccessDenied" | "AccessDeniedException" | "UnauthorizedOperation" | "AuthorizationError" | "Forbidden"
        ) || self.status == Some(403) && self.code.is_none()
    }
}

impl fmt::Display for AwsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.code, self.status) {
            (Some(code), _) => write!(f, "{code}: {}", self.message)?,
            (None, Some(status)) => write!(f, "HTTP {status}: {}", self.message)?,
            (None, None) => f.write_str(&self.message)?,
        }
        if let Some(id) = &self.request_id {
            write!(f, " (request id {id})")?;
        }
        Ok(())
    }
}

/// One line for an SDK error: the typed failure, printed.
/// A call that failed because no credentials could be loaded, in one line
/// (`no AWS credentials found`), or `None` for any other failure.
pub fn credentials_problem(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    use aws_credential_types::provider::error::{CredentialsError, TokenError};
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(c) = e.downcast_ref::<CredentialsError>() {
            return Some(match c {
                CredentialsError::CredentialsNotLoaded(_) => "no AWS credentials found".to_owned(),
                other => match std::error::Error::source(other) {
                    Some(why) => format!("could not load AWS credentials: {other}: {why}"),
                    None => format!("could not load AWS credentials: {other}"),
                },
            });
        }
        if let Some(t) = e.downcast_ref::<TokenError>() {
            return Some(format!("could not load the SSO token ({t}); run `aws sso login`"));
        }
        cur = e.source();
    }
    None
}

pub fn describe_sdk_error<E>(err: &SdkError<E, HttpResponse>) -> String
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + 'static,
{
    AwsFailure::of(err).to_string()
}
