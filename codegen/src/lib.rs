//! concoord's object generator, shared by its two front ends:
//! `#[concoord::object]` (the `concoord-macros` proc-macro crate is a thin
//! shell over [`expand_object`]) and `concoord object` (which calls
//! [`generate_proxy_file`] on a source file).
//!
//! From a type's `impl` block it builds a [`model::ObjectModel`] (methods,
//! argument and result types, which methods only read, the constructor) and
//! generates:
//! - `impl concoord::objects::ReplicatedObject` dispatching method names to
//!   methods ([`generate::replicated_object_impl`]);
//! - typed proxies ([`generate::proxies`]): `TProxy` (async), `TBlockingProxy`,
//!   `TBatchProxy` (client-side batching) and `TServerBatchProxy`;
//! - and, before anything, the safety check ([`safety`]): no clocks,
//!   randomness, IO, threads, environment, global state or hash order.
//!
//! A method is exposed when it is `pub` and takes `&self` (read-only) or
//! `&mut self`; `fn new(args..) -> Self` (or `-> Result<Self, E>`) is the
//! constructor `concoord_init` re-runs. The type itself must be `Default`.

pub mod file;
pub mod generate;
pub mod model;
pub mod python;
pub mod safety;

pub use file::{generate_proxy_file, FileError, GeneratedFile, ProxyFileOptions};
pub use generate::ProxyKind;
pub use python::generate_python_proxy_file;

use proc_macro2::TokenStream;
use quote::ToTokens;

/// `#[concoord::object(attr)] item`: on an `impl` block, the checked block
/// plus the generated impl and proxies; on a struct or enum, the item after
/// checking its fields. Errors come back as `compile_error!` at their spans.
pub fn expand_object(attr: TokenStream, item: TokenStream) -> TokenStream {
    match try_expand(attr, item.clone()) {
        Ok(tokens) => tokens,
        Err(e) => {
            // Keep the user's item so other errors stay meaningful.
            let mut out = e.to_compile_error();
            if let Ok(mut parsed) = syn::parse2::<syn::Item>(item.clone()) {
                if let syn::Item::Impl(i) = &mut parsed {
                    safety::strip_helper_attrs(i);
                }
                strip_field_attrs(&mut parsed);
                parsed.to_tokens(&mut out);
            } else {
                out.extend(item);
            }
            out
        }
    }
}

fn try_expand(attr: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let options = model::ObjectAttr::parse(attr)?;
    let mut parsed: syn::Item = syn::parse2(item)?;
    match &mut parsed {
        syn::Item::Impl(imp) => {
            let findings = safety::check_impl(imp, &Default::default())?;
            combine(findings.iter().map(|f| f.to_error()))?;
            let model = model::model_from_impl(imp, options.name.clone())?;
            safety::strip_helper_attrs(imp);
            let mut out = imp.to_token_stream();
            out.extend(generate::replicated_object_impl(&model));
            out.extend(generate::proxies(
                &model,
                &ProxyKind::ALL,
                options.token.as_deref(),
            ));
            Ok(out)
        }
        syn::Item::Struct(_) | syn::Item::Enum(_) => {
            let findings = safety::check_data_item(&parsed)?;
            combine(findings.iter().map(|f| f.to_error()))?;
            strip_field_attrs(&mut parsed);
            Ok(parsed.to_token_stream())
        }
        other => Err(syn::Error::new_spanned(
            other,
            "#[concoord::object] goes on the type's `impl` block (and may go on its struct or enum to check its fields)",
        )),
    }
}

/// Removes `#[concoord(...)]` from fields: the compiler does not know it.
fn strip_field_attrs(item: &mut syn::Item) {
    let strip = |f: &mut syn::Field| f.attrs.retain(|a| !a.path().is_ident("concoord"));
    match item {
        syn::Item::Struct(s) => s.fields.iter_mut().for_each(strip),
        syn::Item::Enum(e) => e
            .variants
            .iter_mut()
            .flat_map(|v| v.fields.iter_mut())
            .for_each(strip),
        _ => {}
    }
}

/// All errors as one (the compiler shows each at its span), or `Ok`.
fn combine(errors: impl IntoIterator<Item = syn::Error>) -> syn::Result<()> {
    let mut all: Option<syn::Error> = None;
    for e in errors {
        match &mut all {
            Some(a) => a.combine(e),
            None => all = Some(e),
        }
    }
    match all {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
