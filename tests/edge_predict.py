"""Run by the tests inside a device-only venv: classify files with a bundle and print JSON (no TensorFlow here)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from edge_app.model import EdgeModel
from edge_app.preprocess import preprocess


def main() -> None:
    bundle, runtime, variant, *files = sys.argv[1:]
    model = EdgeModel.load(Path(bundle), variant=variant, runtime=runtime, threads=1)
    images = [preprocess(Path(f), model.manifest.preprocess) for f in files]
    predictions = [model.predict(image) for image in images]
    batched = [p for first in range(0, len(images), 8) for p in model.predict_batch(images[first : first + 8])]
    alone_again = model.predict(images[0])  # back to one image after a batch
    print(
        json.dumps(
            {
                "runtime": model.runtime.label,
                "tensorflow_imported": any(name.split(".")[0] == "tensorflow" for name in sys.modules),
                "probabilities": [p.probability for p in predictions],
                "heatmap_peaks": [float(p.heatmap.max()) if p.heatmap is not None else None for p in predictions],
                "batch_probability_diff": max(
                    abs(a.probability - b.probability) for a, b in zip(predictions, batched, strict=True)
                ),
                "batch_heatmap_diff": max(
                    float(abs(a.heatmap - b.heatmap).max())
                    for a, b in zip(predictions, batched, strict=True)
                    if a.heatmap is not None and b.heatmap is not None
                ),
                "single_after_batch_diff": abs(alone_again.probability - predictions[0].probability),
            }
        )
    )


if __name__ == "__main__":
    main()
