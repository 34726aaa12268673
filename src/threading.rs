//! Typed proxies for the distributed threading objects, with Python's
//! `threading` semantics across machines.
//!
//! Blocking calls park in the object's wait queue under their command id; a
//! timed call becomes a replicated cancel when its time is up, so a timeout
//! never leaks a permit. Each proxy has an async face (this module) and a
//! blocking face ([`blocking`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), concoord::ClientError> {
//! use concoord::threading::Lock;
//! let lock = Lock::new("127.0.0.1:14000", Default::default())?;
//! if lock.acquire_timeout(std::time::Duration::from_secs(2)).await? {
//!     // ... the critical section ...
//!     lock.release().await?;
//! }
//! # Ok(()) }
//! ```

use crate::{Client, ClientError, ClientOptions};
use concoord_client::{decode_result, encode_positional};
use concoord_objects::Target;
use concoord_proto::message::CANCELLED_KIND;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::Duration;

use crate::proxy::FOREVER;

/// What a timed call returned: its result, or nothing because its cancel was
/// ordered before it could proceed.
pub(crate) enum Timed<R> {
    Done(R),
    TimedOut,
}

async fn call<A: Serialize, R: DeserializeOwned>(
    client: &Client,
    target: &Target,
    method: &str,
    args: A,
) -> Result<R, ClientError> {
    client.call_on(target, method, args).await
}

/// A call that may park: waits `timeout` (or forever), then cancels it.
pub(crate) async fn call_parking<A: Serialize, R: DeserializeOwned>(
    client: &Client,
    target: &Target,
    method: &str,
    args: A,
    timeout: Option<Duration>,
) -> Result<Timed<R>, ClientError> {
    let bytes = encode_positional(&args)?;
    let deadline = timeout.unwrap_or(FOREVER);
    match client
        .call_raw_on(target, method, bytes, deadline, true)
        .await
    {
        Ok(bytes) => decode_result(&bytes).map(Timed::Done),
        Err(ClientError::Object(e)) if e.kind == CANCELLED_KIND => Ok(Timed::TimedOut),
        Err(e) => Err(e),
    }
}

pub(crate) fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

macro_rules! proxy_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $name {
            client: Client,
            target: concoord_objects::Target,
        }

        impl $name {
            /// Connects to the group replicating this object ("HOST:PORT,...")
            /// and uses its default object (`concoord replica -o`).
            pub fn new(bootstrap: &str, options: ClientOptions) -> Result<Self, ClientError> {
                Ok($name::from_client(Client::new(bootstrap, options)?))
            }

            /// Uses an existing client (and its connection) on the default object.
            pub fn from_client(client: Client) -> Self {
                $name { client, target: concoord_objects::Target::default() }
            }

            #[doc = concat!("The ", stringify!($name), " called `name` in the group `client` talks to, created")]
            #[doc = concat!("with `", stringify!($name), "`'s default constructor by its first call. Any number of")]
            /// named objects share one client: one connection, one command-id space.
            pub fn named(client: &Client, name: &str) -> Self {
                $name {
                    client: client.clone(),
                    target: concoord_objects::Target::named(name, stringify!($name)),
                }
            }

            pub fn client(&self) -> &Client {
                &self.client
            }

            /// Which object it calls.
            pub fn target(&self) -> &concoord_objects::Target {
                &self.target
            }

            /// The object's description as the replicas hold it (`concoord_str`,
            /// the seed's `>>> s`): its state as Python's repr would show it.
            pub async fn concoord_str(&self) -> Result<String, ClientError> {
                self.client.call_on(&self.target, concoord_objects::STR_METHOD, ()).await
            }

            /// Re-runs the object's constructor with `args` (e.g. `(3,)` for
            /// `Semaphore(3)`); on a new name it creates the object so.
            pub async fn concoord_init<A: serde::Serialize>(&self, args: A) -> Result<(), ClientError> {
                $crate::threading::concoord_init_on(&self.client, &self.target, args).await
            }

            /// Deletes this named object (`concoord_delete`); calls parked on it
            /// fail with kind `Deleted`. The next call creates it afresh.
            pub async fn concoord_delete(&self) -> Result<(), ClientError> {
                self.client.call_on(&self.target, concoord_objects::DELETE_METHOD, ()).await
            }
        }
    };
}

