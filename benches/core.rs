//! Micro-benchmarks of the commit path's pieces, so a regression shows
//! without a cluster: `cargo bench --bench core`.

use concoord::actors::sim::{Sim, SimConfig};
use concoord::objects::{builtin, encode_args, CallContext, CommandId};
use concoord::proto::message::{Accept, Command, PeerMsg};
use concoord::proto::wire::{decode_frame, encode_frame, Frame};
use concoord::proto::Ballot;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::sync::Arc;

fn call_frame(seq: u64) -> Frame {
    Frame::Call {
        id: CommandId::new(0xfeed, seq),
        target: Default::default(),
        method: "increment".into(),
        args: encode_args::<i64>(&[]),
        ack_below: seq,
    }
}

fn wire(c: &mut Criterion) {
    let mut g = c.benchmark_group("wire");
    g.throughput(Throughput::Elements(1));
    let frame = call_frame(7);
    g.bench_function("encode call frame", |b| b.iter(|| encode_frame(&frame)));
    let bytes = encode_frame(&frame);
    g.bench_function("decode call frame", |b| {
        b.iter(|| decode_frame(&bytes).unwrap())
    });
    let batch: Vec<Command> = (0..64)
        .map(|seq| Command::Call {
            id: CommandId::new(0xfeed, seq),
            target: Default::default(),
            method: "increment".into(),
            args: encode_args::<i64>(&[]),
            ack_below: seq,
        })
        .collect();
    let accept = Frame::Peer {
        from: 1,
        to: 2,
        msg: PeerMsg::Accept(Accept {
            ballot: Ballot::new(3, 1),
            slot: 99,
            batch: Arc::new(batch.into()),
        }),
    };
    g.throughput(Throughput::Elements(64));
    g.bench_function("encode accept of 64 commands", |b| {
        b.iter(|| encode_frame(&accept))
    });
    let bytes = encode_frame(&accept);
    g.bench_function("decode accept of 64 commands", |b| {
        b.iter(|| decode_frame(&bytes).unwrap())
    });
    g.finish();
}

fn apply(c: &mut Criterion) {
    let mut g = c.benchmark_group("object apply");
    g.throughput(Throughput::Elements(1));
    let args = encode_args::<i64>(&[]);
    let mut counter = builtin("Counter").unwrap();
    let mut seq = 0;
    g.bench_function("Counter.increment", |b| {
        b.iter(|| {
            seq += 1;
            let mut wakes = Vec::new();
            let mut ctx = CallContext::new(CommandId::new(1, seq), seq, &mut wakes);
            counter.apply("increment", &args, &mut ctx)
        })
    });
    let mut lock = builtin("Lock").unwrap();
    g.bench_function("Lock.acquire+release", |b| {
        b.iter(|| {
            seq += 1;
            let mut wakes = Vec::new();
            let mut ctx = CallContext::new(CommandId::new(1, seq), seq, &mut wakes);
            lock.apply("acquire", &args, &mut ctx);
            let mut ctx = CallContext::new(CommandId::new(1, seq + 1), seq, &mut wakes);
            lock.apply("release", &args, &mut ctx)
        })
    });
    g.finish();
}

fn commit_path(c: &mut Criterion) {
    // The protocol structs of a 3-replica group over the simulator's network,
    // 8 clients, 50 increments each: consensus cost without sockets.
    let mut g = c.benchmark_group("commit path (3 replicas, in memory)");
    g.sample_size(20);
    g.throughput(Throughput::Elements(400));
    g.bench_function("400 increments", |b| {
        b.iter(|| {
            let mut sim = Sim::new(SimConfig {
                clients: 8,
                ops_per_client: 50,
                delay_min_ms: 0,
                delay_max_ms: 0,
                ..SimConfig::default()
            });
            assert!(sim.run_until_done(60_000));
        })
    });
    g.finish();
}

criterion_group!(benches, wire, apply, commit_path);
criterion_main!(benches);
