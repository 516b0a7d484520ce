//! SDK errors as [`ProviderError::Api`]: the AWS error code, the operation,
//! the region, and whether waiting may help.

use aws_sdk_ec2::config::http::HttpResponse;
use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use clustersitter::provider::ProviderError;

/// EC2's error codes for "slow down" (EC2 API reference, "Error codes":
/// `RequestLimitExceeded`; the others are the SDK's throttling codes).
const THROTTLING_CODES: &[&str] = &[
    "RequestLimitExceeded",
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
];

/// EC2's error codes for its own trouble, as a 5xx says (`InternalError`,
/// `Unavailable`, `ServiceUnavailable`).
const SERVER_CODES: &[&str] = &[
    "InternalError",
    "InternalFailure",
    "Unavailable",
    "ServiceUnavailable",
];

/// Codes EC2 answers with a 5xx that still need a person (or another
/// type or zone): the capacity is not there, and retrying at once will not
/// bring it.
const CAPACITY_CODES: &[&str] = &[
    "InsufficientInstanceCapacity",
    "InsufficientHostCapacity",
    "InsufficientReservedInstanceCapacity",
    "InsufficientCapacity",
];

/// Whether an answer of EC2 with this `code` and HTTP `status` may pass
/// by itself: throttling, or a server-side failure (5xx) other than
/// missing capacity.
pub fn transient_answer(code: Option<&str>, status: u16) -> bool {
    if code.is_some_and(|c| CAPACITY_CODES.contains(&c)) {
        return false;
    }
    status >= 500
        || status == 429
        || code.is_some_and(|c| THROTTLING_CODES.contains(&c) || SERVER_CODES.contains(&c))
}

/// Maps `error` of EC2's `operation` (its API name, e.g. `RunInstances`)
/// in `region`. Failures that never got an answer get a short code:
/// `timeout`, `dispatch` (connection refused or lost), `response` (an
/// answer that could not be read), `construction` (a request the SDK would
/// not build); all but `construction` are transient.
pub fn api_error<E>(
    operation: &'static str,
    region: &str,
    error: SdkError<E, HttpResponse>,
) -> ProviderError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let (code, transient) = match &error {
        SdkError::ServiceError(service) => {
            let code = service.err().code().map(str::to_string);
            let status = service.raw().status().as_u16();
            let transient = transient_answer(code.as_deref(), status);
            (code.unwrap_or_else(|| format!("HTTP {status}")), transient)
        }
        SdkError::TimeoutError(_) => ("timeout".to_string(), true),
        SdkError::DispatchFailure(failure) => {
            let code = if failure.is_timeout() {
                "timeout"
            } else {
                "dispatch"
            };
            (code.to_string(), !failure.is_user())
        }
        SdkError::ResponseError(_) => ("response".to_string(), true),
        SdkError::ConstructionFailure(_) => ("construction".to_string(), false),
        _ => ("unknown".to_string(), false),
    };
    let message = match &error {
        SdkError::ServiceError(service) => service
            .err()
            .message()
            .map(str::to_string)
            .unwrap_or_else(|| DisplayErrorContext(&error).to_string()),
        _ => DisplayErrorContext(&error).to_string(),
    };
    ProviderError::Api {
        operation,
        region: region.to_string(),
        code,
        message,
        transient,
    }
}

/// Whether `error` may pass by itself (see [`api_error`]).
pub fn is_transient(error: &ProviderError) -> bool {
    matches!(
        error,
        ProviderError::Api {
            transient: true,
            ..
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ec2::error::{ConnectorError, ErrorMetadata};
    use aws_sdk_ec2::operation::run_instances::RunInstancesError;

    fn answer(code: &str, status: u16) -> SdkError<RunInstancesError, HttpResponse> {
        let meta = ErrorMetadata::builder()
            .code(code)
            .message("said EC2")
            .build();
        let response = HttpResponse::new(
            status.try_into().unwrap(),
            aws_smithy_types::body::SdkBody::empty(),
        );
        SdkError::service_error(RunInstancesError::generic(meta), response)
    }

    fn mapped(error: SdkError<RunInstancesError, HttpResponse>) -> (String, bool, String) {
        match api_error("RunInstances", "us-west-2", error) {
            ProviderError::Api {
                operation,
                region,
                code,
                message,
                transient,
            } => {
                assert_eq!((operation, region.as_str()), ("RunInstances", "us-west-2"));
                (code, transient, message)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn permanent_answers_keep_their_code() {
        assert_eq!(
            mapped(answer("InvalidAMIID.NotFound", 400)),
            ("InvalidAMIID.NotFound".into(), false, "said EC2".into())
        );
        assert_eq!(
            mapped(answer("InsufficientInstanceCapacity", 500)).0,
            "InsufficientInstanceCapacity"
        );
        assert!(!mapped(answer("InsufficientInstanceCapacity", 500)).1);
        assert!(!mapped(answer("InstanceLimitExceeded", 400)).1);
    }

    #[test]
    fn throttling_and_server_errors_are_transient() {
        assert!(mapped(answer("RequestLimitExceeded", 503)).1);
        assert!(mapped(answer("RequestLimitExceeded", 400)).1);
        assert!(mapped(answer("InternalError", 500)).1);
        assert!(mapped(answer("Whatever", 502)).1);
    }

    #[test]
    fn failures_without_an_answer_are_transient() {
        let io = SdkError::<RunInstancesError, HttpResponse>::dispatch_failure(ConnectorError::io(
            "connection reset".into(),
        ));
        assert_eq!(mapped(io).0, "dispatch");
        let timeout = SdkError::<RunInstancesError, HttpResponse>::timeout_error("slow");
        let (code, transient, _) = mapped(timeout);
        assert_eq!((code.as_str(), transient), ("timeout", true));
        let user = SdkError::<RunInstancesError, HttpResponse>::dispatch_failure(
            ConnectorError::user("bad request".into()),
        );
        assert!(!mapped(user).1);
    }
}
