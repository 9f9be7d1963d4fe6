"""The field's model-based report metrics, run through the field's own packages from local weights.

One small module per family (chexbert, bertscore, radgraph, radcliq, ratescore, green); `weights_specs`
declares the files each needs; `plugin` registers the families and the weights manifests. See
docs/report-metrics.md for which published number each metric name reproduces.
"""
