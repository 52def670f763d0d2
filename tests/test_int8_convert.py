"""int8 made in TensorFlow between the converter's two halves: the converter reproduced, the pixels' and outputs'
ranges kept, and each bias correction doing what it says."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow", reason="int8 conversion needs the train extra (TensorFlow)")

from mammo_convert.int8 import calibrated_model, int8_model, quantise, refine  # noqa: E402
from mammo_convert.recipes import CONVERTERS_OWN, Int8Recipe  # noqa: E402

pytestmark = pytest.mark.tensorflow


@pytest.fixture(scope="module")
def small_model() -> tuple[object, np.ndarray]:
    """A grey-to-RGB, normalised, two-convolution classifier with two outputs (logit and feature maps), and images."""
    import keras

    keras.utils.set_random_seed(0)
    pixels = keras.Input((24, 24, 1))
    rgb = keras.layers.Concatenate()([pixels, pixels, pixels])
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(rgb)
    x = keras.layers.Conv2D(8, 3, activation="relu")(x)
    maps = keras.layers.Conv2D(16, 3, activation="relu")(x)
    logit = keras.layers.Dense(1, bias_initializer="ones")(keras.layers.GlobalAveragePooling2D()(maps))  # a bias
    model = keras.Model(pixels, [logit, maps])
    images = np.random.default_rng(0).integers(0, 256, (24, 24, 24, 1)).astype(np.uint8)
    images[:, 8:16, 8:16] = 255  # bright squares: some activations' extremes come from a few pixels
    return model, images


@pytest.fixture(scope="module")
def float_file(small_model: tuple[object, np.ndarray]) -> bytes:
    """`small_model` in float32, as the float32 variant is converted: what every calibration runs."""
    from mammo_convert.export import to_tflite

    return to_tflite(small_model[0], "float32")


def _batches(images: np.ndarray):  # type: ignore[no-untyped-def]
    from mammo_convert.build import representative_batches

    return representative_batches(images)


def _without_metadata(model: bytes) -> bytes:
    """`model` with its metadata entries and their buffers emptied: the graph, its weights and its ranges alone."""
    from tensorflow.lite.tools import flatbuffer_utils

    graph = flatbuffer_utils.convert_bytearray_to_object(bytearray(model))
    for entry in graph.metadata:
        graph.buffers[entry.buffer].data = None
    graph.metadata = None
    return bytes(flatbuffer_utils.convert_object_to_bytearray(graph))


def _conversion_metadata(model: bytes) -> object:
    from tensorflow.lite.python import conversion_metadata_schema_py_generated as conversion
    from tensorflow.lite.tools import flatbuffer_utils

    graph = flatbuffer_utils.convert_bytearray_to_object(bytearray(model))
    (entry,) = [entry for entry in graph.metadata if entry.name == b"CONVERSION_METADATA"]
    return conversion.ConversionMetadataT.InitFromPackedBuf(bytes(graph.buffers[entry.buffer].data), 0)


def test_without_a_technique_the_model_is_the_converters_own_int8_file(
    small_model: tuple[object, np.ndarray], float_file: bytes
) -> None:
    """Calibrated over the float32 file and quantised, with no technique in between: the file the converter makes
    of the Keras model end to end, byte for byte but for its conversion metadata, which says full-integer
    quantisation all the same."""
    from tensorflow.lite.python import conversion_metadata_schema_py_generated as conversion

    from mammo_convert.export import to_tflite

    model, images = small_model
    converted = to_tflite(model, "int8", _batches(images))
    refined = refine(calibrated_model(float_file, _batches(images)), _batches(images), CONVERTERS_OWN)
    ours = int8_model(refined, _batches(images), CONVERTERS_OWN)
    assert _without_metadata(ours) == _without_metadata(converted)
    for data in (ours, converted):
        modes = _conversion_metadata(data).options.modelOptimizationModes
        assert list(modes) == [conversion.ModelOptimizationMode.PTQ_FULL_INTEGER]
    entry = tf.lite.Interpreter(model_content=ours).get_input_details()[0]
    assert entry["dtype"] == np.uint8 and entry["quantization"] == (1.0, 0)


def test_a_float_logit_keeps_the_int8_network_and_drops_only_the_logits_grid(
    small_model: tuple[object, np.ndarray], float_file: bytes
) -> None:
    """With the logit in float, the pixels still go in as uint8 with scale 1, the feature maps come out as the int8
    file's own values dequantised, every layer but the logit's keeps int8 weights, and the logits are no longer on
    the int8 output's grid."""

    from edge_app.model import get_output, set_input

    _, images = small_model
    calibrated = calibrated_model(float_file, _batches(images))
    files = {precision: quantise(calibrated, logit=precision) for precision in ("int8", "float")}
    answers: dict[str, list[list[np.ndarray]]] = {}
    for precision, data in files.items():
        interpreter = tf.lite.Interpreter(model_content=data)
        interpreter.allocate_tensors()
        assert interpreter.get_input_details()[0]["dtype"] == np.uint8
        assert interpreter.get_input_details()[0]["quantization"] == (1.0, 0)
        outputs = interpreter.get_output_details()
        assert {detail["dtype"] for detail in outputs} == {np.float32 if precision == "float" else np.int8}
        answers[precision] = []
        for image in images:
            set_input(interpreter, image[np.newaxis].astype(np.float32))
            interpreter.invoke()
            answers[precision].append([get_output(interpreter, position) for position in range(len(outputs))])
    logit = next(position for position, value in enumerate(answers["int8"][0]) if value.size == 1)
    for int8_answer, float_answer in zip(answers["int8"], answers["float"], strict=True):
        for position, (ours, theirs) in enumerate(zip(int8_answer, float_answer, strict=True)):
            if position != logit:
                assert np.array_equal(ours, theirs)  # the same int8 maps
    types = _weight_types(files["float"])
    assert types == [("CONV_2D", 9), ("CONV_2D", 9), ("FULLY_CONNECTED", 0)]  # INT8 convolutions, a FLOAT32 logit
    step = tf.lite.Interpreter(model_content=files["int8"]).get_output_details()[logit]["quantization"][0]
    logits = np.array([answer[logit].item() for answer in answers["float"]])
    assert not np.allclose(logits / step, np.rint(logits / step), atol=1e-3)  # finer than the int8 output's steps


