//! The client's lease: opening it ahead of the first call, keeping it alive,
//! and what replies say about it.

use super::{Core, Op};
use crate::{ClientError, SessionState};
use concoord_objects::{Reply, Target};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

impl Core {
    /// The TTL of a session the group may still hold (opening or open).
    pub(super) fn session_alive_ttl(&self) -> Option<Duration> {
        let alive = matches!(
            *self.session.borrow(),
            SessionState::Opening | SessionState::Open
        );
        self.options.session_ttl.filter(|_| alive)
    }

    /// Whether an open session needs a keep-alive now.
    pub(super) fn keep_alive_due(&self) -> bool {
        match self.session_alive_ttl() {
            Some(ttl) => self.last_write.elapsed() >= ttl / 3,
            None => false,
        }
    }

    pub(super) fn set_session(&self, state: SessionState) {
        self.session.send_if_modified(|now| {
            // An ended session stays ended.
            let changed = *now != state && *now != SessionState::Expired;
            if changed {
                *now = state;
            }
            changed
        });
    }

    /// Queues `concoord_open_session(ttl_ms)` ahead of the first call.
    pub(super) fn open_session(&mut self) {
        let Some(ttl) = self.options.session_ttl else {
            return;
        };
        self.session_requested = true;
        self.session_seq = Some(self.next_seq);
        self.set_session(SessionState::Opening);
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        let args = crate::encode_positional(&(ttl_ms,)).expect("an integer encodes");
        // Nobody waits for its reply: `on_frame` reads it into the session state.
        let (done, _) = oneshot::channel();
        self.queue(Op::Call {
            target: Target::default(),
            method: concoord_proto::message::OPEN_SESSION_METHOD.to_string(),
            args,
            deadline: Instant::now() + self.options.deadline,
            cancel_at_deadline: false,
            stale: false,
            done,
        });
    }

    /// What a reply says about the session: its opening call's outcome, or
    /// an error that says it ended.
    pub(super) fn learn_session(&mut self, seq: u64, reply: &Reply) {
        let expired = |e: &concoord_objects::ObjectError| {
            e.kind == concoord_proto::message::SESSION_EXPIRED_KIND
        };
        match reply {
            Err(e) if expired(e) => self.set_session(SessionState::Expired),
            Ok(_) if Some(seq) == self.session_seq => self.set_session(SessionState::Open),
            Err(e) if Some(seq) == self.session_seq => {
                log::warn!("client: the group refused the session: {}", e.message);
                self.set_session(SessionState::Refused(e.message.clone()));
                let error = ClientError::Refused(format!(
                    "the group refused this client's session: {}",
                    e.message
                ));
                for (_, p) in std::mem::take(&mut self.pending) {
                    let _ = p.done.send(Err(error.clone()));
                }
            }
            _ => {}
        }
    }
}
