//! What the generator knows about an object: its name, its constructor and
//! its methods with their argument and result types, read from an `impl`
//! block. Everything a proxy or a dispatcher needs, and nothing else.

use syn::ext::IdentExt;
use syn::visit_mut::VisitMut;
use syn::{
    FnArg, GenericArgument, Ident, ImplItem, ImplItemFn, ItemImpl, Pat, PathArguments, ReturnType,
    Type, Visibility,
};

/// Method names the proxies or the object layer use themselves: an object
/// method with one of these names would be shadowed or unreachable.
pub const RESERVED_METHODS: &[&str] = &[
    "concoord_init",
    "concoord_str",
    "concoord_batch",
    "new",
    "with_options",
    "from_client",
    "client",
    "flush",
    "pending",
];

/// An object read from its `impl` block.
#[derive(Debug)]
pub struct ObjectModel {
    /// The type's identifier (`TenCounter`).
    pub ident: Ident,
    /// The name clients and replicas use (`ReplicatedObject::NAME`).
    pub name: String,
    /// `fn new(..) -> Self`, the constructor `concoord_init` re-runs.
    pub ctor: Option<Ctor>,
    /// The methods clients can call, in source order.
    pub methods: Vec<Method>,
    /// Functions of the impl that are not exposed, and why (for `-v`).
    pub skipped: Vec<(String, String)>,
}

/// The type's own constructor.
#[derive(Debug)]
pub struct Ctor {
    pub params: Vec<Param>,
    /// `Some(e)` when it returns `Result<Self, E>`.
    pub error: Option<ErrorKind>,
}

/// One exposed method.
#[derive(Debug)]
pub struct Method {
    pub ident: Ident,
    /// The wire name (the identifier without `r#`).
    pub name: String,
    pub params: Vec<Param>,
    /// `&self`: it only reads the state.
    pub read_only: bool,
    pub output: Output,
    /// Where the calling command (`&mut CallContext<'_>`, ConCoord's
    /// `_concoord_command`) goes among the Rust parameters; proxies leave it out.
    pub command_at: Option<usize>,
    /// Returns `Blocking<T>`: it may park.
    pub parks: bool,
}

impl Method {
    /// A parking method's argument named `timeout` (seconds, `f64` or
    /// `Option<f64>`, Python's convention): the proxy cancels the call when
    /// it runs out. `Some((index, optional))`.
    pub fn timeout_param(&self) -> Option<(usize, bool)> {
        if !self.parks {
            return None;
        }
        self.params.iter().enumerate().find_map(|(i, p)| {
            if p.name != "timeout" {
                return None;
            }
            match &p.decode {
                Decode::Required(t) if is_f64(t) => Some((i, false)),
                Decode::Optional(t) if is_f64(t) => Some((i, true)),
                _ => None,
            }
        })
    }
}

fn is_f64(ty: &Type) -> bool {
    matches!(ty, Type::Path(p) if p.path.is_ident("f64"))
}

/// One positional argument.
#[derive(Debug)]
pub struct Param {
    pub ident: Ident,
    pub name: String,
    /// The type as the proxy takes it (as written, `Self` replaced).
    pub proxy_ty: Type,
    pub decode: Decode,
}

/// How the dispatcher gets an argument out of `Args`.
#[derive(Debug)]
pub enum Decode {
    /// `Args::get::<T>`, passed by value.
    Required(Type),
    /// `Option<T>`: `Args::get_opt::<T>`, so a missing or nil argument is `None`.
    Optional(Type),
    /// `&str`, `&[T]`, `&T`: decoded as the owned type, passed by reference.
    Borrowed(Type),
}

/// What a method returns.
#[derive(Debug)]
pub enum Output {
    Unit,
    Value(Type),
    /// `Result<T, E>`: `Err` becomes an `ObjectError` the caller sees.
    Result {
        ok: Type,
        error: ErrorKind,
    },
}

/// How an `Err` becomes the caller's error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// `ObjectError`: passed through, with its own kind.
    Object,
    /// Any `E: Display`: kind `Error`, message `e.to_string()`.
    Display,
}

