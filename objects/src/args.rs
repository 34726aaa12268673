use crate::ObjectError;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The positional arguments of one call, decoded from a MessagePack array.
///
/// Methods take them Python-style: required ones with [`Args::get`], optional
/// ones with defaults with [`Args::get_or`], and [`Args::at_most`] refuses extras.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Args {
    values: Vec<rmpv::Value>,
}

impl Args {
    /// Decodes MessagePack bytes; an empty input means no arguments.
    pub fn decode(bytes: &[u8]) -> Result<Args, ObjectError> {
        if bytes.is_empty() {
            return Ok(Args::default());
        }
        let value = rmpv::decode::read_value(&mut &bytes[..])
            .map_err(|e| ObjectError::bad_arguments(format!("undecodable arguments: {e}")))?;
        match value {
            rmpv::Value::Array(values) => Ok(Args { values }),
            other => Err(ObjectError::bad_arguments(format!(
                "arguments must be an array, got {other}"
            ))),
        }
    }

    pub fn from_values(values: Vec<rmpv::Value>) -> Args {
        Args { values }
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub fn values(&self) -> &[rmpv::Value] {
        &self.values
    }

    /// Refuses more than `max` arguments, as Python refuses extra positionals.
    pub fn at_most(&self, max: usize) -> Result<(), ObjectError> {
        if self.values.len() > max {
            return Err(ObjectError::bad_arguments(format!(
                "takes at most {max} argument(s), {} given",
                self.values.len()
            )));
        }
        Ok(())
    }

    /// A required argument at `index`.
    pub fn get<T: DeserializeOwned>(&self, index: usize, name: &str) -> Result<T, ObjectError> {
        let value = self.values.get(index).ok_or_else(|| {
            ObjectError::bad_arguments(format!("missing argument {index} ({name})"))
        })?;
        convert(value, name)
    }

    /// An optional argument at `index`; nil counts as absent (Python's `None`).
    pub fn get_or<T: DeserializeOwned>(
        &self,
        index: usize,
        name: &str,
        default: T,
    ) -> Result<T, ObjectError> {
        match self.values.get(index) {
            None | Some(rmpv::Value::Nil) => Ok(default),
            Some(value) => convert(value, name),
        }
    }

    /// An optional argument at `index` where nil means `None`.
    pub fn get_opt<T: DeserializeOwned>(
        &self,
        index: usize,
        name: &str,
    ) -> Result<Option<T>, ObjectError> {
        match self.values.get(index) {
            None | Some(rmpv::Value::Nil) => Ok(None),
            Some(value) => convert(value, name).map(Some),
        }
    }

    /// The raw value at `index` (for methods that store arbitrary items).
    pub fn raw(&self, index: usize, name: &str) -> Result<rmpv::Value, ObjectError> {
        self.values
            .get(index)
            .cloned()
            .ok_or_else(|| ObjectError::bad_arguments(format!("missing argument {index} ({name})")))
    }
}

fn convert<T: DeserializeOwned>(value: &rmpv::Value, name: &str) -> Result<T, ObjectError> {
    rmpv::ext::from_value(value.clone()).map_err(|e| {
        ObjectError::bad_arguments(format!("argument {name}: wrong type ({value}): {e}"))
    })
}

/// Encodes positional arguments as the MessagePack array a call carries.
pub fn encode_args<T: Serialize>(args: &[T]) -> Vec<u8> {
    rmp_serde::to_vec(args).expect("serializing plain values into a Vec cannot fail")
}

/// Encodes one value as MessagePack (replies are carried this way).
pub fn encode_value<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    rmp_serde::to_vec(value).expect("serializing plain values into a Vec cannot fail")
}
