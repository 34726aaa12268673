//! Turns an [`ObjectModel`] into code: the `ReplicatedObject` impl that
//! dispatches calls on the replicas, and the typed proxies clients use.
//! Generated code names everything by absolute path (`::concoord::...`) so it
//! works in any module of a crate that depends on `concoord`.

use crate::model::{Ctor, Decode, ErrorKind, Method, ObjectModel, Output, Param};
use proc_macro2::TokenStream;
use quote::{format_ident, quote};

/// The proxy flavours of `concoord object -p`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyKind {
    /// `-p 0`: `TProxy`, async, one call at a time per await.
    Basic,
    /// `-p 1`: `TBlockingProxy`, each call blocks the thread (a call that
    /// parks returns when it is woken).
    Blocking,
    /// `-p 2`: `TBatchProxy`, calls are buffered and `flush()` sends them as
    /// one request; results come back in call order.
    ClientBatch,
    /// `-p 3`: `TServerBatchProxy`, the basic proxy: the leader already packs
    /// calls from all clients into one slot, so concurrent calls are batched
    /// on the server without anything to mark.
    ServerBatch,
}

impl ProxyKind {
    /// All flavours, as `#[concoord::object]` generates them.
    pub const ALL: [ProxyKind; 4] = [
        ProxyKind::Basic,
        ProxyKind::Blocking,
        ProxyKind::ClientBatch,
        ProxyKind::ServerBatch,
    ];

    /// The `-p` number.
    pub fn from_number(n: u8) -> Option<ProxyKind> {
        ProxyKind::ALL.get(usize::from(n)).copied()
    }

    /// The generated type's name for object `ident`.
    pub fn type_name(self, ident: &syn::Ident) -> syn::Ident {
        match self {
            ProxyKind::Basic => format_ident!("{}Proxy", ident),
            ProxyKind::Blocking => format_ident!("{}BlockingProxy", ident),
            ProxyKind::ClientBatch => format_ident!("{}BatchProxy", ident),
            ProxyKind::ServerBatch => format_ident!("{}ServerBatchProxy", ident),
        }
    }

    /// A short description for `-v`.
    pub fn describe(self) -> &'static str {
        match self {
            ProxyKind::Basic => "basic (async, one call at a time per await)",
            ProxyKind::Blocking => "blocking (each call blocks the thread until answered or woken)",
            ProxyKind::ClientBatch => "client-side batching (calls buffered, flush() sends them as one request)",
            ProxyKind::ServerBatch => "server-side batching (the basic proxy; the leader batches concurrent calls into one slot)",
        }
    }
}

