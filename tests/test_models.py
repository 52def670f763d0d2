"""Model construction: names other parts rely on, in-graph normalisation, weights handling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras", reason="models need the train extra")

from mammo_train.models import BACKBONES, build_explainer, build_model, set_backbones_trainable  # noqa: E402

pytestmark = pytest.mark.tensorflow


@pytest.mark.parametrize("arch", ["densenet121", "resnet50"])
def test_baselines_have_the_documented_layers(arch: str) -> None:
    model = build_model(arch, 32, "none")
    assert model.input.shape == (None, 32, 32, 1)
    assert model.output.shape == (None, 1)
    for name in (arch, f"{arch}_pool", "head_dense", "head_dropout", "logit", "probability"):
        model.get_layer(name)
    assert model.get_layer(arch).output.shape[-1] == BACKBONES[arch].channels


def test_hybrid_fuses_both_backbones_and_explainer_matches() -> None:
    model = build_model("hybrid", 32, "none")
    assert model.get_layer("features").output.shape == (None, 1024 + 2048)
    explainer = build_explainer(model)
    images = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 1)).astype("float32")
    logit, dense_map, res_map = explainer(images, training=False)
    assert dense_map.shape[-1] == 1024 and res_map.shape[-1] == 2048
    probability = model(images, training=False).numpy()[:, 0]
    np.testing.assert_allclose(1 / (1 + np.exp(-logit.numpy()[:, 0])), probability, rtol=1e-5)


def test_in_graph_normalisation_matches_keras_preprocess_input() -> None:
    model = build_model("hybrid", 32, "none")
    gray = np.random.default_rng(1).integers(0, 256, (1, 32, 32, 1)).astype("float32")
    rgb = np.repeat(gray, 3, axis=-1)
    dense = model.get_layer("densenet121_imagenet_norm")(rgb).numpy()
    res = model.get_layer("resnet50_imagenet_norm")(rgb).numpy()
    np.testing.assert_allclose(dense, keras.applications.densenet.preprocess_input(rgb.copy()), atol=1e-4)
    np.testing.assert_allclose(res, keras.applications.resnet50.preprocess_input(rgb.copy()), atol=1e-3)


def test_fine_tuning_opens_only_the_top_block() -> None:
    model = build_model("resnet50", 32, "none")
    set_backbones_trainable(model, True, top_prefix="conv5")
    layers = model.get_layer("resnet50").layers
    trainable = {layer.name for layer in layers if layer.trainable and layer.weights}
    assert trainable and all(name.startswith("conv5") for name in trainable)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) and layer.trainable for layer in layers)


def test_local_weights_folder_must_hold_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no weight file for densenet121"):
        build_model("densenet121", 32, str(tmp_path))
    with pytest.raises(FileNotFoundError, match="not imagenet, none"):
        build_model("densenet121", 32, str(tmp_path / "missing"))


def test_local_weights_are_loaded(tmp_path: Path) -> None:
    source = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(32, 32, 3))
    source.save_weights(tmp_path / "resnet50_notop.weights.h5")
    model = build_model("resnet50", 32, str(tmp_path))
    loaded = model.get_layer("resnet50").get_layer("conv1_conv").get_weights()[0]
    np.testing.assert_array_equal(loaded, source.get_layer("conv1_conv").get_weights()[0])
