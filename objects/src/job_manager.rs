use crate::util::{py_repr, values_eq};
use crate::{reply, Args, CallContext, ObjectError, Outcome, ReplicatedObject};
use serde::{Deserialize, Serialize};

/// ConCoord's JobManager: an ordered list of jobs (any values).
/// `schedule(job)` appends, `deschedule(job)` removes the first equal job
/// (`ValueError` if absent, as Python's `list.remove`), `list_jobs()` lists
/// them, and `update(job, key, value)` sets `key` to `value` in a job that
/// is a map (ConCoord's jobs were objects with attributes; its `update` was
/// broken). `update` returns the updated job; an unknown job is a
/// `KeyError`, a job that is not a map a `TypeError`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct JobManager {
    jobs: Vec<rmpv::Value>,
}

impl JobManager {
    fn position(&self, job: &rmpv::Value) -> Option<usize> {
        self.jobs.iter().position(|j| values_eq(j, job))
    }

    fn dispatch(&mut self, method: &str, args: &Args) -> Result<Outcome, ObjectError> {
        match method {
            "schedule" => {
                args.at_most(1)?;
                self.jobs.push(args.raw(0, "job")?);
                Ok(reply(&()))
            }
            "deschedule" => {
                args.at_most(1)?;
                let job = args.raw(0, "job")?;
                let at = self
                    .position(&job)
                    .ok_or_else(|| ObjectError::value("list.remove(x): x not in list"))?;
                self.jobs.remove(at);
                Ok(reply(&()))
            }
            "update" => {
                args.at_most(3)?;
                let job = args.raw(0, "job")?;
                let key = args.raw(1, "key")?;
                let value = args.raw(2, "value")?;
                let at = self
                    .position(&job)
                    .ok_or_else(|| ObjectError::key(py_repr(&job)))?;
                let rmpv::Value::Map(fields) = &mut self.jobs[at] else {
                    return Err(ObjectError::new(
                        "TypeError",
                        format!("job {} has no attributes to update", py_repr(&job)),
                    ));
                };
                match fields.iter_mut().find(|(k, _)| values_eq(k, &key)) {
                    Some((_, slot)) => *slot = value,
                    None => fields.push((key, value)),
                }
                Ok(reply(&self.jobs[at]))
            }
            "list_jobs" => {
                args.at_most(0)?;
                Ok(reply(&self.jobs))
            }
            _ => Err(ObjectError::unknown_method(Self::NAME, method)),
        }
    }
}

impl ReplicatedObject for JobManager {
    const NAME: &'static str = "JobManager";

    fn call(&mut self, method: &str, args: &Args, _ctx: &mut CallContext<'_>) -> Outcome {
        self.dispatch(method, args)
            .unwrap_or_else(|e| Outcome::Reply(Err(e)))
    }

    fn is_read_only(method: &str) -> bool {
        method == "list_jobs"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::*;
    use rmpv::Value as V;

    fn job(name: &str) -> V {
        V::Map(vec![(v("name"), v(name)), (v("time"), v(0))])
    }

    #[test]
    fn schedule_update_deschedule() {
        let mut h = Harness::<JobManager>::new();
        h.ok::<()>(1, "schedule", &[job("a")]);
        h.ok::<()>(1, "schedule", &[v("plain")]);
        h.ok::<()>(1, "schedule", &[job("b")]);
        assert_eq!(
            h.ok::<Vec<V>>(1, "list_jobs", &[]),
            vec![job("a"), v("plain"), job("b")]
        );
        h.round_trip();
        let updated = h.ok::<V>(1, "update", &[job("b"), v("time"), v(42)]);
        let expected = V::Map(vec![(v("name"), v("b")), (v("time"), v(42))]);
        assert_eq!(updated, expected);
        let updated = h.ok::<V>(1, "update", &[job("a"), v("owner"), v("me")]);
        assert_eq!(updated.as_map().unwrap().len(), 3);
        h.ok::<()>(1, "deschedule", &[v("plain")]);
        h.ok::<()>(1, "deschedule", &[expected]);
        assert_eq!(h.ok::<Vec<V>>(1, "list_jobs", &[]), vec![updated]);
    }

    #[test]
    fn errors() {
        let mut h = Harness::<JobManager>::new();
        h.ok::<()>(1, "schedule", &[v(1)]);
        let e = h.err(1, "deschedule", &[v(2)]);
        assert_eq!(
            (e.kind.as_str(), e.message.as_str()),
            ("ValueError", "list.remove(x): x not in list")
        );
        assert_eq!(h.err(1, "update", &[v(2), v("k"), v(1)]).kind, "KeyError");
        assert_eq!(h.err(1, "update", &[v(1), v("k"), v(1)]).kind, "TypeError");
        assert_eq!(
            h.err(1, "update", &[v(1), v("k")]).kind,
            ObjectError::BAD_ARGUMENTS
        );
        assert_eq!(h.err(1, "run", &[]).kind, ObjectError::UNKNOWN_METHOD);
    }
}