def test_calibrating_on_other_images_makes_the_converters_file_for_them(
    small_model: tuple[object, np.ndarray], float_file: bytes
) -> None:
    """The repair's recalibration runs over the same float32 file: the int8 file is the one the converter makes of
    the Keras model calibrated on the new images."""
    from mammo_convert.export import to_tflite

    model, images = small_model
    others = np.concatenate([images, images[:, :, ::-1]])[8:]  # other images, flipped ones among them
    again = quantise(calibrated_model(float_file, _batches(others)))
    assert _without_metadata(again) == _without_metadata(to_tflite(model, "int8", _batches(others)))
    assert again != quantise(calibrated_model(float_file, _batches(images)))  # the images changed the ranges


def test_the_quantiser_keeps_the_rounding_gptq_chose(small_model: tuple[object, np.ndarray], float_file: bytes) -> None:
    """Each channel keeps the scale nearest rounding gives it, and the int8 file holds exactly the steps GPTQ chose
    (in both convolutions a tenth or more of them not the nearest)."""
    from tensorflow.lite.tools import flatbuffer_utils

    from mammo_convert.int8 import _constant, _weighted_ops

    _, images = small_model
    calibrated = calibrated_model(float_file, _batches(images))
    chosen = refine(calibrated, _batches(images), Int8Recipe("minmax", rounding="gptq"))
    before, after = (flatbuffer_utils.convert_bytearray_to_object(bytearray(data)) for data in (calibrated, chosen))
    written = flatbuffer_utils.convert_bytearray_to_object(bytearray(quantise(chosen)))
    by_name = {tensor.name: tensor for tensor in written.subgraphs[0].tensors}
    moved = []
    for (op, _), (original, _) in zip(_weighted_ops(after), _weighted_ops(before), strict=True):
        weights, nearest = _constant(after, op.inputs[1]), _constant(before, original.inputs[1])
        assert weights is not None and nearest is not None
        channels = weights.shape[0]
        scale = np.abs(nearest.reshape(channels, -1)).max(axis=1) / 127
        target = by_name[after.subgraphs[0].tensors[op.inputs[1]].name]
        steps = np.frombuffer(np.asarray(written.buffers[target.buffer].data, np.uint8).tobytes(), np.int8)
        assert np.allclose(np.asarray(target.quantization.scale), scale, rtol=1e-6)
        assert np.array_equal(steps.reshape(channels, -1), np.rint(weights.reshape(channels, -1) / scale[:, None]))
        assert np.allclose(steps.reshape(channels, -1) * scale[:, None], weights.reshape(channels, -1), atol=1e-6)
        moved.append(np.mean(steps.reshape(channels, -1) != np.rint(nearest.reshape(channels, -1) / scale[:, None])))
    assert len(moved) == 3 and min(moved[:2]) > 0.05


