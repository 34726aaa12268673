//! The write-ahead log's writer: one thread that writes every record handed
//! to it and fdatasyncs, in groups. Whatever arrives while a sync runs goes
//! into the next write and is covered by the next sync, so a loaded replica
//! makes one sync per group of commands rather than one per command.

use super::files::{encode_record, record_slot, segment_header, sync_dir};
use super::{DataDir, Record, SegmentInfo, StorageError};
use crate::{Ballot, NodeId, Slot};
use actix::prelude::*;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};

/// A segment is closed and a new one begun past this size, so a snapshot
/// lets whole files go.
pub const SEGMENT_BYTES: u64 = 64 << 20;

/// Everything appended up to this sequence number is on disk.
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "()")]
pub struct Synced(pub u64);

#[derive(Clone, Debug)]
pub struct WalOptions {
    pub segment_bytes: u64,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_bytes: SEGMENT_BYTES,
        }
    }
}

/// Told when a snapshot is on disk (or why it is not).
pub type SnapshotDone = tokio::sync::oneshot::Sender<Result<Slot, String>>;

enum Op {
    Append(u64, Vec<Record>),
    /// A snapshot of the state below this slot is on disk: the segments it
    /// covers can go.
    Compact(Slot, Option<SnapshotDone>),
}

/// An encoded snapshot for the snapshot thread.
type SnapshotJob = (Slot, Vec<u8>, Option<SnapshotDone>);

/// The handle actors append through.
pub struct Wal {
    /// Sequence numbers must reach the writer in order.
    tx: Mutex<(u64, mpsc::Sender<Op>)>,
    /// Snapshots are written on a thread of their own, so a large one never
    /// holds up the log's syncs.
    snapshots: Mutex<mpsc::Sender<SnapshotJob>>,
    synced: Arc<AtomicU64>,
    listener: Arc<Mutex<Option<Recipient<Synced>>>>,
}

impl Wal {
    /// Starts the writer on a fresh segment numbered `next_segment`, after
    /// the `old` ones read back at start. Its first record repeats `promised`,
    /// so older segments can go without losing the promise.
    pub fn start(
        dir: DataDir,
        node: NodeId,
        next_segment: u64,
        old: Vec<SegmentInfo>,
        promised: Ballot,
        options: WalOptions,
    ) -> Result<Arc<Wal>, StorageError> {
        let (file, path) = new_segment(&dir, node, next_segment, promised)?;
        let (tx, rx) = mpsc::channel();
        let synced = Arc::new(AtomicU64::new(0));
        let listener: Arc<Mutex<Option<Recipient<Synced>>>> = Arc::default();
        let writer = Writer {
            segment_bytes: file.metadata().map(|m| m.len()).unwrap_or(0),
            dir,
            node,
            file,
            current: SegmentInfo {
                number: next_segment,
                path,
                max_slot: None,
            },
            old,
            promised,
            synced: synced.clone(),
            listener: listener.clone(),
            options,
        };
        let dir = writer.dir.clone();
        std::thread::Builder::new()
            .name("concoord-wal".into())
            .spawn(move || writer.run(rx))
            .map_err(|source| StorageError::Io {
                path: "concoord-wal thread".into(),
                source,
            })?;
        let (snap_tx, snap_rx) = mpsc::channel::<SnapshotJob>();
        let compact = tx.clone();
        std::thread::Builder::new()
            .name("concoord-snapshot".into())
            .spawn(move || {
                for (slot, bytes, done) in snap_rx {
                    if let Err(e) = dir.write_snapshot_bytes(slot, &bytes) {
                        fatal(e);
                    }
                    let _ = compact.send(Op::Compact(slot, done));
                }
            })
            .map_err(|source| StorageError::Io {
                path: "concoord-snapshot thread".into(),
                source,
            })?;
        Ok(Arc::new(Wal {
            tx: Mutex::new((0, tx)),
            snapshots: Mutex::new(snap_tx),
            synced,
            listener,
        }))
    }

    /// Where to say that appends are on disk.
    pub fn notify(&self, to: Recipient<Synced>) {
        *self.listener.lock().expect("wal listener lock") = Some(to);
    }

    /// Appends records; returns their sequence number ([`Synced`] says when they are on disk).
    pub fn append(&self, records: Vec<Record>) -> u64 {
        let mut tx = self.tx.lock().expect("wal lock");
        tx.0 += 1;
        let seq = tx.0;
        // A closed channel means the writer stopped on an IO error and the
        // process is on its way out; nothing to do here.
        let _ = tx.1.send(Op::Append(seq, records));
        seq
    }

    /// The last sequence number handed out.
    pub fn appended(&self) -> u64 {
        self.tx.lock().expect("wal lock").0
    }

