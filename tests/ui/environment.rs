use serde::{Deserialize, Serialize};

#[derive(Default, Serialize, Deserialize)]
pub struct Obj {
    value: u64,
}

#[concoord::object]
impl Obj {
    pub fn configure(&mut self) {
        self.value = std::env::var("LIMIT").map(|v| v.len() as u64).unwrap_or(0);
    }
}

fn main() {}
