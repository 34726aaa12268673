//! The Python 3 client (python/) against real replicas: runs its pytest
//! suite with this build's binary, and first writes the bytes this build
//! gives each client-facing frame, so the Python side checks its encoder and
//! decoder against rmp-serde's exact output.
//!
//! Python, pytest and msgpack come from `python3` if it has them, else from
//! a venv under target/ that this test makes with pip; when neither works the
//! test prints why and passes without running (a machine without Python).

use concoord::objects::{CommandId, ObjectError, ObjectInfo, Target};
use concoord::proto::wire::{encode_frame, Frame, HelloRole, StatusInfo};
use concoord::proto::Ballot;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_concoord");
/// The whole pytest run, replicas included, is killed after this.
const PYTEST_TIMEOUT: Duration = Duration::from_secs(300);

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Frames a client sends and frames it receives, each with fixed field
/// values the Python test rebuilds (see python/tests/test_wire.py).
fn wire_vectors() -> serde_json::Value {
    let id = CommandId::new(0xfedc_ba98_7654_3211, 7);
    let args = concoord::client::encode_positional(&(1, "x", 2.5)).expect("encodes");
    let sent = [
        (
            "hello",
            Frame::Hello {
                version: concoord::proto::wire::PROTOCOL_VERSION,
                role: HelloRole::Client(id.client),
                token: "tok".into(),
            },
        ),
        (
            "call",
            Frame::Call {
                id,
                target: Target::named("jobs/a", "Counter"),
                method: "increment".into(),
                args,
                ack_below: 5,
            },
        ),
        ("cancel", Frame::Cancel { id }),
        ("keep_alive", Frame::KeepAlive),
        ("status_request", Frame::StatusRequest),
        (
            "objects_request",
            Frame::ObjectsRequest {
                after: "a".into(),
                limit: 10,
            },
        ),
    ];
    let received = [
        (
            "welcome",
            Frame::Welcome {
                node: 42,
                members: vec!["127.0.0.1:1".into(), "127.0.0.1:2".into()],
            },
        ),
        (
            "refused",
            Frame::Refused {
                kind: "Refused".into(),
                message: "wrong security token".into(),
            },
        ),
        (
            "reply_ok",
            Frame::Reply {
                id,
                reply: Ok(concoord::objects::encode_value(&(true, "v"))),
            },
        ),
        (
            "reply_err",
            Frame::Reply {
                id,
                reply: Err(ObjectError::key("no such account")),
            },
        ),
        ("parked", Frame::Parked { id }),
        (
            "redirect",
            Frame::Redirect {
                id,
                leader: Some("127.0.0.1:2".into()),
                members: vec!["127.0.0.1:1".into()],
            },
        ),
        (
            "redirect_no_leader",
            Frame::Redirect {
                id,
                leader: None,
                members: vec![],
            },
        ),
        (
            "status",
            Frame::Status(Box::new(StatusInfo {
                id: 9,
                address: "127.0.0.1:1".into(),
                role: "leader".into(),
                leader: Some("127.0.0.1:1".into()),
                ballot: Ballot::default(),
                members: vec!["127.0.0.1:1".into()],
                next_slot: 3,
                executed_slot: 2,
                snapshot_slot: 1,
                clients: 4,
                parked: 5,
                uptime_s: 6,
                object: "Counter".into(),
                sessions: 7,
            })),
        ),
        (
            "objects",
            Frame::Objects {
                objects: vec![ObjectInfo {
                    name: "a".into(),
                    type_name: "Lock".into(),
                    parked: 2,
                }],
                more: true,
            },
        ),
    ];
    let table = |frames: &[(&str, Frame)]| {
        frames
            .iter()
            .map(|(name, f)| {
                (
                    name.to_string(),
                    serde_json::Value::from(hex(&encode_frame(f))),
                )
            })
            .collect::<serde_json::Map<_, _>>()
    };
    serde_json::json!({ "sent": table(&sent), "received": table(&received) })
}

