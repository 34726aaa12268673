//! `concoord call` and `concoord shell`: calls from the command line.

use crate::{client_options, error_json, fail, DEFAULT_SESSION_TTL_S};
use clap::Parser;
use concoord::client::SessionState;
use concoord::json::{encode_args, parse_each, parse_json_args, result_to_json};
use concoord::objects::Target;
use concoord::{BlockingClient, ClientError};
use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
pub(crate) struct CallArgs {
    #[command(flatten)]
    pub(crate) connect: crate::ConnectArgs,
    /// Send log records to a network logger at HOST:PORT.
    #[arg(short = 'l', long = "logger")]
    pub(crate) logger: Option<String>,
    /// Give up after this many seconds.
    #[arg(long = "timeout", default_value_t = 30.0)]
    pub(crate) timeout: f64,
    /// The client's session TTL in seconds (0: no session).
    #[arg(long = "session-ttl", default_value_t = DEFAULT_SESSION_TTL_S)]
    pub(crate) session_ttl: f64,
    /// Call the named object NAME instead of the group's default one.
    #[arg(long = "object", value_name = "NAME")]
    pub(crate) object: Option<String>,
    /// The object's type (Lock, Counter, ...): creates NAME if it does not
    /// exist yet; a name of another type fails with kind WrongType.
    #[arg(long = "type", value_name = "TYPE", requires = "object")]
    pub(crate) type_name: Option<String>,
    /// Allow a stale read: a read-only method is answered by the replica
    /// reached, from its own state, which may be behind the group's (no
    /// read-index round). Other methods go through the log as always.
    #[arg(long = "stale")]
    pub(crate) stale: bool,
    /// The method to call.
    pub(crate) method: String,
    /// Arguments, each a JSON value (strings in quotes: '"text"').
    #[arg(allow_hyphen_values = true)]
    pub(crate) args: Vec<String>,
}

#[derive(Parser)]
pub(crate) struct ShellArgs {
    #[command(flatten)]
    pub(crate) connect: crate::ConnectArgs,
    /// Send log records to a network logger at HOST:PORT.
    #[arg(short = 'l', long = "logger")]
    pub(crate) logger: Option<String>,
    /// Give up on one call after this many seconds.
    #[arg(long = "timeout", default_value_t = 30.0)]
    pub(crate) timeout: f64,
    /// The session's TTL in seconds: the shell holds one session for its
    /// life; what it holds is released this long after it dies (0: none).
    #[arg(long = "session-ttl", default_value_t = DEFAULT_SESSION_TTL_S)]
    pub(crate) session_ttl: f64,
    /// Allow stale reads for every line (see `concoord call --stale`).
    #[arg(long = "stale")]
    pub(crate) stale: bool,
}

/// The timeout a threading call carries as an argument (Python's
/// `acquire(blocking, timeout)`, `wait(timeout)`), if it has one.
pub(crate) fn call_timeout_arg(method: &str, values: &[serde_json::Value]) -> Option<f64> {
    let timeout = match method {
        "acquire" | "acquire_fenced" if values.first().and_then(|b| b.as_bool()) != Some(false) => {
            values.get(1)
        }
        "wait" => values.first(),
        "wait_change" => values.get(1),
        _ => None,
    };
    timeout.and_then(|t| t.as_f64()).filter(|t| *t >= 0.0)
}

/// Calls `method`; when the call's own timeout or `--timeout` passes, it is
/// cancelled by a replicated command rather than abandoned, so a timed-out
/// acquire never takes the lock later. A cancel ordered first makes a timed
/// acquire return false, as in Python.
pub(crate) fn call_cancelling(
    client: &BlockingClient,
    target: &Target,
    method: &str,
    values: &[serde_json::Value],
    timeout_s: f64,
) -> Result<Vec<u8>, ClientError> {
    let own = call_timeout_arg(method, values);
    let deadline = own.map_or(timeout_s, |t| t.min(timeout_s));
    let result = client.call_raw_on(
        target,
        method,
        encode_args(values),
        Duration::from_secs_f64(deadline),
        true,
    );
    match result {
        Err(ClientError::Object(e))
            if e.kind == concoord::proto::message::CANCELLED_KIND && method == "acquire" =>
        {
            Ok(concoord::objects::encode_value(&false))
        }
        Err(ClientError::Object(e))
            if e.kind == concoord::proto::message::CANCELLED_KIND && method == "acquire_fenced" =>
        {
            Ok(concoord::objects::encode_value(&()))
        }
        other => other,
    }
}

