//! TLS on every link, with the real binary: a 3-replica group whose client
//! and peer links are all TLS (calls, a leader killed with -9, a member
//! rejoining with -b), and the mistakes an operator makes (a wrong CA, a
//! plain client against a TLS replica and the reverse, an expired
//! certificate, a missing client certificate), each refused promptly with an
//! error that says what to check, on the client and in the replica's log.
//! Certificates are made in the test with rcgen.

mod support;

use concoord::client::ClientTls;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use support::{run_cli, spawn_replica, Cluster, Proc, TempDir};

/// A CLI command against the group ends within this long.
const CLI_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a replica's log may take to show a refusal.
const LOG_TIMEOUT: Duration = Duration::from_secs(10);

/// A CA and what it signed, written as PEM files in a temp dir.
struct Pki {
    dir: TempDir,
    ca: rcgen::Certificate,
    ca_key: KeyPair,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("concoord test CA {name}"));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate().expect("a CA key");
        let ca = params.self_signed(&ca_key).expect("a self-signed CA");
        let pki = Pki {
            dir: TempDir::new(&format!("tls-{name}")),
            ca,
            ca_key,
        };
        std::fs::write(pki.ca_file(), pki.ca.pem()).expect("write the CA");
        pki
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A certificate for 127.0.0.1 (an IP SAN), usable by servers and
    /// clients; `expired` makes one that ran out in 2001. Returns (cert, key).
    fn issue(&self, name: &str, expired: bool) -> (PathBuf, PathBuf) {
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        if expired {
            params.not_before = rcgen::date_time_ymd(2000, 1, 1);
            params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        }
        let key = KeyPair::generate().expect("a key");
        let cert = params
            .signed_by(&key, &self.ca, &self.ca_key)
            .expect("a signed certificate");
        let (cert_file, key_file) = (
            self.dir.path().join(format!("{name}.pem")),
            self.dir.path().join(format!("{name}-key.pem")),
        );
        std::fs::write(&cert_file, cert.pem()).expect("write the certificate");
        std::fs::write(&key_file, key.serialize_pem()).expect("write the key");
        (cert_file, key_file)
    }

    /// `concoord replica` flags serving TLS with `cert`.
    fn replica_flags(&self, (cert, key): &(PathBuf, PathBuf)) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            cert.display().to_string(),
            "--tls-key".into(),
            key.display().to_string(),
            "--tls-ca".into(),
            self.ca_file().display().to_string(),
        ]
    }
}

fn path(p: &std::path::Path) -> String {
    p.display().to_string()
}

/// A replica process killed and reaped when dropped (also when a test panics).
struct Lone(Proc);

impl Drop for Lone {
    fn drop(&mut self) {
        self.0.kill_and_reap();
    }
}

impl std::ops::Deref for Lone {
    type Target = Proc;
    fn deref(&self) -> &Proc {
        &self.0
    }
}

/// One replica of a group of one: `-o Counter -p 0` and `extra`.
fn lone_replica(extra: &[String]) -> Lone {
    let mut args: Vec<String> = ["-o", "Counter", "-p", "0"].map(String::from).to_vec();
    args.extend(extra.iter().cloned());
    match spawn_replica(&args) {
        Ok(p) => Lone(p),
        Err(f) => panic!("replica did not start ({:?}):\n{}", f.status, f.stderr),
    }
}

/// `concoord call -r ADDR --timeout 10 FLAGS... increment`, expected to fail:
/// returns its stderr.
fn call_fails(addr: &str, flags: &[String]) -> String {
    let mut args = vec!["call", "-r", addr, "--timeout", "10"];
    args.extend(flags.iter().map(String::as_str));
    args.push("increment");
    let out = run_cli(&args, None, CLI_TIMEOUT);
    assert_ne!(
        out.code(),
        Some(0),
        "the call should fail; stdout {:?}, stderr {:?}",
        out.stdout,
        out.stderr
    );
    out.stderr
}

