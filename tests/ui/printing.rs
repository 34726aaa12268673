use serde::{Deserialize, Serialize};

#[derive(Default, Serialize, Deserialize)]
pub struct Obj {
    value: u64,
}

#[concoord::object]
impl Obj {
    pub fn increment(&mut self) {
        self.value += 1;
        println!("value is now {}", self.value);
    }
}

fn main() {}