pub(crate) fn run_call(args: CallArgs) -> ExitCode {
    let mut options = match client_options(
        &args.connect.token,
        args.timeout,
        args.session_ttl,
        &args.connect.tls,
    ) {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
    options.stale_reads = args.stale;
    let values = match parse_each(&args.args) {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    let client = match BlockingClient::new(&args.connect.replicas, options) {
        Ok(c) => c,
        Err(e) => return fail(format!("-r: {}", e.message())),
    };
    let target = Target {
        name: args.object.unwrap_or_default(),
        type_name: args.type_name.unwrap_or_default(),
    };
    match call_cancelling(&client, &target, &args.method, &values, args.timeout) {
        Ok(bytes) => match result_to_json(&bytes) {
            Ok(json) => {
                println!("{json}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        Err(e) => {
            eprintln!("{}", error_json(&e));
            ExitCode::from(1)
        }
    }
}

pub(crate) fn run_shell(args: ShellArgs) -> ExitCode {
    let mut options = match client_options(
        &args.connect.token,
        args.timeout,
        args.session_ttl,
        &args.connect.tls,
    ) {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
    options.stale_reads = args.stale;
    let client = match BlockingClient::new(&args.connect.replicas, options) {
        Ok(c) => c,
        Err(e) => return fail(format!("-r: {}", e.message())),
    };
    // Say at once, on stderr, when the group ends or refuses the session:
    // whatever the shell held is gone, whether or not a command is typed.
    let mut session = client.client().session();
    client.runtime().spawn(async move {
        while session.changed().await.is_ok() {
            let event = match &*session.borrow() {
                SessionState::Expired => serde_json::json!({"event": {"kind": "SessionExpired",
                    "message": "the group ended this shell's session: its locks and permits are released"}}),
                SessionState::Refused(why) => serde_json::json!({"event": {"kind": "SessionRefused",
                    "message": why}}),
                _ => continue,
            };
            eprintln!("{event}");
        }
    });
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (target, line) = match shell_target(line) {
            Ok(found) => found,
            Err(e) => {
                let out = serde_json::json!({"error": {"kind": "BadArguments", "message": e}});
                if writeln!(stdout, "{out}")
                    .and_then(|_| stdout.flush())
                    .is_err()
                {
                    break;
                }
                continue;
            }
        };
        let (method, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let out = match parse_json_args(rest) {
            Err(e) => serde_json::json!({"error": {"kind": "BadArguments", "message": e}}),
            Ok(values) => match call_cancelling(&client, &target, method, &values, args.timeout) {
                Ok(bytes) => result_to_json(&bytes).unwrap_or_else(
                    |e| serde_json::json!({"error": {"kind": "Invalid", "message": e}}),
                ),
                Err(e) => error_json(&e),
            },
        };
        if writeln!(stdout, "{out}")
            .and_then(|_| stdout.flush())
            .is_err()
        {
            break;
        }
    }
    ExitCode::SUCCESS
}

/// A shell line's object: `@NAME[:TYPE] METHOD ARGS` names one (the type
/// creates it if new); a plain line calls the default object. A name holding
/// ':' is written with its type (`@a:b:Lock`: name `a:b`).
pub(crate) fn shell_target(line: &str) -> Result<(Target, &str), String> {
    let Some(rest) = line.strip_prefix('@') else {
        return Ok((Target::default(), line));
    };
    let (spec, call) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    let call = call.trim_start();
    if call.is_empty() {
        return Err(format!(
            "@{spec}: a method must follow the object (@NAME[:TYPE] METHOD ARGS)"
        ));
    }
    let looks_like_type = |t: &str| {
        !t.is_empty()
            && t.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
    };
    let (name, type_name) = match spec.rsplit_once(':') {
        Some((name, t)) if looks_like_type(t) => (name, t),
        _ => (spec, ""),
    };
    if name.is_empty() {
        return Err("@: an object name must follow the @".into());
    }
    Ok((Target::named(name, type_name), call))
}
