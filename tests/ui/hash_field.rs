use serde::{Deserialize, Serialize};
use std::collections::HashMap;

#[concoord::object]
#[derive(Default, Serialize, Deserialize)]
pub struct Registry {
    names: HashMap<String, u64>,
}

fn main() {}
