//! Reading a data dir back: torn tails, damage, and how records fold.

use super::*;
use crate::message::Command;
use std::sync::Arc;

fn temp_dir(name: &str) -> DataDir {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!(
        "concoord-storage-{name}-{}-{n}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&path);
    DataDir::new(path)
}

fn batch(n: usize) -> Batch {
    Arc::new(vec![Command::Noop; n].into())
}

fn ballot(round: u64) -> Ballot {
    Ballot::new(round, 7)
}

const NODE: u64 = 7;

/// A data dir with one segment holding `records` (after the writer's own
/// opening promise); returns the segment's path.
fn dir_with(name: &str, records: &[Record]) -> (DataDir, PathBuf) {
    let dir = temp_dir(name);
    dir.create(&MemberFile {
        node: NODE,
        group: NODE,
        addr: "127.0.0.1:1".into(),
    })
    .unwrap();
    let path = dir.segment_path(0);
    let mut bytes = files::segment_header(NODE);
    for r in records {
        files::encode_record(r, &mut bytes);
    }
    std::fs::write(&path, bytes).unwrap();
    (dir, path)
}

fn accepts(n: u64) -> Vec<Record> {
    (0..n)
        .map(|slot| Record::Accept {
            slot,
            ballot: ballot(1),
            batch: batch(1),
        })
        .collect()
}

#[test]
fn records_fold_into_promise_accepted_and_decided() {
    let (dir, _) = dir_with(
        "fold",
        &[
            Record::Promise(ballot(1)),
            Record::Accept {
                slot: 0,
                ballot: ballot(1),
                batch: batch(1),
            },
            Record::Accept {
                slot: 1,
                ballot: ballot(1),
                batch: batch(2),
            },
            Record::Chosen {
                slot: 0,
                ballot: ballot(1),
            },
            // Chosen at a higher ballot than this acceptor accepted: its
            // value may be another, so the slot is not taken as decided.
            Record::Chosen {
                slot: 1,
                ballot: ballot(2),
            },
            Record::Decision {
                slot: 2,
                batch: batch(3),
            },
            Record::Promise(ballot(3)),
        ],
    );
    let r = dir.recover().unwrap();
    assert_eq!(r.promised, ballot(3));
    assert_eq!(r.accepted.len(), 2);
    assert_eq!(r.decided.keys().copied().collect::<Vec<_>>(), vec![0, 2]);
    assert_eq!(r.decided[&2].len(), 3);
    assert!(!r.torn_tail);
    let _ = std::fs::remove_dir_all(dir.root());
}

/// One record as the writer encodes it.
fn encoded(record: &Record) -> Vec<u8> {
    let mut out = Vec::new();
    files::encode_record(record, &mut out);
    out
}

/// Recovery of `dir` fails with damage that names `path` and says `why`,
/// and leaves the segment as it was.
fn assert_refused(dir: &DataDir, path: &std::path::Path, why: &str) {
    let before = std::fs::read(path).unwrap();
    let err = dir.recover().unwrap_err();
    assert!(
        matches!(&err, StorageError::Corrupt { what, .. } if what.contains(why)),
        "{why}: {err}"
    );
    let name = path.file_name().unwrap().to_string_lossy().to_string();
    assert!(err.to_string().contains(&name), "{err}");
    assert_eq!(std::fs::read(path).unwrap(), before, "nothing changed");
}

#[test]
fn a_record_cut_short_at_the_end_is_dropped_and_cut_off() {
    let last = encoded(&Record::Accept {
        slot: 5,
        ballot: ballot(1),
        batch: batch(3),
    });
    let h = files::RECORD_HEADER_BYTES;
    for (name, tail) in [
        ("torn-header", last[..3].to_vec()),
        ("torn-header-all-but-one", last[..h - 1].to_vec()),
        ("torn-payload", last[..h + (last.len() - h) / 2].to_vec()),
        ("torn-payload-header-only", last[..h].to_vec()),
        ("torn-payload-all-but-one", last[..last.len() - 1].to_vec()),
        // Extended by the file system but never written.
        ("zero-filled", vec![0; 40]),
        ("zero-filled-header-only", vec![0; h]),
        ("zero-filled-after-header", {
            let mut t = last[..h].to_vec();
            t.resize(last.len() + 5, 0);
            t
        }),
        ("zero-filled-within-header", {
            let mut t = last[..5].to_vec();
            t.resize(h + 20, 0);
            t
        }),
    ] {
        let (dir, path) = dir_with(name, &accepts(5));
        let good = std::fs::metadata(&path).unwrap().len();
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(&tail);
        std::fs::write(&path, &bytes).unwrap();
        let r = dir.recover().unwrap();
        assert_eq!(r.accepted.len(), 5, "{name}: the records before it stay");
        assert!(r.torn_tail, "{name}");
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            good,
            "{name}: the torn bytes are cut off on disk"
        );
        // Read again: nothing torn any more.
        assert!(!dir.recover().unwrap().torn_tail, "{name}");
        let _ = std::fs::remove_dir_all(dir.root());
    }
}

