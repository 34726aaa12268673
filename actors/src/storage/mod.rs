//! Durable mode (`concoord replica -w --data-dir DIR`): what a replica keeps
//! on disk, and how it reads it back after a restart.
//!
//! ```text
//! DIR/member            who this replica is: node id, group, address
//! DIR/wal/<n>.wal       segments of checksummed records (promises, accepts,
//!                       decisions), appended and fdatasync'ed in groups
//! DIR/snap/<slot>.snap  replica snapshots; the newest two are kept
//! ```
//!
//! Every file starts with a magic and its format ([`STORAGE_FORMAT`] when
//! written; back to [`OLDEST_STORAGE_FORMAT`] read); every record header,
//! record and whole file carries a CRC32. Reading back, a record cut short
//! at the end of the newest segment (the last write of a process that died)
//! is dropped with a warning; anything else that does not check out refuses
//! the start with an error that names the file, and nothing is changed.

pub(crate) mod files;
pub(crate) mod open;
mod wal;

pub use files::{encode_snapshot, DataDir, MemberFile};
pub use open::{open_node, DurableOptions, OpenedNode, SNAPSHOT_EVERY_SLOTS};
pub use wal::{SnapshotDone, Synced, Wal, WalOptions, SEGMENT_BYTES};

use crate::message::{Batch, PeerMsg, Snapshot};
use crate::{Ballot, NodeId, Slot};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The on-disk format this build writes. Format 2 gave each log record a
/// checksum of its header (see `files::encode_record`); the member and
/// snapshot files are framed as in format 1.
pub const STORAGE_FORMAT: u32 = 2;

/// The oldest format this build still reads: a data dir written by the
/// previous release restarts (its segments are read with format 1's rules,
/// new records go to a new format-2 segment).
pub const OLDEST_STORAGE_FORMAT: u32 = 1;

/// One write-ahead log record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Record {
    /// The acceptor promised `ballot` (it never accepts below it again).
    Promise(Ballot),
    /// The acceptor accepted `batch` for `slot` at `ballot`.
    ///
    /// A batch is the last field of its record: `files::encode_record`
    /// relies on that to copy in the batch's cached encoding.
    Accept {
        slot: Slot,
        ballot: Ballot,
        #[serde(with = "crate::message::batch_as_seq")]
        batch: Batch,
    },
    /// The value accepted for `slot` at `ballot` or above was chosen (a
    /// commit or this node's leader said so): no batch, it is in the Accept.
    Chosen { slot: Slot, ballot: Ballot },
    /// A decision that reached the replica whole (catch-up, a late decision).
    Decision {
        slot: Slot,
        #[serde(with = "crate::message::batch_as_seq")]
        batch: Batch,
    },
}

/// Why a data dir cannot be used. Every variant names the file.
#[derive(Debug)]
pub enum StorageError {
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Checksum or framing failure that is not a torn last write.
    Corrupt { path: PathBuf, what: String },
    /// Written by a newer (or unknown) build.
    UnknownFormat { path: PathBuf, found: u32 },
    /// A file that belongs to another member or another group.
    Foreign { path: PathBuf, what: String },
    /// Not a concoord file at all.
    NotOurs { path: PathBuf },
}

impl std::fmt::Display for StorageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StorageError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            StorageError::Corrupt { path, what } => write!(
                f,
                "{}: damaged ({what}); refusing to serve from state that cannot be trusted \
                 (restore the data dir, or remove it and rejoin the group with -b)",
                path.display()
            ),
            StorageError::UnknownFormat { path, found } => write!(
                f,
                "{}: storage format {found}, this build reads formats \
                 {OLDEST_STORAGE_FORMAT} to {STORAGE_FORMAT}",
                path.display()
            ),
            StorageError::Foreign { path, what } => write!(f, "{}: {what}", path.display()),
            StorageError::NotOurs { path } => {
                write!(f, "{}: not a concoord data file", path.display())
            }
        }
    }
}

impl std::error::Error for StorageError {}

/// What a data dir holds, read back.
#[derive(Debug)]
pub struct Recovered {
    pub member: MemberFile,
    /// The newest snapshot; `None` for a member that never got its state.
    pub snapshot: Option<Snapshot>,
    pub promised: Ballot,
    /// Accepted values at or above the snapshot's slot.
    pub accepted: BTreeMap<Slot, (Ballot, Batch)>,
    /// Decided values at or above the snapshot's slot that the log names.
    pub decided: BTreeMap<Slot, Batch>,
    /// A torn last write was cut off the newest segment.
    pub torn_tail: bool,
    /// The next segment number to write.
    pub next_segment: u64,
    pub segments: Vec<SegmentInfo>,
}

/// A log segment on disk, and the highest slot any of its records is about.
#[derive(Clone, Debug)]
pub struct SegmentInfo {
    pub number: u64,
    pub path: PathBuf,
    pub max_slot: Option<Slot>,
}

impl Recovered {
    pub fn snapshot_slot(&self) -> Slot {
        self.snapshot.as_ref().map_or(0, |s| s.executed)
    }

    /// Folds the log's records into acceptor and replica state.
    fn apply(&mut self, record: Record) {
        match record {
            Record::Promise(b) => self.promised = self.promised.max(b),
            Record::Accept {
                slot,
                ballot,
                batch,
            } => {
                self.promised = self.promised.max(ballot);
                self.accepted.insert(slot, (ballot, batch));
            }
            Record::Chosen { slot, ballot } => {
                // A value accepted at the chosen ballot or above is the chosen one.
                if let Some((accepted, batch)) = self.accepted.get(&slot) {
                    if *accepted >= ballot {
                        self.decided.insert(slot, batch.clone());
                    }
                }
            }
            Record::Decision { slot, batch } => {
                self.decided.insert(slot, batch);
            }
        }
    }

    /// Drops what the snapshot already covers.
    fn trim(&mut self) {
        let below = self.snapshot_slot();
        self.accepted = self.accepted.split_off(&below);
        self.decided = self.decided.split_off(&below);
    }
}

#[cfg(test)]
mod tests;

/// The slots a leader at `ballot` on node `me` has just seen chosen: its
/// Decisions to its own replica. Recorded so a restart knows them chosen.
pub fn chosen_to_record(me: NodeId, ballot: Ballot, sends: &[(NodeId, PeerMsg)]) -> Vec<Record> {
    sends
        .iter()
        .filter_map(|(to, msg)| match msg {
            PeerMsg::Decision(d) if *to == me => Some(Record::Chosen {
                slot: d.slot,
                ballot,
            }),
            _ => None,
        })
        .collect()
}

/// Decisions that reached the replica of node `me` (executed below
/// `executed`) whole from another node: its log keeps them (those through
/// its own acceptor are recorded there already).
pub fn decisions_to_record(me: NodeId, from: NodeId, executed: Slot, msg: &PeerMsg) -> Vec<Record> {
    if from == me {
        return Vec::new();
    }
    let record = |slot: Slot, batch: &Batch| {
        (slot >= executed).then(|| Record::Decision {
            slot,
            batch: batch.clone(),
        })
    };
    match msg {
        PeerMsg::Decision(d) => record(d.slot, &d.batch).into_iter().collect(),
        PeerMsg::CatchUp(c) => c
            .decisions
            .iter()
            .filter_map(|(slot, batch)| record(*slot, batch))
            .collect(),
        _ => Vec::new(),
    }
}
