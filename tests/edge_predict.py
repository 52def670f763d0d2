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
    predictions = [model.predict(preprocess(Path(f), model.manifest.preprocess)) for f in files]
    print(
        json.dumps(
            {
                "runtime": model.runtime.label,
                "tensorflow_imported": any(name.split(".")[0] == "tensorflow" for name in sys.modules),
                "probabilities": [p.probability for p in predictions],
                "heatmap_peaks": [float(p.heatmap.max()) if p.heatmap is not None else None for p in predictions],
            }
        )
    )


if __name__ == "__main__":
    main()
