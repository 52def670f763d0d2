"""The runtimes a user would pick instead of LiteRT, on the same model: ONNX Runtime and OpenVINO, float32 and int8.

Export (workstation: tf2onnx imports TensorFlow). The bundle's float32 classifier and its Grad-CAM head are
converted from their TFLite files with tf2onnx, inputs and outputs put in the TFLite files' order, so the manifest's
positions (``outputs["logit"]`` ...) hold for every runtime. ONNX Runtime's int8 is its own static QDQ quantisation
(unsigned 8-bit activations, signed per-channel weights: the fast path on x86); OpenVINO reads the float ONNX
files, and its int8 is NNCF's post-training quantisation. Both calibrate on synthetic patches made here, never on
the fidelity images they are then measured on. The head stays float32 everywhere, as in the bundle.

Running (onnxruntime / openvino installed, no TensorFlow). Adapters give each runtime the TFLite interpreter's
interface (``get_input_details``, ``set_tensor``, ``invoke``, ``get_tensor``...): the latency rows and `EdgeModel`'s
predict (the product's one rule for probability, Grad-CAM and fusion) run on them unchanged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from edge_app.errors import DataError, RuntimeUnavailableError
from edge_app.manifest import Manifest, ModelFile
from edge_app.preprocess import to_model_input
from edge_app.runtime import Runtime
from edge_app.samples import render_mass

ONNX_RUNTIME = "onnxruntime"
OPENVINO = "openvino"
PEERS_FILE = "peers.json"
_DISTRIBUTIONS = {ONNX_RUNTIME: "onnxruntime", OPENVINO: "openvino"}


class _Adapter:
    """The TFLite interpreter's interface over named float inputs and outputs; positions are list order (inputs
    first, then outputs, as TFLite numbers its tensors)."""

    def __init__(self, inputs: list[tuple[str, tuple[int, ...]]], outputs: list[tuple[str, tuple[int, ...]]]) -> None:
        self._inputs, self._outputs = inputs, outputs
        self._feeds: dict[str, NDArray[np.float32]] = {}
        self._results: list[NDArray[np.float32]] = []

    def allocate_tensors(self) -> None:
        """Nothing to do: each runtime allocates when it compiles."""

    def get_input_details(self) -> list[dict[str, Any]]:
        return [_detail(name, shape, index) for index, (name, shape) in enumerate(self._inputs)]

    def get_output_details(self) -> list[dict[str, Any]]:
        first = len(self._inputs)
        return [_detail(name, shape, first + index) for index, (name, shape) in enumerate(self._outputs)]

    def set_tensor(self, index: int, value: NDArray[Any]) -> None:
        self._feeds[self._inputs[index][0]] = np.asarray(value, np.float32)

    def get_tensor(self, index: int) -> NDArray[np.float32]:
        return self._results[index - len(self._inputs)]


def _detail(name: str, shape: tuple[int, ...], index: int) -> dict[str, Any]:
    return {"name": name, "index": index, "shape": np.array(shape), "dtype": np.float32, "quantization": (0.0, 0)}


def _fixed(shape: Any) -> tuple[int, ...]:
    """A shape with its dynamic batch dimension set to 1 (what the device feeds)."""
    return tuple(value if isinstance(value, int) and value > 0 else 1 for value in shape)


class OnnxRuntimeInterpreter(_Adapter):
    def __init__(self, path: Path, threads: int) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        # its threads would otherwise spin after each run, taking the cores from the next interleaved case
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        super().__init__(
            [(item.name, _fixed(item.shape)) for item in self.session.get_inputs()],
            [(item.name, _fixed(item.shape)) for item in self.session.get_outputs()],
        )

    def invoke(self) -> None:
        self._results = self.session.run(None, self._feeds)


class OpenVinoInterpreter(_Adapter):
    def __init__(self, path: Path, threads: int) -> None:
        import openvino

        core = openvino.Core()
        model = core.read_model(str(path))
        settings = {
            "INFERENCE_NUM_THREADS": threads,
            "NUM_STREAMS": 1,
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": "f32",  # never a silent bf16/f16 on CPUs that have it: same maths as the rest
        }
        self.compiled = core.compile_model(model, "CPU", settings)
        self.request = self.compiled.create_infer_request()
        super().__init__([_port(port) for port in model.inputs], [_port(port) for port in model.outputs])

    def invoke(self) -> None:
        self.request.infer({name: self._feeds[name] for name, _ in self._inputs})
        self._results = [np.asarray(self.request.get_output_tensor(i).data) for i in range(len(self._outputs))]


def _port(port: Any) -> tuple[str, tuple[int, ...]]:
    """An OpenVINO port's name and shape, its dynamic batch dimension as 1."""
    shape = tuple(dimension.get_length() if dimension.is_static else 1 for dimension in port.get_partial_shape())
    return str(port.get_any_name()), shape


ADAPTERS = {ONNX_RUNTIME: OnnxRuntimeInterpreter, OPENVINO: OpenVinoInterpreter}


def peer_runtime(name: str) -> Runtime:
    """A peer runtime by name, as a `Runtime` (its interpreter class takes a model path and a thread count)."""
    try:
        return Runtime(name, metadata.version(_DISTRIBUTIONS[name]), ADAPTERS[name])
    except metadata.PackageNotFoundError as exc:
        raise RuntimeUnavailableError(f"{name} is not installed (pip install 'mammo-edge[peers]')") from exc


def open_peer(runtime: str, path: Path, threads: int) -> Any:
    return ADAPTERS[runtime](path, threads)


