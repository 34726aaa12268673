use serde::{Deserialize, Serialize};

#[derive(Default, Serialize, Deserialize)]
pub struct Obj {
    value: u64,
}

#[concoord::object]
impl Obj {
    pub fn stamp(&mut self) -> u64 {
        let started = std::time::Instant::now();
        self.value = started.elapsed().as_nanos() as u64;
        self.value
    }
}

fn main() {}