pub(crate) use proxy_type;

/// Shared by Lock, RLock, Semaphore, BoundedSemaphore and Condition.
macro_rules! acquire_methods {
    () => {
        /// Blocks until acquired; returns true.
        pub async fn acquire(&self) -> Result<bool, ClientError> {
            match call_parking(&self.client, &self.target, "acquire", (true,), None).await? {
                Timed::Done(b) => Ok(b),
                Timed::TimedOut => Ok(false),
            }
        }

        /// Acquires if free now, without waiting (`acquire(blocking=False)`).
        pub async fn try_acquire(&self) -> Result<bool, ClientError> {
            call(&self.client, &self.target, "acquire", (false,)).await
        }

        /// Waits at most `timeout`; false if it was not acquired in time.
        pub async fn acquire_timeout(&self, timeout: Duration) -> Result<bool, ClientError> {
            match call_parking(
                &self.client,
                &self.target,
                "acquire",
                (true, secs(timeout)),
                Some(timeout),
            )
            .await?
            {
                Timed::Done(b) => Ok(b),
                Timed::TimedOut => Ok(false),
            }
        }
    };
}

/// Fenced acquires, shared by Lock, RLock, Semaphore and BoundedSemaphore.
macro_rules! fenced_methods {
    () => {
        /// `acquire_fenced()`: blocks until granted; the grant's fencing token,
        /// larger than any this object gave before (pass it to fenced writes,
        /// e.g. `Value::set_fenced`).
        pub async fn acquire_fenced(&self) -> Result<u64, ClientError> {
            match call_parking::<_, Option<u64>>(
                &self.client,
                &self.target,
                "acquire_fenced",
                (true,),
                None,
            )
            .await?
            {
                Timed::Done(Some(token)) => Ok(token),
                Timed::Done(None) | Timed::TimedOut => {
                    Err(ClientError::Object(concoord_objects::ObjectError::runtime(
                        "a blocking acquire_fenced returned no token",
                    )))
                }
            }
        }

        /// `acquire_fenced(True, timeout)`: the token, or `None` if not granted in time.
        pub async fn acquire_fenced_timeout(
            &self,
            timeout: Duration,
        ) -> Result<Option<u64>, ClientError> {
            match call_parking(
                &self.client,
                &self.target,
                "acquire_fenced",
                (true, secs(timeout)),
                Some(timeout),
            )
            .await?
            {
                Timed::Done(token) => Ok(token),
                Timed::TimedOut => Ok(None),
            }
        }
    };
}

proxy_type!(
    /// A distributed `threading.Lock`: any client may release it.
    Lock
);

impl Lock {
    acquire_methods!();
    fenced_methods!();

    /// The current holder's fencing token, `None` when it is free.
    pub async fn fence(&self) -> Result<Option<u64>, ClientError> {
        call(&self.client, &self.target, "fence", ()).await
    }

    /// Releases; `RuntimeError` if it is not locked.
    pub async fn release(&self) -> Result<(), ClientError> {
        call(&self.client, &self.target, "release", ()).await
    }

    pub async fn locked(&self) -> Result<bool, ClientError> {
        call(&self.client, &self.target, "locked", ()).await
    }
}

proxy_type!(
    /// A distributed `threading.RLock`: owned by the client that acquired it, re-entrant.
    RLock
);

impl RLock {
    acquire_methods!();
    fenced_methods!();

    /// The current holder's fencing token, `None` when it is free.
    pub async fn fence(&self) -> Result<Option<u64>, ClientError> {
        call(&self.client, &self.target, "fence", ()).await
    }