impl Output {
    /// The type the proxy returns on success.
    pub fn proxy_ty(&self) -> Type {
        match self {
            Output::Unit => syn::parse_quote!(()),
            Output::Value(t) | Output::Result { ok: t, .. } => t.clone(),
        }
    }
}

/// Options given to `#[concoord::object(...)]`.
#[derive(Debug, Default, Clone)]
pub struct ObjectAttr {
    pub token: Option<String>,
    pub name: Option<String>,
}

impl ObjectAttr {
    /// Parses `token = "..."`, `name = "..."`.
    pub fn parse(tokens: proc_macro2::TokenStream) -> syn::Result<ObjectAttr> {
        let mut attr = ObjectAttr::default();
        let parser = syn::meta::parser(|meta| {
            if meta.path.is_ident("token") {
                let s: syn::LitStr = meta.value()?.parse()?;
                attr.token = Some(s.value());
                Ok(())
            } else if meta.path.is_ident("name") {
                let s: syn::LitStr = meta.value()?.parse()?;
                attr.name = Some(s.value());
                Ok(())
            } else {
                Err(meta.error("unknown option; #[concoord::object] takes `token = \"...\"` and `name = \"...\"`"))
            }
        });
        syn::parse::Parser::parse2(parser, tokens)?;
        Ok(attr)
    }
}

/// Reads an object from its `impl` block. Errors point at what cannot be
/// handled and say what to write instead.
pub fn model_from_impl(item: &ItemImpl, name: Option<String>) -> syn::Result<ObjectModel> {
    if let Some((_, path, _)) = &item.trait_ {
        return Err(syn::Error::new_spanned(
            path,
            "#[concoord::object] goes on the type's own `impl` block, not on a trait impl",
        ));
    }
    if !item.generics.params.is_empty() {
        return Err(syn::Error::new_spanned(
            &item.generics,
            "a replicated object cannot be generic: every replica must build the same concrete type; \
             write `impl MyType { .. }` for a concrete type (a type alias works)",
        ));
    }
    let ident = match &*item.self_ty {
        Type::Path(p) if p.qself.is_none() => {
            let last = p.path.segments.last().expect("a type path has a segment");
            if !last.arguments.is_empty() {
                return Err(syn::Error::new_spanned(
                    &item.self_ty,
                    "a replicated object cannot be generic; name a concrete type without parameters",
                ));
            }
            last.ident.clone()
        }
        other => {
            return Err(syn::Error::new_spanned(
                other,
                "expected a named type (`impl TenCounter { .. }`)",
            ))
        }
    };
    let mut model = ObjectModel {
        name: name.unwrap_or_else(|| ident.unraw().to_string()),
        ident,
        ctor: None,
        methods: Vec::new(),
        skipped: Vec::new(),
    };
    let mut errors: Option<syn::Error> = None;
    let mut push = |e: syn::Error| match &mut errors {
        Some(all) => all.combine(e),
        None => errors = Some(e),
    };
    for impl_item in &item.items {
        let ImplItem::Fn(f) = impl_item else { continue };
        let fn_name = f.sig.ident.unraw().to_string();
        match read_fn(f, &model.ident) {
            Ok(Read::Ctor(c)) => model.ctor = Some(c),
            Ok(Read::Method(m)) => model.methods.push(*m),
            Ok(Read::Skip(why)) => model.skipped.push((fn_name, why)),
            Err(e) => push(e),
        }
    }
    match errors {
        Some(e) => Err(e),
        None => Ok(model),
    }
}

enum Read {
    Ctor(Ctor),
    Method(Box<Method>),
    Skip(String),
}

