//! Many named objects in one group: the default object (the empty name,
//! `concoord replica -o`), and any number of named ones, created by the first
//! call that names them with a type, each keeping its type until deleted.
//!
//! Deterministic like everything here: objects live in a `BTreeMap`, the
//! limits are part of the replicated state, and every check happens in the
//! replicated order.

use crate::{
    builtin, reply, CallContext, ClientId, CommandId, Hosted, ObjectError, Outcome,
    ReplicatedObject, Reply, StateMachine,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// The reserved method that deletes a named object; its parked callers get
/// an error of kind [`DELETED`].
pub const DELETE_METHOD: &str = "concoord_delete";

/// A call names a type other than the name's.
pub const WRONG_TYPE: &str = "WrongType";
/// A call names an object that does not exist and cannot be created.
pub const NO_SUCH_OBJECT: &str = "NoSuchObject";
/// The object a call waited on was deleted.
pub const DELETED: &str = "Deleted";
/// A name, an argument or the number of objects is over a limit.
pub const LIMIT_EXCEEDED: &str = "LimitExceeded";

/// Which object a call is for: the empty name is the default object; an
/// empty type means "whatever type the name has" (and cannot create).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Target {
    pub name: String,
    pub type_name: String,
}

impl Target {
    /// A named object of type `type_name` (created on first use).
    pub fn named(name: impl Into<String>, type_name: impl Into<String>) -> Target {
        Target {
            name: name.into(),
            type_name: type_name.into(),
        }
    }

    pub fn is_default(&self) -> bool {
        self.name.is_empty()
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.name.is_empty(), self.type_name.is_empty()) {
            (true, _) => write!(f, "the default object"),
            (false, true) => write!(f, "{:?}", self.name),
            (false, false) => write!(f, "{:?} ({})", self.name, self.type_name),
        }
    }
}

type Maker = fn() -> Box<dyn StateMachine>;

fn make_hosted<T: ReplicatedObject>() -> Box<dyn StateMachine> {
    Box::new(Hosted::<T>::default())
}

/// The object types a replica can create by name: the built-ins always,
/// plus user types registered by the binary (`concoord::serve`).
#[derive(Clone, Default)]
pub struct Types {
    user: BTreeMap<&'static str, Maker>,
}

impl fmt::Debug for Types {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

impl Types {
    /// The built-in objects only.
    pub fn builtins() -> Types {
        Types::default()
    }

    /// Adds a user type (by its `NAME`); it shadows a built-in of that name.
    pub fn register<T: ReplicatedObject>(&mut self) -> &mut Self {
        self.user.insert(T::NAME, make_hosted::<T>);
        self
    }

    /// A fresh object of `type_name`: a short name (`Lock`) or a dotted
    /// path ending in one (`concoord.object.lock.Lock`), as `-o` takes them.
    pub fn make(&self, type_name: &str) -> Option<Box<dyn StateMachine>> {
        let short = type_name.rsplit('.').next().unwrap_or(type_name);
        match self.user.get(short) {
            Some(make) => Some(make()),
            None => builtin(type_name),
        }
    }

    /// The name objects of `type_name` answer to (`DLock` is a `Lock`).
    pub fn canonical(&self, type_name: &str) -> Option<&'static str> {
        self.make(type_name).map(|o| o.name())
    }

    /// Every type it can create, sorted.
    pub fn names(&self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = crate::builtin_names().to_vec();
        names.extend(self.user.keys().copied());
        names.sort_unstable();
        names.dedup();
        names
    }
}

/// Limits every replica applies identically (they travel in snapshots).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Named objects a group holds at most (the default object not counted).
    pub max_objects: u64,
    /// Bytes in an object's name.
    pub max_name_len: usize,
    /// The session TTLs (ms) a client may ask for.
    pub session_ttl_min_ms: u64,
    pub session_ttl_max_ms: u64,
}

impl Limits {
    pub const DEFAULT_MAX_OBJECTS: u64 = 1_000_000;
    pub const DEFAULT_MAX_NAME_LEN: usize = 256;
    pub const DEFAULT_SESSION_TTL_MIN_MS: u64 = 2_000;
    pub const DEFAULT_SESSION_TTL_MAX_MS: u64 = 300_000;
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_objects: Limits::DEFAULT_MAX_OBJECTS,
            max_name_len: Limits::DEFAULT_MAX_NAME_LEN,
            session_ttl_min_ms: Limits::DEFAULT_SESSION_TTL_MIN_MS,
            session_ttl_max_ms: Limits::DEFAULT_SESSION_TTL_MAX_MS,
        }
    }
}

/// One named object as `concoord objects` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectInfo {
    pub name: String,
    #[serde(rename = "type")]
    pub type_name: String,
    pub parked: u64,
}

/// Every object's state, as a snapshot carries it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoreSnapshot {
    pub limits: Limits,
    /// `(name, type, state)` of every named object, by name.
    pub named: Vec<(String, String, StateBytes)>,
}