    /// Releases one level; `RuntimeError` if this client does not own it.
    pub async fn release(&self) -> Result<(), ClientError> {
        call(&self.client, &self.target, "release", ()).await
    }
}

proxy_type!(
    /// A distributed `threading.Semaphore`.
    Semaphore
);

impl Semaphore {
    acquire_methods!();
    fenced_methods!();

    /// Releases `n` permits (`ValueError` if n < 1).
    pub async fn release(&self, n: u64) -> Result<(), ClientError> {
        call(&self.client, &self.target, "release", (n,)).await
    }
}

proxy_type!(
    /// A distributed `threading.BoundedSemaphore`: over-release is a `ValueError`.
    BoundedSemaphore
);

impl BoundedSemaphore {
    acquire_methods!();
    fenced_methods!();

    pub async fn release(&self, n: u64) -> Result<(), ClientError> {
        call(&self.client, &self.target, "release", (n,)).await
    }
}

proxy_type!(
    /// A distributed `threading.Condition` with its own re-entrant lock.
    Condition
);

impl Condition {
    acquire_methods!();

    pub async fn release(&self) -> Result<(), ClientError> {
        call(&self.client, &self.target, "release", ()).await
    }

    /// Waits for a notification (holding the lock); re-acquires it before returning.
    pub async fn wait(&self) -> Result<bool, ClientError> {
        self.wait_inner(None).await
    }

    /// Like [`Condition::wait`]; false if not notified within `timeout`
    /// (the lock is held again either way).
    pub async fn wait_timeout(&self, timeout: Duration) -> Result<bool, ClientError> {
        self.wait_inner(Some(timeout)).await
    }

    async fn wait_inner(&self, timeout: Option<Duration>) -> Result<bool, ClientError> {
        let args = (timeout.map(secs),);
        match call_parking(&self.client, &self.target, "wait", args, timeout).await? {
            Timed::Done(b) => Ok(b),
            Timed::TimedOut => Ok(false),
        }
    }

    pub async fn notify(&self, n: u64) -> Result<(), ClientError> {
        call(&self.client, &self.target, "notify", (n,)).await
    }

    pub async fn notify_all(&self) -> Result<(), ClientError> {
        call(&self.client, &self.target, "notify_all", ()).await
    }
}

proxy_type!(
    /// A distributed `threading.Barrier`.
    Barrier
);

impl Barrier {
    /// Waits for all parties; returns this caller's index in 0..parties.
    pub async fn wait(&self) -> Result<u64, ClientError> {
        self.wait_inner(None).await
    }

    /// Like [`Barrier::wait`]; a timeout breaks the barrier (`BrokenBarrierError`), as in Python.
    pub async fn wait_timeout(&self, timeout: Duration) -> Result<u64, ClientError> {
        self.wait_inner(Some(timeout)).await
    }

    async fn wait_inner(&self, timeout: Option<Duration>) -> Result<u64, ClientError> {
        match call_parking(
            &self.client,
            &self.target,
            "wait",
            (timeout.map(secs),),
            timeout,
        )
        .await?
        {
            Timed::Done(i) => Ok(i),
            Timed::TimedOut => Err(ClientError::Object(concoord_objects::ObjectError::new(
                "BrokenBarrierError",
                "timed out before the wait was ordered",
            ))),
        }
    }

    pub async fn reset(&self) -> Result<(), ClientError> {
        call(&self.client, &self.target, "reset", ()).await
    }

    pub async fn abort(&self) -> Result<(), ClientError> {
        call(&self.client, &self.target, "abort", ()).await
    }

    pub async fn parties(&self) -> Result<u64, ClientError> {
        call(&self.client, &self.target, "parties", ()).await
    }

    pub async fn n_waiting(&self) -> Result<u64, ClientError> {
        call(&self.client, &self.target, "n_waiting", ()).await
    }

    pub async fn broken(&self) -> Result<bool, ClientError> {
        call(&self.client, &self.target, "broken", ()).await
    }
}

proxy_type!(
    /// A distributed `threading.Event`.
    Event
);

