use concoord::sync::DEvent;
use concoord::{Blocking, CallContext, ObjectError};
use serde::{Deserialize, Serialize};

#[derive(Default, Serialize, Deserialize)]
pub struct Gate {
    open: DEvent,
}

#[concoord::object]
impl Gate {
    // `&self` is read-only: it may not park (parking changes the wait queue).
    pub fn wait(&self, cmd: &mut CallContext<'_>) -> Result<Blocking<bool>, ObjectError> {
        let _ = cmd;
        Ok(Blocking::Parked)
    }
}

fn main() {}