def test_each_layers_input_products_are_summed_over_every_calibration_image(
    small_model: tuple[object, np.ndarray], float_file: bytes
) -> None:
    """GPTQ's ``X^T X`` per layer, its windows summed in batches, equal the sums image by image: for the convolutions
    (more windows per image than inputs: a product at every image) and for the dense layer (one row per image, 16
    inputs: 24 images enter as a batch of 16 and one of 8)."""
    from tensorflow.lite.tools import flatbuffer_utils

    from mammo_convert.export import calibration_runs
    from mammo_convert.int8 import _weighted_ops
    from mammo_convert.rounding import _hessians, _windows

    _, images = small_model
    calibrated = calibrated_model(float_file, _batches(images))
    graph = flatbuffer_utils.convert_bytearray_to_object(bytearray(calibrated))
    ops = [op for op, _ in _weighted_ops(graph)]
    tensors = graph.subgraphs[0].tensors
    expected: dict[int, np.ndarray] = {}
    for interpreter in calibration_runs(calibrated, _batches(images)):
        for op in ops:
            shape = tensors[op.inputs[1]].shape
            values = interpreter.get_tensor(op.inputs[0]).astype(np.float64)
            rows = _windows(values[0], op, shape) if len(shape) == 4 else values.reshape(-1, shape[-1])
            expected[int(op.outputs[0])] = expected.get(int(op.outputs[0]), 0.0) + rows.T @ rows
    summed = _hessians(calibrated, _batches(images), graph, ops)
    assert len(images) == 24 and [tensors[op.inputs[1]].shape[-1] for op in ops] == [3, 8, 16]
    assert set(summed) == set(expected)
    for key, total in expected.items():
        np.testing.assert_allclose(summed[key], total, rtol=1e-5, atol=1e-6 * float(np.abs(total).max()))


def test_gptq_makes_a_layers_output_closer_than_nearest_rounding() -> None:
    """On inputs that vary together, rounding by choice leaves the layer's output error below nearest rounding's."""
    from mammo_convert.rounding import gptq

    rng = np.random.default_rng(0)
    inputs = rng.standard_normal((2000, 8)) @ rng.standard_normal((8, 48))  # 48 inputs, 8 independent directions
    weights = rng.standard_normal((16, 48))
    scale = np.abs(weights).max(axis=1, keepdims=True) / 127
    nearest = np.rint(weights / scale) * scale
    chosen = gptq(weights, inputs.T @ inputs)
    assert np.allclose(np.abs(chosen).max(axis=1), np.abs(weights).max(axis=1))  # each channel's scale kept
    assert np.allclose(chosen / scale, np.rint(chosen / scale)) and np.abs(chosen / scale).max() <= 127 + 1e-9
    error = np.linalg.norm(inputs @ (chosen - weights).T), np.linalg.norm(inputs @ (nearest - weights).T)
    assert error[0] < 0.5 * error[1]


@pytest.mark.parametrize("recipe", [Int8Recipe("mse"), Int8Recipe("mean"), Int8Recipe("percentile", percentile=99.0)])
def test_every_estimator_leaves_the_pixels_and_the_outputs_their_own_ranges(
    small_model: tuple[object, np.ndarray], float_file: bytes, recipe: Int8Recipe
) -> None:
    from tensorflow.lite.tools import flatbuffer_utils

    _, images = small_model
    calibrated = calibrated_model(float_file, _batches(images))
    refined = refine(calibrated, _batches(images), recipe)

    def ranges(data: bytes) -> dict[str, tuple[float, float]]:
        tensors = flatbuffer_utils.convert_bytearray_to_object(bytearray(data)).subgraphs[0].tensors
        return {
            t.name.decode(): (float(t.quantization.min[0]), float(t.quantization.max[0]))
            for t in tensors
            if t.quantization is not None and t.quantization.min is not None and len(t.quantization.min) == 1
        }

    before, after = ranges(calibrated), ranges(refined)
    changed = [name for name in before if before[name] != after[name]]
    outputs = [name for name in before if name.startswith("StatefulPartitionedCall")]  # the logit and the maps
    assert len(outputs) == 2 and not set(outputs) & set(changed)
    assert changed and not [n for n in changed if "concatenate" in n or "rescaling" in n]  # the pixels' own kept
    assert all(min(before[n][0], 0) <= after[n][0] and after[n][1] <= before[n][1] for n in changed)  # never wider
    entry = tf.lite.Interpreter(model_content=quantise(refined)).get_input_details()[0]
    assert entry["quantization"] == (1.0, 0)  # the pixels go in unchanged


