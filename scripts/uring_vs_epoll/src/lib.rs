// shared helpers
use std::collections::HashMap;

pub const REQ_LEN: usize = 48; // 4-byte LE len prefix (=44) + 44 payload
pub const REP_LEN: usize = 32; // 4-byte LE len prefix (=28) + 28 payload

pub fn req_frame() -> [u8; REQ_LEN] {
    let mut b = [0xABu8; REQ_LEN];
    b[..4].copy_from_slice(&((REQ_LEN - 4) as u32).to_le_bytes());
    b
}
pub fn rep_frame() -> [u8; REP_LEN] {
    let mut b = [0xCDu8; REP_LEN];
    b[..4].copy_from_slice(&((REP_LEN - 4) as u32).to_le_bytes());
    b
}

/// Parse as many complete frames as available from buf[..len]; returns (frames, bytes consumed).
#[inline]
pub fn parse_frames(buf: &[u8]) -> (usize, usize) {
    let mut off = 0;
    let mut n = 0;
    while buf.len() - off >= 4 {
        let l = u32::from_le_bytes(buf[off..off + 4].try_into().unwrap()) as usize;
        if buf.len() - off < 4 + l {
            break;
        }
        off += 4 + l;
        n += 1;
    }
    (n, off)
}

/// utime+stime in clock ticks for pid (whole process), plus per-thread map comm->ticks
pub fn proc_ticks(pid: u32) -> (u64, HashMap<String, u64>) {
    let parse = |s: &str| -> (String, u64) {
        let lp = s.find('(').unwrap();
        let rp = s.rfind(')').unwrap();
        let comm = s[lp + 1..rp].to_string();
        let f: Vec<&str> = s[rp + 2..].split_whitespace().collect();
        // after ")" fields start at field 3 (state); utime=14, stime=15 -> idx 11,12
        let ut: u64 = f[11].parse().unwrap();
        let st: u64 = f[12].parse().unwrap();
        (comm, ut + st)
    };
    let s = std::fs::read_to_string(format!("/proc/{}/stat", pid)).unwrap();
    let (_, total) = parse(&s);
    let mut per = HashMap::new();
    if let Ok(rd) = std::fs::read_dir(format!("/proc/{}/task", pid)) {
        for e in rd.flatten() {
            if let Ok(s) = std::fs::read_to_string(e.path().join("stat")) {
                let (c, t) = parse(&s);
                *per.entry(c).or_insert(0) += t;
            }
        }
    }
    (total, per)
}

/// (busy, steal, total) jiffies system-wide from /proc/stat
pub fn sys_ticks() -> (u64, u64, u64) {
    let s = std::fs::read_to_string("/proc/stat").unwrap();
    let v: Vec<u64> = s.lines().next().unwrap().split_whitespace().skip(1).map(|x| x.parse().unwrap()).collect();
    // user nice system idle iowait irq softirq steal guest guest_nice
    let busy = v[0] + v[1] + v[2] + v[5] + v[6];
    (busy, v[7], v.iter().take(8).sum())
}
/// sum of schedstat run ns over all threads of pid
pub fn sched_ns(pid: u32) -> u64 {
    let mut t = 0;
    if let Ok(rd) = std::fs::read_dir(format!("/proc/{}/task", pid)) {
        for e in rd.flatten() {
            if let Ok(s) = std::fs::read_to_string(e.path().join("schedstat")) {
                t += s.split_whitespace().next().unwrap().parse::<u64>().unwrap();
            }
        }
    }
    t
}
pub fn clk_tck() -> f64 {
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) as f64 }
}

pub struct Args {
    pub conns: usize,
    pub port: u16,
    pub dur: u64,
    pub spid: Option<u32>,
    pub perf: bool,
    pub label: String,
    pub mode: String,
}
pub fn args() -> Args {
    let mut a = Args { conns: 64, port: 9000, dur: 10, spid: None, perf: false, label: String::new(), mode: "plain".into() };
    let v: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < v.len() {
        match v[i].as_str() {
            "-n" => { a.conns = v[i + 1].parse().unwrap(); i += 1 }
            "-p" => { a.port = v[i + 1].parse().unwrap(); i += 1 }
            "-d" => { a.dur = v[i + 1].parse().unwrap(); i += 1 }
            "--spid" => { a.spid = Some(v[i + 1].parse().unwrap()); i += 1 }
            "--perf" => a.perf = true,
            "--label" => { a.label = v[i + 1].clone(); i += 1 }
            "--mode" => { a.mode = v[i + 1].clone(); i += 1 }
            x => panic!("bad arg {x}"),
        }
        i += 1;
    }
    a
}

