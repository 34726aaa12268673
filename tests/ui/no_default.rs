use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct NoDefault {
    value: u64,
}

#[concoord::object]
impl NoDefault {
    pub fn get(&self) -> u64 {
        self.value
    }
}

fn main() {}