def test_a_float_head_leaves_every_dense_layer_in_float_and_the_convolutions_int8(
    small_model: tuple[object, np.ndarray],
) -> None:
    """``head``: both dense layers of a two-layer head in float (the float logit keeps only the last one), every
    convolution int8, the outputs float32."""
    import keras
    from tensorflow.lite.tools import flatbuffer_utils

    from mammo_convert.export import to_tflite

    keras.utils.set_random_seed(1)
    pixels = keras.Input((24, 24, 1))
    maps = keras.layers.Conv2D(8, 3, activation="relu")(keras.layers.Rescaling(1 / 255)(pixels))
    pooled = keras.layers.GlobalAveragePooling2D()(maps)
    hidden = keras.layers.Dense(6, activation="relu", bias_initializer="ones")(pooled)  # biases: a zero one is dropped
    model = keras.Model(pixels, [keras.layers.Dense(1, bias_initializer="ones")(hidden), maps])
    _, images = small_model
    calibrated = calibrated_model(to_tflite(model, "float32"), _batches(images))
    kinds = {}
    for precision in ("float", "head"):
        data = quantise(calibrated, logit=precision)
        kinds[precision] = _weight_types(data)
        graph = flatbuffer_utils.convert_bytearray_to_object(bytearray(data))
        outputs = graph.subgraphs[0].outputs
        assert {graph.subgraphs[0].tensors[index].type for index in outputs} == {0}  # FLOAT32 outputs
    assert kinds["float"] == [("CONV_2D", 9), ("FULLY_CONNECTED", 9), ("FULLY_CONNECTED", 0)]  # INT8, FLOAT32
    assert kinds["head"] == [("CONV_2D", 9), ("FULLY_CONNECTED", 0), ("FULLY_CONNECTED", 0)]


def test_the_output_correction_moves_the_logits_bias_by_its_median_int8_error(
    small_model: tuple[object, np.ndarray], float_file: bytes
) -> None:
    from tensorflow.lite.tools import flatbuffer_utils

    from mammo_convert.int8 import _constant, _correct_output_bias

    _, images = small_model
    calibrated = calibrated_model(float_file, _batches(images))
    reference, plain = _logits(calibrated, images), _logits(quantise(calibrated), images)
    corrected = _correct_output_bias(calibrated, quantise(calibrated), _batches(images))
    biases = []
    for data in (calibrated, corrected):
        graph = flatbuffer_utils.convert_bytearray_to_object(bytearray(data))
        (dense,) = [
            op for op in graph.subgraphs[0].operators if graph.subgraphs[0].tensors[op.inputs[1]].shape.size == 2
        ]
        biases.append(float(_constant(graph, dense.inputs[2])[0]))
    calibration_error = np.median(plain - reference)  # these images calibrated it (the first with two pixels pinned)
    assert biases[1] == pytest.approx(biases[0] - calibration_error, abs=1e-5) and abs(calibration_error) > 1e-4
    after = np.median(_logits(quantise(corrected), images) - reference)
    assert abs(after) < abs(calibration_error)


def test_the_weights_correction_moves_each_bias_by_its_rounding_shift(
    small_model: tuple[object, np.ndarray], float_file: bytes
) -> None:
    from tensorflow.lite.tools import flatbuffer_utils

    from mammo_convert.int8 import _constant, _weighted_ops

    _, images = small_model
    calibrated = calibrated_model(float_file, _batches(images))
    corrected = refine(calibrated, _batches(images), Int8Recipe("minmax", "weights"))
    graph, fixed = (flatbuffer_utils.convert_bytearray_to_object(bytearray(m)) for m in (calibrated, corrected))
    ((dense, _),) = [
        (op, axis) for op, axis in _weighted_ops(graph) if graph.subgraphs[0].tensors[op.inputs[1]].shape.size == 2
    ]
    weights = _constant(graph, dense.inputs[1])
    error = _nearest_rounding_error(weights)
    pooled = np.mean([_pooled(calibrated, image, dense.inputs[0]) for image in images], axis=0)
    expected = _constant(graph, dense.inputs[2]) - error @ pooled
    assert np.allclose(_constant(fixed, dense.inputs[2]), expected, atol=1e-6)
    assert not np.allclose(_constant(fixed, dense.inputs[2]), _constant(graph, dense.inputs[2]), atol=1e-7)