#[test]
fn a_damaged_length_field_is_refused_even_in_the_newest_segment() {
    // Every bit of the length of a record followed by others, in the
    // newest segment: most make it point past the end of the file, where a
    // torn write would end. Format 1 dropped the records after it.
    for bit in 0..32 {
        let (dir, path) = dir_with("length", &accepts(4));
        let mut bytes = std::fs::read(&path).unwrap();
        let (at, _, _) = files::record_frames(&bytes)[1];
        bytes[at + bit / 8] ^= 1 << (bit % 8);
        std::fs::write(&path, &bytes).unwrap();
        assert_refused(&dir, &path, "header checksum mismatch");
        let _ = std::fs::remove_dir_all(dir.root());
    }
    // The last record's length, its payload there: not a torn write either.
    let (dir, path) = dir_with("last-length", &accepts(4));
    let mut bytes = std::fs::read(&path).unwrap();
    let (at, _, _) = *files::record_frames(&bytes).last().unwrap();
    bytes[at + 2] ^= 0x10;
    std::fs::write(&path, &bytes).unwrap();
    assert_refused(&dir, &path, "header checksum mismatch");
    let _ = std::fs::remove_dir_all(dir.root());
}

#[test]
fn a_damaged_whole_record_is_refused_last_or_not() {
    // The last record whole, a payload bit flipped: a torn write leaves no
    // whole record with wrong bytes (it keeps a prefix, or zeros).
    let (dir, path) = dir_with("last-bad", &accepts(4));
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n - 2] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    assert_refused(&dir, &path, "checksum mismatch");
    let _ = std::fs::remove_dir_all(dir.root());

    // The payload's checksum field: the header check covers it.
    let (dir, path) = dir_with("last-crc", &accepts(4));
    let mut bytes = std::fs::read(&path).unwrap();
    let (at, _, _) = *files::record_frames(&bytes).last().unwrap();
    bytes[at + 5] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    assert_refused(&dir, &path, "header checksum mismatch");
    let _ = std::fs::remove_dir_all(dir.root());

    let (dir, path) = dir_with("middle-bad", &accepts(4));
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[files::SEGMENT_HEADER_BYTES + files::RECORD_HEADER_BYTES + 2] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    assert_refused(&dir, &path, "checksum mismatch");
    let _ = std::fs::remove_dir_all(dir.root());
}

/// A segment as the previous release (format 1) wrote it, framed by hand:
/// `length | CRC32(payload) | payload` after a header naming format 1.
fn format_1_segment(node: u64, records: &[Record]) -> Vec<u8> {
    format_n_segment(1, node, records)
}

fn format_n_segment(format: u32, node: u64, records: &[Record]) -> Vec<u8> {
    let mut out = files::SEGMENT_MAGIC.to_vec();
    out.extend_from_slice(&format.to_le_bytes());
    out.extend_from_slice(&node.to_le_bytes());
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    for r in records {
        let payload = rmp_serde::to_vec(r).unwrap();
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        out.extend_from_slice(&payload);
    }
    out
}