/// An object's state as MessagePack bin (not an array of integers).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateBytes(pub Vec<u8>);

impl Serialize for StateBytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for StateBytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = StateBytes;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object's state as bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<StateBytes, E> {
                Ok(StateBytes(v.to_vec()))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<StateBytes, E> {
                Ok(StateBytes(v))
            }
        }
        d.deserialize_byte_buf(Visit)
    }
}

/// What a call did to the set of objects, for the replica's client table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreChange {
    None,
    /// The object was deleted: whatever waited on it gets [`DELETED`].
    Deleted,
}

/// The default object and the named ones.
pub struct ObjectStore {
    default: Box<dyn StateMachine>,
    named: BTreeMap<String, Box<dyn StateMachine>>,
    types: Arc<Types>,
    limits: Limits,
}

impl ObjectStore {
    pub fn new(default: Box<dyn StateMachine>, types: Arc<Types>, limits: Limits) -> Self {
        ObjectStore {
            default,
            named: BTreeMap::new(),
            types,
            limits,
        }
    }

    pub fn default_object(&self) -> &dyn StateMachine {
        &*self.default
    }

    pub fn default_name(&self) -> &'static str {
        self.default.name()
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    pub fn types(&self) -> &Types {
        &self.types
    }

    /// Named objects held.
    pub fn len(&self) -> usize {
        self.named.len()
    }

    pub fn is_empty(&self) -> bool {
        self.named.is_empty()
    }

    /// The object called `name` ("" for the default one).
    pub fn get(&self, name: &str) -> Option<&dyn StateMachine> {
        if name.is_empty() {
            Some(&*self.default)
        } else {
            self.named.get(name).map(|o| &**o)
        }
    }

    fn get_mut(&mut self, name: &str) -> Option<&mut Box<dyn StateMachine>> {
        if name.is_empty() {
            Some(&mut self.default)
        } else {
            self.named.get_mut(name)
        }
    }

    /// Named objects in name order after `after`, at most `limit`, with the
    /// type of each (parked counts are the replica's to add).
    pub fn list(&self, after: &str, limit: usize) -> Vec<(String, &'static str)> {
        use std::ops::Bound;
        self.named
            .range::<str, _>((Bound::Excluded(after), Bound::Unbounded))
            .take(limit)
            .map(|(name, o)| (name.clone(), o.name()))
            .collect()
    }

    fn check_type(&self, target: &Target, actual: &'static str) -> Result<(), ObjectError> {
        // The common case, a proxy naming the type as objects answer to it,
        // needs no lookup.
        if target.type_name.is_empty() || target.type_name == actual {
            return Ok(());
        }
        let wanted = self.types.canonical(&target.type_name);
        if wanted == Some(actual) {
            return Ok(());
        }
        Err(ObjectError::new(
            WRONG_TYPE,
            format!(
                "{} is a {actual}, not a {}",
                if target.name.is_empty() {
                    "the default object".to_string()
                } else {
                    format!("{:?}", target.name)
                },
                target.type_name
            ),
        ))
    }

    /// Runs a call on the object `target` names, creating it first if the
    /// name is new and the call gives a type. A refused call changes nothing.
    pub fn apply(
        &mut self,
        target: &Target,
        method: &str,
        args: &[u8],
        ctx: &mut CallContext<'_>,
    ) -> (Outcome, StoreChange) {
        match self.route(target, method, args, ctx) {
            Ok(done) => done,
            Err(e) => (Outcome::Reply(Err(e)), StoreChange::None),
        }
    }