def _weight_types(model: bytes) -> list[tuple[str, int]]:
    """Each weighted op of `model` and the TFLite type of its weights (9 INT8, 0 FLOAT32), in execution order."""
    from tensorflow.lite.tools import flatbuffer_utils

    from mammo_convert.int8 import WEIGHT_OPS, _op_name

    graph = flatbuffer_utils.convert_bytearray_to_object(bytearray(model))
    tensors = graph.subgraphs[0].tensors
    ops = [(_op_name(graph.operatorCodes[op.opcodeIndex]), op) for op in graph.subgraphs[0].operators]
    return [(name, tensors[op.inputs[1]].type) for name, op in ops if name in WEIGHT_OPS]


def _nearest_rounding_error(weights: np.ndarray) -> np.ndarray:
    """What rounding `weights` to the quantiser's per-output-channel int8 grid (scale max|w| / 127) changes in them."""
    flat = weights.reshape(weights.shape[0], -1)
    scale = np.abs(flat).max(axis=1, keepdims=True) / 127
    return (np.rint(flat / scale) * scale - flat).reshape(weights.shape)


def _pooled(model: bytes, image: np.ndarray, index: int) -> np.ndarray:
    interpreter = tf.lite.Interpreter(model_content=model, experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    (entry,) = interpreter.get_input_details()
    interpreter.set_tensor(entry["index"], image[np.newaxis].astype(np.float32))
    interpreter.invoke()
    return interpreter.get_tensor(index).reshape(-1)


def _logits(model: bytes, images: np.ndarray) -> np.ndarray:
    interpreter = tf.lite.Interpreter(model_content=model)
    interpreter.allocate_tensors()
    (entry,) = interpreter.get_input_details()
    (logit,) = [d for d in interpreter.get_output_details() if int(np.prod(d["shape"])) == 1]
    scale, zero_point = logit["quantization"]
    values = []
    for image in images:  # the calibrated model is the float graph: float pixels in, the logit out as it is
        interpreter.set_tensor(entry["index"], image[np.newaxis].astype(entry["dtype"]))
        interpreter.invoke()
        value = float(interpreter.get_tensor(logit["index"]).ravel()[0])
        values.append((value - zero_point) * scale if scale else value)
    return np.array(values)


def test_a_bias_the_converter_shares_is_corrected_for_each_layer_alone() -> None:
    """Two bias-free convolutions read one stored tensor of zeros (as DenseNet's growth layers do): each gets its own
    rounding shift, not the sum of both."""
    import keras
    from tensorflow.lite.tools import flatbuffer_utils

    from mammo_convert.export import to_tflite
    from mammo_convert.int8 import _constant, _weighted_ops

    keras.utils.set_random_seed(1)
    pixels = keras.Input((16, 16, 1))
    x = keras.layers.Rescaling(1 / 255)(pixels)
    x = keras.layers.Conv2D(8, 3, use_bias=False, activation="relu")(x)
    x = keras.layers.Conv2D(8, 3, use_bias=False, activation="relu")(x)
    logit = keras.layers.Dense(1)(keras.layers.GlobalAveragePooling2D()(x))
    images = np.random.default_rng(1).integers(0, 256, (8, 16, 16, 1)).astype(np.uint8)
    calibrated = calibrated_model(to_tflite(keras.Model(pixels, logit), "float32"), _batches(images))
    corrected = refine(calibrated, _batches(images), Int8Recipe("minmax", "weights"))
    graph, fixed = (flatbuffer_utils.convert_bytearray_to_object(bytearray(m)) for m in (calibrated, corrected))
    convolutions, fixed_convolutions = (
        [op for op, _ in _weighted_ops(g) if g.subgraphs[0].tensors[op.inputs[1]].shape.size > 2]
        for g in (graph, fixed)
    )
    assert len(convolutions) == 2 and convolutions[0].inputs[2] == convolutions[1].inputs[2], "the zeros are shared"
    for before, after in zip(convolutions, fixed_convolutions, strict=True):
        weights = _constant(graph, before.inputs[1]).astype(np.float64)
        error = _nearest_rounding_error(weights)
        inputs = [_pooled(calibrated, image, before.inputs[0]).reshape(-1, weights.shape[-1]) for image in images]
        means = np.mean(inputs, axis=(0, 1))
        expected = -(error.reshape(weights.shape[0], -1, weights.shape[-1]).sum(axis=1) @ means)
        assert np.allclose(_constant(fixed, after.inputs[2]), expected, atol=1e-5)
    assert fixed_convolutions[0].inputs[2] != fixed_convolutions[1].inputs[2]
