"""Labels, LightGBM training, calibration, score scaling and grades, explanations, the
evaluation report, MLflow logging, registry and promotion. Imports ``features`` only.
"""