#[test]
fn a_format_1_log_is_read_with_its_old_rules_and_followed_by_format_2() {
    let (dir, path) = dir_with("format-1", &[]);
    let mut old = format_1_segment(NODE, &accepts(3));
    let good = old.len() as u64;
    // Format 1's torn tail: a length past the end of the file.
    old.extend_from_slice(&500u32.to_le_bytes());
    old.extend_from_slice(&[7; 20]);
    std::fs::write(&path, &old).unwrap();
    let r = dir.recover().unwrap();
    assert_eq!(r.accepted.len(), 3);
    assert!(r.torn_tail);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), good, "cut off");
    assert_eq!(r.next_segment, 1);

    // The restarted writer goes on in a new segment, in format 2.
    let mut new = files::segment_header(NODE);
    assert_eq!(new[8..12], STORAGE_FORMAT.to_le_bytes());
    for r in [
        Record::Promise(ballot(2)),
        Record::Accept {
            slot: 3,
            ballot: ballot(2),
            batch: batch(2),
        },
    ] {
        files::encode_record(&r, &mut new);
    }
    std::fs::write(dir.segment_path(1), new).unwrap();
    let r = dir.recover().unwrap();
    assert_eq!(r.accepted.keys().copied().collect::<Vec<_>>(), [0, 1, 2, 3]);
    assert_eq!(r.promised, ballot(2));
    assert!(!r.torn_tail);

    // Damage in a format-1 segment is still refused.
    let mut damaged = format_1_segment(NODE, &accepts(3));
    damaged[files::SEGMENT_HEADER_BYTES + files::RECORD_HEADER_BYTES_V1 + 1] ^= 0x40;
    std::fs::write(&path, &damaged).unwrap();
    assert_refused(&dir, &path, "checksum mismatch");
    let _ = std::fs::remove_dir_all(dir.root());
}

#[test]
fn an_unknown_segment_format_is_refused() {
    let (dir, path) = dir_with("format-3", &[]);
    std::fs::write(&path, format_n_segment(3, NODE, &accepts(1))).unwrap();
    let err = dir.recover().unwrap_err();
    assert!(
        matches!(err, StorageError::UnknownFormat { found: 3, .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("00000000000000000000.wal"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(dir.root());
}

#[test]
fn a_torn_record_in_an_older_segment_is_damage() {
    let (dir, path) = dir_with("older-torn", &accepts(3));
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(&[1, 2, 3]);
    std::fs::write(&path, &bytes).unwrap();
    let mut newer = files::segment_header(NODE);
    files::encode_record(&Record::Promise(ballot(1)), &mut newer);
    std::fs::write(dir.segment_path(1), newer).unwrap();
    assert!(matches!(dir.recover(), Err(StorageError::Corrupt { .. })));
    let _ = std::fs::remove_dir_all(dir.root());
}

#[test]
fn another_members_segment_is_refused() {
    let (dir, _) = dir_with("foreign", &accepts(1));
    let mut theirs = files::segment_header(NODE + 1);
    files::encode_record(&Record::Promise(ballot(1)), &mut theirs);
    std::fs::write(dir.segment_path(1), theirs).unwrap();
    let err = dir.recover().unwrap_err();
    assert!(matches!(err, StorageError::Foreign { .. }), "{err}");
    let _ = std::fs::remove_dir_all(dir.root());
}

/// The records' bytes on disk are what the builds before batches kept their
/// encoding wrote (an array of commands), so old logs read and new logs are
/// the same format.
#[test]
fn records_with_batches_keep_their_old_bytes_and_reuse_the_cached_encoding() {
    #[derive(Serialize)]
    enum OldRecord {
        #[allow(dead_code)]
        Promise(Ballot),
        Accept {
            slot: Slot,
            ballot: Ballot,
            batch: Arc<Vec<Command>>,
        },
        #[allow(dead_code)]
        Chosen { slot: Slot, ballot: Ballot },
        Decision {
            slot: Slot,
            batch: Arc<Vec<Command>>,
        },
    }
    let b = batch(3);
    let old = |record: &OldRecord| rmp_serde::to_vec(record).unwrap();
    let new = |record: &Record| {
        let mut out = Vec::new();
        files::write_payload(record, &mut out);
        out
    };
    let commands = Arc::new(b.to_vec());
    let accept = Record::Accept {
        slot: 4,
        ballot: ballot(2),
        batch: b.clone(),
    };
    let decision = Record::Decision {
        slot: 5,
        batch: b.clone(),
    };
    let old_accept = old(&OldRecord::Accept {
        slot: 4,
        ballot: ballot(2),
        batch: commands.clone(),
    });
    let old_decision = old(&OldRecord::Decision {
        slot: 5,
        batch: commands,
    });
    assert_eq!(new(&accept), old_accept);
    assert_eq!(new(&decision), old_decision);
    assert_eq!(rmp_serde::to_vec(&accept).unwrap(), old_accept);
    assert_eq!(
        rmp_serde::from_slice::<Record>(&old_accept).unwrap(),
        accept
    );
    assert_eq!(
        rmp_serde::from_slice::<Record>(&old_decision).unwrap(),
        decision
    );
    // Written from the batch's cached encoding, made once.
    let cached = b.encoded().as_ptr();
    new(&accept);
    assert_eq!(b.encoded().as_ptr(), cached);
}
