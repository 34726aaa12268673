//! What generated proxies share: client-side batching ([`Batch`], [`Ticket`],
//! [`BatchResults`]) and its replica half ([`run_batch`]).
//!
//! A client-side batch travels as one ordinary call of the method
//! [`BATCH_METHOD`] whose arguments are the buffered calls: one frame, one
//! command id, one slot, executed in order and exactly once as a unit. The
//! wire format does not change; objects made with `#[concoord::object]`
//! answer the method through [`run_batch`].

use crate::objects::{
    encode_value, Args, CallContext, ObjectError, Outcome, ReplicatedObject, INIT_METHOD,
    STR_METHOD,
};
use crate::{BlockingClient, Client, ClientError};
use concoord_objects::Target;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::marker::PhantomData;
use std::time::Duration;

/// How long a parking call without a timeout may wait: as good as forever.
pub const FOREVER: Duration = Duration::from_secs(365 * 24 * 3600);

/// The deadline of a parking call given its `timeout` in seconds: none,
/// NaN or a timeout that does not park waits as long as the replicas take.
fn parking_deadline(timeout_secs: Option<f64>) -> Duration {
    match timeout_secs {
        Some(t) if t > 0.0 && t.is_finite() => Duration::try_from_secs_f64(t)
            .unwrap_or(FOREVER)
            .min(FOREVER),
        Some(_) => Duration::from_secs(30),
        None => FOREVER,
    }
}

/// A call that may park (a generated proxy's method returning `Blocking`):
/// waits `timeout_secs` (or forever), then cancels it by a replicated
/// command. The method's own answer to the timeout (usually false) comes
/// back as its result; if the cancel was ordered before the call itself, the
/// error has kind `Cancelled`.
pub async fn call_parking<A: Serialize, R: DeserializeOwned>(
    client: &Client,
    target: &Target,
    method: &str,
    args: A,
    timeout_secs: Option<f64>,
) -> Result<R, ClientError> {
    let bytes = concoord_client::encode_positional(&args)?;
    let reply = client
        .call_raw_on(target, method, bytes, parking_deadline(timeout_secs), true)
        .await?;
    concoord_client::decode_result(&reply)
}

/// [`call_parking`] for a blocking proxy.
pub fn call_parking_blocking<A: Serialize, R: DeserializeOwned>(
    client: &BlockingClient,
    target: &Target,
    method: &str,
    args: A,
    timeout_secs: Option<f64>,
) -> Result<R, ClientError> {
    let bytes = concoord_client::encode_positional(&args)?;
    let reply = client.call_raw_on(target, method, bytes, parking_deadline(timeout_secs), true)?;
    concoord_client::decode_result(&reply)
}

/// The method a client-side batch is sent as.
pub const BATCH_METHOD: &str = "concoord_batch";

/// At most this many calls travel in one batch request; [`Batch`] splits
/// larger batches, and [`run_batch`] refuses them.
pub const BATCH_CALLS_MAX: usize = 1_024;

/// One call's result in a batch reply: its MessagePack value or the object's error.
type EntryResult = Result<rmpv::Value, ObjectError>;

/// Runs a batch of calls on `object`, in order, and replies with every
/// call's result. A call in the batch cannot park (a batch is answered at
/// once): one that tries is cancelled and reported as a `RuntimeError`.
pub fn run_batch<T: ReplicatedObject>(
    object: &mut T,
    args: &Args,
    ctx: &mut CallContext<'_>,
) -> Outcome {
    if args.len() > BATCH_CALLS_MAX {
        return Outcome::Reply(Err(ObjectError::bad_arguments(format!(
            "a batch holds at most {BATCH_CALLS_MAX} calls, {} given",
            args.len()
        ))));
    }
    let mut results: Vec<EntryResult> = Vec::with_capacity(args.len());
    for (index, entry) in args.values().iter().enumerate() {
        results.push(run_entry(object, index, entry, ctx));
    }
    crate::objects::reply(&results)
}