    fn route(
        &mut self,
        target: &Target,
        method: &str,
        args: &[u8],
        ctx: &mut CallContext<'_>,
    ) -> Result<(Outcome, StoreChange), ObjectError> {
        if target.name.is_empty() {
            self.check_type(target, self.default.name())?;
            if method == DELETE_METHOD {
                return Err(ObjectError::new(
                    WRONG_TYPE,
                    "the default object cannot be deleted",
                ));
            }
            return Ok((self.default.apply(method, args, ctx), StoreChange::None));
        }
        if target.name.len() > self.limits.max_name_len {
            return Err(ObjectError::new(
                LIMIT_EXCEEDED,
                format!(
                    "an object name is at most {} bytes; this one has {}",
                    self.limits.max_name_len,
                    target.name.len()
                ),
            ));
        }
        if let Some(object) = self.named.get(&target.name) {
            self.check_type(target, object.name())?;
            if method == DELETE_METHOD {
                let gone = self.named.remove(&target.name).expect("looked up above");
                // Built-ins report their own waiters; the replica answers the rest.
                let deleted =
                    || ObjectError::new(DELETED, format!("{:?} was deleted", target.name));
                for id in gone.parked_ids() {
                    ctx.wake(id, Err(deleted()));
                }
                return Ok((reply(&()), StoreChange::Deleted));
            }
            let object = self.named.get_mut(&target.name).expect("looked up above");
            return Ok((object.apply(method, args, ctx), StoreChange::None));
        }
        if method == DELETE_METHOD {
            return Err(ObjectError::new(
                NO_SUCH_OBJECT,
                format!("no object named {:?}", target.name),
            ));
        }
        if target.type_name.is_empty() {
            return Err(ObjectError::new(
                NO_SUCH_OBJECT,
                format!(
                    "no object named {:?}; name its type to create it",
                    target.name
                ),
            ));
        }
        let Some(mut fresh) = self.types.make(&target.type_name) else {
            return Err(ObjectError::new(
                NO_SUCH_OBJECT,
                format!(
                    "no object named {:?}, and this group cannot create a {} (it knows {})",
                    target.name,
                    target.type_name,
                    self.types.names().join(", ")
                ),
            ));
        };
        if self.named.len() as u64 >= self.limits.max_objects {
            return Err(ObjectError::new(
                LIMIT_EXCEEDED,
                format!(
                    "this group holds at most {} named objects",
                    self.limits.max_objects
                ),
            ));
        }
        let outcome = fresh.apply(method, args, ctx);
        // A call that fails on a fresh object leaves no object behind.
        if !matches!(outcome, Outcome::Reply(Err(_))) {
            self.named.insert(target.name.clone(), fresh);
        }
        Ok((outcome, StoreChange::None))
    }

    /// Runs a read-only call on an object that exists, outside the
    /// replicated order (a read index or a stale read). `None` when it cannot
    /// be served so and must go through the log: the method is not marked
    /// read-only, the object does not exist yet (the log creates it), or the
    /// target names another type (the log answers the error).
    pub fn read(
        &mut self,
        target: &Target,
        method: &str,
        args: &[u8],
        ctx: &mut CallContext<'_>,
    ) -> Option<Outcome> {
        if method == DELETE_METHOD || method == crate::INIT_METHOD {
            return None;
        }
        let object: &mut Box<dyn StateMachine> = if target.name.is_empty() {
            &mut self.default
        } else {
            self.named.get_mut(&target.name)?
        };
        let actual = object.name();
        if !object.is_read_only(method) {
            return None;
        }
        if !target.type_name.is_empty()
            && target.type_name != actual
            && self.types.canonical(&target.type_name) != Some(actual)
        {
            return None;
        }
        let object: &mut Box<dyn StateMachine> = if target.name.is_empty() {
            &mut self.default
        } else {
            self.named.get_mut(&target.name)?
        };
        Some(object.apply(method, args, ctx))
    }

    /// A replicated cancel of `id`, parked in the object called `name`.
    pub fn cancel(
        &mut self,
        name: &str,
        id: CommandId,
        ctx: &mut CallContext<'_>,
    ) -> Option<Reply> {
        self.get_mut(name)?.cancel(id, ctx)
    }

    /// A client's session ended: every object releases what it held.
    pub fn session_ended(&mut self, client: ClientId, ctx: &mut CallContext<'_>) {
        self.default.session_ended(client, ctx);
        for object in self.named.values_mut() {
            object.session_ended(client, ctx);
        }
    }

    /// Whether the object called `name` answers parked calls by re-running them.
    pub fn reruns_parked(&self, name: &str) -> bool {
        self.get(name).is_some_and(|o| o.reruns_parked())
    }

    /// The named objects' state (the default object's is taken apart).
    pub fn snapshot(&self) -> StoreSnapshot {
        StoreSnapshot {
            limits: self.limits,
            named: self
                .named
                .iter()
                .map(|(name, o)| (name.clone(), o.name().to_string(), StateBytes(o.snapshot())))
                .collect(),
        }
    }

    /// Installs the named objects of a snapshot; on error nothing changes.
    pub fn restore(&mut self, snapshot: &StoreSnapshot) -> Result<(), ObjectError> {
        let mut named = BTreeMap::new();
        for (name, type_name, state) in &snapshot.named {
            let mut object = self.types.make(type_name).ok_or_else(|| {
                ObjectError::new(
                    "SnapshotError",
                    format!(
                        "the snapshot holds {name:?} of type {type_name}, which this replica cannot host \
                         (it knows {}); serve the same types on every replica",
                        self.types.names().join(", ")
                    ),
                )
            })?;
            object.restore(&state.0)?;
            named.insert(name.clone(), object);
        }
        self.named = named;
        self.limits = snapshot.limits;
        Ok(())
    }

    pub fn default_mut(&mut self) -> &mut dyn StateMachine {
        &mut *self.default
    }

    /// Sets the types it can create and the limits (before any call runs;
    /// a snapshot brings the group's own limits later).
    pub fn configure(&mut self, types: Arc<Types>, limits: Limits) {
        self.types = types;
        self.limits = limits;
    }
}

#[cfg(test)]
mod tests;
