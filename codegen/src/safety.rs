//! The safety check: a replicated object must move through the same states
//! on every replica, so its methods may not read clocks, draw random numbers,
//! do IO, start threads, read the environment, keep global state, or depend
//! on hash order. The check is syntactic (it reads paths, macros and items in
//! the source), so it errs on the side of refusing; a method that is refused
//! wrongly is let through with
//! `#[concoord(allow(nondeterminism = "why this is deterministic"))]`.
//!
//! Printing (`println!`, `eprintln!`, `dbg!`, ...) counts as IO: it happens
//! once per replica and again whenever a replica replays or catches up, so a
//! method's output would be duplicated and out of step. `log::` macros are
//! allowed: they are per-node diagnostics, not behaviour.

use proc_macro2::Span;
use std::collections::BTreeSet;
use syn::punctuated::Punctuated;
use syn::visit::Visit;
use syn::{Attribute, Expr, ImplItem, ItemImpl, Token};

/// The kinds of nondeterminism the check refuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    Clock,
    Randomness,
    Io,
    Printing,
    Thread,
    Environment,
    GlobalState,
    HashOrder,
}

impl Rule {
    /// What is wrong and what to use instead.
    pub fn message(self, what: &str) -> String {
        let advice = match self {
            Rule::Clock => "clocks differ between replicas and between a call and its replay; take the time as an argument from the caller",
            Rule::Randomness => "randomness differs between replicas; take a seed as an argument (the caller draws it) and keep a seeded generator in the object's state",
            Rule::Io => "IO runs once per replica and again on replay, and its result differs between replicas; do IO in the client and pass the data in as arguments",
            Rule::Printing => "printing is IO: it runs on every replica and again on replay; return the value to the caller, or use log::debug! for diagnostics",
            Rule::Thread => "threads interleave differently on every replica; do the work sequentially inside the method",
            Rule::Environment => "the environment differs between replica processes; pass configuration as constructor arguments (concoord_init)",
            Rule::GlobalState => "global state is not replicated (not in snapshots, different on a replica that joins later); keep it in a field of the object",
            Rule::HashOrder => "hash order differs per process; use BTreeMap/BTreeSet (ordered, the same on every replica)",
        };
        format!("concoord: `{what}` is not deterministic: {advice}. If this is a false positive, mark the method (or field) #[concoord(allow(nondeterminism = \"why\"))]")
    }
}

/// Which rule a path breaks, if any. `segments` are the path's identifiers.
pub fn rule_for_path(segments: &[String], statics: &BTreeSet<String>) -> Option<Rule> {
    let has = |name: &str| segments.iter().any(|s| s == name);
    let first = segments.first().map(String::as_str).unwrap_or("");
    let std_module = |module: &str| {
        segments.windows(2).any(|w| {
            matches!(w[0].as_str(), "std" | "core" | "tokio" | "async_std") && w[1] == module
        }) || (first == module && segments.len() > 1)
    };
    if has("HashMap") || has("HashSet") || has("hash_map") || has("hash_set") {
        return Some(Rule::HashOrder);
    }
    if has("RandomState")
        || matches!(first, "rand" | "getrandom" | "fastrand" | "oorandom")
        || has("thread_rng")
        || has("OsRng")
        || (has("random") && segments.last().is_some_and(|l| l == "random"))
    {
        return Some(Rule::Randomness);
    }
    if has("Instant")
        || has("SystemTime")
        || has("UNIX_EPOCH")
        || first == "chrono"
        || (segments.len() >= 2 && segments[segments.len() - 1] == "now")
    {
        return Some(Rule::Clock);
    }
    if std_module("thread") || has("spawn") || has("spawn_blocking") || first == "rayon" {
        return Some(Rule::Thread);
    }
    if std_module("env") {
        return Some(Rule::Environment);
    }
    if std_module("fs")
        || std_module("net")
        || std_module("io")
        || std_module("process")
        || has("File")
        || has("OpenOptions")
        || has("TcpStream")
        || has("TcpListener")
        || has("UdpSocket")
        || (first == "tokio" && segments.len() > 1)
    {
        return Some(Rule::Io);
    }
    if segments.len() == 1 && statics.contains(first) {
        return Some(Rule::GlobalState);
    }
    None
}

/// Which rule a macro call breaks (`println!`, `thread_local!`).
pub fn rule_for_macro(name: &str) -> Option<Rule> {
    match name {
        "println" | "print" | "eprintln" | "eprint" | "dbg" => Some(Rule::Printing),
        "thread_local" => Some(Rule::GlobalState),
        _ => None,
    }
}

