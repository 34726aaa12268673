//! The errors a caller can tell apart.

use concoord_objects::ObjectError;
use std::fmt;

/// Errors a caller can tell apart.
#[derive(Clone, Debug, PartialEq)]
pub enum ClientError {
    /// The object raised an error (`RuntimeError: release unlocked lock`).
    Object(ObjectError),
    /// The object has no such method.
    UnknownMethod(String),
    /// The arguments did not fit the method.
    BadArguments(String),
    /// The group refused us (wrong token, wrong protocol version).
    Refused(String),
    /// No quorum answered before the deadline.
    Unavailable(String),
    /// A bad address or a reply that could not be decoded.
    Invalid(String),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Object(e) => write!(f, "{e}"),
            ClientError::UnknownMethod(m) => write!(f, "unknown method: {m}"),
            ClientError::BadArguments(m) => write!(f, "bad arguments: {m}"),
            ClientError::Refused(m) => write!(f, "refused: {m}"),
            ClientError::Unavailable(m) => write!(f, "unavailable: {m}"),
            ClientError::Invalid(m) => write!(f, "invalid: {m}"),
        }
    }
}

impl std::error::Error for ClientError {}

impl ClientError {
    /// The kind as `concoord call` prints it.
    pub fn kind(&self) -> &str {
        match self {
            ClientError::Object(e) => &e.kind,
            ClientError::UnknownMethod(_) => ObjectError::UNKNOWN_METHOD,
            ClientError::BadArguments(_) => ObjectError::BAD_ARGUMENTS,
            ClientError::Refused(_) => "Refused",
            ClientError::Unavailable(_) => "Unavailable",
            ClientError::Invalid(_) => "Invalid",
        }
    }

    /// The message without the kind.
    pub fn message(&self) -> String {
        match self {
            ClientError::Object(e) => e.message.clone(),
            ClientError::UnknownMethod(m)
            | ClientError::BadArguments(m)
            | ClientError::Refused(m)
            | ClientError::Unavailable(m)
            | ClientError::Invalid(m) => m.clone(),
        }
    }

    pub(crate) fn from_reply_error(e: ObjectError) -> Self {
        match e.kind.as_str() {
            ObjectError::UNKNOWN_METHOD => ClientError::UnknownMethod(e.message),
            ObjectError::BAD_ARGUMENTS => ClientError::BadArguments(e.message),
            _ => ClientError::Object(e),
        }
    }
}
