//! A stable-toolchain fuzz driver: `drive TARGET SECS [SEED]` feeds seeded
//! random and mutated inputs to a target for a bounded time, with no coverage
//! feedback. Inputs that panic are saved under `fuzz/artifacts/TARGET/`.
//! `drive seeds TARGET DIR` writes the target's hand-made seeds into DIR (a
//! libFuzzer corpus). Starting inputs: those seeds plus `fuzz/corpus/TARGET/*`.

use std::collections::BTreeSet;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// splitmix64: small, seedable, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

const MAX_LEN: usize = 4096;
const INTERESTING: &[u8] = &[
    0, 1, 0x7f, 0x80, 0xff, 0xc0, 0xc1, 0x90, 0x91, 0x92, 0x9f, 0xdc, 0xdd, 0xde, 0xdf, 0xa0, 0xd9,
    0xc4, 0xcf, 0xd3,
];

fn mutate(rng: &mut Rng, input: &[u8], pool: &[Vec<u8>]) -> Vec<u8> {
    if rng.below(10) == 0 {
        let n = rng.below(256);
        return rng.bytes(n);
    }
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(6) {
        let len = out.len();
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.below(len);
                out[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                out[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            2 if len > 0 => {
                let i = rng.below(len);
                out[i] = rng.next() as u8;
            }
            3 => {
                let i = rng.below(len + 1);
                let n = 1 + rng.below(16);
                let fresh = rng.bytes(n);
                out.splice(i..i, fresh);
            }
            4 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(16));
                out.drain(i..i + n);
            }
            5 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(32));
                let copy = out[i..i + n].to_vec();
                let at = rng.below(len + 1);
                out.splice(at..at, copy);
            }
            6 if !pool.is_empty() => {
                let other = &pool[rng.below(pool.len())];
                let cut = rng.below(out.len() + 1);
                let from = rng.below(other.len() + 1);
                out.truncate(cut);
                out.extend_from_slice(&other[from..]);
            }
            7 if len >= 4 => {
                // A length prefix somewhere: near the truth, or extreme.
                let i = rng.below(len - 3);
                let v = match rng.below(4) {
                    0 => (len - i - 4) as u32,
                    1 => u32::MAX,
                    2 => (16u32 << 20) + rng.below(2) as u32,
                    _ => rng.below(64) as u32,
                };
                out[i..i + 4].copy_from_slice(&v.to_be_bytes());
            }
            8 if len > 0 => out.truncate(rng.below(len)),
            _ => {}
        }
    }
    out.truncate(MAX_LEN);
    out
}

fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn load_corpus(dir: &Path) -> Vec<Vec<u8>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| std::fs::read(e.path()).ok())
        .filter(|d| d.len() <= MAX_LEN)
        .collect()
}

fn usage() -> ExitCode {
    eprintln!(
        "usage: drive TARGET SECS [SEED] | drive seeds TARGET DIR\ntargets: {}",
        concoord_fuzz::TARGETS.join(", ")
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("seeds") {
        let (Some(target), Some(dir)) = (args.get(1), args.get(2)) else {
            return usage();
        };
        std::fs::create_dir_all(dir).expect("create the corpus directory");
        for seed in concoord_fuzz::seeds(target) {
            std::fs::write(
                Path::new(dir).join(format!("seed-{:016x}", fnv(&seed))),
                &seed,
            )
            .expect("write a seed");
        }
        return ExitCode::SUCCESS;
    }
    let (Some(target), Some(secs)) = (args.first(), args.get(1)) else {
        return usage();
    };
    let Some(run) = concoord_fuzz::run_target(target) else {
        return usage();
    };
    let Ok(secs) = secs.parse::<f64>() else {
        return usage();
    };
    let seed = args
        .get(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x00c0_ffee_u64);
    let mut rng = Rng(seed);
    let mut pool = concoord_fuzz::seeds(target);
    pool.extend(load_corpus(&fuzz_dir().join("corpus").join(target)));
    let artifacts = fuzz_dir().join("artifacts").join(target);

    // Report each distinct panic message once, quietly otherwise.
    let last_panic = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let hook_panic = last_panic.clone();
    panic::set_hook(Box::new(move |info| {
        let at = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        *hook_panic.lock().unwrap() = format!("{at}: {msg}");
    }));

    let start = Instant::now();
    let budget = Duration::from_secs_f64(secs);
    let mut execs = 0u64;
    let mut crashes = 0u64;
    let mut distinct = BTreeSet::new();
    // Every starting input once, then mutations.
    let mut queue: Vec<Vec<u8>> = pool.clone();
    while start.elapsed() < budget {
        let input = queue.pop().unwrap_or_else(|| {
            let base = pool[rng.below(pool.len())].clone();
            mutate(&mut rng, &base, &pool)
        });
        execs += 1;
        if panic::catch_unwind(AssertUnwindSafe(|| run(&input))).is_err() {
            crashes += 1;
            std::fs::create_dir_all(&artifacts).expect("create the artifacts directory");
            let path = artifacts.join(format!("crash-{:016x}", fnv(&input)));
            std::fs::write(&path, &input).expect("save the crashing input");
            let why = last_panic.lock().unwrap().clone();
            // Messages carry the input; key on the location to count distinct bugs.
            let key = why.split(": ").next().unwrap_or("").to_string();
            if distinct.insert(key) {
                println!("CRASH {target}: {why}\n  input saved to {}", path.display());
            }
        } else if rng.below(64) == 0 && pool.len() < 4096 {
            // No coverage feedback: let the pool drift slowly.
            pool.push(input);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{target}: {execs} execs in {secs:.1} s ({:.0}/s), {crashes} crashing inputs, {} distinct panic sites, seed {seed}",
        execs as f64 / secs,
        distinct.len()
    );
    if crashes > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