/// Waits (bounded) until the replica's stderr holds `needle`.
fn wait_for_log(proc: &Proc, needle: &str) {
    let deadline = Instant::now() + LOG_TIMEOUT;
    while Instant::now() < deadline {
        if proc.stderr_tail().contains(needle) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "the replica's log never said {needle:?}; it has:\n{}",
        proc.stderr_tail()
    );
}

#[test]
fn a_tls_group_serves_calls_survives_a_leader_kill_and_takes_a_member_back() {
    let pki = Pki::new("group");
    let replica = pki.issue("replica", false);
    let client = pki.issue("client", false);
    // Clients must present a certificate too: every link is mutually authenticated.
    let mut flags = pki.replica_flags(&replica);
    flags.push("--tls-client-auth".into());
    let tls = ClientTls::from_files(&pki.ca_file(), Some((&client.0, &client.1)))
        .expect("client TLS settings");
    let mut cluster = Cluster::start_tls(3, &flags, tls);
    let client_flags = [
        "--tls-ca".to_string(),
        path(&pki.ca_file()),
        "--tls-cert".into(),
        path(&client.0),
        "--tls-key".into(),
        path(&client.1),
    ];
    let calls = cluster.client();
    for _ in 0..5 {
        calls
            .call::<_, ()>("increment", ())
            .expect("a call over TLS");
    }
    // The CLI speaks TLS too.
    let addrs = cluster.addrs();
    let mut args = vec!["call", "-r", addrs.as_str()];
    args.extend(client_flags.iter().map(String::as_str));
    args.push("getvalue");
    let out = run_cli(&args, None, CLI_TIMEOUT);
    assert_eq!(out.code(), Some(0), "call over TLS: {}", out.stderr);
    assert_eq!(out.stdout.trim(), "5");

    // Kill the leader: the others elect one over their TLS peer links.
    let leader = cluster.leader();
    cluster.kill9(leader);
    for _ in 0..5 {
        calls
            .call::<_, ()>("increment", ())
            .expect("a call after the leader's kill");
    }
    // It comes back with -b and catches up over TLS.
    cluster.restart(leader);
    cluster.wait_formed(support::FORM_TIMEOUT);
    let converged = cluster.wait_converged();
    assert_eq!(converged.len(), 3, "every member is back");
    let value: i64 = calls.call("getvalue", ()).expect("getvalue");
    assert_eq!(value, 10, "each increment counted once");

    let mut args = vec!["status", "--json", "-r", addrs.as_str()];
    args.extend(client_flags.iter().map(String::as_str));
    let out = run_cli(&args, None, CLI_TIMEOUT);
    assert_eq!(out.code(), Some(0), "status over TLS: {}", out.stderr);
    assert!(
        !out.stdout.contains("\"error\""),
        "every replica answers status over TLS: {}",
        out.stdout
    );
}

#[test]
fn tls_mistakes_are_refused_with_errors_that_say_what_to_check() {
    let pki = Pki::new("mistakes");
    let other = Pki::new("other");
    let replica = pki.issue("replica", false);
    let tls_replica = lone_replica(&pki.replica_flags(&replica));
    let plain_replica = lone_replica(&[]);
    let trusting = |pki: &Pki| vec!["--tls-ca".to_string(), path(&pki.ca_file())];

    // A client that trusts another CA.
    let stderr = call_fails(&tls_replica.addr, &trusting(&other));
    assert!(
        stderr.contains("not signed by the CA in --tls-ca"),
        "wrong CA: {stderr}"
    );
    wait_for_log(&tls_replica, "does not trust this replica's certificate");

    // A plain client to a TLS replica.
    let stderr = call_fails(&tls_replica.addr, &[]);
    assert!(
        stderr.contains("TlsRequired") && stderr.contains("--tls-ca"),
        "plain client to a TLS replica: {stderr}"
    );
    wait_for_log(&tls_replica, "serves TLS only");

    // A TLS client to a plain replica.
    let stderr = call_fails(&plain_replica.addr, &trusting(&pki));
    assert!(
        stderr.contains("serves plain TCP"),
        "TLS client to a plain replica: {stderr}"
    );
    wait_for_log(&plain_replica, "TlsNotServed");

    // The right CA works.
    let addr = tls_replica.addr.clone();
    let mut args = vec!["call", "-r", addr.as_str()];
    let ca = trusting(&pki);
    args.extend(ca.iter().map(String::as_str));
    args.push("increment");
    let out = run_cli(&args, None, CLI_TIMEOUT);
    assert_eq!(out.code(), Some(0), "the right CA: {}", out.stderr);
}

