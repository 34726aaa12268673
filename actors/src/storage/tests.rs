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
    Arc::new(vec![Command::Noop; n])
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

#[test]
fn a_record_cut_short_at_the_end_is_dropped_and_cut_off() {
    for (name, tail) in [
        ("torn-header", vec![9u8, 0, 0]),
        ("torn-payload", {
            let mut t = 300u32.to_le_bytes().to_vec();
            t.extend_from_slice(&[0xab; 10]);
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
fn a_bad_last_record_is_torn_but_a_bad_middle_record_is_damage() {
    let (dir, path) = dir_with("last-bad", &accepts(4));
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n - 2] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let r = dir.recover().unwrap();
    assert_eq!((r.accepted.len(), r.torn_tail), (3, true));
    let _ = std::fs::remove_dir_all(dir.root());

    let (dir, path) = dir_with("middle-bad", &accepts(4));
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[files::SEGMENT_HEADER_BYTES + files::RECORD_HEADER_BYTES + 2] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let before = std::fs::read(&path).unwrap();
    let err = dir.recover().unwrap_err();
    assert!(
        matches!(&err, StorageError::Corrupt { what, .. } if what.contains("checksum")),
        "{err}"
    );
    assert!(
        err.to_string().contains("00000000000000000000.wal"),
        "{err}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), before, "nothing changed");
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
