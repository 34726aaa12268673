//! `concoord object`: reads a type from a source file and writes its proxy
//! module, with errors that name the file and line.

use crate::generate::{proxies, ProxyKind};
use crate::model::{model_from_impl, ObjectModel, Output};
use crate::safety;
use proc_macro2::Span;
use quote::{quote, ToTokens};
use syn::ext::IdentExt;

/// What to generate.
#[derive(Clone, Debug)]
pub struct ProxyFileOptions {
    pub kind: ProxyKind,
    /// Baked into the proxy (`-t`).
    pub token: Option<String>,
    /// Run the safety check (`-s`).
    pub safety: bool,
}

/// The generated proxy module and what the generator decided, for `-v`.
#[derive(Clone, Debug)]
pub struct GeneratedFile {
    pub text: String,
    pub notes: Vec<String>,
}

/// Why no proxy was generated; `message` names the file and line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileError {
    pub message: String,
}

impl std::fmt::Display for FileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for FileError {}

/// `path:line:col`, as compilers print locations.
fn at(path: &str, span: Span) -> String {
    let start = span.start();
    format!("{path}:{}:{}", start.line, start.column + 1)
}

fn syn_errors(path: &str, e: &syn::Error) -> String {
    e.clone()
        .into_iter()
        .map(|e| format!("{}: {}", at(path, e.span()), e))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Reads `type_name` from `source` (the text of the file shown as `path`):
/// finds the type and its impl blocks, runs the safety check when asked,
/// and notes what it found for `-v`.
pub(crate) fn read_model(
    source: &str,
    path: &str,
    type_name: &str,
    safety_check: bool,
    notes: &mut Vec<String>,
) -> Result<ObjectModel, FileError> {
    let fail = |message: String| FileError { message };
    let file = syn::parse_file(source).map_err(|e| {
        fail(format!(
            "{}: cannot parse the file: {e}",
            at(path, e.span())
        ))
    })?;

    let data = file
        .items
        .iter()
        .find(|i| item_name(i).as_deref() == Some(type_name));
    let Some(data) = data else {
        let found: Vec<String> = file.items.iter().filter_map(item_name).collect();
        let found = if found.is_empty() {
            "none".to_string()
        } else {
            found.join(", ")
        };
        return Err(fail(format!(
            "{path}: no struct, enum or type alias named `{type_name}` at the top level of the file (types found: {found})"
        )));
    };
    notes.push(format!(
        "found `{type_name}` at {}",
        at(path, item_ident_span(data))
    ));

    let impls: Vec<&syn::ItemImpl> = file
        .items
        .iter()
        .filter_map(|i| match i {
            syn::Item::Impl(imp) if imp.trait_.is_none() && self_is(imp, type_name) => Some(imp),
            _ => None,
        })
        .collect();
    let Some(first) = impls.first() else {
        return Err(fail(format!(
            "{}: `{type_name}` has no `impl {type_name} {{ .. }}` block with its methods in {path}",
            at(path, item_ident_span(data))
        )));
    };
    // Methods may be spread over several inherent impl blocks: read them as one.
    let mut merged = (*first).clone();
    for imp in &impls[1..] {
        merged.items.extend(imp.items.iter().cloned());
    }

    if safety_check {
        let mut problems = Vec::new();
        if !has_default(&file, type_name) {
            problems.push(format!(
                "{}: `{type_name}` has no `Default`: replicas build the object with no arguments when they go live (ConCoord's `__init__`); add #[derive(Default)] or `impl Default for {type_name}`",
                at(path, item_ident_span(data))
            ));
        }
        let statics = safety::mutable_statics(&file);
        let mut findings = safety::check_data_item(data).map_err(|e| fail(syn_errors(path, &e)))?;
        for imp in &impls {
            findings
                .extend(safety::check_impl(imp, &statics).map_err(|e| fail(syn_errors(path, &e)))?);
        }
        for f in &findings {
            problems.push(format!("{}: {}", at(path, f.span), f.message));
        }
        if !problems.is_empty() {
            return Err(fail(format!(
                "safety check failed ({} problem(s)):\n{}",
                problems.len(),
                problems.join("\n")
            )));
        }
        notes.push(format!(
            "safety check passed: `{type_name}` has Default; no clocks, randomness, IO, threads, environment, global state or hash-ordered collections in {} function(s)",
            impls.iter().map(|i| i.items.len()).sum::<usize>()
        ));
    } else {
        notes.push("safety check skipped (pass -s to run it)".into());
    }

    let name = object_name(&merged).unwrap_or_else(|| type_name.to_string());
    let model = model_from_impl(&merged, Some(name)).map_err(|e| {
        fail(format!(
            "cannot make a proxy for `{type_name}`:\n{}",
            syn_errors(path, &e)
        ))
    })?;
    describe_model(&model, notes);
    Ok(model)
}

/// Generates the proxy module for `type_name` found in `source` (the text of
/// the file shown as `path` in messages).
pub fn generate_proxy_file(
    source: &str,
    path: &str,
    type_name: &str,
    options: &ProxyFileOptions,
) -> Result<GeneratedFile, FileError> {
    let fail = |message: String| FileError { message };
    let mut notes = Vec::new();
    let model = read_model(source, path, type_name, options.safety, &mut notes)?;
    let proxy_name = options.kind.type_name(&model.ident);
    notes.push(format!(
        "generated `{proxy_name}`: {}",
        options.kind.describe()
    ));
    notes.push(match &options.token {
        Some(_) => "token baked in (-t): `new` presents it".into(),
        None => "no token baked in: `new` presents none (use with_options to pass one)".into(),
    });

    let body = proxies(&model, &[options.kind], options.token.as_deref());
    let tokens = quote! {
        #[allow(unused_imports)]
        use super::*;
        #body
    };
    let generated: syn::File = syn::parse2(tokens).map_err(|e| {
        fail(format!(
            "internal error: the generated proxy does not parse ({e}); please report it"
        ))
    })?;
    let header = format!(
        "// The proxy of `{type_name}` ({path}), generated by `concoord object`: do not edit.\n\
         // Use it as a module beside the type: `mod {stem}_proxy;` (the argument and\n\
         // result types are taken from the parent module: `use super::*`).\n\n",
        stem = file_stem(path),
    );
    let text = format!("{header}{}", prettyplease::unparse(&generated));
    Ok(GeneratedFile { text, notes })
}

fn file_stem(path: &str) -> String {
    std::path::Path::new(path)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "object".into())
}

