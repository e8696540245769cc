"""Which cells of the (frame x view) image matrix each sampling pass generates, from what, in what order.

The matrix has rows t = 0..n-1 (video frames) and columns v = 0..V (v = 0: the input video, given).
Row 0, views 1..V is given by SV3D for ``sv4d``; ``sv4d2*`` has no given reference row. A plan is plain
data: the pipeline encodes the rows a pass asks for, runs it (``passes.run_pass``), writes ``writes``.

SV4D (T = 5 frames x 8 views per pass), official 21 frames::

    frame   0   1   2   3   4   5   6   7   8  ...  16  17  18  19  20
    given   S                                                              S = SV3D views (reference)
    anchor  .   .   .   .   A   .   .   .   A  ...   A   .   .   .   A     one pass, reference row 0
    dense0  f---+---+---+---b                                              rows 0..4; forward ref = row 0,
    dense1                  f---+---+---+---b                              backward ref = anchor row 4;
    ...                                                                    step 0 backward, 1 forward, ...
    dense4                                           f---+---+---+---b     each overwrites its 5 rows

Extended SV4D, any n (official whenever n = 21):
  * n <= 5: one plain ``window`` pass over rows 0..n-1 (padded to 5 rows by ping-pong), reference row 0.
  * else anchors at 4, 8, ..., and n-1. They are generated in runs of 5 anchors; run k+1 takes the last
    anchor before it as reference (chained), the last run is shifted back to end at n-1 (already-written
    anchors are kept, as the official ``if img_matrix[t][v] is None``); fewer than 5 anchors are padded to
    5 rows by ping-pong. Dense windows t0 = 0, 4, ... between consecutive anchors; when (n-1) % 4 != 0 a
    last window [n-5, n-1] is shifted back (forward reference = previous dense output at n-5)::

        n = 23:  anchor run 1: rows 4 8 12 16 20 (ref row 0)
                 anchor run 2: rows 8 12 16 20 22 (ref row 4; writes only row 22)
                 dense [0..4] [4..8] [8..12] [12..16] [16..20] [18..22]
        n = 9:   anchor rows 4 8 4 8 4 (ping-pong, ref row 0); dense [0..4] [4..8]

SV4D 2.0 (4-view T = 12, 8-view T = 5): windows t0 = 0, T-1, 2(T-1), ... (one shared frame), the last one
shifted to n-T; the first window has no reference (cond_view zeroed), later windows use the previous
window's output at their first frame t0. n < T: one window padded by ping-pong. This equals the official
rule wherever that works (4-view: 12 <= n <= 23; 8-view: n >= 5 with (n-1) % 4 == 0).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..kinds import FOUR_D_KINDS, get_kind
from .samplers import default_step_directions

PAD_MODES = ("pingpong", "repeat")
REFERENCE = -1  # pass index of the given reference row (row 0, views 1..V: SV3D orbit or user views)


@dataclass(frozen=True)
class Direction:
    """One conditioning set of a pass.

    Attributes:
        name: ``forward`` or ``backward`` (SV4D dense passes have both).
        frames: generated frame of each model row, in model order (may repeat when padded).
        cond_frames: input frame feeding CLIP / concat / cond_motion of each row.
        reference_frame: frame whose views ``1..V`` give ``cond_view``; ``None`` = no reference (zeros,
            image_only_indicator 0).
    """

    name: str
    frames: tuple[int, ...]
    cond_frames: tuple[int, ...]
    reference_frame: int | None

    def to_json(self) -> dict:
        return {"name": self.name, "frames": list(self.frames), "cond_frames": list(self.cond_frames),
                "reference_frame": self.reference_frame}


@dataclass(frozen=True)
class PlannedPass:
    """One model pass (T rows x V views).

    Attributes:
        index: position in the plan; kind: ``anchor`` / ``dense`` / ``window``.
        frames: forward-direction model rows; views: generated views (1..V).
        directions: forward first, then backward for dense passes.
        step_directions: direction name used at each sampler step.
        writes: ``(t, v)`` cells this pass's output overwrites (row = first occurrence of t in ``frames``).
    """

    index: int
    kind: str
    frames: tuple[int, ...]
    views: tuple[int, ...]
    directions: tuple[Direction, ...]
    step_directions: tuple[str, ...]
    writes: tuple[tuple[int, int], ...]

    @property
    def cond_frames(self) -> tuple[int, ...]:
        return self.directions[0].cond_frames

    @property
    def reference_frame(self) -> int | None:
        return self.directions[0].reference_frame

    def direction(self, name: str) -> Direction:
        for d in self.directions:
            if d.name == name:
                return d
        raise ValueError(f"pass {self.index} ({self.kind}) has no direction {name!r}; it has "
                         f"{[d.name for d in self.directions]}")

    def row_of(self, frame: int) -> int:
        """Row (forward model order) whose output is written for ``frame``: its first occurrence."""
        return self.frames.index(frame)

    def orders(self) -> dict[str, list[int]]:
        """Per direction, the forward-order row index of each of its model rows (for dense gathering)."""
        pos = {t: i for i, t in enumerate(self.frames)}
        return {d.name: [pos[t] for t in d.frames] for d in self.directions}

    def to_json(self) -> dict:
        return {"index": self.index, "kind": self.kind, "frames": list(self.frames), "views": list(self.views),
                "cond_frames": list(self.cond_frames), "reference_frame": self.reference_frame,
                "directions": [d.to_json() for d in self.directions],
                "step_directions": list(self.step_directions), "writes": [list(c) for c in self.writes]}

    @classmethod
    def from_json(cls, d: dict) -> "PlannedPass":
        dirs = tuple(Direction(x["name"], tuple(x["frames"]), tuple(x["cond_frames"]), x["reference_frame"])
                     for x in d["directions"])
        return cls(d["index"], d["kind"], tuple(d["frames"]), tuple(d["views"]), dirs,
                   tuple(d["step_directions"]), tuple(tuple(c) for c in d["writes"]))


@dataclass(frozen=True)
class Plan:
    """A whole schedule. ``given_reference_row``: True when row 0 views 1..V is given (SV3D, sv4d)."""

    model_kind: str
    n_frames: int
    mode: str  # resolved: "official" or "extended"
    frames_per_pass: int
    n_views: int
    num_steps: int
    given_reference_row: bool
    passes: tuple[PlannedPass, ...] = field(default_factory=tuple)

    def to_json(self) -> dict:
        return {"model_kind": self.model_kind, "n_frames": self.n_frames, "mode": self.mode,
                "frames_per_pass": self.frames_per_pass, "n_views": self.n_views, "num_steps": self.num_steps,
                "given_reference_row": self.given_reference_row, "passes": [p.to_json() for p in self.passes]}

    @classmethod
    def from_json(cls, d: dict) -> "Plan":
        return cls(d["model_kind"], d["n_frames"], d["mode"], d["frames_per_pass"], d["n_views"], d["num_steps"],
                   d["given_reference_row"], tuple(PlannedPass.from_json(p) for p in d["passes"]))

    @property
    def total_steps(self) -> int:
        """Sampler steps over all passes (for a global progress bar: pass k step i is k*num_steps + i)."""
        return len(self.passes) * self.num_steps

    def final_writer(self) -> dict[tuple[int, int], int]:
        """``(t, v) -> index`` of the pass whose output ends up in each generated cell."""
        out = {}
        for p in self.passes:
            for cell in p.writes:
                out[cell] = p.index
        return out

    # ---- the plan as a graph: which pass reads which pass's cells -----------------------------------
    def reference_row(self) -> dict[tuple[int, int], int]:
        """Cells given before any pass runs: ``{(0, v): REFERENCE}`` when row 0 comes from a reference orbit."""
        return {(0, v): REFERENCE for v in range(1, self.n_views + 1)} if self.given_reference_row else {}

    def reference_sources(self) -> dict[int, dict[tuple[int, int], int]]:
        """Per pass: ``{(t, v): index of the pass whose cell is its reference view}`` (``REFERENCE`` = given row)."""
        last = self.reference_row()
        out = {}
        for p in self.passes:
            refs = {}
            for d in p.directions:
                if d.reference_frame is not None:
                    for v in p.views:
                        cell = (d.reference_frame, v)
                        if cell not in last:
                            raise RuntimeError(f"pass {p.index} needs cell {cell} before any pass wrote it (plan bug)")
                        refs[cell] = last[cell]
            out[p.index] = refs
            last.update({c: p.index for c in p.writes})
        return out

    def dependents(self, indices) -> set[int]:
        """``indices`` plus every pass that (transitively) takes its reference views from their output."""
        sources = self.reference_sources()
        out = set(indices)
        for p in self.passes:  # passes only read from earlier passes: one ordered sweep is the closure
            if set(sources[p.index].values()) & out:
                out.add(p.index)
        return out

    def final_sources(self) -> dict[tuple[int, int], int]:
        """``(t, v) -> pass index`` of every generated cell's final content (``REFERENCE``: the given row)."""
        return {**self.reference_row(), **self.final_writer()}