fn run_entry<T: ReplicatedObject>(
    object: &mut T,
    index: usize,
    entry: &rmpv::Value,
    ctx: &mut CallContext<'_>,
) -> EntryResult {
    let (method, call_args) = match entry {
        rmpv::Value::Array(pair) if pair.len() == 2 => match (&pair[0], &pair[1]) {
            (rmpv::Value::String(m), rmpv::Value::Array(a)) => match m.as_str() {
                Some(m) => (m, Args::from_values(a.clone())),
                None => return Err(bad_entry(index)),
            },
            _ => return Err(bad_entry(index)),
        },
        _ => return Err(bad_entry(index)),
    };
    if method == BATCH_METHOD {
        return Err(ObjectError::bad_arguments("a batch cannot contain a batch"));
    }
    if method == STR_METHOD {
        call_args.at_most(0)?;
        return Ok(rmpv::Value::from(object.describe()));
    }
    if method == INIT_METHOD {
        let fresh = T::init(&call_args)?;
        ctx.mark_reinitialised();
        for id in object.parked() {
            ctx.wake(
                id,
                Err(ObjectError::runtime(
                    "object was re-initialised while this call waited",
                )),
            );
        }
        *object = fresh;
        return Ok(rmpv::Value::Nil);
    }
    match object.call(method, &call_args, ctx) {
        Outcome::Reply(Ok(bytes)) => rmpv::decode::read_value(&mut &bytes[..])
            .map_err(|e| ObjectError::runtime(format!("undecodable result of {method}: {e}"))),
        Outcome::Reply(Err(e)) => Err(e),
        Outcome::Park => {
            // Nobody could answer it later: take it back out of the wait queue.
            let id = ctx.id;
            let _ = object.cancel(id, ctx);
            Err(ObjectError::runtime(format!(
                "{method} would block, and a call in a batch cannot block; call it on its own"
            )))
        }
    }
}

fn bad_entry(index: usize) -> ObjectError {
    ObjectError::bad_arguments(format!("batch entry {index} is not [method, [args...]]"))
}

/// A handle on one buffered call's result, typed by what the method returns.
pub struct Ticket<R> {
    index: usize,
    generation: u64,
    result: PhantomData<fn() -> R>,
}

impl<R> Ticket<R> {
    /// The call's position in its batch.
    pub fn index(&self) -> usize {
        self.index
    }
}

impl<R> std::fmt::Debug for Ticket<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket")
            .field("index", &self.index)
            .field("generation", &self.generation)
            .finish()
    }
}

/// The results of one flushed batch, in call order.
#[derive(Debug)]
pub struct BatchResults {
    generation: u64,
    results: Vec<Result<Vec<u8>, ClientError>>,
}

impl BatchResults {
    /// The typed result of the call `ticket` stands for.
    pub fn get<R: DeserializeOwned>(&self, ticket: &Ticket<R>) -> Result<R, ClientError> {
        if ticket.generation != self.generation {
            return Err(ClientError::Invalid(format!(
                "this ticket belongs to batch {}, these are the results of batch {}",
                ticket.generation, self.generation
            )));
        }
        match self.results.get(ticket.index) {
            Some(Ok(bytes)) => crate::client::decode_result(bytes),
            Some(Err(e)) => Err(e.clone()),
            None => Err(ClientError::Invalid(format!(
                "no result {} in a batch of {}",
                ticket.index,
                self.results.len()
            ))),
        }
    }

    /// Every result as MessagePack bytes or the error, in call order.
    pub fn raw(&self) -> &[Result<Vec<u8>, ClientError>] {
        &self.results
    }

    pub fn len(&self) -> usize {
        self.results.len()
    }

    pub fn is_empty(&self) -> bool {
        self.results.is_empty()
    }
}

/// Calls buffered by a client-side batching proxy.
#[derive(Debug, Default)]
pub struct Batch {
    /// `[method, [args...]]` per call, or why the arguments did not encode.
    entries: Vec<Result<rmpv::Value, ClientError>>,
    generation: u64,
}

impl Batch {
    /// Buffers a call of `method` with positional `args` (a tuple).
    pub fn push<A: Serialize, R>(&mut self, method: &str, args: A) -> Ticket<R> {
        let entry = rmpv::ext::to_value(&args)
            .map_err(|e| ClientError::Invalid(format!("arguments do not serialize: {e}")))
            .map(|value| {
                let array = match value {
                    rmpv::Value::Array(a) => a,
                    rmpv::Value::Nil => Vec::new(),
                    other => vec![other],
                };
                rmpv::Value::Array(vec![method.into(), rmpv::Value::Array(array)])
            });
        self.entries.push(entry);
        Ticket {
            index: self.entries.len() - 1,
            generation: self.generation,
            result: PhantomData,
        }
    }