/// `name = "..."` from an `#[concoord::object(name = "...")]` on the block.
fn object_name(imp: &syn::ItemImpl) -> Option<String> {
    imp.attrs
        .iter()
        .filter(|a| {
            let segs: Vec<String> = a
                .path()
                .segments
                .iter()
                .map(|s| s.ident.to_string())
                .collect();
            segs.last().is_some_and(|l| l == "object")
        })
        .find_map(|a| match &a.meta {
            syn::Meta::List(l) => crate::model::ObjectAttr::parse(l.tokens.clone())
                .ok()
                .and_then(|o| o.name),
            _ => None,
        })
}

fn describe_model(model: &ObjectModel, notes: &mut Vec<String>) {
    match &model.ctor {
        Some(c) => notes.push(format!(
            "constructor `new({})`: concoord_init takes the same arguments",
            c.params
                .iter()
                .map(|p| p.name.clone())
                .collect::<Vec<_>>()
                .join(", ")
        )),
        None => notes.push(
            "no `fn new(..) -> Self`: concoord_init takes no arguments and resets to Default"
                .into(),
        ),
    }
    for m in &model.methods {
        let args: Vec<String> = m
            .params
            .iter()
            .map(|p| format!("{}: {}", p.name, p.proxy_ty.to_token_stream()))
            .collect();
        let result = match &m.output {
            Output::Unit => "()".to_string(),
            Output::Value(t) => t.to_token_stream().to_string(),
            Output::Result { ok, .. } => format!(
                "{} (Err becomes the caller's ClientError::Object)",
                ok.to_token_stream()
            ),
        };
        let parks = match (m.parks, m.timeout_param()) {
            (true, Some(_)) => "; may park (the replica supplies the calling command), cancelled when `timeout` runs out",
            (true, None) => "; may park (the replica supplies the calling command)",
            (false, _) if m.command_at.is_some() => "; takes the calling command (the replica supplies it)",
            _ => "",
        };
        notes.push(format!(
            "method `{}({})` -> {result}: {}{parks}",
            m.name,
            args.join(", "),
            if m.read_only {
                "&self, read-only"
            } else {
                "&mut self, replicated write"
            }
        ));
    }
    for (name, why) in &model.skipped {
        notes.push(format!("not exposed: `{name}`: {why}"));
    }
}

fn item_name(item: &syn::Item) -> Option<String> {
    match item {
        syn::Item::Struct(s) => Some(s.ident.unraw().to_string()),
        syn::Item::Enum(e) => Some(e.ident.unraw().to_string()),
        syn::Item::Type(t) => Some(t.ident.unraw().to_string()),
        _ => None,
    }
}

fn item_ident_span(item: &syn::Item) -> Span {
    match item {
        syn::Item::Struct(s) => s.ident.span(),
        syn::Item::Enum(e) => e.ident.span(),
        syn::Item::Type(t) => t.ident.span(),
        other => syn::spanned::Spanned::span(other),
    }
}

fn self_is(imp: &syn::ItemImpl, type_name: &str) -> bool {
    match &*imp.self_ty {
        syn::Type::Path(p) => p
            .path
            .segments
            .last()
            .is_some_and(|s| s.ident.unraw() == type_name),
        _ => false,
    }
}

/// `#[derive(.., Default, ..)]` on the type or `impl Default for T` in the file.
fn has_default(file: &syn::File, type_name: &str) -> bool {
    file.items.iter().any(|item| match item {
        syn::Item::Struct(syn::ItemStruct { ident, attrs, .. })
        | syn::Item::Enum(syn::ItemEnum { ident, attrs, .. })
            if ident.unraw() == type_name =>
        {
            attrs.iter().any(derives_default)
        }
        syn::Item::Impl(imp) => {
            imp.trait_
                .as_ref()
                .is_some_and(|(_, p, _)| p.segments.last().is_some_and(|s| s.ident == "Default"))
                && self_is(imp, type_name)
        }
        _ => false,
    })
}

fn derives_default(attr: &syn::Attribute) -> bool {
    if !attr.path().is_ident("derive") {
        return false;
    }
    let mut found = false;
    let _ = attr.parse_nested_meta(|meta| {
        if meta
            .path
            .segments
            .last()
            .is_some_and(|s| s.ident == "Default")
        {
            found = true;
        }
        Ok(())
    });
    found
}

/// A Rust file's text in one canonical layout (comments dropped), so two
/// versions that differ only in formatting (e.g. after rustfmt) compare equal.
pub fn canonical(text: &str) -> syn::Result<String> {
    Ok(prettyplease::unparse(&syn::parse_file(text)?))
}
