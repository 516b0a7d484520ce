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
            | OpError::TaskNotOnMachine(_) => StatusCode::NOT_FOUND,
            OpError::NotPlaced { .. } | OpError::NoAddress(_) | OpError::HasFollowers { .. } => {
                StatusCode::CONFLICT
            }
            OpError::Decommissioned(_) => StatusCode::GONE,
            OpError::MachineUnreachable(_) => StatusCode::BAD_GATEWAY,
            OpError::Persist(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, error.to_string())
    }
}