    /// How many calls are buffered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Takes the buffered calls, leaving the batch empty for the next round.
    fn take(&mut self) -> (u64, Vec<Result<rmpv::Value, ClientError>>) {
        let generation = self.generation;
        self.generation += 1;
        (generation, std::mem::take(&mut self.entries))
    }

    /// Sends the buffered calls (one request per [`BATCH_CALLS_MAX`] calls).
    /// An error here means the batch's fate is unknown (no quorum in time);
    /// the buffer is empty afterwards either way.
    pub async fn flush(&mut self, client: &Client) -> Result<BatchResults, ClientError> {
        self.flush_on(client, &Target::default()).await
    }

    /// [`Batch::flush`] to the object `target` names.
    pub async fn flush_on(
        &mut self,
        client: &Client,
        target: &Target,
    ) -> Result<BatchResults, ClientError> {
        let (generation, entries) = self.take();
        let mut results = Vec::with_capacity(entries.len());
        for chunk in entries.chunks(BATCH_CALLS_MAX) {
            let (request, positions) = request_of(chunk);
            let reply = if request.is_empty() {
                Vec::new()
            } else {
                decode_reply(
                    &client
                        .call_raw_on(
                            target,
                            BATCH_METHOD,
                            encode_request(request),
                            client.options().deadline,
                            false,
                        )
                        .await?,
                )?
            };
            merge(chunk, positions, reply, &mut results)?;
        }
        Ok(BatchResults {
            generation,
            results,
        })
    }

    /// [`Batch::flush`] for plain threads.
    pub fn flush_blocking(&mut self, client: &BlockingClient) -> Result<BatchResults, ClientError> {
        self.flush_blocking_on(client, &Target::default())
    }

    /// [`Batch::flush_blocking`] to the object `target` names.
    pub fn flush_blocking_on(
        &mut self,
        client: &BlockingClient,
        target: &Target,
    ) -> Result<BatchResults, ClientError> {
        let (generation, entries) = self.take();
        let mut results = Vec::with_capacity(entries.len());
        for chunk in entries.chunks(BATCH_CALLS_MAX) {
            let (request, positions) = request_of(chunk);
            let reply = if request.is_empty() {
                Vec::new()
            } else {
                decode_reply(&client.call_raw_on(
                    target,
                    BATCH_METHOD,
                    encode_request(request),
                    client.client().options().deadline,
                    false,
                )?)?
            };
            merge(chunk, positions, reply, &mut results)?;
        }
        Ok(BatchResults {
            generation,
            results,
        })
    }
}

/// The entries that encoded, and their positions in the chunk.
fn request_of(chunk: &[Result<rmpv::Value, ClientError>]) -> (Vec<rmpv::Value>, Vec<usize>) {
    chunk
        .iter()
        .enumerate()
        .filter_map(|(i, e)| e.as_ref().ok().map(|v| (v.clone(), i)))
        .unzip()
}

fn encode_request(request: Vec<rmpv::Value>) -> Vec<u8> {
    encode_value(&rmpv::Value::Array(request))
}

fn decode_reply(bytes: &[u8]) -> Result<Vec<EntryResult>, ClientError> {
    rmp_serde::from_slice(bytes)
        .map_err(|e| ClientError::Invalid(format!("undecodable batch reply: {e}")))
}

/// Puts the replies back in call order, next to the calls that never left.
fn merge(
    chunk: &[Result<rmpv::Value, ClientError>],
    positions: Vec<usize>,
    reply: Vec<EntryResult>,
    out: &mut Vec<Result<Vec<u8>, ClientError>>,
) -> Result<(), ClientError> {
    if reply.len() != positions.len() {
        return Err(ClientError::Invalid(format!(
            "batch reply has {} results for {} calls",
            reply.len(),
            positions.len()
        )));
    }
    let mut replies = reply.into_iter();
    for entry in chunk {
        out.push(match entry {
            Err(e) => Err(e.clone()),
            Ok(_) => match replies.next().expect("counted above") {
                Ok(value) => Ok(encode_value(&value)),
                Err(e) => Err(client_error(e)),
            },
        });
    }
    Ok(())
}

/// An object's error as a caller sees it (the same mapping as single calls).
fn client_error(e: ObjectError) -> ClientError {
    match e.kind.as_str() {
        ObjectError::UNKNOWN_METHOD => ClientError::UnknownMethod(e.message),
        ObjectError::BAD_ARGUMENTS => ClientError::BadArguments(e.message),
        _ => ClientError::Object(e),
    }
}
