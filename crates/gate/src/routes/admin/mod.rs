//! The operator's API under `/api/*` (behind the admin gate): keys and usage reports. Handlers
//! return `Result<Json<_>, GateError>`; bodies come through [`JsonBody`], which refuses with the
//! same error shape as everything else.

pub mod keys;
pub mod usage;

use crate::error::GateError;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

/// Largest admin request body.
const MAX_ADMIN_BODY: usize = 64 << 10;

/// A JSON body; malformed input is a 400 in the OpenAI shape naming the problem.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = GateError;

    async fn from_request(req: Request, _: &S) -> Result<Self, GateError> {
        let body = http_body_util::Limited::new(req.into_body(), MAX_ADMIN_BODY);
        let bytes = http_body_util::BodyExt::collect(body)
            .await
            .map_err(|_| GateError::PayloadTooLarge(MAX_ADMIN_BODY))?
            .to_bytes();
        let bytes = if bytes.iter().all(u8::is_ascii_whitespace) { &b"{}"[..] } else { &bytes[..] };
        serde_json::from_slice(bytes)
            .map(JsonBody)
            .map_err(|e| GateError::bad_request(format!("invalid JSON body: {e}"), None))
    }
}

impl From<crate::access::manage::ManageError> for GateError {
    fn from(e: crate::access::manage::ManageError) -> GateError {
        use crate::access::manage::ManageError;
        match e {
            ManageError::Invalid(m) => GateError::bad_request(m, None),
            ManageError::NotFound(m) => GateError::NotFound(m),
            ManageError::Store(e) => GateError::Internal(e.to_string()),
        }
    }
}
