//! How an operation's failure looks over HTTP: one status per kind of
//! [`OpError`], shared by the JSON API and the pages so both answer alike.

use crate::ops::OpError;
use axum::http::StatusCode;
use cerebro_web::ApiError;

impl From<OpError> for ApiError {
    fn from(error: OpError) -> Self {
        let status = match &error {
            OpError::Invalid(errors) => return ApiError::from(errors.clone()),
            OpError::NoSuchJob(_)
            | OpError::NoSuchMachine(_)
            | OpError::NoSuchInstance { .. }
            | OpError::NotOnMachineYet { .. }
            | OpError::TaskNotOnMachine(_)
            | OpError::NoSuchBinary { .. } => StatusCode::NOT_FOUND,
            OpError::NotPlaced { .. }
            | OpError::NotRunning { .. }
            | OpError::NoAddress(_)
            | OpError::HasFollowers { .. } => StatusCode::CONFLICT,
            OpError::Decommissioned(_) => StatusCode::GONE,
            OpError::MachineRefused { status, body } => {
                return ApiError {
                    status: StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_REQUEST),
                    body: body.clone(),
                }
            }
            OpError::MachineUnreachable { .. } => StatusCode::BAD_GATEWAY,
            OpError::Persist(_) | OpError::BinaryUnreadable { .. } => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            OpError::BinariesUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError::new(status, error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_keeps_the_status_and_body_the_api_always_had() {
        let cases = [
            (OpError::NoSuchJob("web".into()), 404, "no job named 'web'"),
            (
                OpError::NoSuchInstance {
                    job: "web".into(),
                    index: 9,
                    numbers: vec![0, 1],
                },
                404,
                "job 'web' has no instance 9; its instances are 0 to 1",
            ),
            (
                OpError::NotPlaced {
                    job: "web".into(),
                    index: 1,
                },
                409,
                "instance 1 of 'web' is not placed yet",
            ),
            (
                OpError::NotRunning {
                    job: "web".into(),
                    index: 0,
                },
                409,
                "instance 0 of 'web' is stopped (the job is stopped, or auto_start is false and it was never started): start the job first",
            ),
            (
                OpError::HasFollowers {
                    job: "db".into(),
                    followers: vec!["a".into(), "b".into()],
                },
                409,
                "jobs linked to 'db' must be removed first: a, b",
            ),
            (
                OpError::Decommissioned("m-1".into()),
                410,
                "machine 'm-1' was decommissioned",
            ),
            (
                OpError::Persist(std::io::Error::other("disk full")),
                500,
                "cannot persist the cluster state: disk full",
            ),
        ];
        for (error, status, message) in cases {
            let api = ApiError::from(error);
            assert_eq!(api.status.as_u16(), status, "{message}");
            assert_eq!(api.body.error, message);
        }
    }

    #[test]
    fn a_refused_field_reads_as_bad_field_did() {
        let ours = ApiError::from(OpError::field("max_parallel", "must be at least 1"));
        let before = ApiError::bad_field("max_parallel", "must be at least 1");
        assert_eq!(ours.status, before.status);
        assert_eq!(
            serde_json::to_value(&ours.body).unwrap(),
            serde_json::to_value(&before.body).unwrap()
        );
    }
}
