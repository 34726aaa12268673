//! Fuzz target bodies for concoord, shared by the libFuzzer wrappers in
//! `fuzz_targets/` (nightly, `cargo fuzz run TARGET`) and the stable random
//! driver `src/bin/drive.rs` (`cargo run --release --no-default-features
//! --features drive --bin drive -- TARGET SECS`).
//!
//! Each target is a `run(data: &[u8])` that panics exactly when it finds a bug.

pub mod frame_decoder;
pub mod handshake;
pub mod object_args;

/// The targets, by the names `cargo fuzz` and the driver use.
pub const TARGETS: &[&str] = &["frame_decoder", "handshake", "object_args"];

/// Runs target `name` on one input; `None` if there is no such target.
pub fn run_target(name: &str) -> Option<fn(&[u8])> {
    match name {
        "frame_decoder" => Some(frame_decoder::run),
        "handshake" => Some(handshake::run),
        "object_args" => Some(object_args::run),
        _ => None,
    }
}

/// Hand-made starting inputs for target `name` (valid frames, a valid hello,
/// well-formed calls), so mutation starts near the interesting shapes.
pub fn seeds(name: &str) -> Vec<Vec<u8>> {
    match name {
        "frame_decoder" => frame_decoder::seeds(),
        "handshake" => handshake::seeds(),
        "object_args" => object_args::seeds(),
        _ => Vec::new(),
    }
}

/// A frame as it travels: a 4-byte big-endian length, then the MessagePack payload.
pub fn framed(frame: &concoord::actors::wire::Frame) -> Vec<u8> {
    let payload = concoord::actors::wire::encode_frame(frame);
    let mut out = (payload.len() as u32).to_be_bytes().to_vec();
    out.extend(payload);
    out
}
