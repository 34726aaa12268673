// tokio current_thread server, one task per connection.
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uring_vs_epoll::*;

fn main() {
    let a = args();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        let l = tokio::net::TcpListener::bind(("127.0.0.1", a.port)).await.unwrap();
        eprintln!("epoll server pid {} listening on {}", std::process::id(), a.port);
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            s.set_nodelay(true).unwrap();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16384];
                let mut have = 0usize;
                let rep = rep_frame();
                let mut out: Vec<u8> = Vec::with_capacity(4096);
                loop {
                    let n = match s.read(&mut buf[have..]).await { Ok(0) | Err(_) => return, Ok(n) => n };
                    have += n;
                    let (frames, used) = parse_frames(&buf[..have]);
                    buf.copy_within(used..have, 0);
                    have -= used;
                    if frames > 0 {
                        out.clear();
                        for _ in 0..frames { out.extend_from_slice(&rep); }
                        if s.write_all(&out).await.is_err() { return; }
                    }
                }
            });
        }
    });
}
