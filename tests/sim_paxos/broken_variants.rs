//! Deliberately broken variants the scenarios must catch: the evidence the
//! checks can fail.

use crate::basic::leader_deaf;
use crate::durable::{
    damaged_disk, damaging, slow_disk, whole_group_restart, whole_group_restart_checked,
};
use crate::helpers::assert_caught;
use crate::reads::reads_leader_isolated;
use concoord_actors::sim::{SimDurability, SimReads};

/// The evidence that the checks above can fail: a deliberately broken read
/// path (a node that believes it leads answers at once, with no read-index
/// round) must be caught by the isolated-leader scenario on most seeds.
#[test]
fn reads_without_a_read_index_round_are_caught() {
    let seeds: Vec<u64> = (1..=20).collect();
    let caught: Vec<(u64, String)> = seeds
        .iter()
        .filter_map(|seed| {
            reads_leader_isolated(*seed, 3, SimReads::Unconfirmed)
                .err()
                .map(|why| (*seed, why))
        })
        .collect();
    eprintln!(
        "the broken read path was caught on {} of {} seeds; the first: {:?}",
        caught.len(),
        seeds.len(),
        caught
            .first()
            .map(|(seed, why)| (seed, why.lines().take(3).collect::<Vec<_>>().join(" / ")))
    );
    assert!(
        caught.len() * 2 >= seeds.len(),
        "the broken read path was caught on only {} of {} seeds: {caught:?}",
        caught.len(),
        seeds.len()
    );
    // The same seeds pass with the read index.
    for (seed, _) in caught {
        reads_leader_isolated(seed, 3, SimReads::ReadIndex)
            .unwrap_or_else(|e| panic!("seed {seed} fails with the read index too: {e}"));
    }
}

/// Without check-quorum the same one-way cut stalls the group: the
/// scenario above really depends on the deaf leader stepping down.
#[test]
fn a_deaf_leader_without_check_quorum_stalls_the_group() {
    let stalled = (1..=10)
        .filter(|seed| leader_deaf(*seed, 3, false).is_err())
        .count();
    assert!(
        stalled >= 8,
        "only {stalled} of 10 seeds stalled without check-quorum"
    );
}

/// Broken on purpose: durable nodes that send Promise and Accepted before
/// their records are synced. A whole-group crash on a slow disk loses the
/// unsynced writes; the restarted nodes have forgotten what they
/// acknowledged, and with it chosen values: the end-to-end checks alone
/// see slots decided twice and lost grants.
#[test]
fn acknowledging_before_sync_is_caught() {
    let broken = || SimDurability {
        broken_ack_before_sync: true,
        torn_percent: 0,
        ..slow_disk()
    };
    assert_caught("acknowledging_before_sync_is_caught", 10, 8, |seed| {
        whole_group_restart(seed, 3, broken())
    });
    assert_caught(
        "acknowledging_before_sync_is_caught end to end",
        20,
        10,
        |seed| whole_group_restart_checked(seed, 3, broken(), false),
    );
}

/// Broken on purpose: a recovery that takes a damaged record in the
/// middle of the log for a torn tail and serves from what precedes it.
#[test]
fn recovery_that_trusts_damage_is_caught() {
    assert_caught("recovery_that_trusts_damage_is_caught", 10, 8, |seed| {
        damaged_disk(
            seed,
            3,
            SimDurability {
                broken_trust_damage: true,
                ..damaging()
            },
        )
    });
}

/// A follower that answers reads from its own state without asking the
/// leader for a read index answers stale after it lagged: the lagging-
/// follower scenario must catch it on most seeds.
#[test]
fn follower_reads_without_a_read_index_are_caught() {
    assert_caught(
        "follower_reads_without_a_read_index_are_caught",
        10,
        5,
        |seed| crate::follower_reads::lagging_follower(seed, 3, SimReads::FollowerUnconfirmed),
    );
}