fn read_fn(f: &ImplItemFn, self_ident: &Ident) -> syn::Result<Read> {
    let sig = &f.sig;
    let name = sig.ident.unraw().to_string();
    let receiver = sig.receiver();
    let is_pub = matches!(f.vis, Visibility::Public(_));
    if receiver.is_none() {
        if name == "new" {
            return read_ctor(f, self_ident).map(Read::Ctor);
        }
        return Ok(Read::Skip(
            "an associated function without `self` is not a method".into(),
        ));
    }
    if !is_pub {
        return Ok(Read::Skip(
            "not `pub`: private helpers are not exposed to clients".into(),
        ));
    }
    check_plain_signature(sig)?;
    let receiver = receiver.expect("checked above");
    let read_only = match (&receiver.reference, &receiver.mutability) {
        (Some(_), None) => true,
        (Some(_), Some(_)) => false,
        (None, _) => {
            return Err(syn::Error::new_spanned(
                receiver,
                "a method that consumes `self` cannot run on replicated state; take `&self` (reads) or `&mut self` (changes)",
            ))
        }
    };
    if !matches!(*receiver.ty, Type::Reference(_)) {
        return Err(syn::Error::new_spanned(
            receiver,
            "take `&self` or `&mut self` (no custom receiver types)",
        ));
    }
    if RESERVED_METHODS.contains(&name.as_str()) {
        return Err(syn::Error::new_spanned(
            &sig.ident,
            format!(
                "`{name}` is reserved by concoord's proxies (reserved: {}); rename the method",
                RESERVED_METHODS.join(", ")
            ),
        ));
    }
    let (params, command_at) = read_method_params(sig, self_ident)?;
    let (output, parks) = read_output(&sig.output, self_ident)?;
    if read_only && (parks || command_at.is_some()) {
        let culprit: &dyn quote::ToTokens = if parks { &sig.output } else { receiver };
        return Err(syn::Error::new_spanned(
            culprit,
            format!(
                "`{name}` takes `&self`, so it is read-only and may be answered without a log write; \
                 a read-only method cannot take the calling command or park, because parking \
                 changes the object (its wait queues). Take `&mut self` to park"
            ),
        ));
    }
    if parks && command_at.is_none() {
        return Err(syn::Error::new_spanned(
            &sig.output,
            "a method that returns `Blocking<T>` parks the calling command, so it must take it: \
             add a parameter `cmd: &mut concoord::CallContext<'_>` and pass it to the primitive that parks",
        ));
    }
    Ok(Read::Method(Box::new(Method {
        ident: sig.ident.clone(),
        name,
        params,
        read_only,
        output,
        command_at,
        parks,
    })))
}

/// Whether `ty` names the calling command's context (`CallContext<..>`).
fn is_call_context(ty: &Type) -> bool {
    matches!(ty, Type::Path(p) if p.qself.is_none()
        && p.path.segments.last().is_some_and(|s| s.ident == "CallContext"))
}

/// The parameters clients send, and where the calling command goes.
fn read_method_params(
    sig: &syn::Signature,
    self_ident: &Ident,
) -> syn::Result<(Vec<Param>, Option<usize>)> {
    let mut command_at = None;
    let mut sent = syn::punctuated::Punctuated::<FnArg, syn::Token![,]>::new();
    for (index, input) in sig
        .inputs
        .iter()
        .filter(|i| matches!(i, FnArg::Typed(_)))
        .enumerate()
    {
        let FnArg::Typed(pt) = input else { continue };
        let context = match &*pt.ty {
            Type::Reference(r) if is_call_context(&r.elem) => {
                if r.mutability.is_none() {
                    return Err(syn::Error::new_spanned(
                        &pt.ty,
                        "take the calling command as `&mut CallContext<'_>`: primitives park and wake through it",
                    ));
                }
                true
            }
            other if is_call_context(other) => {
                return Err(syn::Error::new_spanned(
                    &pt.ty,
                    "take the calling command by reference, `&mut CallContext<'_>`",
                ))
            }
            _ => false,
        };
        if context {
            if command_at.is_some() {
                return Err(syn::Error::new_spanned(
                    &pt.ty,
                    "the calling command can be taken once",
                ));
            }
            command_at = Some(index);
        } else {
            sent.push(input.clone());
        }
    }
    let mut stripped = sig.clone();
    stripped.inputs = sent;
    Ok((read_params(&stripped, self_ident)?, command_at))
}

