"""Dynamic NeRF for the 4D reconstruction stage (pure PyTorch; tinycudann optional, imported lazily).

Entry points: ``fit.fit_dynamic_nerf``, ``renderer.render``, ``fit_config.NeRFFitConfig`` / ``cpu_preset`` /
``tiny_preset``, ``field.DynamicNeRF`` (``density(x, t)``, ``color(x, t)``, ``query``), ``hashgrid.HashGrid``.
Import the submodules directly; this package file stays empty so ``import sv4d_models.nerf`` is cheap.
"""
