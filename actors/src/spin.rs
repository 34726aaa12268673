//! Spin-then-park for a node's thread.
//!
//! Going to sleep in `epoll_wait` and being woken costs far more here than
//! the work a message brings: on this kind of machine (a VM) the sleeper's
//! context switch and the waker's cross-CPU wake-up are several microseconds
//! of CPU each, and the sleeping vCPU takes tens of microseconds to run again.
//! While messages keep coming, a spinner task keeps the thread awake for a
//! short window after each one, polling the sockets without blocking; once
//! the window passes quietly it parks, and the next message wakes it.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

thread_local! {
    static ACTIVITY: Cell<u64> = const { Cell::new(0) };
    static PARKED: RefCell<Option<Waker>> = const { RefCell::new(None) };
}

/// Something arrived on this thread: keep (or start) spinning.
pub fn note_activity() {
    ACTIVITY.with(|a| a.set(a.get().wrapping_add(1)));
    if let Some(waker) = PARKED.with(|p| p.borrow_mut().take()) {
        waker.wake();
    }
}

fn activity() -> u64 {
    ACTIVITY.with(Cell::get)
}

/// Runs forever on the current (single-threaded) runtime: spins while
/// activity was seen within `window`, parks otherwise. A round that found
/// nothing new offers the CPU to other runnable threads, so spinning never
/// holds off a process that has work (replicas and clients often share few
/// cores).
pub async fn spinner(window: Duration) {
    loop {
        let mut seen = activity();
        let mut last = Instant::now();
        loop {
            tokio::task::yield_now().await;
            let now = activity();
            if now != seen {
                // Busy: messages keep coming, so poll again at once.
                seen = now;
                last = Instant::now();
            } else if last.elapsed() >= window {
                break;
            } else {
                // Idle so far: offer the CPU to whoever else is runnable.
                std::thread::yield_now();
            }
        }
        // Park until the next message.
        let start = activity();
        poll_fn(|cx| {
            if activity() != start {
                return Poll::Ready(());
            }
            PARKED.with(|p| *p.borrow_mut() = Some(cx.waker().clone()));
            Poll::Pending
        })
        .await;
    }
}

/// Whether this thread's spinner sleeps until the next message.
pub fn is_parked() -> bool {
    PARKED.with(|p| p.borrow().is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spins_after_activity_parks_when_quiet_and_wakes_on_the_next_message() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let local = tokio::task::LocalSet::new();
        local.block_on(&runtime, async {
            let window = Duration::from_millis(20);
            tokio::task::spawn_local(spinner(window));
            note_activity();
            tokio::task::yield_now().await;
            assert!(!is_parked(), "parked right after a message");
            // Quiet for longer than the window: it must park.
            let quiet_since = Instant::now();
            while !is_parked() {
                tokio::task::yield_now().await;
                assert!(
                    quiet_since.elapsed() < Duration::from_secs(5),
                    "never parked"
                );
            }
            assert!(quiet_since.elapsed() >= window / 2);
            note_activity();
            assert!(!is_parked(), "a message must wake the spinner");
        });
    }
}
