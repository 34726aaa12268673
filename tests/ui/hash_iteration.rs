use serde::{Deserialize, Serialize};

#[derive(Default, Serialize, Deserialize)]
pub struct Obj {
    value: u64,
}

#[concoord::object]
impl Obj {
    pub fn first_key(&self, keys: Vec<String>) -> Option<String> {
        let set: std::collections::HashSet<String> = keys.into_iter().collect();
        set.into_iter().next()
    }
}

fn main() {}
