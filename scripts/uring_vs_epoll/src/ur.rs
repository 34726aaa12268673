// Single-threaded io_uring event loop, used by both the uring server and the uring client.
use io_uring::{opcode, squeue, types, IoUring};
use std::os::fd::RawFd;

const RBUF: usize = 16384;
const ACCEPT_UD: u64 = u64::MAX;
const OP_RECV: u64 = 1;
const OP_SEND: u64 = 2;

struct Conn {
    fd: RawFd,
    rbuf: Box<[u8]>,
    have: usize,
    sbuf: Vec<u8>, // in flight
    soff: usize,
    sending: bool,
    out: Vec<u8>, // queued while a send is in flight
    live: bool,
}

pub struct Stats { pub enters: u64, pub cqes: u64, pub frames: u64 }

pub struct Loop {
    ring: IoUring,
    conns: Vec<Conn>,
    pub stats: Stats,
    sqpoll: bool,
    reply: Vec<u8>, // frame sent per received frame
    cq: Vec<(u64, i32)>,
}

impl Loop {
    pub fn new(mode: &str, reply: &[u8]) -> Loop {
        let mut b = IoUring::builder();
        let sqpoll = mode == "sqpoll";
        match mode {
            "plain" => {}
            "defer" => { b.setup_single_issuer().setup_defer_taskrun(); }
            "coop" => { b.setup_coop_taskrun(); }
            "sqpoll" => { b.setup_sqpoll(2000); }
            m => panic!("unknown mode {m}"),
        }
        let ring = b.build(1024).unwrap_or_else(|e| panic!("io_uring setup ({mode}) failed: {e}"));
        Loop { ring, conns: Vec::new(), stats: Stats { enters: 0, cqes: 0, frames: 0 }, sqpoll, reply: reply.to_vec(), cq: Vec::with_capacity(1024) }
    }

    fn push(&mut self, e: squeue::Entry) {
        while unsafe { self.ring.submission().push(&e) }.is_err() {
            self.ring.submit().unwrap();
            self.stats.enters += 1;
        }
    }

    pub fn arm_accept(&mut self, lfd: RawFd) {
        let e = opcode::Accept::new(types::Fd(lfd), std::ptr::null_mut(), std::ptr::null_mut()).build().user_data(ACCEPT_UD);
        self.push(e);
    }

    /// Register a connected socket; returns its index.
    pub fn add_conn(&mut self, fd: RawFd) -> usize {
        let one: libc::c_int = 1;
        unsafe { libc::setsockopt(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, &one as *const _ as *const _, 4) };
        let idx = self.conns.len();
        self.conns.push(Conn { fd, rbuf: vec![0u8; RBUF].into_boxed_slice(), have: 0, sbuf: Vec::with_capacity(4096), soff: 0, sending: false, out: Vec::with_capacity(4096), live: true });
        self.arm_recv(idx);
        idx
    }

    fn arm_recv(&mut self, i: usize) {
        let c = &mut self.conns[i];
        let e = opcode::Recv::new(types::Fd(c.fd), unsafe { c.rbuf.as_mut_ptr().add(c.have) }, (RBUF - c.have) as u32)
            .build().user_data(((i as u64) << 8) | OP_RECV);
        self.push(e);
    }

    fn arm_send(&mut self, i: usize) {
        let c = &mut self.conns[i];
        let e = opcode::Send::new(types::Fd(c.fd), unsafe { c.sbuf.as_ptr().add(c.soff) }, (c.sbuf.len() - c.soff) as u32)
            .build().user_data(((i as u64) << 8) | OP_SEND);
        self.push(e);
    }

    /// Queue bytes for sending on conn i.
    pub fn send(&mut self, i: usize, data: &[u8]) {
        let c = &mut self.conns[i];
        if c.sending {
            c.out.extend_from_slice(data);
        } else {
            c.sbuf.clear();
            c.sbuf.extend_from_slice(data);
            c.soff = 0;
            c.sending = true;
            self.arm_send(i);
        }
    }

    fn close(&mut self, i: usize) {
        let c = &mut self.conns[i];
        if c.live {
            c.live = false;
            unsafe { libc::close(c.fd) };
        }
    }

    pub fn live_conns(&self) -> usize { self.conns.iter().filter(|c| c.live).count() }

    /// One iteration: exactly one io_uring_enter (submit queued SQEs + wait for >=1 CQE), then reap all CQEs.
    /// `on_accept(fd)` is called for accepted sockets. Returns number of frames handled.
    pub fn turn(&mut self, lfd: Option<RawFd>) -> u64 {
        if self.sqpoll {
            // SQ thread picks up SQEs; only enter when nothing is already in the CQ
            self.ring.submission().sync();
            if self.ring.completion().is_empty() {
                self.ring.submit_and_wait(1).unwrap();
                self.stats.enters += 1;
            }
        } else {
            loop {
                match self.ring.submit_and_wait(1) {
                    Ok(_) => break,
                    Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                    Err(e) => panic!("enter: {e}"),
                }
            }
            self.stats.enters += 1;
        }
        self.cq.clear();
        for c in self.ring.completion() { self.cq.push((c.user_data(), c.result())); }
        self.stats.cqes += self.cq.len() as u64;
        let mut frames = 0;
        let cq = std::mem::take(&mut self.cq);
        for &(ud, res) in &cq {
            if ud == ACCEPT_UD {
                if res >= 0 { self.add_conn(res); }
                if let Some(l) = lfd { self.arm_accept(l); }
                continue;
            }
            let i = (ud >> 8) as usize;
            if !self.conns[i].live { continue; }
            match ud & 0xff {
                OP_RECV => {
                    if res <= 0 { self.close(i); continue; }
                    let c = &mut self.conns[i];
                    c.have += res as usize;
                    let (n, used) = crate::parse_frames(&c.rbuf[..c.have]);
                    c.rbuf.copy_within(used..c.have, 0);
                    c.have -= used;
                    if c.have == RBUF { panic!("frame too large"); }
                    self.arm_recv(i);
                    if n > 0 {
                        frames += n as u64;
                        let rep = std::mem::take(&mut self.reply);
                        if n == 1 { self.send(i, &rep); } else {
                            let mut v = Vec::with_capacity(rep.len() * n);
                            for _ in 0..n { v.extend_from_slice(&rep); }
                            self.send(i, &v);
                        }
                        self.reply = rep;
                    }
                }
                OP_SEND => {
                    if res < 0 { self.close(i); continue; }
                    let c = &mut self.conns[i];
                    c.soff += res as usize;
                    if c.soff < c.sbuf.len() {
                        self.arm_send(i);
                    } else if !c.out.is_empty() {
                        std::mem::swap(&mut c.sbuf, &mut c.out);
                        c.out.clear();
                        c.soff = 0;
                        self.arm_send(i);
                    } else {
                        c.sending = false;
                    }
                }
                _ => unreachable!(),
            }
        }
        self.cq = cq;
        self.stats.frames += frames;
        frames
    }
}