def official_supported(model_kind: str, n_frames: int) -> bool:
    """Whether the official script runs and generates every frame for this length (``KindSpec.official_frames``)."""
    return get_kind(model_kind, FOUR_D_KINDS).runs_officially(n_frames)


def fit_rows(frames: list[int], n_rows: int, pad: str = "pingpong") -> list[int]:
    """Pad a frame list to ``n_rows`` model rows: ping-pong reflection (a b c b a ...) or repeat-last."""
    if pad not in PAD_MODES:
        raise ValueError(f"pad={pad!r} is not supported; use one of {PAD_MODES}")
    if len(frames) >= n_rows:
        return list(frames[:n_rows])
    if pad == "repeat" or len(frames) == 1:
        return list(frames) + [frames[-1]] * (n_rows - len(frames))
    period = 2 * (len(frames) - 1)
    return [frames[i % period if i % period < len(frames) else period - i % period] for i in range(n_rows)]


def make_plan(model_kind: str, n_frames: int, mode: str = "auto", num_steps: int | None = None,
         pad: str = "pingpong") -> Plan:
    """Plan every pass for ``n_frames`` frames (see the module docstring for the rules).

    Args:
        model_kind: ``sv4d`` / ``sv4d2`` / ``sv4d2_8views``.
        mode: ``official`` (exactly the official scripts; ValueError where they crash or drop frames),
            ``extended`` (any n >= 1), ``auto`` (official when supported, else extended).
        num_steps: sampler steps (default 20 for sv4d, 50 for sv4d2*); fixes dense step directions.
        pad: how short row lists are filled (``pingpong`` or ``repeat``).
    """
    spec = get_kind(model_kind, FOUR_D_KINDS)
    if not isinstance(n_frames, int) or n_frames < 1:
        raise ValueError(f"n_frames={n_frames!r} must be an integer >= 1")
    if mode not in ("auto", "official", "extended"):
        raise ValueError(f"mode={mode!r} is not supported; use 'auto', 'official' or 'extended'")
    num_steps = spec.default_steps if num_steps is None else int(num_steps)
    if num_steps < 1:
        raise ValueError(f"num_steps={num_steps} must be >= 1")
    official = official_supported(model_kind, n_frames)
    if mode == "official" and not official:
        raise ValueError(f"the official {model_kind} script cannot run {n_frames} frames "
                         f"(it crashes or leaves frames ungenerated); use mode='extended' or 'auto'")
    resolved = "official" if mode == "official" or (mode == "auto" and official) else "extended"
    n_t, n_v = spec.frames_per_pass, spec.views_per_pass
    builder = _Builder(n_t, n_v, num_steps, given_row0=spec.needs_reference_orbit)
    if spec.needs_reference_orbit:
        _plan_sv4d(builder, n_frames, pad)
    else:
        _plan_sv4d2(builder, model_kind, n_frames, resolved, pad)
    return Plan(model_kind, n_frames, resolved, n_t, n_v, num_steps, spec.needs_reference_orbit, tuple(builder.passes))


