use serde::{Deserialize, Serialize};

#[derive(Default, Serialize, Deserialize)]
pub struct Obj {
    value: u64,
}

#[concoord::object]
impl Obj {
    pub fn roll(&mut self) -> u64 {
        self.value = rand::random::<u64>();
        self.value
    }
}

fn main() {}
