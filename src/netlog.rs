//! Logging: the console through `env_logger` (`RUST_LOG`), and optionally a
//! network logger (`-l HOST:PORT`) that sends every record to
//! `concoord logdaemon`. A logger that is down or slow never blocks the
//! process: records go through a bounded queue and are dropped when it is
//! full; how many were dropped is reported when the connection comes back.

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

/// Records waiting for the network logger; beyond this they are dropped.
pub const NETLOG_QUEUE_MAX: usize = 4096;
const RECONNECT_EVERY: Duration = Duration::from_millis(500);

/// One log record on the wire (length-prefixed MessagePack).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LogRecord {
    pub node: String,
    pub level: String,
    pub target: String,
    pub message: String,
    pub unix_ms: u64,
}

static NODE_LABEL: OnceLock<RwLock<String>> = OnceLock::new();

fn label_cell() -> &'static RwLock<String> {
    NODE_LABEL.get_or_init(|| RwLock::new(format!("pid {}", std::process::id())))
}

/// Names this process in every record (e.g. `replica 127.0.0.1:14000`).
pub fn set_node_label(label: impl Into<String>) {
    if let Ok(mut l) = label_cell().write() {
        *l = label.into();
    }
}

fn node_label() -> String {
    label_cell().read().map(|l| l.clone()).unwrap_or_default()
}

struct NetSink {
    queue: SyncSender<LogRecord>,
    dropped: Arc<AtomicU64>,
}

struct Logger {
    console: env_logger::Logger,
    net: Option<NetSink>,
}

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        self.console.enabled(metadata)
    }

    fn log(&self, record: &log::Record) {
        if !self.console.matches(record) {
            return;
        }
        self.console.log(record);
        if let Some(net) = &self.net {
            let r = LogRecord {
                node: node_label(),
                level: record.level().to_string(),
                target: record.target().to_string(),
                message: record.args().to_string(),
                unix_ms: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis() as u64)
                    .unwrap_or(0),
            };
            match net.queue.try_send(r) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                    net.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    fn flush(&self) {
        self.console.flush();
    }
}

/// Installs the process's logger: console at `default_filter` unless
/// `RUST_LOG` says otherwise, and records to `network` if given.
pub fn init(default_filter: &str, network: Option<&str>) {
    let console =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default_filter))
            .format(|buf, record| {
                writeln!(
                    buf,
                    "[{} {} {} {}] {}",
                    buf.timestamp_millis(),
                    record.level(),
                    node_label(),
                    record.target(),
                    record.args()
                )
            })
            .target(env_logger::Target::Stderr)
            .build();
    let max_level = console.filter();
    let net = network.map(|addr| {
        let (queue, rx) = sync_channel(NETLOG_QUEUE_MAX);
        let dropped = Arc::new(AtomicU64::new(0));
        let addr = addr.to_string();
        let thread_dropped = dropped.clone();
        let _ = std::thread::Builder::new()
            .name("concoord-netlog".into())
            .spawn(move || ship(addr, rx, thread_dropped));
        NetSink { queue, dropped }
    });
    if log::set_boxed_logger(Box::new(Logger { console, net })).is_ok() {
        log::set_max_level(max_level);
    }
}

fn write_record(stream: &mut TcpStream, record: &LogRecord) -> std::io::Result<()> {
    let payload = rmp_serde::to_vec(record).map_err(std::io::Error::other)?;
    let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
    frame.extend(payload);
    stream.write_all(&frame)
}

/// The shipping thread: connects (and reconnects), sends records in order,
/// counts what it cannot send.
fn ship(addr: String, rx: Receiver<LogRecord>, dropped: Arc<AtomicU64>) {
    loop {
        let connected = addr
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .and_then(|a| TcpStream::connect_timeout(&a, Duration::from_secs(1)).ok());
        let Some(mut stream) = connected else {
            // Down: drain what queued up meanwhile, counting it as dropped.
            let deadline = std::time::Instant::now() + RECONNECT_EVERY;
            loop {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                match rx.recv_timeout(left) {
                    Ok(_) => {
                        dropped.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
        let lost = dropped.swap(0, Ordering::Relaxed);
        if lost > 0 {
            let note = LogRecord {
                node: node_label(),
                level: "WARN".into(),
                target: "concoord::netlog".into(),
                message: format!(
                    "{lost} log records were dropped while the logger was unreachable or slow"
                ),
                unix_ms: 0,
            };
            if write_record(&mut stream, &note).is_err() {
                dropped.fetch_add(lost, Ordering::Relaxed);
                continue;
            }
        }
        loop {
            match rx.recv() {
                Ok(record) => {
                    if write_record(&mut stream, &record).is_err() {
                        dropped.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
                Err(_) => return,
            }
        }
    }
}

/// `concoord logdaemon`: prints every record it receives, tagged with the
/// sending node, in arrival order.
pub async fn run_daemon(listener: tokio::net::TcpListener) {
    use futures::StreamExt;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        let stdout = std::io::stdout();
        while let Some(line) = rx.recv().await {
            let mut out = stdout.lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    });
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        let tx = tx.clone();
        tokio::spawn(async move {
            let codec = tokio_util::codec::LengthDelimitedCodec::builder()
                .max_frame_length(1 << 20)
                .new_codec();
            let mut frames = tokio_util::codec::FramedRead::new(stream, codec);
            while let Some(Ok(frame)) = frames.next().await {
                match rmp_serde::from_slice::<LogRecord>(&frame) {
                    Ok(r) => {
                        let _ = tx.send(format!(
                            "[{}] {} {}: {}",
                            r.node, r.level, r.target, r.message
                        ));
                    }
                    Err(e) => {
                        let _ = tx.send(format!("[{peer}] undecodable log record: {e}"));
                        return;
                    }
                }
            }
        });
    }
}
