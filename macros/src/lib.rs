//! `#[concoord::object]`: a thin proc-macro shell over `concoord-codegen`,
//! which holds all the logic (and is shared with `concoord object`).
//! Use it through the facade: `#[concoord::object]`.

use proc_macro::TokenStream;

/// Makes a type a replicated object.
///
/// On an `impl` block: generates `ReplicatedObject` (dispatch by method name,
/// `&self` methods read-only, `fn new(..) -> Self` as `concoord_init`) and the
/// proxies `TProxy` (async), `TBlockingProxy`, `TBatchProxy` (client-side
/// batching) and `TServerBatchProxy`, after the safety check.
/// On a struct or enum: checks its fields (no `HashMap`/`HashSet`).
///
/// Arguments: `token = "..."` bakes a token into the proxies;
/// `name = "..."` overrides the object name (default: the type name).
#[proc_macro_attribute]
pub fn object(attr: TokenStream, item: TokenStream) -> TokenStream {
    concoord_codegen::expand_object(attr.into(), item.into()).into()
}
