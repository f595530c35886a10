"""Dynamic INT8 quantization of an ONNX model with onnxruntime, to produce a candidate for ``nlpmon reeval``.

Weights become QInt8, per output channel by default: on a fine-tuned MiniLM sentiment model per-channel INT8
agreed with FP32 on 98.5-99.7% of sentences against 96.4-98% for one scale per tensor. Activations are
quantized at run time from each batch's own range, so INT8 scores depend on batch composition; the
candidate report of ``nlpmon reeval`` measures how much.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from monitor.reeval.errors import ModelError

__all__ = ["QuantizeResult", "quantize_model"]

_INT8_OPS = ("MatMulInteger", "ConvInteger", "DynamicQuantizeLinear", "DynamicQuantizeMatMul", "DequantizeLinear")


@dataclass(frozen=True)
class QuantizeResult:
    source: Path
    output: Path
    per_channel: bool
    reduce_range: bool
    weight_type: str
    bytes_before: int
    bytes_after: int
    integer_nodes: int

    def to_dict(self) -> dict:
        return {
            "source": str(self.source),
            "output": str(self.output),
            "per_channel": self.per_channel,
            "reduce_range": self.reduce_range,
            "weight_type": self.weight_type,
            "bytes_before": self.bytes_before,
            "bytes_after": self.bytes_after,
            "integer_nodes": self.integer_nodes,
        }


def quantize_model(
    source: Path | str, output: Path | str, *, per_channel: bool = True, reduce_range: bool = False
) -> QuantizeResult:
    """Write a dynamically quantized copy of ``source`` to ``output`` (QInt8 weights).

    ``reduce_range`` uses 7-bit weights, which can help accuracy on CPUs without VNNI instructions.
    """
    source, output = Path(source), Path(output)
    if not source.is_file():
        raise ModelError(
            f"model file {source} does not exist" if not source.exists() else f"model path {source} is not a file"
        )
    if output.resolve() == source.resolve():
        raise ModelError("the output path is the input model; choose another file name with -o")
    if output.exists() and output.is_dir():
        raise ModelError(
            f"output path {output} is a directory; give a file name such as {output / (source.stem + '_int8.onnx')}"
        )
    try:
        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as exc:
        raise ModelError(
            f"quantization needs the 'onnx' package next to onnxruntime ({exc}); pip install onnx"
        ) from None
    try:
        model = onnx.load(str(source))
    except Exception as exc:
        raise ModelError(
            f"cannot read ONNX model {source}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from None
    output.parent.mkdir(parents=True, exist_ok=True)
    # The quantizer logs advice (pre-processing, op coverage) on the root logger; keep the CLI's output clean.
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))
    try:
        quantize_dynamic(
            model,
            str(output),
            per_channel=per_channel,
            reduce_range=reduce_range,
            weight_type=QuantType.QInt8,
        )
    except Exception as exc:
        raise ModelError(
            f"onnxruntime could not quantize {source}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from None
    finally:
        root.setLevel(level)
    quantized = onnx.load(str(output), load_external_data=False)
    return QuantizeResult(
        source=source,
        output=output,
        per_channel=per_channel,
        reduce_range=reduce_range,
        weight_type="QInt8",
        bytes_before=source.stat().st_size,
        bytes_after=output.stat().st_size,
        integer_nodes=sum(1 for node in quantized.graph.node if node.op_type in _INT8_OPS),
    )
