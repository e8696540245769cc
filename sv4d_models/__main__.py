"""``python -m sv4d_models ...``: see ``sv4d_models.cli``."""
from .cli import main

raise SystemExit(main())
