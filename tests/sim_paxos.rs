//! Multi-Paxos under a faulty in-memory network, deterministically simulated.
//!
//! Every scenario runs many seeds (`CONCOORD_SIM_SEEDS`, default 200, and
//! fewer for the heavier session scenarios); a failure names its seed, and
//! `CONCOORD_SIM_SEED=N` replays exactly that run.
//!
//! The scenarios live in `tests/sim_paxos/`, one file per concept (a crate
//! root looks for its modules beside it, so each is named by path).

#[path = "sim_paxos/basic.rs"]
mod basic;
#[path = "sim_paxos/broken_variants.rs"]
mod broken_variants;
#[path = "sim_paxos/durable.rs"]
mod durable;
#[path = "sim_paxos/follower_reads.rs"]
mod follower_reads;
#[path = "sim_paxos/helpers.rs"]
mod helpers;
#[path = "sim_paxos/membership.rs"]
mod membership;
#[path = "sim_paxos/reads.rs"]
mod reads;
#[path = "sim_paxos/sessions.rs"]
mod sessions;
#[path = "sim_paxos/thrifty.rs"]
mod thrifty;