#[test]
fn expired_certificates_and_missing_client_certificates_are_refused() {
    let pki = Pki::new("expiry");
    let expired = pki.issue("expired", true);
    let expired_replica = lone_replica(&pki.replica_flags(&expired));
    let ca = vec!["--tls-ca".to_string(), path(&pki.ca_file())];
    let stderr = call_fails(&expired_replica.addr, &ca);
    assert!(stderr.contains("expired"), "expired certificate: {stderr}");
    wait_for_log(&expired_replica, "TLS handshake with");

    // A replica that requires client certificates.
    let replica = pki.issue("replica", false);
    let mut flags = pki.replica_flags(&replica);
    flags.push("--tls-client-auth".into());
    let strict = lone_replica(&flags);
    let stderr = call_fails(&strict.addr, &ca);
    assert!(
        stderr.contains("requires a client certificate"),
        "no client certificate: {stderr}"
    );
    wait_for_log(&strict, "presented no certificate");

    // An expired client certificate.
    let mut with_expired = ca.clone();
    with_expired.extend([
        "--tls-cert".to_string(),
        path(&expired.0),
        "--tls-key".into(),
        path(&expired.1),
    ]);
    let stderr = call_fails(&strict.addr, &with_expired);
    assert!(
        stderr.contains("rejected our client certificate"),
        "expired client certificate: {stderr}"
    );
    wait_for_log(&strict, "the client's certificate has expired");
}

#[test]
fn a_replica_whose_certificate_another_ca_signed_cannot_join_and_both_logs_say_why() {
    let group_pki = Pki::new("join-group");
    let other_pki = Pki::new("join-other");
    let founder = lone_replica(&group_pki.replica_flags(&group_pki.issue("replica", false)));
    let mut flags = other_pki.replica_flags(&other_pki.issue("replica", false));
    flags.extend(["-b".to_string(), founder.addr.clone()]);
    let stranger = lone_replica(&flags);
    wait_for_log(&stranger, "not signed by the CA in --tls-ca");
    wait_for_log(&founder, "does not trust this replica's certificate");
    // The group stayed a group of one.
    let ca = ["--tls-ca".to_string(), path(&group_pki.ca_file())];
    let mut args = vec!["status", "--json", "-r", founder.addr.as_str()];
    args.extend(ca.iter().map(String::as_str));
    let out = run_cli(&args, None, CLI_TIMEOUT);
    assert_eq!(out.code(), Some(0), "status: {}", out.stderr);
    let status: serde_json::Value = serde_json::from_str(&out.stdout).expect("status JSON");
    assert_eq!(
        status[0]["members"].as_array().map(Vec::len),
        Some(1),
        "only the founder is a member: {}",
        out.stdout
    );
}

#[test]
fn a_tls_handshake_that_stalls_is_closed_by_the_replica() {
    use std::io::{Read, Write};
    let pki = Pki::new("stall");
    let replica = lone_replica(&pki.replica_flags(&pki.issue("replica", false)));
    let mut stream = std::net::TcpStream::connect(&replica.addr).expect("connect");
    // The first byte of a TLS handshake record, and then nothing.
    stream.write_all(&[0x16]).expect("write");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("a read timeout");
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("the replica should close a stalled handshake, got {other:?}"),
    }
    wait_for_log(&replica, "did not finish within");
}
