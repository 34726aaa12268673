//! `concoord object`: the proxy generator's front end. The checked-in proxy
//! of the TenCounter example must be what the generator writes today (run
//! with `CONCOORD_BLESS=1` to rewrite it), and bad input must fail with a
//! message that says which file, line and problem.

use concoord::object_cmd::{proxy_path, resolve, run, Lang, ObjectArgs};
use concoord_codegen::{generate_proxy_file, ProxyFileOptions, ProxyKind};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};

const EXAMPLE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");

/// A fresh directory of this test run's own.
fn temp_dir() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "concoord-object-cmd-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a temp dir");
    dir
}

/// A Rust file in canonical layout: comments and formatting do not count.
fn tokens(text: &str) -> String {
    concoord_codegen::file::canonical(text).expect("the file parses")
}

fn args(object: &str) -> ObjectArgs {
    ObjectArgs {
        object: object.to_string(),
        token: None,
        proxy_type: 0,
        safe: true,
        verbose: true,
        lang: Lang::Rust,
    }
}

/// The proxy checked in beside `examples/DIR/FILE.rs` is what
/// `cd examples/DIR && concoord object -o FILE.TYPE -p 1 -s` writes today.
fn assert_checked_in_proxy_is_current(dir: &str, file: &str, type_name: &str) {
    let dir = Path::new(EXAMPLE_DIR).join(dir);
    let source_name = format!("{file}.rs");
    let source = std::fs::read_to_string(dir.join(&source_name)).expect("the example exists");
    let options = ProxyFileOptions {
        kind: ProxyKind::Blocking,
        token: None,
        safety: true,
    };
    let generated = generate_proxy_file(&source, &source_name, type_name, &options)
        .unwrap_or_else(|e| panic!("generation failed: {e}"));
    let checked_in = dir.join(format!("{file}_proxy.rs"));
    if std::env::var_os("CONCOORD_BLESS").is_some() {
        std::fs::write(&checked_in, &generated.text).expect("write the proxy");
        let _ = std::process::Command::new("rustfmt")
            .args(["--edition", "2021"])
            .arg(&checked_in)
            .status();
    }
    let current = std::fs::read_to_string(&checked_in).expect("the proxy is checked in");
    assert_eq!(
        tokens(&current),
        tokens(&generated.text),
        "{} is stale: regenerate it with \
         `cd {} && concoord object -o {file}.{type_name} -p 1 -s` \
         (or CONCOORD_BLESS=1 cargo test --test object_cmd)",
        checked_in.display(),
        dir.display()
    );
}

#[test]
fn checked_in_tencounter_proxy_is_what_the_generator_writes() {
    assert_checked_in_proxy_is_current("tencounter", "tencounter", "TenCounter");
}

#[test]
fn checked_in_semaphore_proxy_is_what_the_generator_writes() {
    // The seed's blocking walk-through: the command parameter is left out.
    assert_checked_in_proxy_is_current("semaphore", "semaphore", "Semaphore");
    let proxy =
        std::fs::read_to_string(Path::new(EXAMPLE_DIR).join("semaphore/semaphore_proxy.rs"))
            .expect("checked in");
    let acquire = proxy
        .split("pub fn acquire(")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .expect("the proxy has acquire");
    let params: Vec<&str> = acquire
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    assert_eq!(params, ["&self", "timeout: Option<f64>"], "{proxy}");
    assert!(!proxy.contains("CallContext"), "the proxy takes no command");
}

