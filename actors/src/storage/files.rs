//! The files of a data dir: framing and checksums, the member file,
//! snapshot files, and reading everything back.

use super::{Record, Recovered, SegmentInfo, StorageError, OLDEST_STORAGE_FORMAT, STORAGE_FORMAT};
use crate::message::Snapshot;
use crate::{Ballot, NodeId, Slot};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

const MEMBER_MAGIC: &[u8; 8] = b"CCMEMBER";
const SNAPSHOT_MAGIC: &[u8; 8] = b"CCSNAPSH";
pub(super) const SEGMENT_MAGIC: &[u8; 8] = b"CCWALSEG";
/// magic, format, node id, CRC of the three.
pub(crate) const SEGMENT_HEADER_BYTES: usize = 8 + 4 + 8 + 4;
/// Before each record's bytes (format 2): length, CRC32 of the payload, and
/// CRC32 of those 8 header bytes.
pub(crate) const RECORD_HEADER_BYTES: usize = 12;
/// Format 1's record header: length and CRC32 of the payload.
pub(crate) const RECORD_HEADER_BYTES_V1: usize = 8;
/// A record longer than this is damage, not data (frames are capped far lower).
const RECORD_MAX_BYTES: usize = 1 << 30;

/// Who a data dir's replica is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemberFile {
    pub node: NodeId,
    /// The group: the id of the member that founded it; 0 until a joiner
    /// has received the group's state.
    pub group: u64,
    pub addr: String,
}

#[derive(Serialize)]
struct SnapshotFileRef<'a> {
    group: u64,
    node: NodeId,
    snapshot: &'a Snapshot,
}

#[derive(Deserialize)]
struct SnapshotFile {
    group: u64,
    node: NodeId,
    snapshot: Snapshot,
}

/// A data dir: its paths, and the operations on whole files.
#[derive(Clone, Debug)]
pub struct DataDir {
    root: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StorageError + '_ {
    move |source| StorageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `bytes` to `path` atomically: a temporary file, fsync, rename, fsync of the dir.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), StorageError> {
    let tmp = path.with_extension("tmp");
    let mut file = File::create(&tmp).map_err(io(&tmp))?;
    file.write_all(bytes).map_err(io(&tmp))?;
    file.sync_all().map_err(io(&tmp))?;
    fs::rename(&tmp, path).map_err(io(path))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

pub(super) fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// magic | format | length | CRC32 | payload
fn frame(magic: &[u8; 8], payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(24 + payload.len());
    out.extend_from_slice(magic);
    out.extend_from_slice(&STORAGE_FORMAT.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

fn unframe<'a>(path: &Path, magic: &[u8; 8], bytes: &'a [u8]) -> Result<&'a [u8], StorageError> {
    if bytes.len() < 8 || &bytes[..8] != magic {
        return Err(StorageError::NotOurs {
            path: path.to_path_buf(),
        });
    }
    let corrupt = |what: &str| StorageError::Corrupt {
        path: path.to_path_buf(),
        what: what.to_string(),
    };
    if bytes.len() < 24 {
        return Err(corrupt("shorter than its header"));
    }
    let format = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    // Whole files are framed alike in every format this build reads.
    if !(OLDEST_STORAGE_FORMAT..=STORAGE_FORMAT).contains(&format) {
        return Err(StorageError::UnknownFormat {
            path: path.to_path_buf(),
            found: format,
        });
    }
    let len = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes"));
    let crc = u32::from_le_bytes(bytes[20..24].try_into().expect("4 bytes"));
    let payload = &bytes[24..];
    if payload.len() as u64 != len {
        return Err(corrupt("length does not match its header"));
    }
    if crc32fast::hash(payload) != crc {
        return Err(corrupt("checksum mismatch"));
    }
    Ok(payload)
}

fn read_file(path: &Path) -> Result<Vec<u8>, StorageError> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(io(path))?;
    Ok(bytes)
}

/// Files in `dir` named `<number>.<ext>`, sorted by number; other names are left alone.
fn numbered(dir: &Path, ext: &str) -> Result<Vec<(u64, PathBuf)>, StorageError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
        if path.extension().and_then(|e| e.to_str()) != Some(ext) {
            continue;
        }
        if let Some(n) = path
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse().ok())
        {
            out.push((n, path));
        }
    }
    out.sort();
    Ok(out)
}