fn read_ctor(f: &ImplItemFn, self_ident: &Ident) -> syn::Result<Ctor> {
    let sig = &f.sig;
    check_plain_signature(sig)?;
    let params = read_params(sig, self_ident)?;
    let bad = || {
        syn::Error::new_spanned(
            &sig.output,
            "the constructor `new` must return `Self` or `Result<Self, E>`; concoord_init re-runs it on the replicated state",
        )
    };
    let error = match &sig.output {
        ReturnType::Default => return Err(bad()),
        ReturnType::Type(_, ty) => {
            if is_self(ty, self_ident) {
                None
            } else if let Some((ok, err)) = result_parts(ty) {
                if !is_self(&ok, self_ident) {
                    return Err(bad());
                }
                Some(error_kind(&err))
            } else {
                return Err(bad());
            }
        }
    };
    Ok(Ctor { params, error })
}

fn check_plain_signature(sig: &syn::Signature) -> syn::Result<()> {
    if let Some(a) = &sig.asyncness {
        return Err(syn::Error::new_spanned(
            a,
            "replicated methods cannot be `async`: they run to completion inside one decided slot",
        ));
    }
    if !sig.generics.params.is_empty() {
        return Err(syn::Error::new_spanned(
            &sig.generics,
            "replicated methods cannot be generic: the proxy needs concrete argument types",
        ));
    }
    if let Some(v) = &sig.variadic {
        return Err(syn::Error::new_spanned(
            v,
            "variadic methods are not supported",
        ));
    }
    Ok(())
}

fn read_params(sig: &syn::Signature, self_ident: &Ident) -> syn::Result<Vec<Param>> {
    let mut params = Vec::new();
    for input in &sig.inputs {
        let FnArg::Typed(pt) = input else { continue };
        let ident = match &*pt.pat {
            Pat::Ident(pi) if pi.by_ref.is_none() && pi.subpat.is_none() => pi.ident.clone(),
            other => {
                return Err(syn::Error::new_spanned(
                    other,
                    "name each argument with a plain identifier (`value: i64`); patterns cannot be sent by a proxy",
                ))
            }
        };
        if ident == "_" {
            return Err(syn::Error::new_spanned(
                &pt.pat,
                "name each argument (`_unused: T` is fine)",
            ));
        }
        let proxy_ty = replace_self(&pt.ty, self_ident);
        let decode = decode_of(&proxy_ty)?;
        let name = ident.unraw().to_string();
        params.push(Param {
            ident,
            name,
            proxy_ty,
            decode,
        });
    }
    Ok(params)
}

