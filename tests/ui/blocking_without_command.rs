use concoord::sync::DEvent;
use concoord::{Blocking, ObjectError};
use serde::{Deserialize, Serialize};

#[derive(Default, Serialize, Deserialize)]
pub struct Gate {
    open: DEvent,
}

#[concoord::object]
impl Gate {
    // Parking needs the calling command: the primitives key their queues by it.
    pub fn wait(&mut self) -> Result<Blocking<bool>, ObjectError> {
        Ok(Blocking::Parked)
    }
}

fn main() {}
