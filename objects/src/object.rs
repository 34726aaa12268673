use crate::{Args, ClientId, CommandId, ObjectError};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// What a call produced: MessagePack bytes of the result, or the object's error.
pub type Reply = Result<Vec<u8>, ObjectError>;

/// The method name of ConCoord's `__concoordinit__`: re-runs the constructor
/// on the replicated state. Handled by [`Hosted`] for every object.
pub const INIT_METHOD: &str = "concoord_init";

/// The read-only method every object answers with a description of itself
/// (the seed's `>>> s`): [`ReplicatedObject::describe`]. Handled by [`Hosted`].
pub const STR_METHOD: &str = "concoord_str";

/// What a blocking method of a user type returns: its value now, or
/// `Parked` when it waits in a wait queue of an embedded primitive
/// ([`crate::sync`]). A parked call runs again from the top when the
/// primitive wakes it (see [`ReplicatedObject::RERUNS_PARKED`]); the proxy
/// returns the `T` of the run that finally answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "a Parked result must be returned for the call to wait"]
pub enum Blocking<T> {
    Ready(T),
    Parked,
}

impl<T> Blocking<T> {
    pub fn is_parked(&self) -> bool {
        matches!(self, Blocking::Parked)
    }

    /// The value, or `None` when parked.
    pub fn ready(self) -> Option<T> {
        match self {
            Blocking::Ready(v) => Some(v),
            Blocking::Parked => None,
        }
    }

    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Blocking<U> {
        match self {
            Blocking::Ready(v) => Blocking::Ready(f(v)),
            Blocking::Parked => Blocking::Parked,
        }
    }
}

/// Unwraps a [`Blocking::Ready`] value, or returns `Ok(Blocking::Parked)`
/// from the enclosing method: the `?` of parking.
///
/// ```
/// use concoord_objects::{ready, sync::DSemaphore, Blocking, CallContext, ObjectError};
/// fn take(sem: &mut DSemaphore, cmd: &mut CallContext<'_>) -> Result<Blocking<&'static str>, ObjectError> {
///     let got = ready!(sem.acquire(cmd, true, None)?);
///     Ok(Blocking::Ready(if got { "mine" } else { "not mine" }))
/// }
/// ```
#[macro_export]
macro_rules! ready {
    ($e:expr) => {
        match $e {
            $crate::Blocking::Ready(value) => value,
            $crate::Blocking::Parked => {
                return ::std::result::Result::Ok($crate::Blocking::Parked);
            }
        }
    };
}

/// Why a call is running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunMode {
    /// The call's first run, in its slot.
    First,
    /// A parked call woken by a primitive ([`CallContext::rerun`]).
    Woken,
    /// A parked call whose caller's deadline passed (a replicated cancel):
    /// every blocking primitive call answers as timed out instead of parking.
    DeadlinePassed,
}

/// The result of applying one call.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Answer the caller now.
    Reply(Reply),
    /// The call cannot proceed yet: the object keeps it in a wait queue under
    /// its command id and a later call answers it through [`CallContext::wake`].
    Park,
}

/// Builds a successful [`Outcome`] from any serializable value.
pub fn reply<T: Serialize + ?Sized>(value: &T) -> Outcome {
    Outcome::Reply(Ok(crate::encode_value(value)))
}

/// What an object may know about the call it is running: who sent it and in
/// which slot it was decided (identical on every replica), and where to put
/// answers for parked calls that this call frees.
///
/// This is the counterpart of ConCoord's `_concoord_command`: a method of a
/// user type that takes `&mut CallContext<'_>` may park through the
/// primitives of [`crate::sync`], which key their wait queues by [`Self::id`].
pub struct CallContext<'a> {
    pub id: CommandId,
    pub slot: u64,
    wakes: &'a mut Vec<(CommandId, Reply)>,
    reruns: Vec<CommandId>,
    mode: RunMode,
    waiting: Option<&'a dyn Fn(CommandId) -> bool>,
    reinitialised: bool,
}

impl<'a> CallContext<'a> {
    pub fn new(id: CommandId, slot: u64, wakes: &'a mut Vec<(CommandId, Reply)>) -> Self {
        CallContext {
            id,
            slot,
            wakes,
            reruns: Vec::new(),
            mode: RunMode::First,
            waiting: None,
            reinitialised: false,
        }
    }

