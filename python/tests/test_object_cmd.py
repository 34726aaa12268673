"""`concoord object --lang python`: a Python proxy for a Rust user type."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import typing
from pathlib import Path
from types import ModuleType
from typing import Any

from concoord import Client, Proxy

from conftest import ROOT, Group, concoord_bin

# A user type with the Counter's methods: the group's built-in Counter serves it.
COUNTER_RS = """
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Counter {
    value: i64,
}

#[concoord::object]
impl Counter {
    pub fn new(value: Option<i64>) -> Self {
        Counter { value: value.unwrap_or(0) }
    }
    pub fn increment(&mut self) {
        self.value += 1;
    }
    pub fn decrement(&mut self) {
        self.value -= 1;
    }
    pub fn getvalue(&self) -> i64 {
        self.value
    }
}
"""


def generate(directory: Path, spec: str, *extra: str) -> ModuleType:
    out = subprocess.run(
        [concoord_bin(), "object", "-o", spec, "--lang", "python", "-s", *extra],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    stem = Path(spec.split(":")[0]).stem if ":" in spec else spec.rsplit(".", 1)[0].rsplit(".", 1)[-1]
    path = directory / f"{stem}_proxy.py"
    assert f"wrote {path.name}" in out.stdout
    module_spec = importlib.util.spec_from_file_location(f"{stem}_proxy", path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def test_generated_proxy_calls_the_group(group: Group, tmp_path: Path, unique: Any) -> None:
    (tmp_path / "counter.rs").write_text(COUNTER_RS)
    module = generate(tmp_path, "counter.Counter")
    client = Client(group.addrs)
    try:
        counter = module.Counter(client, unique("counter"))
        assert isinstance(counter, Proxy) and counter.target == (unique("counter"), "Counter")
        counter.increment()
        counter.increment()
        counter.decrement()
        assert counter.getvalue() == 1
        counter.concoord_init(5)
        assert counter.getvalue() == 5
    finally:
        client.close()


def test_tencounter_proxy_has_typed_methods_and_token(tmp_path: Path) -> None:
    shutil.copy(ROOT / "examples" / "tencounter" / "tencounter.rs", tmp_path / "tencounter.rs")
    module = generate(tmp_path, "tencounter.TenCounter", "-t", "s3cret")
    cls = module.TenCounter
    assert (cls.TYPE, cls.TOKEN) == ("TenCounter", "s3cret")
    hints = typing.get_type_hints(cls.getvalue)
    assert hints == {"return": int}
    assert typing.get_type_hints(cls.concoord_init) == {"value": typing.Optional[int], "return": type(None)}
    assert callable(cls.increment) and callable(cls.decrement)


def test_a_missing_type_is_an_error_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "counter.rs").write_text(COUNTER_RS)
    out = subprocess.run(
        [concoord_bin(), "object", "-o", "counter.Nope", "--lang", "python"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode != 0
    assert "counter.rs" in out.stderr and "Nope" in out.stderr
    assert not (tmp_path / "counter_proxy.py").exists()