/// Where cargo puts this build (target/), from the binary's path.
fn target_dir() -> PathBuf {
    Path::new(BIN)
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

fn has_deps(python: &Path) -> bool {
    Command::new(python)
        .args(["-c", "import msgpack, pytest"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A Python with msgpack and pytest, or why there is none.
fn python() -> Result<PathBuf, String> {
    let system = PathBuf::from("python3");
    if has_deps(&system) {
        return Ok(system);
    }
    let venv = target_dir().join("python-venv");
    let venv_python = venv.join("bin").join("python");
    if has_deps(&venv_python) {
        return Ok(venv_python);
    }
    let made = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .map_err(|e| format!("python3 does not run: {e}"))?;
    if !made.success() {
        return Err(format!(
            "`python3 -m venv {}` failed (python3-venv missing?)",
            venv.display()
        ));
    }
    let pip = Command::new(&venv_python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "msgpack>=1.0",
            "pytest>=7",
        ])
        .status()
        .map_err(|e| format!("pip does not run: {e}"))?;
    if !pip.success() || !has_deps(&venv_python) {
        return Err("pip could not install msgpack and pytest (no network?)".into());
    }
    Ok(venv_python)
}

/// Python 2.7 with ConCoord 1.1 importable, for python/tests/test_concoord11.py:
/// a python2.7 on PATH or pyenv's, with ConCoord 1.1 and its dependencies
/// pip-installed under target/py27-site unless already there. `None`, with
/// the reason printed, when there is no Python 2.7 or pip fails (those
/// tests are then skipped by pytest, naming why).
fn python2_with_concoord11() -> Option<(PathBuf, PathBuf)> {
    let site = target_dir().join("py27-site");
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let candidates = [
        PathBuf::from("python2.7"),
        home.join(".pyenv/versions/2.7.18/bin/python2.7"),
    ];
    let importable = |python: &Path| {
        Command::new(python)
            .args(["-c", "import concoord.proxy.counter"])
            .env("PYTHONPATH", &site)
            .env_remove("PYENV_VERSION")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    for python in candidates {
        let runs = Command::new(&python)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !runs {
            continue;
        }
        if importable(&python) {
            return Some((python, site));
        }
        let _ = Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "--no-deps", "--target"])
            .arg(&site)
            .args([
                "concoord==1.1.0",
                "msgpack-python==0.5.6",
                "dnspython==1.16.0",
            ])
            .env_remove("PYENV_VERSION")
            .status();
        if importable(&python) {
            return Some((python, site));
        }
        eprintln!(
            "note: {} could not install ConCoord 1.1; its tests are skipped",
            python.display()
        );
        return None;
    }
    eprintln!("note: no Python 2.7: the ConCoord 1.1 client tests are skipped");
    None
}

#[test]
fn python_client_pytest_suite() {
    let python = match python() {
        Ok(p) => p,
        Err(why) => {
            eprintln!("SKIPPED python_client_pytest_suite: {why}");
            return;
        }
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let vectors = target_dir().join("python-wire-vectors.json");
    std::fs::write(&vectors, wire_vectors().to_string()).expect("writes the wire vectors");
    let mut command = Command::new(&python);
    if let Some((python2, site)) = python2_with_concoord11() {
        command
            .env("CONCOORD11_PYTHON", python2)
            .env("CONCOORD11_PYTHONPATH", site);
    }
    let started = Instant::now();
    let mut child = command
        .args([
            "-m",
            "pytest",
            "python/tests",
            "-q",
            "-p",
            "no:cacheprovider",
        ])
        .current_dir(root)
        .env("CONCOORD_BIN", BIN)
        .env("CONCOORD_WIRE_VECTORS", &vectors)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .spawn()
        .expect("pytest starts");
    let status = loop {
        if let Some(status) = child.try_wait().expect("waits for pytest") {
            break status;
        }
        if started.elapsed() > PYTEST_TIMEOUT {
            // The replicas die with pytest (PR_SET_PDEATHSIG in conftest.py).
            let _ = child.kill();
            let _ = child.wait();
            panic!("pytest ran over {PYTEST_TIMEOUT:?} and was killed");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!("pytest took {:.1?}", started.elapsed());
    assert!(status.success(), "pytest python/tests failed: {status}");
}