@dataclass(frozen=True)
class PeerModel:
    """One peer row's files: the classifier in `variant` and the float head, for `runtime`."""

    runtime: str
    variant: str
    classifier: str  # file names in the peers folder
    head: str

    def size_mb(self, folder: Path, name: str) -> float:
        """The model's size on disk (an OpenVINO model is its .xml and its .bin)."""
        path = folder / name
        files = [path, path.with_suffix(".bin")] if path.suffix == ".xml" else [path]
        return sum(file.stat().st_size for file in files if file.exists()) / 1e6

    def opener(self, folder: Path, threads: int) -> Any:
        """`EdgeModel`'s opener: the bundle's classifier and head, as this runtime's exported files."""

        def open_model(_name: str, entry: ModelFile) -> Any:
            return open_peer(
                self.runtime, folder / (self.head if entry.role == "gradcam_head" else self.classifier), threads
            )

        return open_model


def read_peers(folder: Path) -> list[PeerModel]:
    """The exports `export_peers` wrote into `folder`."""
    try:
        listed = json.loads((folder / PEERS_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise DataError(
            f"{folder} holds no peer exports ({PEERS_FILE}): run with --export-peers first ({exc})"
        ) from exc
    return [PeerModel(**entry) for entry in listed["models"]]


def calibration_inputs(manifest: Manifest, count: int, seed: int = 1) -> NDArray[np.float32]:
    """`count` synthetic mass patches (the generator's, the bundle's patch size), preprocessed by the device's rule."""
    rng = np.random.default_rng(seed)
    side = manifest.scope.patch_side_px[1]
    patches = [render_mass(rng, side, bool(index % 2)).image for index in range(count)]
    return np.stack([to_model_input(patch, manifest.preprocess) for patch in patches]).astype(np.float32)


def export_peers(bundle: Path, manifest: Manifest, folder: Path, calibration: NDArray[np.float32]) -> list[PeerModel]:
    """Write the ONNX and OpenVINO models of the bundle's float32 classifier and head into `folder` (see the module
    docstring); `calibration` is (n, size, size, 1) float pixels for the two int8 quantisations."""
    folder.mkdir(parents=True, exist_ok=True)
    classifier, _ = manifest.classifier("float32")
    head = next(name for name, entry in manifest.files.items() if entry.role == "gradcam_head")
    onnx_classifier = _to_onnx(bundle / classifier, folder / "classifier_float32.onnx")
    onnx_head = _to_onnx(bundle / head, folder / "gradcam_head.onnx")
    _quantise_onnx(onnx_classifier, folder / "classifier_int8.onnx", calibration)
    _to_openvino(onnx_classifier, folder / "openvino_classifier_float32.xml")
    _to_openvino(onnx_head, folder / "openvino_gradcam_head.xml")
    _quantise_openvino(onnx_classifier, folder / "openvino_classifier_int8.xml", calibration)
    models = [
        PeerModel(ONNX_RUNTIME, "float32", "classifier_float32.onnx", "gradcam_head.onnx"),
        PeerModel(ONNX_RUNTIME, "int8", "classifier_int8.onnx", "gradcam_head.onnx"),
        PeerModel(OPENVINO, "float32", "openvino_classifier_float32.xml", "openvino_gradcam_head.xml"),
        PeerModel(OPENVINO, "int8", "openvino_classifier_int8.xml", "openvino_gradcam_head.xml"),
    ]
    listed = {"bundle_sha256": manifest.classifier("float32")[1].sha256, "models": [m.__dict__ for m in models]}
    (folder / PEERS_FILE).write_text(json.dumps(listed, indent=2) + "\n")
    return models


def _to_onnx(tflite: Path, target: Path) -> Path:
    """tf2onnx's conversion of a TFLite file, its inputs and outputs in the TFLite file's order."""
    import onnx
    from ai_edge_litert.interpreter import Interpreter
    from tf2onnx import convert

    model, _ = convert.from_tflite(str(tflite))
    interpreter = Interpreter(model_path=str(tflite))
    for field, details in (
        (model.graph.input, interpreter.get_input_details()),
        (model.graph.output, interpreter.get_output_details()),
    ):
        by_name = {value.name: value for value in field}
        ordered = [by_name[detail["name"]] for detail in details]
        copies = [type(value)() for value in ordered]
        for copy, value in zip(copies, ordered, strict=True):
            copy.CopyFrom(value)
        del field[:]
        field.extend(copies)
    onnx.save(model, str(target))
    return target


def _quantise_onnx(source: Path, target: Path, calibration: NDArray[np.float32]) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            import onnxruntime

            name = onnxruntime.InferenceSession(str(source), providers=["CPUExecutionProvider"]).get_inputs()[0].name
            self.batches = iter([{name: image[np.newaxis]} for image in calibration])

        def get_next(self) -> dict[str, NDArray[np.float32]] | None:
            return next(self.batches, None)

    quantize_static(
        str(source),
        str(target),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )


def _to_openvino(source: Path, target: Path) -> None:
    import openvino

    openvino.save_model(openvino.convert_model(str(source)), str(target), compress_to_fp16=False)


def _quantise_openvino(source: Path, target: Path, calibration: NDArray[np.float32]) -> None:
    import nncf
    import openvino

    model = openvino.convert_model(str(source))
    quantised = nncf.quantize(
        model, nncf.Dataset([image[np.newaxis] for image in calibration]), subset_size=len(calibration)
    )
    openvino.save_model(quantised, str(target), compress_to_fp16=False)
