// io_uring server: single thread, one recv in flight per connection, one io_uring_enter per loop iteration.
use std::os::fd::AsRawFd;
use uring_vs_epoll::*;

fn main() {
    let a = args();
    let l = std::net::TcpListener::bind(("127.0.0.1", a.port)).unwrap();
    let lfd = l.as_raw_fd();
    let mut lp = ur::Loop::new(&a.mode, &rep_frame());
    lp.arm_accept(lfd);
    eprintln!("uring server ({}) pid {} listening on {}", a.mode, std::process::id(), a.port);
    let mut had = false;
    loop {
        lp.turn(Some(lfd));
        let live = lp.live_conns();
        if live > 0 { had = true; }
        if had && live == 0 {
            let s = &lp.stats;
            eprintln!("STATS enters={} cqes={} frames={} enters_per_frame={:.4} cqes_per_frame={:.3}",
                s.enters, s.cqes, s.frames, s.enters as f64 / s.frames as f64, s.cqes as f64 / s.frames as f64);
            had = false;
            lp.stats = ur::Stats { enters: 0, cqes: 0, frames: 0 };
        }
    }
}