impl Event {
    pub async fn set(&self) -> Result<(), ClientError> {
        call(&self.client, &self.target, "set", ()).await
    }

    pub async fn clear(&self) -> Result<(), ClientError> {
        call(&self.client, &self.target, "clear", ()).await
    }

    pub async fn is_set(&self) -> Result<bool, ClientError> {
        call(&self.client, &self.target, "is_set", ()).await
    }

    /// Waits until set; true.
    pub async fn wait(&self) -> Result<bool, ClientError> {
        self.wait_inner(None).await
    }

    /// Waits at most `timeout`; false if the event was not set in time.
    pub async fn wait_timeout(&self, timeout: Duration) -> Result<bool, ClientError> {
        self.wait_inner(Some(timeout)).await
    }

    async fn wait_inner(&self, timeout: Option<Duration>) -> Result<bool, ClientError> {
        match call_parking(
            &self.client,
            &self.target,
            "wait",
            (timeout.map(secs),),
            timeout,
        )
        .await?
        {
            Timed::Done(b) => Ok(b),
            Timed::TimedOut => Ok(false),
        }
    }
}

/// `concoord_init(args)` for any proxy: re-runs the object's constructor on the
/// replicated state (e.g. `Semaphore(3)`).
pub async fn concoord_init<A: Serialize>(client: &Client, args: A) -> Result<(), ClientError> {
    concoord_init_on(client, &Target::default(), args).await
}

/// `concoord_init(args)` on the object `target` names (created by it if new).
pub async fn concoord_init_on<A: Serialize>(
    client: &Client,
    target: &Target,
    args: A,
) -> Result<(), ClientError> {
    client
        .call_on(target, concoord_objects::INIT_METHOD, args)
        .await
}

/// The same proxies for plain threads: every call blocks until answered.
pub mod blocking {
    use super::*;

    /// A runtime for blocking proxies, shared by the proxies made from it.
    pub(crate) fn runtime() -> Result<std::sync::Arc<tokio::runtime::Runtime>, ClientError> {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map(std::sync::Arc::new)
            .map_err(|e| ClientError::Invalid(format!("cannot start a runtime: {e}")))
    }

    macro_rules! blocking_proxy {
        ($name:ident { $( fn $m:ident ( $($a:ident : $t:ty),* ) -> $r:ty; )* }) => {
            #[doc = concat!("The blocking face of [`super::", stringify!($name), "`].")]
            pub struct $name {
                runtime: std::sync::Arc<tokio::runtime::Runtime>,
                inner: super::$name,
            }

            impl $name {
                pub fn new(bootstrap: &str, options: ClientOptions) -> Result<Self, ClientError> {
                    let runtime = runtime()?;
                    let inner = {
                        let _guard = runtime.enter();
                        super::$name::new(bootstrap, options)?
                    };
                    Ok($name { runtime, inner })
                }

                /// The group's default object, over `client`'s connection.
                pub fn from_client(client: &crate::BlockingClient) -> Self {
                    $name {
                        runtime: client.runtime().clone(),
                        inner: super::$name::from_client(client.client().clone()),
                    }
                }

                #[doc = concat!("The ", stringify!($name), " called `name`, over `client`'s connection")]
                /// (created by its first call; see the async proxy's `named`).
                pub fn named(client: &crate::BlockingClient, name: &str) -> Self {
                    $name {
                        runtime: client.runtime().clone(),
                        inner: super::$name::named(client.client(), name),
                    }
                }

                /// Deletes this named object (`concoord_delete`).
                pub fn concoord_delete(&self) -> Result<(), ClientError> {
                    self.runtime.block_on(self.inner.concoord_delete())
                }

                /// The async proxy underneath (same connection).
                pub fn as_async(&self) -> &super::$name {
                    &self.inner
                }

                pub fn concoord_init<A: Serialize>(&self, args: A) -> Result<(), ClientError> {
                    self.runtime.block_on($crate::threading::concoord_init_on(
                        self.inner.client(),
                        self.inner.target(),
                        args,
                    ))
                }

                /// The object's description as the replicas hold it (`concoord_str`).
                pub fn concoord_str(&self) -> Result<String, ClientError> {
                    self.runtime.block_on(self.inner.concoord_str())
                }

                $(
                    pub fn $m(&self $(, $a: $t)*) -> $r {
                        self.runtime.block_on(self.inner.$m($($a),*))
                    }
                )*
            }
        };
    }

