use serde::{Deserialize, Serialize};

#[derive(Default, Serialize, Deserialize)]
pub struct Obj {
    value: u64,
}

#[concoord::object]
impl Obj {
    pub fn work(&mut self) {
        let handle = std::thread::spawn(|| 42);
        self.value = handle.join().unwrap_or(0);
    }
}

fn main() {}
