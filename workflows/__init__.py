"""The procedures built from the packages below: training, evaluation, zero-shot, attributes, prediction, analysis."""