class _Builder:
    """Accumulates passes and tracks written cells (to compute ``writes``)."""

    def __init__(self, n_t: int, n_v: int, num_steps: int, given_row0: bool):
        self.n_t, self.views, self.num_steps = n_t, tuple(range(1, n_v + 1)), num_steps
        self.written: set[tuple[int, int]] = {(0, v) for v in self.views} if given_row0 else set()
        self.passes: list[PlannedPass] = []

    def add(self, kind: str, rows: list[int], reference: int | None, backward_reference: int | None = None,
            only_empty: bool = False) -> None:
        forward = Direction("forward", tuple(rows), tuple(rows), reference)
        directions = (forward,)
        steps = ("forward",) * self.num_steps
        if kind == "dense":
            directions += (Direction("backward", tuple(rows[::-1]), tuple(rows[::-1]), backward_reference),)
            steps = default_step_directions(self.num_steps)
        cells = [(t, v) for t in dict.fromkeys(rows) for v in self.views]
        if only_empty:
            cells = [c for c in cells if c not in self.written]
        self.written.update(cells)
        self.passes.append(PlannedPass(len(self.passes), kind, tuple(rows), self.views, directions, steps,
                                       tuple(cells)))


def _plan_sv4d(b: _Builder, n: int, pad: str) -> None:
    n_t, step = b.n_t, b.n_t - 1
    if n <= n_t:
        b.add("window", fit_rows(list(range(n)), n_t, pad), reference=0)
        return
    grid = list(range(step, n, step))
    if grid[-1] != n - 1:
        grid.append(n - 1)
    if len(grid) < n_t:
        b.add("anchor", fit_rows(grid, n_t, pad), reference=0, only_empty=True)
    else:
        starts = list(range(0, len(grid) - n_t + 1, n_t))
        if starts[-1] + n_t < len(grid):
            starts.append(len(grid) - n_t)
        for s in starts:
            b.add("anchor", grid[s:s + n_t], reference=0 if s == 0 else grid[s - 1], only_empty=True)
    t0s = list(range(0, n - n_t + 1, step))
    if t0s[-1] + n_t - 1 < n - 1:
        t0s.append(n - n_t)
    for t0 in t0s:
        b.add("dense", list(range(t0, t0 + n_t)), reference=t0, backward_reference=t0 + n_t - 1)


def _plan_sv4d2(b: _Builder, kind: str, n: int, resolved: str, pad: str) -> None:
    n_t = b.n_t
    if n < n_t:
        b.add("window", fit_rows(list(range(n)), n_t, pad), reference=None)
        return
    if resolved == "official":  # the script's own rules (equal to the extended rule where they work)
        t0s = [min(t0, n - n_t) for t0 in range(0, n, n_t)] if kind == "sv4d2" else list(range(0, n - n_t + 1, n_t - 1))
    else:
        t0s = list(range(0, n - n_t + 1, n_t - 1))
        if t0s[-1] + n_t - 1 < n - 1:
            t0s.append(n - n_t)
    for t0 in t0s:
        b.add("window", list(range(t0, t0 + n_t)), reference=None if t0 == 0 else t0)
