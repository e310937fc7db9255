"""What TensorRT's ONNX parser documents about each ONNX op: onnx-tensorrt's operator table, recorded as data.

trt_onnx_support.json holds docs/operators.md of onnx/onnx-tensorrt per TensorRT version (the tag and commit
each came from are in the file; python -m ops.scan.record_trt_table writes it). A standard-domain op is
supported, supported with the table's restriction note (restricted), or unsupported (marked N, or absent
from the table). A node of an opforge op becomes that op's TensorRT plugin, found by the parser's plugin
fallback when the op package's plugin library is loaded."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from ..core.errors import OpforgeError

TABLE_FILE = Path(__file__).resolve().parent / "trt_onnx_support.json"

SUPPORTED, RESTRICTED, UNSUPPORTED, PLUGIN = "supported", "restricted", "unsupported", "plugin"


def _key(version: str) -> tuple:
    try:
        return tuple(int(p) for p in version.split("."))
    except ValueError:
        raise OpforgeError(f"--trt-version must look like 10.1 (major.minor), got {version!r}") from None


@cache
def _tables() -> dict:
    return json.loads(TABLE_FILE.read_text())["tables"]


def recorded_versions() -> list[str]:
    return sorted(_tables(), key=_key)


@dataclass(frozen=True)
class Table:
    requested: str  # the TensorRT version asked for
    version: str  # the version of the recorded table used (the newest recorded one <= requested)
    operators: dict
    opsets: tuple
    ref: str
    commit: str
    source: str

    def describe(self) -> str:
        newer = "" if self.version == self.requested else f" (newest recorded table <= {self.requested})"
        return f"onnx-tensorrt's operator table for TensorRT {self.version}{newer}, {self.ref} @ {self.commit[:12]}"


def table_for(version: str | None = None) -> Table:
    """The recorded table for `version` (default: the newest recorded). A version with no table of its own
    uses the newest recorded one below it, and says so."""
    versions = recorded_versions()
    requested = version or versions[-1]
    usable = [v for v in versions if _key(v) <= _key(requested)]
    if not usable:
        raise OpforgeError(
            f"no onnx-tensorrt operator table is recorded for TensorRT {requested} or older "
            f"(recorded: {', '.join(versions)}). Fix: pass --trt-version with one of those, or "
            "record that version's table with python -m ops.scan.record_trt_table"
        )
    t = _tables()[usable[-1]]
    return Table(
        requested, usable[-1], t["operators"], tuple(t.get("opsets") or ()), t["ref"], t["commit"], t["source"]
    )


@dataclass(frozen=True)
class Verdict:
    onnx_op: str  # 'Resize', or 'opforge::rms_norm' for a custom-domain node
    status: str  # supported / restricted / unsupported / plugin
    note: str = ""


def verdict(table: Table, domain: str, op_type: str, plugin_domains: dict) -> Verdict:
    """plugin_domains: {(namespace, name): plugin library file name} of the declared ops."""
    if domain in ("", "ai.onnx"):
        row = table.operators.get(op_type)
        if row is None:
            return Verdict(op_type, UNSUPPORTED, f"not in the TensorRT {table.version} table")
        if not row["supported"]:
            return Verdict(op_type, UNSUPPORTED, f"marked unsupported for TensorRT {table.version}")
        if row["restrictions"]:
            return Verdict(op_type, RESTRICTED, row["restrictions"])
        return Verdict(op_type, SUPPORTED)
    library = plugin_domains.get((domain, op_type))
    if library is not None:
        return Verdict(f"{domain}::{op_type}", PLUGIN, f"TensorRT plugin from {library} (python -m ops.build --trt)")
    return Verdict(f"{domain}::{op_type}", UNSUPPORTED, f"custom domain '{domain}' and no opforge plugin declares it")
