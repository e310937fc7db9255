"""The exporter x opset combinations a scan tries ("columns"), and which of them decides an opset.

ops.export_onnx uses the TorchScript exporter for opsets 11-17 and the dynamo exporter for 18-23. torch's
TorchScript exporter itself goes up to opset 20, and the dynamo exporter can write opsets below 18 by
running ONNX's version converter afterwards. A scan may try either exporter at any opset, but for each
opset exactly one column *decides* whether something blocks the model: the one ops.export_onnx would use
when that is among the columns asked for, else the one that was asked for."""

from __future__ import annotations

from dataclasses import dataclass

from ..core.errors import OpforgeError

EXPORTERS = ("torchscript", "dynamo")
OPSETS = range(11, 24)  # what ops.export_onnx accepts
TORCHSCRIPT_MAX_OPSET = 20  # torch.onnx._constants.ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET
DYNAMO_MIN_NATIVE_OPSET = 18  # below, torch converts the opset-18 model down (and may fail to)
DEFAULT_OPSETS = (17, 20)  # what the examples ship: opset 17 through TorchScript, 20 through dynamo


@dataclass(frozen=True)
class Column:
    exporter: str  # 'torchscript' or 'dynamo'
    opset: int
    decides: bool = False

    @property
    def name(self) -> str:
        return f"{self.exporter}-{self.opset}"

    @property
    def short(self) -> str:
        return f"{'ts' if self.exporter == 'torchscript' else 'dyn'}-{self.opset}{'*' if self.decides else ''}"


def export_onnx_exporter(opset: int) -> str:
    """The exporter ops.export_onnx uses at `opset`."""
    return "torchscript" if opset < DYNAMO_MIN_NATIVE_OPSET else "dynamo"


def plan_columns(opsets, exporter: str = "both") -> list[Column]:
    """Columns for the requested opsets. exporter='both' tries each exporter where it writes the opset
    natively (TorchScript up to 20, dynamo from 18); naming one exporter tries it at every opset."""
    if exporter not in EXPORTERS + ("both",):
        raise OpforgeError(f"--exporter must be torchscript, dynamo or both, got {exporter!r}")
    opsets = sorted(dict.fromkeys(int(o) for o in opsets))
    if not opsets:
        raise OpforgeError("no opset to scan. Fix: pass --opset N (11-23)")
    bad = [o for o in opsets if o not in OPSETS]
    if bad:
        raise OpforgeError(
            f"opset {bad[0]} is outside 11-23, the opsets ops.export_onnx writes. Fix: pick opsets "
            "in 11-23, e.g. --opset 17 20"
        )
    columns = []
    for opset in opsets:
        if exporter == "both":
            names = [
                e
                for e in EXPORTERS
                if (e == "torchscript" and opset <= TORCHSCRIPT_MAX_OPSET)
                or (e == "dynamo" and opset >= DYNAMO_MIN_NATIVE_OPSET)
            ]
        else:
            if exporter == "torchscript" and opset > TORCHSCRIPT_MAX_OPSET:
                raise OpforgeError(
                    f"the TorchScript exporter writes opsets up to {TORCHSCRIPT_MAX_OPSET}, not "
                    f"{opset}. Fix: --exporter dynamo (or both) for opset {opset}"
                )
            names = [exporter]
        deciding = export_onnx_exporter(opset) if export_onnx_exporter(opset) in names else names[0]
        columns += [Column(name, opset, decides=name == deciding) for name in names]
    return columns