    pub fn synced(&self) -> u64 {
        self.synced.load(Ordering::Acquire)
    }

    /// Writes an encoded snapshot of the state below `slot`; the log below
    /// it then goes. `done` hears when it is on disk.
    pub fn snapshot(&self, slot: Slot, encoded: Vec<u8>, done: Option<SnapshotDone>) {
        let tx = self.snapshots.lock().expect("snapshot queue lock");
        let _ = tx.send((slot, encoded, done));
    }
}

fn new_segment(
    dir: &DataDir,
    node: NodeId,
    number: u64,
    promised: Ballot,
) -> Result<(File, std::path::PathBuf), StorageError> {
    let path = dir.segment_path(number);
    let io = |source| StorageError::Io {
        path: path.clone(),
        source,
    };
    let mut file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(&path)
        .map_err(io)?;
    let mut bytes = segment_header(node);
    encode_record(&Record::Promise(promised), &mut bytes);
    file.write_all(&bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    sync_dir(&dir.wal_dir())?;
    Ok((file, path))
}

struct Writer {
    dir: DataDir,
    node: NodeId,
    file: File,
    current: SegmentInfo,
    segment_bytes: u64,
    old: Vec<SegmentInfo>,
    promised: Ballot,
    synced: Arc<AtomicU64>,
    listener: Arc<Mutex<Option<Recipient<Synced>>>>,
    options: WalOptions,
}

/// A replica must not acknowledge what is not on disk, nor go on after a
/// failed sync (the kernel may have dropped the pages): stop the process.
fn fatal(e: impl std::fmt::Display) -> ! {
    log::error!("durable storage failed: {e}; stopping this replica");
    eprintln!("concoord: durable storage failed: {e}; stopping this replica");
    std::process::exit(70)
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Op>) {
        let mut buf = Vec::new();
        while let Ok(first) = rx.recv() {
            let mut seq = None;
            let mut compactions = Vec::new();
            let mut take = |op: Op, this: &mut Self, buf: &mut Vec<u8>| match op {
                Op::Append(s, records) => {
                    seq = Some(s);
                    for record in &records {
                        this.track(record);
                        encode_record(record, buf);
                    }
                }
                Op::Compact(slot, done) => compactions.push((slot, done)),
            };
            take(first, &mut self, &mut buf);
            while let Ok(op) = rx.try_recv() {
                take(op, &mut self, &mut buf);
            }
            if !buf.is_empty() {
                let path = &self.current.path;
                if let Err(e) = self.file.write_all(&buf) {
                    fatal(format!("{}: {e}", path.display()));
                }
                if let Err(e) = self.file.sync_data() {
                    fatal(format!("{}: {e}", path.display()));
                }
                self.segment_bytes += buf.len() as u64;
                buf.clear();
            }
            if let Some(seq) = seq {
                self.synced.store(seq, Ordering::Release);
                if let Some(to) = &*self.listener.lock().expect("wal listener lock") {
                    to.do_send(Synced(seq));
                }
            }
            if self.segment_bytes >= self.options.segment_bytes {
                self.rotate();
            }
            for (slot, done) in compactions {
                self.compact(slot);
                if let Some(done) = done {
                    let _ = done.send(Ok(slot));
                }
            }
        }
    }

    fn track(&mut self, record: &Record) {
        match record {
            Record::Promise(b) | Record::Accept { ballot: b, .. } => {
                self.promised = self.promised.max(*b)
            }
            _ => {}
        }
        if let Some(slot) = record_slot(record) {
            self.current.max_slot = self.current.max_slot.max(Some(slot));
        }
    }

    fn rotate(&mut self) {
        let number = self.current.number + 1;
        match new_segment(&self.dir, self.node, number, self.promised) {
            Ok((file, path)) => {
                self.file = file;
                self.segment_bytes = self.file.metadata().map(|m| m.len()).unwrap_or(0);
                let done = std::mem::replace(
                    &mut self.current,
                    SegmentInfo {
                        number,
                        path,
                        max_slot: None,
                    },
                );
                self.old.push(done);
            }
            Err(e) => fatal(e),
        }
    }

    /// Removes closed segments whose every record is below `slot` (the
    /// snapshot covers them; each newer segment repeats the promise).
    fn compact(&mut self, slot: Slot) {
        let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.old)
            .into_iter()
            .partition(|s| s.max_slot.map_or(true, |m| m < slot));
        self.old = kept;
        for segment in gone {
            if let Err(e) = std::fs::remove_file(&segment.path) {
                log::warn!("cannot remove {}: {e}", segment.path.display());
            }
        }
    }
}