/// Type names whose statics are global mutable state.
const INTERIOR_MUTABLE: &[&str] = &[
    "Mutex",
    "RwLock",
    "RefCell",
    "Cell",
    "UnsafeCell",
    "OnceLock",
    "OnceCell",
    "LazyLock",
    "Lazy",
    "AtomicBool",
    "AtomicI8",
    "AtomicI16",
    "AtomicI32",
    "AtomicI64",
    "AtomicIsize",
    "AtomicU8",
    "AtomicU16",
    "AtomicU32",
    "AtomicU64",
    "AtomicUsize",
    "AtomicPtr",
];

/// Whether a `static` holds state that can change: `static mut`, or a type
/// with interior mutability.
pub fn is_mutable_static(item: &syn::ItemStatic) -> bool {
    if matches!(item.mutability, syn::StaticMutability::Mut(_)) {
        return true;
    }
    let mut names = Vec::new();
    collect_type_idents(&item.ty, &mut names);
    names.iter().any(|n| INTERIOR_MUTABLE.contains(&n.as_str()))
}

fn collect_type_idents(ty: &syn::Type, out: &mut Vec<String>) {
    struct Idents<'a>(&'a mut Vec<String>);
    impl<'ast> Visit<'ast> for Idents<'_> {
        fn visit_path_segment(&mut self, seg: &'ast syn::PathSegment) {
            self.0.push(seg.ident.to_string());
            syn::visit::visit_path_segment(self, seg);
        }
    }
    Idents(out).visit_type(ty);
}

/// The names of a file's statics that hold mutable state (what a method of
/// the object must not touch).
pub fn mutable_statics(file: &syn::File) -> BTreeSet<String> {
    file.items
        .iter()
        .filter_map(|i| match i {
            syn::Item::Static(s) if is_mutable_static(s) => Some(s.ident.to_string()),
            _ => None,
        })
        .collect()
}

/// Reads `#[concoord(allow(nondeterminism = "why"))]` from attributes.
/// `Ok(Some(why))` when present; an error when malformed or without a reason.
pub fn allow_reason(attrs: &[Attribute]) -> syn::Result<Option<String>> {
    let mut reason = None;
    for attr in attrs.iter().filter(|a| a.path().is_ident("concoord")) {
        attr.parse_nested_meta(|meta| {
            if !meta.path.is_ident("allow") {
                return Err(meta.error(
                    "expected #[concoord(allow(nondeterminism = \"why\"))]",
                ));
            }
            meta.parse_nested_meta(|inner| {
                if !inner.path.is_ident("nondeterminism") {
                    return Err(inner.error(
                        "expected #[concoord(allow(nondeterminism = \"why\"))]",
                    ));
                }
                let why: syn::LitStr = inner.value()?.parse()?;
                if why.value().trim().is_empty() {
                    return Err(syn::Error::new_spanned(
                        &why,
                        "say why this method is deterministic after all: #[concoord(allow(nondeterminism = \"why\"))]",
                    ));
                }
                reason = Some(why.value());
                Ok(())
            })
        })?;
    }
    Ok(reason)
}

/// Removes the `#[concoord(...)]` helper attributes (the compiler does not
/// know them) from an impl block's functions.
pub fn strip_helper_attrs(item: &mut ItemImpl) {
    for i in &mut item.items {
        if let ImplItem::Fn(f) = i {
            f.attrs.retain(|a| !a.path().is_ident("concoord"));
        }
    }
}

/// One thing the check refused.
#[derive(Debug, Clone)]
pub struct Finding {
    /// Where the offending code starts (file:line for `concoord object`).
    pub span: Span,
    /// Where it ends, so the compiler underlines all of it.
    pub end: Span,
    pub rule: Rule,
    pub message: String,
}

impl Finding {
    /// The finding as a compile error spanning the offending code.
    pub fn to_error(&self) -> syn::Error {
        // On stable a span cannot be joined; an error made from tokens
        // underlines from the first token's span to the last one's.
        let tokens: proc_macro2::TokenStream = [self.span, self.end]
            .into_iter()
            .map(|s| proc_macro2::TokenTree::Ident(proc_macro2::Ident::new("x", s)))
            .collect();
        syn::Error::new_spanned(tokens, &self.message)
    }
}

/// Checks every function of an impl block (signatures and bodies), except
/// those with an `allow` attribute. `statics` are the file-level statics
/// with mutable state, when the whole file is known.
pub fn check_impl(item: &ItemImpl, statics: &BTreeSet<String>) -> syn::Result<Vec<Finding>> {
    let mut findings = Vec::new();
    for i in &item.items {
        match i {
            ImplItem::Fn(f) => {
                if allow_reason(&f.attrs)?.is_some() {
                    continue;
                }
                let mut v = Checker {
                    statics,
                    findings: &mut findings,
                };
                v.visit_impl_item_fn(f);
            }
            ImplItem::Const(c) => {
                let mut v = Checker {
                    statics,
                    findings: &mut findings,
                };
                v.visit_impl_item_const(c);
            }
            _ => {}
        }
    }
    Ok(findings)
}

