//! The deployment files in deploy/ stay valid: the systemd unit passes
//! `systemd-analyze verify` (with ExecStart pointed at the binary under
//! test), the Kubernetes manifest parses as YAML (python3's PyYAML) into a
//! headless Service and a StatefulSet that fit together, its start script
//! passes `sh -n`, and the Containerfile uses only known instructions and
//! copies what `make server` builds. A check whose tool is missing is
//! skipped with a printed reason; none of them starts a service, a
//! container or a cluster (see the README's Deploying section).

mod support;

use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn deploy(file: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn systemd_unit_verifies() {
    let unit = deploy("concoord.service");
    assert!(unit.contains("ExecStart=/usr/local/bin/concoord replica "));
    let dir = support::TempDir::new("deploy-systemd");
    let path = dir.path().join("concoord.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/concoord", support::BIN))
        .expect("write the unit");
    let out = match Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            eprintln!("skipped: systemd-analyze is not available ({e})");
            return;
        }
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify: {stderr}");
    assert!(
        stderr.trim().is_empty(),
        "systemd-analyze verify warns: {stderr}"
    );
}

/// The documents of a YAML file as JSON, through python3's PyYAML; `None`
/// (having said why) when that is not available.
fn yaml_documents(yaml: &str) -> Option<Vec<Value>> {
    let script = "import json, sys, yaml\n\
                  print(json.dumps(list(yaml.safe_load_all(sys.stdin))))";
    let mut child = match Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("skipped: no python3 to parse the YAML ({e})");
            return None;
        }
    };
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("piped");
        stdin.write_all(yaml.as_bytes()).expect("write the YAML");
    }
    let out = child.wait_with_output().expect("python3 runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("No module named 'yaml'") {
        eprintln!("skipped: python3 has no PyYAML (apt-get install python3-yaml)");
        return None;
    }
    assert!(
        out.status.success(),
        "the manifest is not valid YAML: {stderr}"
    );
    Some(serde_json::from_slice(&out.stdout).expect("python3 printed JSON"))
}

#[test]
fn kubernetes_manifest_parses_and_fits_together() {
    let Some(docs) = yaml_documents(&deploy("kubernetes/concoord.yaml")) else {
        return;
    };
    let kind = |k: &str| {
        docs.iter()
            .find(|d| d["kind"] == k)
            .unwrap_or_else(|| panic!("no {k} in the manifest"))
    };
    let (service, set) = (kind("Service"), kind("StatefulSet"));
    assert_eq!(service["spec"]["clusterIP"], "None", "a headless service");
    assert_eq!(service["spec"]["publishNotReadyAddresses"], true);
    assert_eq!(set["spec"]["serviceName"], service["metadata"]["name"]);
    let labels = &set["spec"]["template"]["metadata"]["labels"];
    for (k, v) in service["spec"]["selector"].as_object().expect("a selector") {
        assert_eq!(&labels[k], v, "the service selects the pods by {k}");
    }
    let container = &set["spec"]["template"]["spec"]["containers"][0];
    let ports: Vec<&str> = container["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .map(|p| p["name"].as_str().expect("a named port"))
        .collect();
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/health");
    assert!(ports.contains(
        &container["readinessProbe"]["httpGet"]["port"]
            .as_str()
            .unwrap()
    ));
    let claim = &set["spec"]["volumeClaimTemplates"][0]["metadata"]["name"];
    assert_eq!(&container["volumeMounts"][0]["name"], claim);
    let script = container["args"][0].as_str().expect("the start script");
    for needed in ["-w --data-dir", "-b \"$SERVICE\"", "--http 0.0.0.0:9100"] {
        assert!(
            script.contains(needed),
            "{needed} in the start script:\n{script}"
        );
    }
    let service_env = container["env"]
        .as_array()
        .expect("env")
        .iter()
        .find(|e| e["name"] == "SERVICE")
        .expect("SERVICE in env");
    assert_eq!(
        service_env["value"],
        format!(
            "{}:14000",
            service["metadata"]["name"].as_str().expect("a name")
        )
    );
    let out = Command::new("sh")
        .args(["-n", "-c", script])
        .output()
        .expect("sh runs");
    assert!(
        out.status.success(),
        "sh -n: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn containerfile_uses_known_instructions_and_copies_the_server_bundle() {
    // No Dockerfile linter (hadolint) here and no daemon to build with:
    // check the shape and that it copies where `make server` puts the binary.
    let file = deploy("Containerfile");
    let known = [
        "FROM",
        "RUN",
        "COPY",
        "WORKDIR",
        "USER",
        "VOLUME",
        "EXPOSE",
        "ENTRYPOINT",
        "CMD",
        "ENV",
        "ARG",
        "LABEL",
    ];
    for line in file.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let instruction = line.split_whitespace().next().expect("not empty");
        assert!(known.contains(&instruction), "unknown instruction: {line}");
    }
    assert!(file.contains("RUN make server"));
    let makefile = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Makefile"))
        .expect("the Makefile");
    assert!(makefile.contains("cp target/dist/concoord $(DIST)/server/concoord"));
    assert!(makefile.contains("DIST  ?= dist"));
    assert!(file.contains("COPY --from=build /src/dist/server/concoord /usr/local/bin/concoord"));
    // The default command is a valid `concoord replica` command line.
    let cmd = file
        .lines()
        .find_map(|l| l.strip_prefix("CMD "))
        .expect("a CMD");
    let args: Vec<String> = serde_json::from_str(cmd).expect("CMD in exec (JSON) form");
    let out = Command::new(support::BIN)
        .arg("replica")
        .args(&args)
        .arg("--help")
        .output()
        .expect("the binary runs");
    assert!(
        out.status.success(),
        "concoord replica {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