fn decode_of(ty: &Type) -> syn::Result<Decode> {
    match ty {
        Type::Reference(r) => {
            if let Some(m) = &r.mutability {
                return Err(syn::Error::new_spanned(
                    m,
                    "an argument cannot be `&mut`: arguments arrive by value over the network; take it by value and return what changed",
                ));
            }
            if r.lifetime.is_some() {
                return Err(syn::Error::new_spanned(
                    ty,
                    "leave the lifetime out (`&str`, `&[T]`)",
                ));
            }
            let owned: Type = match &*r.elem {
                Type::Path(p) if p.path.is_ident("str") => syn::parse_quote!(::std::string::String),
                Type::Slice(s) => {
                    let e = &s.elem;
                    syn::parse_quote!(::std::vec::Vec<#e>)
                }
                other => other.clone(),
            };
            check_serializable_shape(&owned)?;
            Ok(Decode::Borrowed(owned))
        }
        _ => {
            check_serializable_shape(ty)?;
            if let Some(inner) = single_generic(ty, "Option") {
                Ok(Decode::Optional(inner))
            } else {
                Ok(Decode::Required(ty.clone()))
            }
        }
    }
}

/// Refuses types that cannot travel as an argument or result.
fn check_serializable_shape(ty: &Type) -> syn::Result<()> {
    match ty {
        Type::ImplTrait(_) | Type::TraitObject(_) => Err(syn::Error::new_spanned(
            ty,
            "arguments and results must be concrete serializable types (no `impl Trait` or `dyn Trait`)",
        )),
        Type::BareFn(_) => Err(syn::Error::new_spanned(
            ty,
            "a function cannot be sent over the network; pass data instead",
        )),
        Type::Reference(_) | Type::Ptr(_) => Err(syn::Error::new_spanned(
            ty,
            "use an owned type here (`String`, `Vec<T>`): it is sent over the network",
        )),
        _ => Ok(()),
    }
}

/// What a method returns, and whether it is wrapped in `Blocking<T>`
/// (`Blocking<T>` or `Result<Blocking<T>, E>`).
fn read_output(output: &ReturnType, self_ident: &Ident) -> syn::Result<(Output, bool)> {
    let ty = match output {
        ReturnType::Default => return Ok((Output::Unit, false)),
        ReturnType::Type(_, ty) => replace_self(ty, self_ident),
    };
    if let Some(inner) = single_generic(&ty, "Blocking") {
        return Ok((read_plain_output(inner)?, true));
    }
    if let Some((ok, err)) = result_parts(&ty) {
        if let Some(inner) = single_generic(&ok, "Blocking") {
            check_serializable_shape(&inner)?;
            return Ok((
                Output::Result {
                    ok: inner,
                    error: error_kind(&err),
                },
                true,
            ));
        }
    }
    Ok((read_plain_output(ty)?, false))
}

fn read_plain_output(ty: Type) -> syn::Result<Output> {
    if let Type::Tuple(t) = &ty {
        if t.elems.is_empty() {
            return Ok(Output::Unit);
        }
    }
    if let Some((ok, err)) = result_parts(&ty) {
        check_serializable_shape(&ok)?;
        return Ok(Output::Result {
            ok,
            error: error_kind(&err),
        });
    }
    if let Type::Path(p) = &ty {
        if p.path.segments.last().is_some_and(|s| s.ident == "Result") {
            return Err(syn::Error::new_spanned(
                &ty,
                "write the result type in full, `Result<T, E>` (E: ObjectError or any Display), so the proxy knows T",
            ));
        }
    }
    check_serializable_shape(&ty).map_err(|_| {
        syn::Error::new_spanned(
            &ty,
            "return an owned value (clone it): the result is sent over the network",
        )
    })?;
    Ok(Output::Value(ty))
}

fn result_parts(ty: &Type) -> Option<(Type, Type)> {
    let Type::Path(p) = ty else { return None };
    let last = p.path.segments.last()?;
    if last.ident != "Result" {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    let types: Vec<&Type> = args
        .args
        .iter()
        .filter_map(|a| match a {
            GenericArgument::Type(t) => Some(t),
            _ => None,
        })
        .collect();
    match types.as_slice() {
        [ok, err] => Some(((*ok).clone(), (*err).clone())),
        _ => None,
    }
}

fn error_kind(err: &Type) -> ErrorKind {
    match err {
        Type::Path(p)
            if p.path
                .segments
                .last()
                .is_some_and(|s| s.ident == "ObjectError") =>
        {
            ErrorKind::Object
        }
        _ => ErrorKind::Display,
    }
}

/// `T` when `ty` is `Name<T>` (by last path segment).
fn single_generic(ty: &Type, name: &str) -> Option<Type> {
    let Type::Path(p) = ty else { return None };
    if p.qself.is_some() {
        return None;
    }
    let last = p.path.segments.last()?;
    if last.ident != name {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match args.args.iter().collect::<Vec<_>>().as_slice() {
        [GenericArgument::Type(t)] => Some(t.clone()),
        _ => None,
    }
}

fn is_self(ty: &Type, self_ident: &Ident) -> bool {
    match ty {
        Type::Path(p) if p.qself.is_none() => {
            p.path.is_ident("Self") || p.path.is_ident(self_ident)
        }
        _ => false,
    }
}

/// `Self` means the object inside its impl but the proxy inside a proxy:
/// the proxy names the type instead.
fn replace_self(ty: &Type, self_ident: &Ident) -> Type {
    struct Replace<'a>(&'a Ident);
    impl VisitMut for Replace<'_> {
        fn visit_path_mut(&mut self, path: &mut syn::Path) {
            if let Some(first) = path.segments.first_mut() {
                if first.ident == "Self" {
                    first.ident = self.0.clone();
                }
            }
            syn::visit_mut::visit_path_mut(self, path);
        }
    }
    let mut ty = ty.clone();
    Replace(self_ident).visit_type_mut(&mut ty);
    ty
}