/// Checks a struct's or enum's fields (the state): no hash-ordered collections.
pub fn check_fields<'a>(
    fields: impl IntoIterator<Item = &'a syn::Field>,
) -> syn::Result<Vec<Finding>> {
    let mut findings = Vec::new();
    let none = BTreeSet::new();
    for field in fields {
        if allow_reason(&field.attrs)?.is_some() {
            continue;
        }
        Checker {
            statics: &none,
            findings: &mut findings,
        }
        .visit_type(&field.ty);
    }
    Ok(findings)
}

/// Checks a whole item's fields (struct or enum).
pub fn check_data_item(item: &syn::Item) -> syn::Result<Vec<Finding>> {
    match item {
        syn::Item::Struct(s) => check_fields(s.fields.iter()),
        syn::Item::Enum(e) => check_fields(e.variants.iter().flat_map(|v| v.fields.iter())),
        _ => Ok(Vec::new()),
    }
}

struct Checker<'a> {
    statics: &'a BTreeSet<String>,
    findings: &'a mut Vec<Finding>,
}

impl Checker<'_> {
    fn report(&mut self, tokens: &dyn quote::ToTokens, rule: Rule, what: &str) {
        let mut iter = tokens.to_token_stream().into_iter();
        let span = iter
            .next()
            .map(|t| t.span())
            .unwrap_or_else(Span::call_site);
        let end = iter.last().map(|t| t.span()).unwrap_or(span);
        // One finding per line and rule is enough to act on.
        let line = span.start().line;
        if line != 0
            && self
                .findings
                .iter()
                .any(|f| f.rule == rule && f.span.start().line == line)
        {
            return;
        }
        self.findings.push(Finding {
            span,
            end,
            rule,
            message: rule.message(what),
        });
    }
}

fn path_text(segments: &[String]) -> String {
    segments.join("::")
}

impl<'ast> Visit<'ast> for Checker<'_> {
    fn visit_path(&mut self, path: &'ast syn::Path) {
        let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        if let Some(rule) = rule_for_path(&segments, self.statics) {
            self.report(path, rule, &path_text(&segments));
        }
        syn::visit::visit_path(self, path);
    }

    fn visit_use_tree(&mut self, tree: &'ast syn::UseTree) {
        fn walk(
            c: &mut Checker<'_>,
            prefix: &mut Vec<String>,
            tree: &syn::UseTree,
            span: &syn::UseTree,
        ) {
            match tree {
                syn::UseTree::Path(p) => {
                    prefix.push(p.ident.to_string());
                    walk(c, prefix, &p.tree, span);
                    prefix.pop();
                }
                syn::UseTree::Name(n) => {
                    prefix.push(n.ident.to_string());
                    check(c, prefix, span);
                    prefix.pop();
                }
                syn::UseTree::Rename(r) => {
                    prefix.push(r.ident.to_string());
                    check(c, prefix, span);
                    prefix.pop();
                }
                syn::UseTree::Glob(_) => check(c, prefix, span),
                syn::UseTree::Group(g) => {
                    for t in &g.items {
                        walk(c, prefix, t, span);
                    }
                }
            }
        }
        fn check(c: &mut Checker<'_>, segments: &[String], span: &syn::UseTree) {
            if let Some(rule) = rule_for_path(segments, c.statics) {
                c.report(span, rule, &path_text(segments));
            }
        }
        walk(self, &mut Vec::new(), tree, tree);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        let name = mac
            .path
            .segments
            .last()
            .map(|s| s.ident.to_string())
            .unwrap_or_default();
        if let Some(rule) = rule_for_macro(&name) {
            self.report(&mac.path, rule, &format!("{name}!"));
        }
        self.visit_path(&mac.path);
        // Look inside `format!(..)`, `vec![..]`, `assert!(..)` and the like:
        // their arguments are expressions the compiler will run.
        if let Ok(args) = mac.parse_body_with(Punctuated::<Expr, Token![,]>::parse_terminated) {
            for e in &args {
                self.visit_expr(e);
            }
        }
    }

    fn visit_item_static(&mut self, item: &'ast syn::ItemStatic) {
        if is_mutable_static(item) {
            self.report(
                &{
                    let (token, ident) = (&item.static_token, &item.ident);
                    quote::quote!(#token #ident)
                },
                Rule::GlobalState,
                &format!("static {}", item.ident),
            );
        }
        syn::visit::visit_item_static(self, item);
    }
}
