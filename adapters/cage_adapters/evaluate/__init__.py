"""Evaluation of decoding methods: judges, metrics, baselines and the frontier harness."""
