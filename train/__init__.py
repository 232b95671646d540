"""Training of real models: float training, PTQ (calibrated formats) and QAT (fake quantization
through golden/fixedpoint with a straight-through estimator), and export to a MODEL_DIR that
``load_config`` and the golden network consume. Needs the ``[train]`` extra (PyTorch) except for
``tasks`` (NumPy + scikit-learn's bundled digits)."""