    /// The same context for a run of a parked call ([`RunMode::Woken`] or
    /// [`RunMode::DeadlinePassed`]).
    pub fn with_mode(mut self, mode: RunMode) -> Self {
        self.mode = mode;
        self
    }

    /// Lets primitives skip queue entries of calls that no longer wait (they
    /// were answered by a run that took another path): `waiting(id)` says
    /// whether `id` is still parked. Without it every entry counts as waiting.
    pub fn with_waiting(mut self, waiting: &'a dyn Fn(CommandId) -> bool) -> Self {
        self.waiting = Some(waiting);
        self
    }

    /// Whether the caller's deadline has passed: blocking calls must not park.
    pub fn deadline_passed(&self) -> bool {
        self.mode == RunMode::DeadlinePassed
    }

    /// Whether `id` still waits for an answer.
    pub fn is_waiting(&self, id: CommandId) -> bool {
        self.waiting.map_or(true, |waiting| waiting(id))
    }

    /// Asks for the parked call `id` to run again from the top once this
    /// call is done (in the order asked), so it can take what it waited for.
    pub fn rerun(&mut self, id: CommandId) {
        if !self.reruns.contains(&id) {
            self.reruns.push(id);
        }
    }

    /// The calls to run again, in order.
    pub fn take_reruns(&mut self) -> Vec<CommandId> {
        std::mem::take(&mut self.reruns)
    }

    /// Marks that this call replaced the object's state (`concoord_init`):
    /// whatever was parked on the old state must be answered.
    pub fn mark_reinitialised(&mut self) {
        self.reinitialised = true;
    }

    pub fn reinitialised(&self) -> bool {
        self.reinitialised
    }

    /// The client that sent this call (ownership of locks is by client).
    pub fn client(&self) -> ClientId {
        self.id.client
    }

    /// Answers a parked command. Wake-ups are delivered in the order given.
    pub fn wake(&mut self, id: CommandId, reply: Reply) {
        self.wakes.push((id, reply));
    }

    /// Answers a parked command with a serializable value.
    pub fn wake_with<T: Serialize + ?Sized>(&mut self, id: CommandId, value: &T) {
        self.wake(id, Ok(crate::encode_value(value)));
    }
}

