//! `concoord object --lang python`: the same model as the Rust proxies,
//! written as a Python class over the `concoord` package (python/), with
//! type hints taken from the Rust argument and result types.

use crate::file::{read_model, FileError, GeneratedFile};
use crate::model::{Decode, Method, ObjectModel, Output, Param};
use syn::{GenericArgument, PathArguments, Type};

/// Python keywords and builtins a parameter or method may not be named.
const PY_RESERVED: &[&str] = &[
    "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue",
    "def", "del", "elif", "else", "except", "finally", "for", "from", "global", "if", "import",
    "in", "is", "lambda", "nonlocal", "not", "or", "pass", "raise", "return", "try", "while",
    "with", "yield", "self",
];

/// Methods of `concoord.Proxy` a generated method must not shadow.
const PROXY_METHODS: &[&str] = &["call", "client", "target", "TYPE", "TOKEN"];

/// Generates the Python proxy module for `type_name` found in `source`.
pub fn generate_python_proxy_file(
    source: &str,
    path: &str,
    type_name: &str,
    token: Option<&str>,
    safety: bool,
) -> Result<GeneratedFile, FileError> {
    let mut notes = Vec::new();
    let model = read_model(source, path, type_name, safety, &mut notes)?;
    for m in &model.methods {
        if PROXY_METHODS.contains(&m.name.as_str()) {
            return Err(FileError {
                message: format!(
                    "{path}: method `{}` would shadow concoord.Proxy.{} in Python; rename it",
                    m.name, m.name
                ),
            });
        }
    }
    notes.push(format!(
        "generated Python class `{}` (a concoord.Proxy)",
        model.ident
    ));
    Ok(GeneratedFile {
        text: python_class(&model, path, token),
        notes,
    })
}

fn py_name(name: &str) -> String {
    if PY_RESERVED.contains(&name) {
        format!("{name}_")
    } else {
        name.to_string()
    }
}

/// A Python string literal (Rust's escaping is valid Python for these).
fn py_str(s: &str) -> String {
    format!("{s:?}")
}

/// The Python type hint for a Rust type as it travels in MessagePack.
pub fn py_hint(ty: &Type) -> String {
    match ty {
        Type::Reference(r) => py_hint(&r.elem),
        Type::Paren(p) => py_hint(&p.elem),
        Type::Group(g) => py_hint(&g.elem),
        Type::Slice(s) => format!("List[{}]", py_hint(&s.elem)),
        Type::Array(a) => format!("List[{}]", py_hint(&a.elem)),
        Type::Tuple(t) if t.elems.is_empty() => "None".into(),
        Type::Tuple(t) => format!(
            "Tuple[{}]",
            t.elems.iter().map(py_hint).collect::<Vec<_>>().join(", ")
        ),
        Type::Path(p) if p.qself.is_none() => {
            let Some(last) = p.path.segments.last() else {
                return "Any".into();
            };
            let args: Vec<&Type> = match &last.arguments {
                PathArguments::AngleBracketed(a) => a
                    .args
                    .iter()
                    .filter_map(|g| match g {
                        GenericArgument::Type(t) => Some(t),
                        _ => None,
                    })
                    .collect(),
                _ => Vec::new(),
            };
            let ident = last.ident.to_string();
            match (ident.as_str(), args.as_slice()) {
                (
                    "i8" | "i16" | "i32" | "i64" | "i128" | "isize" | "u8" | "u16" | "u32" | "u64"
                    | "u128" | "usize",
                    [],
                ) => "int".into(),
                ("f32" | "f64", []) => "float".into(),
                ("bool", []) => "bool".into(),
                ("String" | "str" | "char", []) => "str".into(),
                ("Option", [t]) => format!("Optional[{}]", py_hint(t)),
                ("Vec" | "VecDeque" | "BTreeSet" | "HashSet", [t]) => {
                    format!("List[{}]", py_hint(t))
                }
                ("BTreeMap" | "HashMap", [k, v]) => {
                    format!("Dict[{}, {}]", py_hint(k), py_hint(v))
                }
                ("Box" | "Rc" | "Arc", [t]) => py_hint(t),
                _ => "Any".into(),
            }
        }
        _ => "Any".into(),
    }
}

/// `name: hint` for each parameter; trailing `Option`s default to None, as
/// the object accepts them left out.
fn py_params(params: &[Param]) -> Vec<String> {
    let first_trailing_optional = params
        .iter()
        .rposition(|p| !matches!(p.decode, Decode::Optional(_)))
        .map_or(0, |i| i + 1);
    params
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let default = if i >= first_trailing_optional {
                " = None"
            } else {
                ""
            };
            format!("{}: {}{default}", py_name(&p.name), py_hint(&p.proxy_ty))
        })
        .collect()
}

fn py_args(params: &[Param]) -> String {
    params
        .iter()
        .map(|p| format!(", {}", py_name(&p.name)))
        .collect()
}

fn result_hint(m: &Method) -> String {
    match &m.output {
        Output::Unit => "None".into(),
        Output::Value(t) | Output::Result { ok: t, .. } => py_hint(t),
    }
}

