use crate::{Counter, Hosted, StateMachine, Value};

/// Short names of the built-in objects, as `concoord replica -o` accepts them.
pub fn builtin_names() -> &'static [&'static str] {
    &["Counter", "Value"]
}

/// A fresh built-in object by short name (`Counter`) or ConCoord's dotted
/// path (`concoord.object.counter.Counter`); `None` if there is no such object.
pub fn builtin(name: &str) -> Option<Box<dyn StateMachine>> {
    let short = name.rsplit('.').next().unwrap_or(name);
    let object: Box<dyn StateMachine> = match short {
        "Counter" => Box::new(Hosted::<Counter>::default()),
        "Value" => Box::new(Hosted::<Value>::default()),
        _ => return None,
    };
    Some(object)
}
