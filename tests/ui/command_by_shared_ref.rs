use concoord::CallContext;
use serde::{Deserialize, Serialize};

#[derive(Default, Serialize, Deserialize)]
pub struct Gate {
    opened: u64,
}

#[concoord::object]
impl Gate {
    pub fn open(&mut self, cmd: &CallContext<'_>) {
        let _ = cmd;
        self.opened += 1;
    }
}

fn main() {}
