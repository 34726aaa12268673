//! A user type that parks: the command in any position, Blocking with or
//! without Result, and a read-only method beside them.
use concoord::sync::{DEvent, DSemaphore};
use concoord::{ready, Blocking, CallContext, ObjectError};
use serde::{Deserialize, Serialize};

#[derive(Default, Serialize, Deserialize)]
pub struct Gate {
    open: DEvent,
    slots: DSemaphore,
}

#[concoord::object]
impl Gate {
    pub fn wait(&mut self, timeout: Option<f64>, cmd: &mut CallContext<'_>) -> Result<Blocking<bool>, ObjectError> {
        self.open.wait(cmd, timeout)
    }

    pub fn open(&mut self, cmd: &mut CallContext<'_>) {
        self.open.set(cmd);
    }

    pub fn enter(&mut self, cmd: &mut CallContext<'_>) -> Blocking<u64> {
        match self.slots.acquire(cmd, true, None) {
            Ok(Blocking::Parked) => Blocking::Parked,
            _ => Blocking::Ready(self.slots.value()),
        }
    }

    pub fn enter_then_wait(&mut self, cmd: &mut CallContext<'_>) -> Result<Blocking<()>, ObjectError> {
        ready!(self.slots.acquire(cmd, true, None)?);
        Ok(Blocking::Ready(()))
    }

    pub fn is_open(&self) -> bool {
        self.open.is_set()
    }
}

fn main() {
    // The proxies leave the command out.
    fn _typed(p: &GateBlockingProxy) -> Result<(), concoord::ClientError> {
        let _: bool = p.wait(Some(1.0))?;
        p.open()?;
        let _: u64 = p.enter()?;
        p.enter_then_wait()?;
        let _: String = p.concoord_str()?;
        Ok(())
    }
}