fn decode_param(p: &Param, index: usize) -> (TokenStream, TokenStream) {
    let local = format_ident!("__concoord_arg{}", index);
    let name = &p.name;
    let decode = match &p.decode {
        Decode::Required(ty) => quote! {
            let #local: #ty = __concoord_args.get(#index, #name)?;
        },
        Decode::Borrowed(ty) => quote! {
            let #local: #ty = __concoord_args.get(#index, #name)?;
        },
        Decode::Optional(ty) => quote! {
            let #local: ::std::option::Option<#ty> = __concoord_args.get_opt(#index, #name)?;
        },
    };
    let pass = match &p.decode {
        Decode::Borrowed(_) => quote!(&#local),
        _ => quote!(#local),
    };
    (decode, pass)
}

fn error_conversion(kind: ErrorKind) -> TokenStream {
    match kind {
        ErrorKind::Object => quote!(__concoord_e),
        ErrorKind::Display => {
            quote!(::concoord::objects::ObjectError::new(
                "Error",
                ::std::string::ToString::to_string(&__concoord_e)
            ))
        }
    }
}

fn dispatch_arm(m: &Method) -> TokenStream {
    let name = &m.name;
    let ident = &m.ident;
    let count = m.params.len();
    let (decodes, passes): (Vec<_>, Vec<_>) = m
        .params
        .iter()
        .enumerate()
        .map(|(i, p)| decode_param(p, i))
        .unzip();
    let mut passes = passes;
    if let Some(at) = m.command_at {
        passes.insert(at, quote!(&mut *__concoord_ctx));
    }
    let call = quote!(self.#ident(#(#passes),*));
    // What the method gave back becomes an Outcome: `Blocking::Parked` parks.
    let answer = if m.parks {
        quote! {
            match __concoord_out {
                ::concoord::objects::Blocking::Ready(__concoord_value) => {
                    ::concoord::objects::reply(&__concoord_value)
                }
                ::concoord::objects::Blocking::Parked => ::concoord::objects::Outcome::Park,
            }
        }
    } else {
        quote!(::concoord::objects::reply(&__concoord_out))
    };
    let finish = match &m.output {
        Output::Unit if !m.parks => quote! {
            #call;
            ::std::result::Result::Ok(::concoord::objects::reply(&()))
        },
        Output::Unit | Output::Value(_) => quote! {
            let __concoord_out = #call;
            ::std::result::Result::Ok(#answer)
        },
        Output::Result { error, .. } => {
            let convert = error_conversion(*error);
            quote! {
                match #call {
                    ::std::result::Result::Ok(__concoord_out) => ::std::result::Result::Ok(#answer),
                    ::std::result::Result::Err(__concoord_e) => ::std::result::Result::Err(#convert),
                }
            }
        }
    };
    quote! {
        #name => {
            __concoord_args.at_most(#count)?;
            #(#decodes)*
            #finish
        }
    }
}

fn init_fn(ctor: &Ctor) -> TokenStream {
    let count = ctor.params.len();
    let (decodes, passes): (Vec<_>, Vec<_>) = ctor
        .params
        .iter()
        .enumerate()
        .map(|(i, p)| decode_param(p, i))
        .unzip();
    let build = match ctor.error {
        None => quote!(::std::result::Result::Ok(Self::new(#(#passes),*))),
        Some(kind) => {
            let convert = error_conversion(kind);
            quote! {
                Self::new(#(#passes),*).map_err(|__concoord_e| #convert)
            }
        }
    };
    quote! {
        fn init(
            __concoord_args: &::concoord::objects::Args,
        ) -> ::std::result::Result<Self, ::concoord::objects::ObjectError> {
            __concoord_args.at_most(#count)?;
            #(#decodes)*
            #build
        }
    }
}

/// The `ReplicatedObject` impl and the compile-time checks on the type.
pub fn replicated_object_impl(model: &ObjectModel) -> TokenStream {
    let ident = &model.ident;
    let name = &model.name;
    let arms = model.methods.iter().map(dispatch_arm);
    let read_only: Vec<&String> = model
        .methods
        .iter()
        .filter(|m| m.read_only)
        .map(|m| &m.name)
        .collect();
    let is_read_only = if read_only.is_empty() {
        quote!(false)
    } else {
        quote!(::std::matches!(__concoord_method, #(#read_only)|*))
    };
    let init = model.ctor.as_ref().map(init_fn);
    let reruns = model.methods.iter().any(|m| m.command_at.is_some());
    quote! {
        // Replicas build the object with Default when they go live (ConCoord's
        // argument-less __init__): say so clearly if it is missing.
        const _: fn() = || {
            ::concoord::__private::assert_default::<#ident>();
        };

        #[automatically_derived]
        impl ::concoord::objects::ReplicatedObject for #ident {
            const NAME: &'static str = #name;

            fn call(
                &mut self,
                __concoord_method: &str,
                __concoord_args: &::concoord::objects::Args,
                __concoord_ctx: &mut ::concoord::objects::CallContext<'_>,
            ) -> ::concoord::objects::Outcome {
                if __concoord_method == ::concoord::proxy::BATCH_METHOD {
                    return ::concoord::proxy::run_batch(self, __concoord_args, __concoord_ctx);
                }
                #[allow(unused_mut, clippy::redundant_closure_call)]
                let __concoord_result: ::std::result::Result<
                    ::concoord::objects::Outcome,
                    ::concoord::objects::ObjectError,
                > = (|| match __concoord_method {
                    #(#arms)*
                    _ => ::std::result::Result::Err(::concoord::objects::ObjectError::unknown_method(
                        #name,
                        __concoord_method,
                    )),
                })();
                match __concoord_result {
                    ::std::result::Result::Ok(__concoord_outcome) => __concoord_outcome,
                    ::std::result::Result::Err(__concoord_e) => {
                        ::concoord::objects::Outcome::Reply(::std::result::Result::Err(__concoord_e))
                    }
                }
            }

            #init

            fn is_read_only(__concoord_method: &str) -> bool {
                #is_read_only
            }

            const RERUNS_PARKED: bool = #reruns;

            /// `concoord_str`: the type's `Display`, else its `Debug`, else its state.
            fn describe(&self) -> ::std::string::String {
                #[allow(unused_imports)]
                use ::concoord::__private::{ViaDebug as _, ViaDisplay as _, ViaState as _};
                (&&&::concoord::__private::Describe(self)).concoord_describe()
            }
        }
    }
}

/// Typed parameters (`a: A, b: B`) and the argument tuple (`(a, b,)`).
fn params_and_tuple(params: &[Param]) -> (Vec<TokenStream>, TokenStream) {
    let decls = params
        .iter()
        .map(|p| {
            let (i, t) = (&p.ident, &p.proxy_ty);
            quote!(#i: #t)
        })
        .collect();
    let idents: Vec<_> = params.iter().map(|p| &p.ident).collect();
    let tuple = if idents.is_empty() {
        quote!(())
    } else {
        quote!((#(#idents,)*))
    };
    (decls, tuple)
}

fn ctor_params(model: &ObjectModel) -> &[Param] {
    model
        .ctor
        .as_ref()
        .map(|c| c.params.as_slice())
        .unwrap_or(&[])
}

/// `text` as doc attributes, one per line, each with the space `///` leaves.
fn doc_attrs(text: &str) -> TokenStream {
    let lines = text.lines().map(|l| {
        let line = if l.is_empty() {
            String::new()
        } else {
            format!(" {l}")
        };
        quote!(#[doc = #line])
    });
    quote!(#(#lines)*)
}

/// The type name a named proxy creates objects with, and `named`'s doc.
fn named_parts(model: &ObjectModel) -> (String, TokenStream) {
    let doc = doc_attrs(&format!(
        "The `{}` called `name` in the group `client` talks to, created by its first call \
         with `Default`; any number of named objects share one client (one connection, \
         one command-id space). The replicas must serve this type (`concoord::serve`).",
        model.name
    ));
    (model.name.clone(), doc)
}

/// The seconds a parking call may wait: its `timeout` argument, else none.
fn timeout_expr(m: &Method) -> TokenStream {
    match m.timeout_param() {
        Some((i, optional)) => {
            let ident = &m.params[i].ident;
            if optional {
                quote!(#ident)
            } else {
                quote!(::std::option::Option::Some(#ident))
            }
        }
        None => quote!(::std::option::Option::None),
    }
}

fn method_doc(model: &ObjectModel, m: &Method) -> String {
    let kind = if m.read_only { "reads" } else { "changes" };
    let mut doc = format!(
        "Calls `{}::{}` on the replicated object (it {kind} the state).",
        model.ident, m.name
    );
    if m.parks {
        doc.push_str(match m.timeout_param() {
            Some(_) => " It may wait in a queue; when `timeout` (seconds) runs out the call is cancelled by a replicated command, so it never takes effect later.",
            None => " It may wait in a queue until the object wakes it.",
        });
    }
    doc
}

fn common_docs(model: &ObjectModel, kind: ProxyKind) -> String {
    let base = format!(
        "A {} proxy for the replicated `{}`: one method per object method, with typed arguments and results.",
        kind.describe(),
        model.ident
    );
    match kind {
        ProxyKind::ServerBatch => format!(
            "{base}\n\nServer-side batching needs nothing from the client: the leader packs the calls \
             it has from all clients into one slot. Issue calls concurrently (clone the proxy \
             into several tasks) and they are decided together."
        ),
        ProxyKind::ClientBatch => format!(
            "{base}\n\nEach method buffers its call and returns a [`::concoord::proxy::Ticket`]; \
             [`Self::flush`] sends every buffered call as one request (one frame, one slot, \
             executed in order, exactly once as a unit) and returns the results in call order."
        ),
        _ => base,
    }
}

fn token_const(token: Option<&str>) -> TokenStream {
    let token = token.unwrap_or("");
    quote! {
        /// The security token baked in by the generator (`-t`); `new` presents it.
        pub const TOKEN: &'static str = #token;
    }
}

fn basic_proxy(model: &ObjectModel, kind: ProxyKind, token: Option<&str>) -> TokenStream {
    let (type_name, named_doc) = named_parts(model);
    let proxy = kind.type_name(&model.ident);
    let doc = doc_attrs(&common_docs(model, kind));
    let token = token_const(token);
    let (init_params, init_tuple) = params_and_tuple(ctor_params(model));
    let methods = model.methods.iter().map(|m| {
        let ident = &m.ident;
        let name = &m.name;
        let (params, tuple) = params_and_tuple(&m.params);
        let ret = m.output.proxy_ty();
        let doc = doc_attrs(&method_doc(model, m));
        let body = if m.parks {
            let timeout = timeout_expr(m);
            quote! {
                let __concoord_timeout: ::std::option::Option<f64> = #timeout;
                ::concoord::proxy::call_parking::<_, #ret>(&self.client, &self.target, #name, #tuple, __concoord_timeout).await
            }
        } else {
            quote!(self.client.call_on::<_, #ret>(&self.target, #name, #tuple).await)
        };
        quote! {
            #doc
            pub async fn #ident(&self, #(#params),*) -> ::std::result::Result<#ret, ::concoord::ClientError> {
                #body
            }
        }
    });
    quote! {
        #doc
        #[derive(Clone)]
        pub struct #proxy {
            client: ::concoord::Client,
            target: ::concoord::objects::Target,
        }

        #[allow(dead_code)]
        impl #proxy {
            #token

            /// Starts a client for the group that `bootstrap` (`"HOST:PORT,..."`) belongs to,
            /// presenting [`Self::TOKEN`]. Call it inside a tokio runtime; it connects on the first call.
            pub fn new(bootstrap: &str) -> ::std::result::Result<Self, ::concoord::ClientError> {
                Self::with_options(
                    bootstrap,
                    ::concoord::ClientOptions {
                        token: ::std::string::String::from(Self::TOKEN),
                        ..::std::default::Default::default()
                    },
                )
            }

            /// Like [`Self::new`] with explicit options (token, deadline).
            pub fn with_options(
                bootstrap: &str,
                options: ::concoord::ClientOptions,
            ) -> ::std::result::Result<Self, ::concoord::ClientError> {
                ::std::result::Result::Ok(Self::from_client(::concoord::Client::new(bootstrap, options)?))
            }

            /// Wraps an existing client (sharing its connection) on the group's default object.
            pub fn from_client(client: ::concoord::Client) -> Self {
                Self { client, target: ::std::default::Default::default() }
            }

            #named_doc
            pub fn named(client: &::concoord::Client, name: &str) -> Self {
                Self {
                    client: ::std::clone::Clone::clone(client),
                    target: ::concoord::objects::Target::named(name, #type_name),
                }
            }

            /// The client underneath.
            pub fn client(&self) -> &::concoord::Client {
                &self.client
            }

            /// Re-runs the type's constructor on the replicated state (ConCoord's `__concoordinit__`).
            pub async fn concoord_init(&self, #(#init_params),*) -> ::std::result::Result<(), ::concoord::ClientError> {
                self.client.call_on::<_, ()>(&self.target, ::concoord::objects::INIT_METHOD, #init_tuple).await
            }

            /// The object's description, as the replicas hold it (the seed's `>>> s`).
            pub async fn concoord_str(&self) -> ::std::result::Result<::std::string::String, ::concoord::ClientError> {
                self.client.call_on::<_, ::std::string::String>(&self.target, ::concoord::objects::STR_METHOD, ()).await
            }

            /// Deletes this named object; calls parked on it fail with kind `Deleted`.
            pub async fn concoord_delete(&self) -> ::std::result::Result<(), ::concoord::ClientError> {
                self.client.call_on::<_, ()>(&self.target, ::concoord::objects::DELETE_METHOD, ()).await
            }

            #(#methods)*
        }
    }
}

fn blocking_proxy(model: &ObjectModel, token: Option<&str>) -> TokenStream {
    let (type_name, named_doc) = named_parts(model);
    let kind = ProxyKind::Blocking;
    let proxy = kind.type_name(&model.ident);
    let doc = doc_attrs(&common_docs(model, kind));
    let token = token_const(token);
    let (init_params, init_tuple) = params_and_tuple(ctor_params(model));
    let methods = model.methods.iter().map(|m| {
        let ident = &m.ident;
        let name = &m.name;
        let (params, tuple) = params_and_tuple(&m.params);
        let ret = m.output.proxy_ty();
        let doc = doc_attrs(&method_doc(model, m));
        let body = if m.parks {
            let timeout = timeout_expr(m);
            quote! {
                let __concoord_timeout: ::std::option::Option<f64> = #timeout;
                ::concoord::proxy::call_parking_blocking::<_, #ret>(&self.client, &self.target, #name, #tuple, __concoord_timeout)
            }
        } else {
            quote!(self.client.call_on::<_, #ret>(&self.target, #name, #tuple))
        };
        quote! {
            #doc
            pub fn #ident(&self, #(#params),*) -> ::std::result::Result<#ret, ::concoord::ClientError> {
                #body
            }
        }
    });
    quote! {
        #doc
        pub struct #proxy {
            client: ::concoord::BlockingClient,
            target: ::concoord::objects::Target,
        }

        #[allow(dead_code)]
        impl #proxy {
            #token

            /// Starts a client for the group that `bootstrap` (`"HOST:PORT,..."`) belongs to,
            /// presenting [`Self::TOKEN`]. It connects on the first call.
            pub fn new(bootstrap: &str) -> ::std::result::Result<Self, ::concoord::ClientError> {
                Self::with_options(
                    bootstrap,
                    ::concoord::ClientOptions {
                        token: ::std::string::String::from(Self::TOKEN),
                        ..::std::default::Default::default()
                    },
                )
            }

            /// Like [`Self::new`] with explicit options (token, deadline).
            pub fn with_options(
                bootstrap: &str,
                options: ::concoord::ClientOptions,
            ) -> ::std::result::Result<Self, ::concoord::ClientError> {
                ::std::result::Result::Ok(Self::from_client(::concoord::BlockingClient::new(bootstrap, options)?))
            }

            /// Wraps an existing client, on the group's default object.
            pub fn from_client(client: ::concoord::BlockingClient) -> Self {
                Self { client, target: ::std::default::Default::default() }
            }

            #named_doc
            pub fn named(client: &::concoord::BlockingClient, name: &str) -> Self {
                Self {
                    client: ::std::clone::Clone::clone(client),
                    target: ::concoord::objects::Target::named(name, #type_name),
                }
            }

            /// The client underneath.
            pub fn client(&self) -> &::concoord::BlockingClient {
                &self.client
            }

            /// Re-runs the type's constructor on the replicated state (ConCoord's `__concoordinit__`).
            pub fn concoord_init(&self, #(#init_params),*) -> ::std::result::Result<(), ::concoord::ClientError> {
                self.client.call_on::<_, ()>(&self.target, ::concoord::objects::INIT_METHOD, #init_tuple)
            }

            /// The object's description, as the replicas hold it (the seed's `>>> s`).
            pub fn concoord_str(&self) -> ::std::result::Result<::std::string::String, ::concoord::ClientError> {
                self.client.call_on::<_, ::std::string::String>(&self.target, ::concoord::objects::STR_METHOD, ())
            }

            /// Deletes this named object; calls parked on it fail with kind `Deleted`.
            pub fn concoord_delete(&self) -> ::std::result::Result<(), ::concoord::ClientError> {
                self.client.call_on::<_, ()>(&self.target, ::concoord::objects::DELETE_METHOD, ())
            }

            #(#methods)*
        }
    }
}

fn batch_proxy(model: &ObjectModel, token: Option<&str>) -> TokenStream {
    let (type_name, named_doc) = named_parts(model);
    let kind = ProxyKind::ClientBatch;
    let proxy = kind.type_name(&model.ident);
    let doc = doc_attrs(&common_docs(model, kind));
    let token = token_const(token);
    let (init_params, init_tuple) = params_and_tuple(ctor_params(model));
    let methods = model.methods.iter().map(|m| {
        let ident = &m.ident;
        let name = &m.name;
        let (params, tuple) = params_and_tuple(&m.params);
        let ret = m.output.proxy_ty();
        let doc = doc_attrs(&format!(
            "{} Buffered until [`Self::flush`].",
            method_doc(model, m)
        ));
        quote! {
            #doc
            pub fn #ident(&mut self, #(#params),*) -> ::concoord::proxy::Ticket<#ret> {
                self.batch.push(#name, #tuple)
            }
        }
    });
    quote! {
        #doc
        pub struct #proxy {
            client: ::concoord::BlockingClient,
            target: ::concoord::objects::Target,
            batch: ::concoord::proxy::Batch,
        }

        #[allow(dead_code)]
        impl #proxy {
            #token

            /// Starts a client for the group that `bootstrap` (`"HOST:PORT,..."`) belongs to,
            /// presenting [`Self::TOKEN`]. It connects on the first flush.
            pub fn new(bootstrap: &str) -> ::std::result::Result<Self, ::concoord::ClientError> {
                Self::with_options(
                    bootstrap,
                    ::concoord::ClientOptions {
                        token: ::std::string::String::from(Self::TOKEN),
                        ..::std::default::Default::default()
                    },
                )
            }

            /// Like [`Self::new`] with explicit options (token, deadline).
            pub fn with_options(
                bootstrap: &str,
                options: ::concoord::ClientOptions,
            ) -> ::std::result::Result<Self, ::concoord::ClientError> {
                ::std::result::Result::Ok(Self::from_client(::concoord::BlockingClient::new(bootstrap, options)?))
            }

            /// Wraps an existing client, on the group's default object.
            pub fn from_client(client: ::concoord::BlockingClient) -> Self {
                Self {
                    client,
                    target: ::std::default::Default::default(),
                    batch: ::std::default::Default::default(),
                }
            }

            #named_doc
            pub fn named(client: &::concoord::BlockingClient, name: &str) -> Self {
                Self {
                    client: ::std::clone::Clone::clone(client),
                    target: ::concoord::objects::Target::named(name, #type_name),
                    batch: ::std::default::Default::default(),
                }
            }

            /// The client underneath.
            pub fn client(&self) -> &::concoord::BlockingClient {
                &self.client
            }

            /// How many calls wait for [`Self::flush`].
            pub fn pending(&self) -> usize {
                self.batch.len()
            }

            /// Sends every buffered call as one request and returns the results in call order.
            pub fn flush(&mut self) -> ::std::result::Result<::concoord::proxy::BatchResults, ::concoord::ClientError> {
                self.batch.flush_blocking_on(&self.client, &self.target)
            }

            /// Buffers a re-run of the type's constructor (ConCoord's `__concoordinit__`),
            /// ordered with the other buffered calls.
            pub fn concoord_init(&mut self, #(#init_params),*) -> ::concoord::proxy::Ticket<()> {
                self.batch.push(::concoord::objects::INIT_METHOD, #init_tuple)
            }

            /// Buffers a read of the object's description (the seed's `>>> s`).
            pub fn concoord_str(&mut self) -> ::concoord::proxy::Ticket<::std::string::String> {
                self.batch.push(::concoord::objects::STR_METHOD, ())
            }

            #(#methods)*
        }
    }
}

/// The proxies of the given kinds, with `token` baked in.
pub fn proxies(model: &ObjectModel, kinds: &[ProxyKind], token: Option<&str>) -> TokenStream {
    let mut out = TokenStream::new();
    for kind in kinds {
        out.extend(match kind {
            ProxyKind::Basic => basic_proxy(model, ProxyKind::Basic, token),
            ProxyKind::Blocking => blocking_proxy(model, token),
            ProxyKind::ClientBatch => batch_proxy(model, token),
            ProxyKind::ServerBatch if kinds.contains(&ProxyKind::Basic) => {
                let alias = ProxyKind::ServerBatch.type_name(&model.ident);
                let basic = ProxyKind::Basic.type_name(&model.ident);
                let doc = doc_attrs(&common_docs(model, ProxyKind::ServerBatch));
                quote! {
                    #doc
                    pub type #alias = #basic;
                }
            }
            ProxyKind::ServerBatch => basic_proxy(model, ProxyKind::ServerBatch, token),
        });
    }
    out
}
