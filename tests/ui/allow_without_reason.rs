use serde::{Deserialize, Serialize};

#[derive(Default, Serialize, Deserialize)]
pub struct Obj {
    value: u64,
}

#[concoord::object]
impl Obj {
    #[concoord(allow(nondeterminism = ""))]
    pub fn stamp(&mut self) -> u64 {
        self.value
    }
}

fn main() {}