#[test]
fn writes_each_proxy_kind_beside_the_file_and_it_parses() {
    let dir = temp_dir();
    let file = dir.join("tencounter.rs");
    std::fs::copy(
        Path::new(EXAMPLE_DIR).join("tencounter/tencounter.rs"),
        &file,
    )
    .expect("copy");
    for (number, name) in [
        (0, "TenCounterProxy"),
        (1, "TenCounterBlockingProxy"),
        (2, "TenCounterBatchProxy"),
        (3, "TenCounterServerBatchProxy"),
    ] {
        let mut a = args(&format!("{}:TenCounter", file.display()));
        a.proxy_type = number;
        a.token = Some("s3cret".into());
        assert_eq!(run(a), ExitCode::SUCCESS, "-p {number}");
        let out = proxy_path(&file);
        assert_eq!(out, dir.join("tencounter_proxy.rs"));
        let text = std::fs::read_to_string(&out).expect("the proxy was written");
        syn::parse_file(&text)
            .unwrap_or_else(|e| panic!("-p {number}: output does not parse: {e}"));
        assert!(
            text.contains(&format!("pub struct {name}")),
            "-p {number}: no {name} in\n{text}"
        );
        assert!(text.contains("\"s3cret\""), "-t is baked in");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn dotted_module_names_resolve_relative_to_the_directory() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let found = resolve("examples.tencounter.tencounter.TenCounter", root).expect("resolves");
    assert_eq!(found.file, root.join("examples/tencounter/tencounter.rs"));
    assert_eq!(found.type_name, "TenCounter");
    let found = resolve("examples/tencounter/tencounter.rs:TenCounter", root).expect("resolves");
    assert_eq!(found.file, root.join("examples/tencounter/tencounter.rs"));
}

#[test]
fn a_missing_file_names_the_paths_tried() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let e = resolve("examples.nosuch.TenCounter", root).unwrap_err();
    assert!(e.contains("examples/nosuch.rs"), "{e}");
    let e = resolve("nosuch.rs:TenCounter", root).unwrap_err();
    assert!(e.contains("no file"), "{e}");
    let e = resolve("TenCounter", root).unwrap_err();
    assert!(e.contains("MODULE.Type"), "{e}");
    assert_ne!(run(args("examples.nosuch.TenCounter")), ExitCode::SUCCESS);
}

fn generate(source: &str, type_name: &str) -> Result<String, String> {
    let options = ProxyFileOptions {
        kind: ProxyKind::Basic,
        token: None,
        safety: true,
    };
    generate_proxy_file(source, "obj.rs", type_name, &options)
        .map(|g| g.text)
        .map_err(|e| e.message)
}

#[test]
fn a_missing_type_lists_the_types_found() {
    let e = generate(
        "#[derive(Default)]\nstruct Other;\nimpl Other {}\n",
        "TenCounter",
    )
    .unwrap_err();
    assert!(
        e.contains("no struct, enum or type alias named `TenCounter`"),
        "{e}"
    );
    assert!(e.contains("types found: Other"), "{e}");
    let e = generate("#[derive(Default)]\nstruct TenCounter;\n", "TenCounter").unwrap_err();
    assert!(e.contains("obj.rs:2:8"), "points at the type: {e}");
    assert!(e.contains("no `impl TenCounter"), "{e}");
}

#[test]
fn a_type_it_cannot_handle_is_refused_with_file_and_line() {
    let source = "#[derive(Default)]\nstruct T;\nimpl T {\n    pub fn eat(self) {}\n}\n";
    let e = generate(source, "T").unwrap_err();
    assert!(e.contains("obj.rs:4:16"), "{e}");
    assert!(e.contains("consumes `self`"), "{e}");
    let source = "#[derive(Default)]\nstruct T;\nimpl T {\n    pub async fn later(&self) {}\n}\n";
    let e = generate(source, "T").unwrap_err();
    assert!(e.contains("obj.rs:4:9") && e.contains("async"), "{e}");
    let e = generate("struct T { x: i64 \n", "T").unwrap_err();
    assert!(e.contains("obj.rs:") && e.contains("cannot parse"), "{e}");
}

#[test]
fn the_safety_check_names_the_line_and_the_alternative() {
    let source = "\
use std::collections::HashMap;
#[derive(Default)]
struct T { seen: HashMap<String, u64> }
impl T {
    pub fn stamp(&mut self) -> u64 {
        std::time::SystemTime::now().elapsed().unwrap().as_secs()
    }
}
";
    let e = generate(source, "T").unwrap_err();
    assert!(
        e.contains("obj.rs:3:18") && e.contains("use BTreeMap/BTreeSet"),
        "{e}"
    );
    assert!(e.contains("obj.rs:6:9") && e.contains("clocks"), "{e}");
    let no_default = "struct T;\nimpl T {\n    pub fn get(&self) -> u8 { 1 }\n}\n";
    let e = generate(no_default, "T").unwrap_err();
    assert!(
        e.contains("obj.rs:1:8") && e.contains("has no `Default`"),
        "{e}"
    );
    let with_impl = "struct T;\nimpl Default for T { fn default() -> Self { T } }\nimpl T {\n    pub fn get(&self) -> u8 { 1 }\n}\n";
    generate(with_impl, "T").expect("an impl Default counts");
}
