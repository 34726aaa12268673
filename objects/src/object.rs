use crate::{Args, ClientId, CommandId, ObjectError};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// What a call produced: MessagePack bytes of the result, or the object's error.
pub type Reply = Result<Vec<u8>, ObjectError>;

/// The method name of ConCoord's `__concoordinit__`: re-runs the constructor
/// on the replicated state. Handled by [`Hosted`] for every object.
pub const INIT_METHOD: &str = "concoord_init";

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
pub struct CallContext<'a> {
    pub id: CommandId,
    pub slot: u64,
    wakes: &'a mut Vec<(CommandId, Reply)>,
}

impl<'a> CallContext<'a> {
    pub fn new(id: CommandId, slot: u64, wakes: &'a mut Vec<(CommandId, Reply)>) -> Self {
        CallContext { id, slot, wakes }
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
        if method == INIT_METHOD {
            return match T::init(&args) {
                Ok(fresh) => {
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
        T::is_read_only(method)
    }

    fn parked_count(&self) -> usize {
        self.object.parked().len()
    }
}