/// Encodes one record as it sits in a (format 2) segment:
/// `length u32 | CRC32(payload) u32 | CRC32(the 8 bytes before) u32 | payload`,
/// all little-endian.
///
/// Why a checksum of the header of its own: format 1 had only the payload's,
/// so a length damaged on disk to point past the end of the newest segment
/// looked exactly like a torn last write, and the records after it (synced,
/// acknowledged) were dropped with a warning. With the header checked before
/// the length is used, a length past the end of the file is believed, and a
/// header that fails its check is damage. The check covers the payload's
/// CRC field too, so damage there is not taken for a torn payload either.
/// CRC32 detects every error confined to 32 consecutive bits, so any damage
/// to the length field alone is caught.
pub(crate) fn encode_record(record: &Record, out: &mut Vec<u8>) {
    let at = out.len();
    out.extend_from_slice(&[0; RECORD_HEADER_BYTES]);
    write_payload(record, out);
    let len = (out.len() - at - RECORD_HEADER_BYTES) as u32;
    let crc = crc32fast::hash(&out[at + RECORD_HEADER_BYTES..]);
    out[at..at + 4].copy_from_slice(&len.to_le_bytes());
    out[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
    let header_crc = crc32fast::hash(&out[at..at + 8]);
    out[at + 8..at + 12].copy_from_slice(&header_crc.to_le_bytes());
}

/// A record's MessagePack bytes, the same as `rmp_serde` writes for it. A
/// batch is the record's last field and an array: the record is written
/// with an empty one (whose encoding, the last byte, is an empty array's
/// marker) and the batch's cached encoding replaces that byte, so the
/// commands the leader encoded for its links are not encoded again here.
pub(crate) fn write_payload(record: &Record, out: &mut Vec<u8>) {
    const EMPTY_ARRAY: u8 = 0x90;
    let (batch, empty) = match record {
        Record::Accept {
            slot,
            ballot,
            batch,
        } => (
            batch,
            Record::Accept {
                slot: *slot,
                ballot: *ballot,
                batch: Default::default(),
            },
        ),
        Record::Decision { slot, batch } => (
            batch,
            Record::Decision {
                slot: *slot,
                batch: Default::default(),
            },
        ),
        _ => {
            rmp_serde::encode::write(out, record).expect("records serialize");
            return;
        }
    };
    rmp_serde::encode::write(out, &empty).expect("records serialize");
    assert_eq!(out.pop(), Some(EMPTY_ARRAY), "a batch ends its record");
    out.extend_from_slice(batch.encoded());
}

/// The records of a segment's bytes as `(offset, header bytes, payload
/// length)`, in the segment's format, up to the first that does not fit in
/// the bytes; checksums are not checked. For tests and the simulator, which
/// damage records on purpose.
pub(crate) fn record_frames(segment: &[u8]) -> Vec<(usize, usize, usize)> {
    let header = match segment.get(8..12) {
        Some(f) if f == 1u32.to_le_bytes() => RECORD_HEADER_BYTES_V1,
        _ => RECORD_HEADER_BYTES,
    };
    let mut out = Vec::new();
    let mut at = SEGMENT_HEADER_BYTES;
    while at + header <= segment.len() {
        let len = u32::from_le_bytes(segment[at..at + 4].try_into().expect("4 bytes")) as usize;
        if at + header + len > segment.len() {
            break;
        }
        out.push((at, header, len));
        at += header + len;
    }
    out
}

pub(crate) fn segment_header(node: NodeId) -> Vec<u8> {
    let mut out = Vec::with_capacity(SEGMENT_HEADER_BYTES);
    out.extend_from_slice(SEGMENT_MAGIC);
    out.extend_from_slice(&STORAGE_FORMAT.to_le_bytes());
    out.extend_from_slice(&node.to_le_bytes());
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// The slot a record is about (promises are about none).
pub(super) fn record_slot(record: &Record) -> Option<Slot> {
    match record {
        Record::Promise(_) => None,
        Record::Accept { slot, .. }
        | Record::Chosen { slot, .. }
        | Record::Decision { slot, .. } => Some(*slot),
    }
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DataDir { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn member_path(&self) -> PathBuf {
        self.root.join("member")
    }

    pub(super) fn wal_dir(&self) -> PathBuf {
        self.root.join("wal")
    }

    fn snap_dir(&self) -> PathBuf {
        self.root.join("snap")
    }

    pub(super) fn segment_path(&self, n: u64) -> PathBuf {
        self.wal_dir().join(format!("{n:020}.wal"))
    }

    /// Whether this dir already holds a member (a restart rather than a first start).
    pub fn exists(&self) -> bool {
        self.member_path().exists()
    }

    /// Makes a fresh data dir for `member`; refuses a dir that holds files already.
    pub fn create(&self, member: &MemberFile) -> Result<(), StorageError> {
        fs::create_dir_all(&self.root).map_err(io(&self.root))?;
        let nonempty = fs::read_dir(&self.root)
            .map_err(io(&self.root))?
            .next()
            .is_some();
        if nonempty {
            return Err(StorageError::Foreign {
                path: self.root.clone(),
                what: "not empty and not a concoord data dir (no member file); \
                       give an empty or new directory"
                    .into(),
            });
        }
        for dir in [self.wal_dir(), self.snap_dir()] {
            fs::create_dir_all(&dir).map_err(io(&dir))?;
        }
        self.write_member(member)
    }

    pub fn write_member(&self, member: &MemberFile) -> Result<(), StorageError> {
        let payload = rmp_serde::to_vec(member).expect("member files serialize");
        write_atomically(&self.member_path(), &frame(MEMBER_MAGIC, &payload))
    }

    pub fn read_member(&self) -> Result<MemberFile, StorageError> {
        let path = self.member_path();
        let bytes = read_file(&path)?;
        let payload = unframe(&path, MEMBER_MAGIC, &bytes)?;
        rmp_serde::from_slice(payload).map_err(|e| StorageError::Corrupt {
            path,
            what: format!("cannot decode: {e}"),
        })
    }

    /// Writes a snapshot durably, then forgets all but the newest two.
    pub fn write_snapshot(
        &self,
        group: u64,
        node: NodeId,
        snapshot: &Snapshot,
    ) -> Result<(), StorageError> {
        self.write_snapshot_bytes(snapshot.executed, &encode_snapshot(group, node, snapshot))
    }

    /// [`Self::write_snapshot`] of a snapshot already encoded with [`encode_snapshot`].
    pub fn write_snapshot_bytes(&self, slot: Slot, payload: &[u8]) -> Result<(), StorageError> {
        let path = self.snap_dir().join(format!("{slot:020}.snap"));
        write_atomically(&path, &frame(SNAPSHOT_MAGIC, payload))?;
        let all = numbered(&self.snap_dir(), "snap")?;
        for (_, old) in all.iter().rev().skip(2) {
            fs::remove_file(old).map_err(io(old))?;
        }
        Ok(())
    }

    fn read_snapshot(&self, path: &Path, member: &MemberFile) -> Result<Snapshot, StorageError> {
        decode_snapshot_file(path, &read_file(path)?, member)
    }

    /// Reads everything back. A torn tail of the newest segment is cut off
    /// (on disk too, so it is not mistaken for damage later); anything else
    /// that does not check out is an error and nothing is changed.
    pub fn recover(&self) -> Result<Recovered, StorageError> {
        let member = self.read_member()?;
        let snap_dir = self.snap_dir();
        let mut snapshot = None;
        if let Some((_, path)) = numbered(&snap_dir, "snap")?.last() {
            snapshot = Some(self.read_snapshot(path, &member)?);
        }
        let segments = numbered(&self.wal_dir(), "wal")?;
        let (mut recovered, cut) = recover_from(member, snapshot, segments, read_file)?;
        if let Some((path, good)) = cut {
            log::warn!(
                "{}: the last write was cut short; dropping {} bytes after offset {good}",
                path.display(),
                fs::metadata(&path).map(|m| m.len()).unwrap_or(0) - good as u64
            );
            if good < SEGMENT_HEADER_BYTES {
                fs::remove_file(&path).map_err(io(&path))?;
                recovered.segments.retain(|s| s.path != path);
            } else {
                let file = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(io(&path))?;
                file.set_len(good as u64).map_err(io(&path))?;
                file.sync_all().map_err(io(&path))?;
            }
        }
        Ok(recovered)
    }
}

/// The heart of [`DataDir::recover`], on any source of segment bytes (the
/// simulator's disk keeps them in memory): reads `segments` (numbered,
/// oldest first) with `read`, one at a time, and folds their records.
/// Returns what they hold and, for a torn last write, the segment and the
/// offset it must be cut at; any other damage is an error.
pub(crate) fn recover_from(
    member: MemberFile,
    snapshot: Option<Snapshot>,
    segments: Vec<(u64, PathBuf)>,
    mut read: impl FnMut(&Path) -> Result<Vec<u8>, StorageError>,
) -> Result<(Recovered, Option<(PathBuf, usize)>), StorageError> {
    let mut recovered = Recovered {
        member,
        snapshot,
        promised: Ballot::ZERO,
        accepted: BTreeMap::new(),
        decided: BTreeMap::new(),
        torn_tail: false,
        next_segment: segments.last().map_or(0, |(n, _)| n + 1),
        segments: Vec::new(),
    };
    let mut cut = None;
    for (i, (n, path)) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        let bytes = read(path)?;
        let read = read_segment(path, &bytes, recovered.member.node, last)?;
        recovered.segments.push(SegmentInfo {
            number: *n,
            path: path.clone(),
            max_slot: read.max_slot,
        });
        for record in read.records {
            recovered.apply(record);
        }
        if let Some(good) = read.torn_at {
            recovered.torn_tail = true;
            cut = Some((path.clone(), good));
        }
    }
    recovered.trim();
    Ok((recovered, cut))
}

/// A snapshot file's bytes for `payload` (from [`encode_snapshot`]).
pub(crate) fn snapshot_file_bytes(payload: &[u8]) -> Vec<u8> {
    frame(SNAPSHOT_MAGIC, payload)
}

/// Reads a snapshot file's bytes back, checking its frame and that it is
/// `member`'s; `path` names it in errors.
pub(crate) fn decode_snapshot_file(
    path: &Path,
    bytes: &[u8],
    member: &MemberFile,
) -> Result<Snapshot, StorageError> {
    let payload = unframe(path, SNAPSHOT_MAGIC, bytes)?;
    let file: SnapshotFile = rmp_serde::from_slice(payload).map_err(|e| StorageError::Corrupt {
        path: path.to_path_buf(),
        what: format!("cannot decode: {e}"),
    })?;
    if file.node != member.node || (member.group != 0 && file.group != member.group) {
        return Err(StorageError::Foreign {
            path: path.to_path_buf(),
            what: format!(
                "a snapshot of member {:x} in group {:x}; this data dir is member {:x} of group {:x}",
                file.node, file.group, member.node, member.group
            ),
        });
    }
    Ok(file.snapshot)
}

/// Encodes a snapshot for [`DataDir::write_snapshot_bytes`].
pub fn encode_snapshot(group: u64, node: NodeId, snapshot: &Snapshot) -> Vec<u8> {
    rmp_serde::to_vec(&SnapshotFileRef {
        group,
        node,
        snapshot,
    })
    .expect("snapshots serialize")
}

struct SegmentRead {
    records: Vec<Record>,
    max_slot: Option<Slot>,
    /// Where a torn tail starts (only in the newest segment).
    torn_at: Option<usize>,
}

fn read_segment(
    path: &Path,
    bytes: &[u8],
    node: NodeId,
    last: bool,
) -> Result<SegmentRead, StorageError> {
    let corrupt = |what: String| StorageError::Corrupt {
        path: path.to_path_buf(),
        what,
    };
    if bytes.len() < SEGMENT_HEADER_BYTES {
        if last && SEGMENT_MAGIC.starts_with(&bytes[..bytes.len().min(8)]) {
            // Created but its header never fully written.
            return Ok(SegmentRead::of(Vec::new(), Some(0)));
        }
        return Err(corrupt("shorter than a segment header".into()));
    }
    if &bytes[..8] != SEGMENT_MAGIC {
        return Err(StorageError::NotOurs {
            path: path.to_path_buf(),
        });
    }
    let header_crc = u32::from_le_bytes(bytes[20..24].try_into().expect("4 bytes"));
    if crc32fast::hash(&bytes[..20]) != header_crc {
        return Err(corrupt("segment header checksum mismatch".into()));
    }
    let format = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    let parse: fn(&[u8]) -> Frame = match format {
        1 => frame_v1,
        2 => frame_v2,
        _ => {
            return Err(StorageError::UnknownFormat {
                path: path.to_path_buf(),
                found: format,
            })
        }
    };
    let owner = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes"));
    if owner != node {
        return Err(StorageError::Foreign {
            path: path.to_path_buf(),
            what: format!("a log segment of member {owner:x}; this data dir is member {node:x}"),
        });
    }
    let mut records = Vec::new();
    let mut at = SEGMENT_HEADER_BYTES;
    while at < bytes.len() {
        let damaged = |why: &str| corrupt(format!("record at offset {at}: {why}"));
        match parse(&bytes[at..]) {
            Frame::Whole { payload, next } => {
                match rmp_serde::from_slice::<Record>(payload) {
                    Ok(record) => records.push(record),
                    Err(e) => return Err(damaged(&format!("cannot decode: {e}"))),
                }
                at += next;
            }
            // Only the newest segment is written to when a process dies.
            Frame::Torn(_) if last => return Ok(SegmentRead::of(records, Some(at))),
            Frame::Torn(why) | Frame::Damaged(why) => return Err(damaged(why)),
        }
    }
    Ok(SegmentRead::of(records, None))
}

/// What the bytes at a record's offset (to the end of the segment) hold.
enum Frame<'a> {
    /// A record that checks out; the next starts `next` bytes on.
    Whole { payload: &'a [u8], next: usize },
    /// What a torn last write can leave: cut off there in the newest
    /// segment, damage in an older one.
    Torn(&'static str),
    /// What no torn write leaves.
    Damaged(&'static str),
}

/// Whether `rest` (from a record that fails a check to the end of the
/// file) could be a write that never reached the disk rather than damage:
/// after the failed part `after`, only zeros to the end, the last byte a
/// zero. A file system may extend the file before its data blocks are
/// written, and a crash then leaves zeros there.
fn zero_filled(rest: &[u8], after: usize) -> bool {
    rest.last() == Some(&0) && rest[after.min(rest.len())..].iter().all(|b| *b == 0)
}

/// Format 1: `length | CRC32(payload) | payload`. A length past the end of
/// the file is taken for a torn write, whether it was cut short or damaged:
/// format 1 cannot tell them apart (format 2 can), so its old rules stay.
fn frame_v1(rest: &[u8]) -> Frame<'_> {
    if rest.len() < RECORD_HEADER_BYTES_V1 {
        return Frame::Torn("cut short");
    }
    let len = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
    let end = RECORD_HEADER_BYTES_V1 + len;
    if len > RECORD_MAX_BYTES || end > rest.len() {
        return Frame::Torn("cut short");
    }
    let payload = &rest[RECORD_HEADER_BYTES_V1..end];
    if crc32fast::hash(payload) != crc {
        // The final record, or followed by nothing but zeros: a torn last write.
        if rest[end..].iter().all(|b| *b == 0) {
            return Frame::Torn("checksum mismatch");
        }
        return Frame::Damaged("checksum mismatch");
    }
    Frame::Whole { payload, next: end }
}

/// Format 2: `length | CRC32(payload) | CRC32(those 8 bytes) | payload`.
///
/// The assumption about a crash: the last write (the writer puts each group
/// of records in one write, then fdatasyncs) persists as a prefix of its
/// bytes, the rest of it lost or, where the file was extended first, zeros;
/// no byte is invented. So a torn write can leave a header cut short, or a
/// whole header, which then checks out, with its payload cut short; a whole
/// header that fails its check is damage, unless all from it on is the
/// zeros of an unwritten extension (the one ambiguity left: zeros from a
/// record on to the end of the newest segment are dropped, though damage
/// could in principle zero them). A device that tears writes otherwise
/// (sectors out of order, stale data) gets its start refused, never served
/// from a log missing what it acknowledged.
fn frame_v2(rest: &[u8]) -> Frame<'_> {
    if rest.len() < RECORD_HEADER_BYTES {
        return Frame::Torn("cut short");
    }
    let len = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
    let header_crc = u32::from_le_bytes(rest[8..12].try_into().expect("4 bytes"));
    if crc32fast::hash(&rest[..8]) != header_crc {
        if zero_filled(rest, RECORD_HEADER_BYTES) {
            return Frame::Torn("header checksum mismatch");
        }
        return Frame::Damaged("header checksum mismatch (its length is not to be trusted)");
    }
    if len > RECORD_MAX_BYTES {
        return Frame::Damaged("length beyond any record");
    }
    let end = RECORD_HEADER_BYTES + len;
    if end > rest.len() {
        // The header checks out: the payload was cut short.
        return Frame::Torn("cut short");
    }
    let payload = &rest[RECORD_HEADER_BYTES..end];
    if crc32fast::hash(payload) != crc {
        if zero_filled(rest, end) {
            return Frame::Torn("checksum mismatch");
        }
        return Frame::Damaged("checksum mismatch");
    }
    Frame::Whole { payload, next: end }
}

impl SegmentRead {
    fn of(records: Vec<Record>, torn_at: Option<usize>) -> Self {
        let max_slot = records.iter().filter_map(record_slot).max();
        SegmentRead {
            records,
            max_slot,
            torn_at,
        }
    }
}