/// A type whose instances can be replicated: the user writes an ordinary
/// type with `Default` (ConCoord's no-argument `__init__`) and serde state
/// (for snapshots), and maps method names to code.
///
/// Implementations must be deterministic: no clocks, randomness, IO, threads
/// or iteration over hash-ordered collections.
pub trait ReplicatedObject: Default + Serialize + DeserializeOwned + Send + 'static {
    /// The short name clients and `concoord replica -o` use.
    const NAME: &'static str;

    /// Runs one method. Unknown names return [`ObjectError::unknown_method`].
    fn call(&mut self, method: &str, args: &Args, ctx: &mut CallContext<'_>) -> Outcome;

    /// The constructor with arguments (`concoord_init`, `--init`). The default
    /// accepts no arguments and returns `Default::default()`.
    fn init(args: &Args) -> Result<Self, ObjectError> {
        args.at_most(0)?;
        Ok(Self::default())
    }

    /// A replicated cancel (the caller's deadline passed) of a command that may
    /// be parked here. Returns the reply for that command if it was parked, and
    /// must then have removed it from every wait queue.
    ///
    /// `None` means there is nothing to answer now: the command is not parked
    /// (its grant was ordered first), or it stays parked because it must first
    /// re-acquire a lock (a timed-out `Condition.wait`), in which case its
    /// reply arrives later through [`CallContext::wake`].
    fn cancel(&mut self, _id: CommandId, _ctx: &mut CallContext<'_>) -> Option<Reply> {
        None
    }

    /// Every command this object has parked, so a re-init can answer them.
    fn parked(&self) -> Vec<CommandId> {
        Vec::new()
    }

    /// Methods that only read state (may be served without a log write later).
    fn is_read_only(_method: &str) -> bool {
        false
    }

    /// The session of `client` ended (it expired): release whatever it holds
    /// (a Lock, an RLock, Semaphore permits), as its owner's release would.
    /// Its parked calls are answered by the replica.
    fn session_ended(&mut self, _client: ClientId, _ctx: &mut CallContext<'_>) {}

    /// Whether a parked call of this type is answered by running it again
    /// from the top ([`CallContext::rerun`], [`RunMode`]) rather than by a
    /// wake with its reply. User types that embed [`crate::sync`] primitives
    /// do; their cancel is a run in [`RunMode::DeadlinePassed`].
    const RERUNS_PARKED: bool = false;

    /// What `concoord_str` answers (the seed's `>>> s`). By default the
    /// type's name and its state, as JSON-like text.
    fn describe(&self) -> String {
        describe_state(self)
    }
}

/// The default description: the type's name and its serialized state.
pub fn describe_state<T: ReplicatedObject>(object: &T) -> String {
    let state = rmpv::ext::to_value(object)
        .map(|v| crate::util::py_repr(&v))
        .unwrap_or_else(|e| format!("<unprintable: {e}>"));
    format!("{}({state})", T::NAME)
}

/// The object-safe face of a replicated object that the replica runs.
pub trait StateMachine: Send {
    fn name(&self) -> &'static str;
    /// Decodes the arguments and runs the method; `concoord_init` replaces the state.
    fn apply(&mut self, method: &str, args: &[u8], ctx: &mut CallContext<'_>) -> Outcome;
    fn cancel(&mut self, id: CommandId, ctx: &mut CallContext<'_>) -> Option<Reply>;
    /// The whole object state, MessagePack-encoded.
    fn snapshot(&self) -> Vec<u8>;
    fn restore(&mut self, bytes: &[u8]) -> Result<(), ObjectError>;
    fn is_read_only(&self, method: &str) -> bool;
    fn parked_count(&self) -> usize;
    /// [`ReplicatedObject::session_ended`].
    fn session_ended(&mut self, client: ClientId, ctx: &mut CallContext<'_>);
    /// The commands the object itself knows to be parked ([`ReplicatedObject::parked`]).
    fn parked_ids(&self) -> Vec<CommandId>;
    /// [`ReplicatedObject::RERUNS_PARKED`].
    fn reruns_parked(&self) -> bool;
    /// [`ReplicatedObject::describe`].
    fn describe(&self) -> String;
}

/// Hosts a [`ReplicatedObject`] behind the object-safe [`StateMachine`].
#[derive(Default)]
pub struct Hosted<T: ReplicatedObject> {
    pub object: T,
}

impl<T: ReplicatedObject> Hosted<T> {
    pub fn new(object: T) -> Self {
        Hosted { object }
    }
}

impl<T: ReplicatedObject> StateMachine for Hosted<T> {
    fn name(&self) -> &'static str {
        T::NAME
    }

    fn apply(&mut self, method: &str, args: &[u8], ctx: &mut CallContext<'_>) -> Outcome {
        let args = match Args::decode(args) {
            Ok(args) => args,
            Err(e) => return Outcome::Reply(Err(e)),
        };
        if method == STR_METHOD {
            return match args.at_most(0) {
                Ok(()) => reply(&self.object.describe()),
                Err(e) => Outcome::Reply(Err(e)),
            };
        }
        if method == INIT_METHOD {
            return match T::init(&args) {
                Ok(fresh) => {
                    ctx.mark_reinitialised();
                    // Calls parked on the old state would otherwise wait forever.
                    for id in self.object.parked() {
                        ctx.wake(
                            id,
                            Err(ObjectError::runtime(
                                "object was re-initialised while this call waited",
                            )),
                        );
                    }
                    self.object = fresh;
                    reply(&())
                }
                Err(e) => Outcome::Reply(Err(e)),
            };
        }
        self.object.call(method, &args, ctx)
    }

    fn cancel(&mut self, id: CommandId, ctx: &mut CallContext<'_>) -> Option<Reply> {
        self.object.cancel(id, ctx)
    }

    fn snapshot(&self) -> Vec<u8> {
        rmp_serde::to_vec(&self.object).expect("object state serializes into a Vec")
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), ObjectError> {
        self.object = rmp_serde::from_slice(bytes)
            .map_err(|e| ObjectError::new("SnapshotError", format!("cannot restore: {e}")))?;
        Ok(())
    }

    fn is_read_only(&self, method: &str) -> bool {
        method == STR_METHOD || T::is_read_only(method)
    }

    fn parked_count(&self) -> usize {
        self.object.parked().len()
    }

    fn parked_ids(&self) -> Vec<CommandId> {
        self.object.parked()
    }

    fn session_ended(&mut self, client: ClientId, ctx: &mut CallContext<'_>) {
        self.object.session_ended(client, ctx)
    }

    fn reruns_parked(&self) -> bool {
        T::RERUNS_PARKED
    }

    fn describe(&self) -> String {
        self.object.describe()
    }
}
