use serde::{Deserialize, Serialize};

#[derive(Default, Serialize, Deserialize)]
pub struct Obj {
    value: u64,
}

#[concoord::object]
impl Obj {
    pub fn next_id(&mut self) -> u64 {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        self.value = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.value
    }
}

fn main() {}
