// io_uring client: one thread, all connections in one ring, one outstanding request per connection.
use std::os::fd::IntoRawFd;
use uring_vs_epoll::*;

fn main() {
    let a = args();
    let mut lp = ur::Loop::new(&a.mode, &req_frame());
    let mut idx = Vec::new();
    for _ in 0..a.conns {
        let s = std::net::TcpStream::connect(("127.0.0.1", a.port)).unwrap();
        idx.push(lp.add_conn(s.into_raw_fd()));
    }
    let req = req_frame();
    for i in idx { lp.send(i, &req); }
    let t0 = std::time::Instant::now();
    let mut ops = 0u64;
    while t0.elapsed().as_secs() < 1 { ops += lp.turn(None); }
    let w = Window::start(&a, ops);
    let t1 = std::time::Instant::now();
    let d = std::time::Duration::from_secs(a.dur);
    while t1.elapsed() < d { ops += lp.turn(None); }
    w.finish(&a, ops);
}
