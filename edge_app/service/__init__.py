"""The scan lifecycle: states and records (`lifecycle`), their store (`journal`), and the stages that move a scan,
composed by `pipeline` and driven by `daemon`.

Public: `ScanState`, `ScanRecord`, `Journal`, `Analyser`, `Analysis`, `ModelAnalyser`, `ResultWriter`, `ScanPipeline`,
`Daemon`, `build_pipeline`.
"""
