"""SV4D / SV4D 2.0 trainer (accelerate): ``train/train.py``; data: ``python -m train.prepare_data``."""