fn method(model: &ObjectModel, m: &Method) -> String {
    let mut params = vec!["self".to_string()];
    params.extend(py_params(&m.params));
    let ret = result_hint(m);
    let kind = if m.read_only { "reads" } else { "changes" };
    let mut doc = format!("Calls `{}::{}` (it {kind} the state).", model.ident, m.name);
    let body = if m.parks {
        let timeout = match m.timeout_param() {
            Some((i, _)) => {
                doc.push_str(
                    " It may wait in a queue; when `timeout` (seconds) runs out it is cancelled by a replicated command (Cancelled if the cancel came first).",
                );
                py_name(&m.params[i].name)
            }
            None => {
                doc.push_str(" It may wait in a queue until the object wakes it.");
                "None".into()
            }
        };
        let args: Vec<String> = m.params.iter().map(|p| py_name(&p.name)).collect();
        format!(
            "self._call_parking({}, [{}], {timeout})",
            py_str(&m.name),
            args.join(", ")
        )
    } else {
        format!("self.call({}{})", py_str(&m.name), py_args(&m.params))
    };
    let body = if ret == "None" {
        body
    } else {
        format!("return {body}  # type: ignore[no-any-return]")
    };
    format!(
        "    def {}({}) -> {ret}:\n        \"\"\"{doc}\"\"\"\n        {body}\n",
        py_name(&m.name),
        params.join(", ")
    )
}

fn python_class(model: &ObjectModel, path: &str, token: Option<&str>) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "# The Python proxy of `{}` ({path}), generated by `concoord object --lang python`:\n\
         # do not edit. Needs the concoord package (pip install ./python).\n\n\
         from typing import Any, Dict, List, Optional, Tuple  # noqa: F401\n\n\
         from concoord import Proxy\n\n\n",
        model.ident
    ));
    out.push_str(&format!(
        "class {}(Proxy):\n    \"\"\"The replicated `{}`: `{}(client_or_bootstrap)` calls the group's\n    \
         default object; `{}(client, name)` a named one, created with this type.\n    \
         The replicas must serve the type (`concoord::serve`).\"\"\"\n\n",
        model.ident, model.name, model.ident, model.ident
    ));
    out.push_str(&format!("    TYPE = {}\n", py_str(&model.name)));
    if let Some(t) = token {
        out.push_str(&format!("    TOKEN = {}\n", py_str(t)));
    }
    out.push('\n');
    let ctor_params = model
        .ctor
        .as_ref()
        .map(|c| c.params.as_slice())
        .unwrap_or(&[]);
    let mut init = vec!["self".to_string()];
    init.extend(py_params(ctor_params));
    out.push_str(&format!(
        "    def concoord_init({}) -> None:  # type: ignore[override]\n        \
         \"\"\"Re-runs `{}::new` on the replicated state (ConCoord's `__concoordinit__`).\"\"\"\n        \
         self.call(\"concoord_init\"{})\n",
        init.join(", "),
        model.ident,
        py_args(ctor_params)
    ));
    for m in &model.methods {
        out.push('\n');
        out.push_str(&method(model, m));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_follow_the_messagepack_shape() {
        let cases = [
            ("i64", "int"),
            ("&str", "str"),
            ("Option<f64>", "Optional[float]"),
            ("Vec<(String, u32)>", "List[Tuple[str, int]]"),
            ("&[u8]", "List[int]"),
            (
                "std::collections::BTreeMap<String, Vec<bool>>",
                "Dict[str, List[bool]]",
            ),
            ("()", "None"),
            ("MyStruct", "Any"),
        ];
        for (rust, py) in cases {
            let ty: Type = syn::parse_str(rust).unwrap();
            assert_eq!(py_hint(&ty), py, "{rust}");
        }
    }

    #[test]
    fn generates_a_class_with_defaults_parking_and_token() {
        let source = r#"
            use concoord::Blocking;
            #[derive(Default)]
            pub struct Gate { open: bool }
            impl Gate {
                pub fn new(open: Option<bool>) -> Self { Gate { open: open.unwrap_or(false) } }
                pub fn open(&mut self, cmd: &mut concoord::objects::CallContext<'_>) {}
                pub fn pass(&mut self, cmd: &mut concoord::objects::CallContext<'_>, who: String, timeout: Option<f64>) -> Blocking<bool> { todo!() }
                pub fn is_open(&self) -> bool { self.open }
                pub fn r#import(&mut self, from: u32) -> Result<Vec<String>, concoord::ObjectError> { todo!() }
            }
        "#;
        let out = generate_python_proxy_file(source, "gate.rs", "Gate", Some("s3cret"), false)
            .expect("generates")
            .text;
        assert!(out.contains("class Gate(Proxy):"), "{out}");
        assert!(
            out.contains("    TYPE = \"Gate\"\n    TOKEN = \"s3cret\"\n"),
            "{out}"
        );
        assert!(
            out.contains("def concoord_init(self, open: Optional[bool] = None) -> None:"),
            "{out}"
        );
        assert!(out.contains("def open(self) -> None:"), "{out}");
        assert!(
            out.contains("def pass_(self, who: str, timeout: Optional[float] = None) -> bool:"),
            "{out}"
        );
        assert!(
            out.contains("self._call_parking(\"pass\", [who, timeout], timeout)"),
            "{out}"
        );
        assert!(out.contains("def is_open(self) -> bool:"), "{out}");
        assert!(
            out.contains("def import_(self, from_: int) -> List[str]:"),
            "{out}"
        );
        assert!(out.contains("self.call(\"import\", from_)"), "{out}");
    }
}
