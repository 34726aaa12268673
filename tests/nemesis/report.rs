//! What a run found, and the table that reports it.

use super::faults::{Fault, FAULTS};
use super::load::CliOutcome;
use super::Config;
use concoord::history::History;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

#[derive(Default)]
pub struct Counts {
    pub ok: usize,
    pub fail: usize,
    pub info: usize,
}

impl Counts {
    pub fn of(history: &History) -> Counts {
        let mut c = Counts::default();
        for op in history.operations() {
            if op.is_ok() {
                c.ok += 1;
            } else if op.is_fail() {
                c.fail += 1;
            } else {
                c.info += 1;
            }
        }
        c
    }
}

#[derive(Default)]
pub struct RunReport {
    pub seed: u64,
    pub counter_ops: Counts,
    pub lock_ops: Counts,
    pub faults: BTreeMap<Fault, u64>,
    pub at_leader: u64,
    pub skipped: u64,
    pub client_calls: BTreeMap<CliOutcome, u64>,
    pub notes: Vec<String>,
    pub anomalies: Vec<String>,
    pub unknown: Vec<String>,
    pub slow_recoveries: usize,
    pub longest_recovery: Duration,
    pub final_value: Option<i64>,
    pub lock_acquired: usize,
}

pub fn dump(history: &History, what: &str, seed: u64) -> String {
    let dir = std::env::temp_dir();
    let path = dir.join(format!("concoord-nemesis-{what}-{seed}.json"));
    match std::fs::write(&path, history.to_json()) {
        Ok(()) => path.display().to_string(),
        Err(e) => format!("(could not write {}: {e})", path.display()),
    }
}

pub fn table(config: &Config, reports: &[RunReport], net_reason: &Option<String>) -> String {
    let mut t = String::new();
    let total = |f: &dyn Fn(&RunReport) -> usize| reports.iter().map(f).sum::<usize>();
    let fault = |k: Fault| {
        reports
            .iter()
            .map(|r| r.faults.get(&k).copied().unwrap_or(0))
            .sum::<u64>()
    };
    let _ = writeln!(
        t,
        "\n== concoord nemesis: seed {}, {} replicas per group (Counter + Lock), {} Counter clients + {} Lock clients, {} s of load ==",
        config.seed,
        config.replicas,
        config.clients,
        (config.clients / 2).max(2),
        config.secs
    );
    let _ = writeln!(t, "| measure | count |\n|---|---|");
    let mut row = |k: &str, v: String| {
        let _ = writeln!(t, "| {k} | {v} |");
    };
    row("runs", reports.len().to_string());
    row(
        "Counter operations (ok / fail / info)",
        format!(
            "{} / {} / {}",
            total(&|r| r.counter_ops.ok),
            total(&|r| r.counter_ops.fail),
            total(&|r| r.counter_ops.info)
        ),
    );
    row(
        "Lock operations (ok / fail / info)",
        format!(
            "{} / {} / {}",
            total(&|r| r.lock_ops.ok),
            total(&|r| r.lock_ops.fail),
            total(&|r| r.lock_ops.info)
        ),
    );
    row(
        "Lock acquisitions granted",
        total(&|r| r.lock_acquired).to_string(),
    );
    for k in FAULTS {
        let v = if k.needs_net() && net_reason.is_some() {
            "0 (skipped: no iptables)".to_string()
        } else {
            fault(k).to_string()
        };
        row(&format!("faults: {}", k.label()), v);
    }
    if let Some(why) = net_reason {
        row(
            "faults skipped (no iptables)",
            format!("{}: {why}", reports.iter().map(|r| r.skipped).sum::<u64>()),
        );
    }
    let calls = |k: CliOutcome| {
        reports
            .iter()
            .map(|r| r.client_calls.get(&k).copied().unwrap_or(0))
            .sum::<u64>()
    };
    row(
        "killed-client calls (killed mid-call / finished / failed)",
        format!(
            "{} / {} / {}",
            calls(CliOutcome::Killed),
            calls(CliOutcome::Done),
            calls(CliOutcome::Failed)
        ),
    );
    row(
        "faults aimed at the leader",
        reports.iter().map(|r| r.at_leader).sum::<u64>().to_string(),
    );
    row(
        "recoveries slower than 20 s",
        total(&|r| r.slow_recoveries).to_string(),
    );
    row(
        "longest recovery",
        format!(
            "{:.1?}",
            reports
                .iter()
                .map(|r| r.longest_recovery)
                .max()
                .unwrap_or_default()
        ),
    );
    row(
        "anomalies (expected 0)",
        total(&|r| r.anomalies.len()).to_string(),
    );
    row(
        "membership notes (removal not done, removed replica lingering)",
        total(&|r| r.notes.len()).to_string(),
    );
    row(
        "checker results Unknown",
        total(&|r| r.unknown.len()).to_string(),
    );
    for (i, r) in reports.iter().enumerate() {
        let _ = writeln!(
            t,
            "run {i}: seed {} final counter {:?}{}",
            r.seed,
            r.final_value,
            if r.unknown.is_empty() {
                String::new()
            } else {
                format!("; unknown: {:?}", r.unknown)
            }
        );
    }
    t
}
