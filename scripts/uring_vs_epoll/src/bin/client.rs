// tokio current_thread client: N connections, one outstanding 48B request each.
use std::cell::Cell;
use std::rc::Rc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uring_vs_epoll::*;

fn main() {
    let a = args();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let ops = Rc::new(Cell::new(0u64));
        for _ in 0..a.conns {
            let ops = ops.clone();
            let mut s = tokio::net::TcpStream::connect(("127.0.0.1", a.port)).await.unwrap();
            s.set_nodelay(true).unwrap();
            tokio::task::spawn_local(async move {
                let req = req_frame();
                let mut rep = [0u8; REP_LEN];
                loop {
                    if s.write_all(&req).await.is_err() { return; }
                    if s.read_exact(&mut rep).await.is_err() { return; }
                    ops.set(ops.get() + 1);
                }
            });
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let w = Window::start(&a, ops.get());
        tokio::time::sleep(std::time::Duration::from_secs(a.dur)).await;
        w.finish(&a, ops.get());
    });
}
