use crate::{reply, Args, CallContext, ObjectError, Outcome, ReplicatedObject};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// A FIFO queue of arbitrary values, `Queue(maxsize=0)` (0 or less:
/// unbounded): `put(item)`, `get()`, `qsize`, `empty`, `full`, with the
/// names of Python's `queue.Queue`. Neither call blocks: `get` on an empty
/// queue raises `Empty` and `put` on a full one raises `Full`, as Python's
/// `get_nowait`/`put_nowait` do (also accepted). ConCoord 1.1's own Queue
/// names are accepted too: `append(item)`, `remove()`, `get_size`, `get_queue`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Queue {
    maxsize: i64,
    items: VecDeque<rmpv::Value>,
}

impl Queue {
    fn is_full(&self) -> bool {
        self.maxsize > 0 && self.items.len() as u64 >= self.maxsize as u64
    }

    fn dispatch(&mut self, method: &str, args: &Args) -> Result<Outcome, ObjectError> {
        match method {
            "put" | "put_nowait" | "append" => {
                args.at_most(1)?;
                let item = args.raw(0, "item")?;
                if self.is_full() {
                    return Err(ObjectError::new("Full", "queue is full"));
                }
                self.items.push_back(item);
                Ok(reply(&()))
            }
            "get" | "get_nowait" | "remove" => {
                args.at_most(0)?;
                let item = self
                    .items
                    .pop_front()
                    .ok_or_else(|| ObjectError::new("Empty", "queue is empty"))?;
                Ok(reply(&item))
            }
            "qsize" | "get_size" => {
                args.at_most(0)?;
                Ok(reply(&self.items.len()))
            }
            "empty" => {
                args.at_most(0)?;
                Ok(reply(&self.items.is_empty()))
            }
            "full" => {
                args.at_most(0)?;
                Ok(reply(&self.is_full()))
            }
            "get_queue" => {
                args.at_most(0)?;
                Ok(reply(&self.items))
            }
            _ => Err(ObjectError::unknown_method(Self::NAME, method)),
        }
    }
}

impl ReplicatedObject for Queue {
    const NAME: &'static str = "Queue";

    fn call(&mut self, method: &str, args: &Args, _ctx: &mut CallContext<'_>) -> Outcome {
        self.dispatch(method, args)
            .unwrap_or_else(|e| Outcome::Reply(Err(e)))
    }

    fn init(args: &Args) -> Result<Self, ObjectError> {
        args.at_most(1)?;
        Ok(Queue {
            maxsize: args.get_or(0, "maxsize", 0)?,
            items: VecDeque::new(),
        })
    }

    fn is_read_only(method: &str) -> bool {
        matches!(
            method,
            "qsize" | "get_size" | "empty" | "full" | "get_queue"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::*;
    use rmpv::Value as V;

    #[test]
    fn fifo_of_any_values() {
        let mut h = Harness::<Queue>::new();
        assert!(h.ok::<bool>(1, "empty", &[]));
        assert!(!h.ok::<bool>(1, "full", &[]));
        let items = [v(1), v("two"), V::Array(vec![v(3.5), V::Nil])];
        for item in &items {
            h.ok::<()>(1, "put", std::slice::from_ref(item));
        }
        h.ok::<()>(1, "append", &[v(4)]);
        assert_eq!(h.ok::<usize>(1, "qsize", &[]), 4);
        assert_eq!(h.ok::<Vec<V>>(1, "get_queue", &[]).len(), 4);
        h.round_trip();
        for item in &items {
            assert_eq!(&h.ok::<V>(1, "get", &[]), item);
        }
        assert_eq!(h.ok::<V>(1, "remove", &[]), v(4));
        let e = h.err(1, "get", &[]);
        assert_eq!(
            (e.kind.as_str(), e.message.as_str()),
            ("Empty", "queue is empty")
        );
        assert_eq!(h.err(1, "put", &[]).kind, ObjectError::BAD_ARGUMENTS);
        assert_eq!(
            h.err(1, "put", &[v(1), v(2)]).kind,
            ObjectError::BAD_ARGUMENTS
        );
        assert_eq!(h.err(1, "peek", &[]).kind, ObjectError::UNKNOWN_METHOD);
    }

    #[test]
    fn bounded() {
        let mut h = Harness::<Queue>::init(&[v(2)]);
        h.ok::<()>(1, "put", &[v(1)]);
        h.ok::<()>(1, "put_nowait", &[v(2)]);
        assert!(h.ok::<bool>(1, "full", &[]));
        assert_eq!(h.err(1, "put", &[v(3)]).kind, "Full");
        assert_eq!(h.ok::<i64>(1, "get_nowait", &[]), 1);
        assert_eq!(h.ok::<usize>(1, "get_size", &[]), 1);
        assert!(!h.ok::<bool>(1, "full", &[]));
    }
}
