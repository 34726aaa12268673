// The safety check covers methods that park too: a deadline must come from
// the caller (a timeout argument), not from a replica's clock.
use concoord::sync::DSemaphore;
use concoord::{Blocking, CallContext, ObjectError};
use serde::{Deserialize, Serialize};

#[derive(Default, Serialize, Deserialize)]
pub struct Slots {
    slots: DSemaphore,
}

#[concoord::object]
impl Slots {
    pub fn acquire(&mut self, cmd: &mut CallContext<'_>) -> Result<Blocking<bool>, ObjectError> {
        let now = std::time::SystemTime::now();
        let _ = now;
        self.slots.acquire(cmd, true, None)
    }
}

fn main() {}