/// Measurement window bookkeeping used by both clients.
pub struct Window {
    spid: Option<u32>,
    perf: Option<std::process::Child>,
    t0: std::time::Instant,
    ops0: u64,
    c0: u64,
    s0: (u64, HashMap<String, u64>),
    sys0: (u64, u64, u64),
    sch0: (u64, u64),
}
impl Window {
    pub fn start(a: &Args, ops: u64) -> Window {
        let perf = if a.perf {
            let pid = a.spid.expect("--perf needs --spid");
            Some(
                std::process::Command::new("perf")
                    .args(["stat", "-x", ",", "-e",
                        "raw_syscalls:sys_enter,syscalls:sys_enter_io_uring_enter,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_read,syscalls:sys_enter_write,syscalls:sys_enter_recvfrom,syscalls:sys_enter_sendto",
                        "-p", &pid.to_string(), "-o", "/tmp/uring-bench/perf.out", "--", "sleep", &a.dur.to_string()])
                    .spawn()
                    .unwrap(),
            )
        } else { None };
        let s0 = a.spid.map(proc_ticks).unwrap_or_default();
        let sch0 = (sched_ns(std::process::id()), a.spid.map(sched_ns).unwrap_or(0));
        Window { sys0: sys_ticks(), sch0, spid: a.spid, perf, t0: std::time::Instant::now(), ops0: ops, c0: proc_ticks(std::process::id()).0, s0 }
    }
    pub fn finish(mut self, a: &Args, ops: u64) {
        let el = self.t0.elapsed().as_secs_f64();
        let c1 = proc_ticks(std::process::id()).0;
        let s1 = self.spid.map(proc_ticks).unwrap_or_default();
        let sys1 = sys_ticks();
        let sch1 = (sched_ns(std::process::id()), self.spid.map(sched_ns).unwrap_or(0));
        let n = (ops - self.ops0) as f64;
        let tck = clk_tck();
        let us = |t: u64| t as f64 / tck * 1e6 / n;
        let mut line = format!(
            "RESULT label={} conns={} ops_per_s={:.0} ops={} secs={:.2} client_us_per_op={:.3} client_cpu_pct={:.1}",
            a.label, a.conns, n / el, n as u64, el, us(c1 - self.c0), (c1 - self.c0) as f64 / tck / el * 100.0
        );
        if self.spid.is_some() {
            let st = s1.0 - self.s0.0;
            line += &format!(" server_us_per_op={:.3} server_cpu_pct={:.1}", us(st), st as f64 / tck / el * 100.0);
            for (comm, t1) in &s1.1 {
                let t0 = self.s0.1.get(comm).copied().unwrap_or(0);
                if comm.starts_with("iou-sqp") {
                    line += &format!(" sqpoll_thread_us_per_op={:.3} sqpoll_cpu_pct={:.1}", us(t1 - t0), (t1 - t0) as f64 / tck / el * 100.0);
                }
            }
        }
        line += &format!(" sched_client_us_per_op={:.3} sched_server_us_per_op={:.3} sys_busy_us_per_op={:.3} sys_busy_pct={:.1} steal_pct={:.1}",
            (sch1.0 - self.sch0.0) as f64 / 1e3 / n, (sch1.1 - self.sch0.1) as f64 / 1e3 / n,
            us(sys1.0 - self.sys0.0), (sys1.0 - self.sys0.0) as f64 / (sys1.2 - self.sys0.2) as f64 * 100.0,
            (sys1.1 - self.sys0.1) as f64 / (sys1.2 - self.sys0.2) as f64 * 100.0);
        println!("{line}");
        if let Some(mut p) = self.perf.take() {
            p.wait().unwrap();
            let s = std::fs::read_to_string("/tmp/uring-bench/perf.out").unwrap();
            for l in s.lines().filter(|l| l.contains("sys_enter")) {
                let f: Vec<&str> = l.split(',').collect();
                if let Ok(c) = f[0].parse::<f64>() {
                    println!("SYSCALLS label={} conns={} {} total={} per_op={:.4}", a.label, a.conns, f[2], c as u64, c / n);
                }
            }
        }
    }
}
pub mod ur;
