use serde::{Deserialize, Serialize};
use std::fmt;

/// An error raised by an object, named like Python's exceptions
/// (`RuntimeError: release unlocked lock`) so ConCoord users recognise it.
///
/// Two kinds are raised by the object layer itself rather than by object code:
/// [`ObjectError::UNKNOWN_METHOD`] and [`ObjectError::BAD_ARGUMENTS`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectError {
    pub kind: String,
    pub message: String,
}

impl ObjectError {
    pub const UNKNOWN_METHOD: &'static str = "UnknownMethod";
    pub const BAD_ARGUMENTS: &'static str = "BadArguments";

    pub fn new(kind: impl Into<String>, message: impl Into<String>) -> Self {
        ObjectError {
            kind: kind.into(),
            message: message.into(),
        }
    }

    pub fn unknown_method(object: &str, method: &str) -> Self {
        Self::new(
            Self::UNKNOWN_METHOD,
            format!("{object} has no method {method:?}"),
        )
    }

    pub fn bad_arguments(message: impl Into<String>) -> Self {
        Self::new(Self::BAD_ARGUMENTS, message)
    }

    pub fn runtime(message: impl Into<String>) -> Self {
        Self::new("RuntimeError", message)
    }

    pub fn value(message: impl Into<String>) -> Self {
        Self::new("ValueError", message)
    }

    pub fn key(message: impl Into<String>) -> Self {
        Self::new("KeyError", message)
    }
}

impl fmt::Display for ObjectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl std::error::Error for ObjectError {}
