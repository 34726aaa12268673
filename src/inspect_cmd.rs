//! `concoord status` and `concoord objects`: what each replica says about the group.

use crate::{error_json, fail};
use clap::Parser;
use concoord::client::fetch_status;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
pub(crate) struct ObjectsArgs {
    #[command(flatten)]
    pub(crate) connect: crate::ConnectArgs,
    /// Send log records to a network logger at HOST:PORT.
    #[arg(short = 'l', long = "logger")]
    pub(crate) logger: Option<String>,
    #[arg(long = "timeout", default_value_t = 10.0)]
    pub(crate) timeout: f64,
}

#[derive(Parser)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    pub(crate) connect: crate::ConnectArgs,
    /// Send log records to a network logger at HOST:PORT.
    #[arg(short = 'l', long = "logger")]
    pub(crate) logger: Option<String>,
    #[arg(long = "timeout", default_value_t = 2.0)]
    pub(crate) timeout: f64,
    /// Print a JSON array (one object per address) instead of a table.
    #[arg(long = "json")]
    pub(crate) json: bool,
}

/// What `status` and `objects` share: the addresses, the per-replica
/// timeout, and a runtime to ask on; a bad flag is exit 2 with a message.
pub(crate) fn admin_setup(
    replicas: &str,
    timeout_s: f64,
) -> Result<(Vec<String>, Duration, tokio::runtime::Runtime), ExitCode> {
    let addrs = concoord::client::parse_addresses(replicas)
        .map_err(|e| fail(format!("-r: {}", e.message())))?;
    if !(timeout_s.is_finite() && timeout_s > 0.0) {
        return Err(fail("--timeout must be a positive number of seconds"));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| fail(format!("cannot start a runtime: {e}")))?;
    Ok((addrs, Duration::from_secs_f64(timeout_s), runtime))
}

pub(crate) fn run_objects(args: ObjectsArgs) -> ExitCode {
    let (addrs, timeout, runtime) = match admin_setup(&args.connect.replicas, args.timeout) {
        Ok(setup) => setup,
        Err(code) => return code,
    };
    let tls = match args.connect.tls.client_tls() {
        Ok(tls) => tls,
        Err(e) => return fail(e),
    };
    let access = concoord::client::Access {
        token: &args.connect.token,
        tls: tls.as_ref(),
    };
    let mut last_error = None;
    for addr in &addrs {
        match runtime.block_on(concoord::client::fetch_objects(addr, access, timeout)) {
            Ok(objects) => {
                let json = serde_json::to_string(&objects).expect("object lists serialize");
                println!("{json}");
                return ExitCode::SUCCESS;
            }
            Err(e) => last_error = Some(e),
        }
    }
    let e = last_error.expect("parse_addresses gives at least one address");
    eprintln!("{}", error_json(&e));
    ExitCode::from(1)
}

pub(crate) fn run_status(args: StatusArgs) -> ExitCode {
    let (addrs, timeout, runtime) = match admin_setup(&args.connect.replicas, args.timeout) {
        Ok(setup) => setup,
        Err(code) => return code,
    };
    let tls = match args.connect.tls.client_tls() {
        Ok(tls) => tls,
        Err(e) => return fail(e),
    };
    let access = concoord::client::Access {
        token: &args.connect.token,
        tls: tls.as_ref(),
    };
    let entries: Vec<serde_json::Value> = runtime.block_on(async {
        let mut out = Vec::new();
        for addr in &addrs {
            out.push(match fetch_status(addr, access, timeout).await {
                Ok(s) => concoord::http::status_json(addr, &s),
                Err(e) => serde_json::json!({"address": addr, "error": e.to_string()}),
            });
        }
        out
    });
    if args.json {
        println!("{}", serde_json::Value::Array(entries));
    } else {
        print!("{}", status_table(&entries));
    }
    ExitCode::SUCCESS
}

/// The columns of `concoord status`'s table, in order.
const TABLE_COLUMNS: [&str; 9] = [
    "ADDRESS", "ROLE", "LEADER", "BALLOT", "EXECUTED", "SNAPSHOT", "CLIENTS", "SESSIONS", "PARKED",
];

/// `concoord status`'s entries as a table a person reads: one row per
/// address, columns padded to their widest cell; a replica that did not
/// answer shows `unreachable` and the error after the row.
fn status_table(entries: &[serde_json::Value]) -> String {
    let cell = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".to_string(),
        other => other.to_string(),
    };
    let mut rows: Vec<Vec<String>> = vec![TABLE_COLUMNS.iter().map(|c| c.to_string()).collect()];
    let mut errors = Vec::new();
    for e in entries {
        let address = cell(&e["address"]);
        if let Some(error) = e.get("error") {
            errors.push(format!("{address}: {}", cell(error)));
            let mut row = vec![address, "unreachable".to_string()];
            row.resize(TABLE_COLUMNS.len(), "-".to_string());
            rows.push(row);
            continue;
        }
        rows.push(vec![
            address,
            cell(&e["role"]),
            cell(&e["leader"]),
            format!("{}.{}", cell(&e["ballot"][0]), cell(&e["ballot"][1])),
            cell(&e["executed_slot"]),
            cell(&e["snapshot_slot"]),
            cell(&e["clients"]),
            cell(&e["sessions"]),
            cell(&e["parked"]),
        ]);
    }
    let widths: Vec<usize> = (0..TABLE_COLUMNS.len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    for error in errors {
        out.push_str(&error);
        out.push('\n');
    }
    out
}