    pub(crate) use blocking_proxy;

    blocking_proxy!(Lock {
        fn acquire_fenced() -> Result<u64, ClientError>;
        fn acquire_fenced_timeout(timeout: Duration) -> Result<Option<u64>, ClientError>;
        fn fence() -> Result<Option<u64>, ClientError>;
        fn acquire() -> Result<bool, ClientError>;
        fn try_acquire() -> Result<bool, ClientError>;
        fn acquire_timeout(timeout: Duration) -> Result<bool, ClientError>;
        fn release() -> Result<(), ClientError>;
        fn locked() -> Result<bool, ClientError>;
    });

    blocking_proxy!(RLock {
        fn acquire_fenced() -> Result<u64, ClientError>;
        fn acquire_fenced_timeout(timeout: Duration) -> Result<Option<u64>, ClientError>;
        fn fence() -> Result<Option<u64>, ClientError>;
        fn acquire() -> Result<bool, ClientError>;
        fn try_acquire() -> Result<bool, ClientError>;
        fn acquire_timeout(timeout: Duration) -> Result<bool, ClientError>;
        fn release() -> Result<(), ClientError>;
    });

    blocking_proxy!(Semaphore {
        fn acquire_fenced() -> Result<u64, ClientError>;
        fn acquire_fenced_timeout(timeout: Duration) -> Result<Option<u64>, ClientError>;
        fn acquire() -> Result<bool, ClientError>;
        fn try_acquire() -> Result<bool, ClientError>;
        fn acquire_timeout(timeout: Duration) -> Result<bool, ClientError>;
        fn release(n: u64) -> Result<(), ClientError>;
    });

    blocking_proxy!(BoundedSemaphore {
        fn acquire_fenced() -> Result<u64, ClientError>;
        fn acquire_fenced_timeout(timeout: Duration) -> Result<Option<u64>, ClientError>;
        fn acquire() -> Result<bool, ClientError>;
        fn try_acquire() -> Result<bool, ClientError>;
        fn acquire_timeout(timeout: Duration) -> Result<bool, ClientError>;
        fn release(n: u64) -> Result<(), ClientError>;
    });

    blocking_proxy!(Condition {
        fn acquire() -> Result<bool, ClientError>;
        fn try_acquire() -> Result<bool, ClientError>;
        fn acquire_timeout(timeout: Duration) -> Result<bool, ClientError>;
        fn release() -> Result<(), ClientError>;
        fn wait() -> Result<bool, ClientError>;
        fn wait_timeout(timeout: Duration) -> Result<bool, ClientError>;
        fn notify(n: u64) -> Result<(), ClientError>;
        fn notify_all() -> Result<(), ClientError>;
    });

    blocking_proxy!(Barrier {
        fn wait() -> Result<u64, ClientError>;
        fn wait_timeout(timeout: Duration) -> Result<u64, ClientError>;
        fn reset() -> Result<(), ClientError>;
        fn abort() -> Result<(), ClientError>;
        fn parties() -> Result<u64, ClientError>;
        fn n_waiting() -> Result<u64, ClientError>;
        fn broken() -> Result<bool, ClientError>;
    });

    blocking_proxy!(Event {
        fn set() -> Result<(), ClientError>;
        fn clear() -> Result<(), ClientError>;
        fn is_set() -> Result<bool, ClientError>;
        fn wait() -> Result<bool, ClientError>;
        fn wait_timeout(timeout: Duration) -> Result<bool, ClientError>;
    });
}
