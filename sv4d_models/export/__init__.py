"""Exports of the 4D reconstruction: videos (``video``), per-frame meshes (``mesh``), animated GLB (``glb``),
OBJ/PLY sequences (``sequence``) and nerfstudio cameras (``cameras``).

Every exporter reaches the field only through small callables (``density_fn``, ``color_fn``, ``render_fn``),
writes atomically and refuses to overwrite existing outputs unless ``overwrite=True``. Submodules are imported
explicitly (``from sv4d_models.export.glb import write_glb``) so that importing this package stays cheap.
"""
