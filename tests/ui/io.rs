use serde::{Deserialize, Serialize};

#[derive(Default, Serialize, Deserialize)]
pub struct Obj {
    value: u64,
}

#[concoord::object]
impl Obj {
    pub fn load(&mut self) -> u64 {
        let text = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
        self.value = text.len() as u64;
        self.value
    }
}

fn main() {}
