//! `concoord object -o MODULE.Type [-t TOKEN] [-p PROXYTYPE] [-s] [-v]`:
//! reads a type from its source file and writes its proxy module beside it
//! (`<file>_proxy.rs`), as ConCoord's `concoord object` does for Python;
//! with `--lang python`, a Python class over the `concoord` package
//! (`<file>_proxy.py`).

use concoord_codegen::{
    generate_proxy_file, generate_python_proxy_file, ProxyFileOptions, ProxyKind,
};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The flags of `concoord object` (ConCoord's, with its long names).
#[derive(clap::Parser, Debug, Clone)]
pub struct ObjectArgs {
    /// The type: ConCoord's dotted `MODULE.Type`, where MODULE is a .rs file
    /// relative to the current directory (`examples.tencounter.TenCounter` is
    /// type TenCounter in examples/tencounter.rs), or `path/to/file.rs:Type`.
    #[arg(short = 'o', long = "objectname")]
    pub object: String,
    /// Security token to bake into the proxy (its `new` presents it).
    #[arg(short = 't', long = "token")]
    pub token: Option<String>,
    /// 0: basic, 1: blocking, 2: client-side batching, 3: server-side batching.
    #[arg(short = 'p', long = "proxytype", default_value_t = 0,
          value_parser = clap::value_parser!(u8).range(0..=3))]
    pub proxy_type: u8,
    /// Safety check: refuse a type without Default and methods that use
    /// clocks, randomness, IO, threads, the environment, global state or hash order.
    #[arg(short = 's', long = "safe")]
    pub safe: bool,
    /// Print what was generated and why.
    #[arg(short = 'v', long = "verbose")]
    pub verbose: bool,
    /// The proxy's language: `rust` (a module, `-p` picks its flavour) or
    /// `python` (a class over python/'s `concoord` package; `-p` is ignored).
    #[arg(long = "lang", value_enum, default_value_t = Lang::Rust)]
    pub lang: Lang,
}

/// The language `concoord object` writes the proxy in.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Rust,
    Python,
}

/// Where a type's source is: the file and the type's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectLocation {
    pub file: PathBuf,
    pub type_name: String,
}

/// Resolves `-o` against `cwd`: `a.b.Type` is `a/b.rs` (or `a/b/mod.rs`),
/// `path/to/file.rs:Type` is that file. The error says what was tried.
pub fn resolve(spec: &str, cwd: &Path) -> Result<ObjectLocation, String> {
    if let Some((file, type_name)) = spec.rsplit_once(':') {
        if file.ends_with(".rs") {
            if type_name.is_empty() {
                return Err(format!(
                    "-o {spec}: no type after the ':' (path/to/file.rs:Type)"
                ));
            }
            let path = cwd.join(file);
            if !path.is_file() {
                return Err(format!("-o {spec}: no file {}", path.display()));
            }
            return Ok(ObjectLocation {
                file: path,
                type_name: type_name.to_string(),
            });
        }
    }
    let Some((module, type_name)) = spec.rsplit_once('.') else {
        return Err(format!(
            "-o {spec}: expected MODULE.Type (e.g. examples.tencounter.TenCounter) or path/to/file.rs:Type"
        ));
    };
    if module.is_empty() || type_name.is_empty() || module.split('.').any(str::is_empty) {
        return Err(format!(
            "-o {spec}: expected MODULE.Type (e.g. examples.tencounter.TenCounter)"
        ));
    }
    let relative: PathBuf = module.split('.').collect();
    let candidates = [
        cwd.join(relative.with_extension("rs")),
        cwd.join(&relative).join("mod.rs"),
    ];
    match candidates.iter().find(|c| c.is_file()) {
        Some(file) => Ok(ObjectLocation {
            file: file.clone(),
            type_name: type_name.to_string(),
        }),
        None => Err(format!(
            "-o {spec}: cannot find module {module}: neither {} nor {} exists (MODULE is a path relative to the current directory, {})",
            candidates[0].display(),
            candidates[1].display(),
            cwd.display()
        )),
    }
}

/// `dir/name.rs` → `dir/name_proxy.rs`.
pub fn proxy_path(file: &Path) -> PathBuf {
    proxy_path_for(file, Lang::Rust)
}

/// `dir/name.rs` → `dir/name_proxy.rs`, or `dir/name_proxy.py` for Python.
pub fn proxy_path_for(file: &Path, lang: Lang) -> PathBuf {
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "object".into());
    let ext = match lang {
        Lang::Rust => "rs",
        Lang::Python => "py",
    };
    file.with_file_name(format!("{stem}_proxy.{ext}"))
}

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("concoord object: {message}");
    ExitCode::from(2)
}

/// Runs `concoord object`: 0 when the proxy was written, 2 with a message
/// naming the file and line otherwise.
pub fn run(args: ObjectArgs) -> ExitCode {
    let cwd = match std::env::current_dir() {
        Ok(d) => d,
        Err(e) => return fail(format!("cannot read the current directory: {e}")),
    };
    let location = match resolve(&args.object, &cwd) {
        Ok(l) => l,
        Err(e) => return fail(e),
    };
    let shown = location
        .file
        .strip_prefix(&cwd)
        .unwrap_or(&location.file)
        .display()
        .to_string();
    let source = match std::fs::read_to_string(&location.file) {
        Ok(s) => s,
        Err(e) => return fail(format!("cannot read {shown}: {e}")),
    };
    let kind = ProxyKind::from_number(args.proxy_type).expect("clap keeps -p in 0..=3");
    let options = ProxyFileOptions {
        kind,
        token: args.token.clone(),
        safety: args.safe,
    };
    let generated = match args.lang {
        Lang::Rust => generate_proxy_file(&source, &shown, &location.type_name, &options),
        Lang::Python => generate_python_proxy_file(
            &source,
            &shown,
            &location.type_name,
            args.token.as_deref(),
            args.safe,
        ),
    };
    let generated = match generated {
        Ok(g) => g,
        Err(e) => return fail(e),
    };
    let out = proxy_path_for(&location.file, args.lang);
    if let Err(e) = std::fs::write(&out, &generated.text) {
        return fail(format!("cannot write {}: {e}", out.display()));
    }
    let out_shown = out.strip_prefix(&cwd).unwrap_or(&out).display().to_string();
    if args.lang == Lang::Python {
        if args.verbose {
            for note in &generated.notes {
                println!("{note}");
            }
            println!(
                "import it beside the concoord package: `from {} import {}`",
                out.file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                location.type_name
            );
        }
        println!("wrote {out_shown}");
        return ExitCode::SUCCESS;
    }
    let formatted = format_file(&out);
    if args.verbose {
        for note in &generated.notes {
            println!("{note}");
        }
        println!(
            "{}",
            if formatted {
                "formatted with rustfmt"
            } else {
                "rustfmt not found or failed: left as generated"
            }
        );
        println!(
            "use it as a module beside {shown}: `mod {};`",
            out.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        );
    }
    println!("wrote {out_shown}");
    ExitCode::SUCCESS
}

/// Formats the generated file with rustfmt when it is installed, so it
/// matches the project's style; a missing rustfmt is not an error.
fn format_file(path: &Path) -> bool {
    std::process::Command::new("rustfmt")
        .args(["--edition", "2021"])
        .arg(path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
