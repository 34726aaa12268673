//! Test harness: drives an object through [`Hosted`] exactly as a replica
//! would, numbering slots, and collects wake-ups per call.

use crate::CallContext;
use crate::{CommandId, Hosted, ObjectError, Outcome, ReplicatedObject, Reply, StateMachine};
use rmpv::Value as V;
use serde::de::DeserializeOwned;

pub(crate) struct Harness<T: ReplicatedObject> {
    pub hosted: Hosted<T>,
    slot: u64,
    seq: u64,
}

pub(crate) type Wakes = Vec<(CommandId, Reply)>;

/// A command id for client `client` (sequence numbers are irrelevant here
/// beyond distinguishing commands of one client).
pub(crate) fn id(client: u64, seq: u64) -> CommandId {
    CommandId::new(client, seq)
}

pub(crate) fn encode(args: &[V]) -> Vec<u8> {
    let mut bytes = Vec::new();
    rmpv::encode::write_value(&mut bytes, &V::Array(args.to_vec())).unwrap();
    bytes
}

impl<T: ReplicatedObject> Harness<T> {
    pub fn new() -> Self {
        Self::with(T::default())
    }

    pub fn with(object: T) -> Self {
        Harness {
            hosted: Hosted::new(object),
            slot: 0,
            seq: 0,
        }
    }

    /// `T::init(args)` through `concoord_init`, checking it succeeded.
    pub fn init(args: &[V]) -> Self {
        let mut h = Self::new();
        let (out, _) = h.call_as(0, "concoord_init", args);
        assert_eq!(out, Outcome::Reply(Ok(crate::encode_value(&()))));
        h
    }

    /// Runs `method` under an explicit command id.
    pub fn call_id(&mut self, id: CommandId, method: &str, args: &[V]) -> (Outcome, Wakes) {
        let mut wakes = Vec::new();
        self.slot += 1;
        let mut ctx = CallContext::new(id, self.slot, &mut wakes);
        let out = self.hosted.apply(method, &encode(args), &mut ctx);
        (out, wakes)
    }

    /// Runs `method` as `client` under a fresh command id.
    pub fn call_as(&mut self, client: u64, method: &str, args: &[V]) -> (Outcome, Wakes) {
        self.seq += 1;
        self.call_id(id(client, self.seq), method, args)
    }

    /// A call that must answer now without waking anyone; its decoded result.
    pub fn ok<R: DeserializeOwned>(&mut self, client: u64, method: &str, args: &[V]) -> R {
        let (out, wakes) = self.call_as(client, method, args);
        assert!(wakes.is_empty(), "{method} woke {wakes:?}");
        value(out)
    }

    /// A call that must fail now; its error (state must be unchanged).
    pub fn err(&mut self, client: u64, method: &str, args: &[V]) -> ObjectError {
        let before = self.hosted.snapshot();
        let (out, wakes) = self.call_as(client, method, args);
        assert!(wakes.is_empty());
        assert_eq!(
            self.hosted.snapshot(),
            before,
            "failed {method} changed state"
        );
        match out {
            Outcome::Reply(Err(e)) => e,
            other => panic!("{method}: expected an error, got {other:?}"),
        }
    }

    pub fn cancel(&mut self, id: CommandId) -> (Option<Reply>, Wakes) {
        let mut wakes = Vec::new();
        self.slot += 1;
        let mut ctx = CallContext::new(id, self.slot, &mut wakes);
        let out = self.hosted.cancel(id, &mut ctx);
        (out, wakes)
    }

    /// Snapshot, restore into a fresh host, and check the state survived.
    pub fn round_trip(&mut self) {
        let bytes = self.hosted.snapshot();
        let mut fresh = Hosted::<T>::default();
        fresh.restore(&bytes).expect("snapshot restores");
        assert_eq!(fresh.snapshot(), bytes);
        assert_eq!(fresh.parked_count(), self.hosted.parked_count());
        self.hosted = fresh;
    }

    pub fn parked(&self) -> Vec<CommandId> {
        self.hosted.object.parked()
    }
}

/// The decoded success value of an outcome.
pub(crate) fn value<R: DeserializeOwned>(out: Outcome) -> R {
    match out {
        Outcome::Reply(Ok(bytes)) => rmp_serde::from_slice(&bytes).expect("reply decodes"),
        other => panic!("expected a value, got {other:?}"),
    }
}

/// Wake-ups decoded as values (panics on an error wake).
pub(crate) fn woke<R: DeserializeOwned>(wakes: Wakes) -> Vec<(CommandId, R)> {
    wakes
        .into_iter()
        .map(|(id, reply)| {
            let bytes = reply.unwrap_or_else(|e| panic!("{id} woken with {e}"));
            (id, rmp_serde::from_slice(&bytes).expect("wake decodes"))
        })
        .collect()
}

/// The decoded value of a cancel's reply.
pub(crate) fn cancelled<R: DeserializeOwned>(reply: Option<Reply>) -> R {
    let bytes = reply
        .expect("command was parked")
        .expect("cancel answers a value");
    rmp_serde::from_slice(&bytes).expect("cancel reply decodes")
}

pub(crate) fn parked(out: &Outcome) -> bool {
    *out == Outcome::Park
}

pub(crate) fn v<T: Into<V>>(x: T) -> V {
    x.into()
}
