"""Classical baselines: scikit-learn pipelines on openSMILE functionals, their files and importances.

The command is `python -m ser_lightning.baseline` (`ser_lightning/baseline.py`).
"""
