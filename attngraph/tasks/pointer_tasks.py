"""Synthetic tasks for pointer networks (Vinyals et al. 2015, "Pointer Networks", arXiv 1506.03134; Vinyals
et al. 2016, "Order Matters", arXiv 1511.06391): ``sort_numbers``, ``convex_hull`` and ``tsp``. The model
reads a set of n points and answers with a sequence of positions into its own input: a pointer at each step.

A batch holds (names set by ``input``, default ``x``, and ``target``, default ``y``)
  - ``x`` (B, S, F) float32, S = 1 + the batch's largest n. **Position 0 is the end marker**: its features
    are all 0 but the last, which is 1. Positions 1..n hold the points, their last feature 0. F = 2 for
    ``sort_numbers`` (value, end flag), F = 3 for ``convex_hull`` and ``tsp`` (x, y, end flag). Positions
    beyond 1 + n of a shorter example are padding, all zeros;
  - ``x.mask`` (B, S) bool: True at position 0 and at 1..n;
  - ``y`` (B, T) int64: the answer, a sequence of positions into ``x`` (values 1..n), then one 0 (the end
    marker: "eos"), then padding 0; T = the batch's longest answer + 1;
  - ``y.mask`` (B, T) bool: True on the answer's positions AND its final 0.

The static types (``sizes()``): the input ``VType(F, "x")`` (a sequence over the input's own time axis), the
target ``VType(0, "y", index=True, layout=("positions", "x"))``: position ids into the input ``x``, whose
number of classes is the input's length, not a fixed vocabulary.

Each example draws its n uniformly from ``n`` = [lo, hi] (one integer n means [n, n]); numbers are uniform
in [0, 1), points uniform in the unit square [0, 1)², all drawn with the given ``torch.Generator`` only (the
same seed gives the same batch). ``torch.rand`` draws multiples of 2^-24, so the coordinates are exact in
float64, where every target is computed, and so are the orientation tests of the hull (products of 25-bit
integers): collinear points are recognised exactly.

``sort_numbers``: the answer is positions 1..n ordered by increasing value, then 0. Equal values (drawn
with probability about n²/2^25) keep their position order.

``convex_hull``: the answer is the hull's vertices in **counter-clockwise** order, starting from the vertex
with the smallest position, then 0. Only strictly convex vertices count: a point on a hull edge, between
two vertices, is not one (Andrew's monotone chain, :func:`convex_hull_order`). Degenerate inputs have
probability 0 with continuous coordinates but are defined: a point equal to another counts once, under
its smaller position; when every point lies on one line the answer is its two end points, the smaller
position first (one point: that point alone).

``tsp``: the answer is an optimal tour (exact, Held–Karp dynamic programming, :func:`held_karp`) as
positions: it starts at 1, visits every city once, then 0; the return to city 1 is implicit. Of its two
directions the answer is the one whose second city has a smaller position than its last. ``n`` is at most
10 (the exact solver's time and memory grow as n²·2^n).

Metrics. ``outputs[y]`` is either float scores (B, T', S), read by argmax over the last axis, or int64
position ids (B, T') from greedy or beam decoding; T' may differ from T. The prediction of an example is
its ids up to (not including) the first 0; with no 0 within T', all T' ids. The answer is read from ``y``
where ``y.mask`` holds (without its final 0), the points from ``x``, n from ``x.mask``. Padding is never
read; a prediction longer or shorter than the answer is simply a different sequence.

  - ``sort_numbers``: ``accuracy``, the fraction of examples whose prediction equals the answer exactly.
  - ``convex_hull``: ``accuracy``, the fraction of examples whose prediction is the answer's cycle: the
    same vertices in the same cyclic order (any starting vertex; the clockwise order is wrong); ``valid``,
    the fraction of examples whose prediction draws a simple polygon: at least 3 ids, each a point (1..n),
    none repeated, every edge of positive length, no two edges without a common vertex touching or
    crossing, no two consecutive edges overlapping (folding back along one line); ``area_coverage``, over
    the examples with a valid prediction, the mean of area(predicted polygon) / area(hull), the areas by
    the shoelace formula, absolute (NaN when no prediction is valid).
  - ``tsp``: ``valid_tours``, the fraction of examples whose prediction is a permutation of 1..n (any
    start, either direction); ``tour_length``, the mean cyclic Euclidean length of the valid predicted
    tours (NaN when none is valid); ``optimal_length``, the mean length of the answer tours (the Held–Karp
    optimum) over all examples. Lower is better for both lengths.

Worked examples (the tests check them)::

    sort_numbers, values 0.5, 0.25, 0.75:
      x = [[0, 1], [0.5, 0], [0.25, 0], [0.75, 0]]    x.mask = [T, T, T, T]
      y = [2, 1, 3, 0]                                y.mask = [T, T, T, T]

    convex_hull, the square's corners and its centre, one point on its bottom edge:
      positions 1: (0.75, 0.75)  2: (0.5, 0.5)  3: (0.25, 0.25)  4: (0.75, 0.25)  5: (0.25, 0.75)  6: (0.5, 0.25)
      y = [1, 5, 3, 4, 0]    (top right, top left, bottom left, bottom right; 2 is inside, 6 on an edge)
      prediction [3, 4, 1, 5, 0]  -> accuracy 1, valid, area_coverage 1   (the same cycle, rotated)
      prediction [1, 4, 3, 5, 0]  -> accuracy 0, valid, area_coverage 1   (clockwise)
      prediction [1, 5, 3, 0]     -> accuracy 0, valid, area_coverage 0.5 (a triangle: half the square)
      prediction [1, 3, 5, 4, 0]  -> accuracy 0, not valid                (edges 1-3 and 5-4 cross)

    tsp, the corners of a square, 1: (0.25, 0.25)  2: (0.75, 0.75)  3: (0.75, 0.25)  4: (0.25, 0.75):
      y = [1, 3, 2, 4, 0]    (length 2.0; the other direction, 1 4 2 3, has second city 4 > last city 3)
      prediction [2, 4, 1, 3, 0]  -> valid, tour_length 2.0
      prediction [1, 2, 3, 4, 0]  -> valid, tour_length 1 + √2 ≈ 2.414    (crosses itself)
      prediction [1, 3, 2, 0]     -> not valid                             (city 4 is missing)
"""
from __future__ import annotations

import abc
import itertools
import math
from collections.abc import Sequence
from functools import cache

import torch

from ..components.base import VType
from ..spec.params import IntRange, Param
from .base import Task, TaskError, io_params, task

END = 0  # position of the end marker in the input; the id that ends an answer
TSP_MAX = 10  # the most cities of the exact Held–Karp targets

Point = tuple[float, float]


def _pair(value) -> tuple[int, int]:
    """An IntRange value ([lo, hi], or one integer n meaning [n, n] when set from Python)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value, value
    lo, hi = value
    return int(lo), int(hi)


# ---- geometry (plain Python, float64) ----------------------------------------------------------------


def _cross(o: Point, a: Point, b: Point) -> float:
    """> 0 when o -> a -> b turns counter-clockwise, < 0 clockwise, 0 on one line."""
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def sort_order(values: Sequence[float]) -> list[int]:
    """Indices of ``values`` by increasing value, equal values in index order."""
    return sorted(range(len(values)), key=lambda i: (values[i], i))


def convex_hull_order(points: Sequence[Point]) -> list[int]:
    """Indices of the strictly convex hull vertices of ``points``, counter-clockwise, starting from the
    smallest index (Andrew's monotone chain). A point equal to another counts once, under the smaller index;
    points on one line give the two end points, the smaller index first."""
    first: dict[Point, int] = {}
    for i, p in enumerate(points):
        first.setdefault((float(p[0]), float(p[1])), i)
    if len(first) <= 2:
        return sorted(first.values())
    ordered = sorted(first)  # by x, then y

    def chain(pts):
        out: list[Point] = []
        for p in pts:
            while len(out) >= 2 and _cross(out[-2], out[-1], p) <= 0:  # <= 0: collinear points are dropped
                out.pop()
            out.append(p)
        return out

    lower, upper = chain(ordered), chain(ordered[::-1])
    hull = [first[p] for p in lower[:-1] + upper[:-1]]  # counter-clockwise
    if len(hull) == 2 and hull[0] > hull[1]:
        hull.reverse()
    start = hull.index(min(hull))
    return hull[start:] + hull[:start]


def polygon_area(points: Sequence[Point], order: Sequence[int]) -> float:
    """The absolute area (shoelace formula) of the closed polygon through ``points[order[0]], ...``."""
    pts = [points[i] for i in order]
    twice = sum(a[0] * b[1] - a[1] * b[0] for a, b in zip(pts, pts[1:] + pts[:1]))
    return abs(twice) / 2


def _on_segment(a: Point, b: Point, p: Point) -> bool:
    """Whether p, known to be on the line through a and b, lies on the closed segment a-b."""
    return min(a[0], b[0]) <= p[0] <= max(a[0], b[0]) and min(a[1], b[1]) <= p[1] <= max(a[1], b[1])


def segments_meet(a: Point, b: Point, c: Point, d: Point) -> bool:
    """Whether the closed segments a-b and c-d have a point in common (crossing or touching)."""
    d1, d2, d3, d4 = _cross(c, d, a), _cross(c, d, b), _cross(a, b, c), _cross(a, b, d)
    if ((d1 > 0 > d2) or (d1 < 0 < d2)) and ((d3 > 0 > d4) or (d3 < 0 < d4)):
        return True
    return ((d1 == 0 and _on_segment(c, d, a)) or (d2 == 0 and _on_segment(c, d, b))
            or (d3 == 0 and _on_segment(a, b, c)) or (d4 == 0 and _on_segment(a, b, d)))


def is_simple_polygon(points: Sequence[Point], order: Sequence[int]) -> bool:
    """Whether the closed polygon through ``points[order[0]], points[order[1]], ...`` is simple: at least 3
    vertices, no index repeated, every edge of positive length, two edges without a common vertex never
    meet, and two consecutive edges do not overlap (fold back along one line)."""
    k = len(order)
    if k < 3 or len(set(order)) != k:
        return False
    pts = [points[i] for i in order]
    edges = [(pts[i], pts[(i + 1) % k]) for i in range(k)]
    if any(a == b for a, b in edges):
        return False
    for i in range(k):  # at vertex i + 1, edge i comes in and edge i + 1 leaves
        a, b, c = pts[i], pts[(i + 1) % k], pts[(i + 2) % k]
        if _cross(a, b, c) == 0 and (a[0] - b[0]) * (c[0] - b[0]) + (a[1] - b[1]) * (c[1] - b[1]) > 0:
            return False
    for i in range(k):
        for j in range(i + 2, k):
            if i == 0 and j == k - 1:  # the last edge and the first are consecutive
                continue
            if segments_meet(*edges[i], *edges[j]):
                return False
    return True


def tour_length(points: Sequence[Point], order: Sequence[int]) -> float:
    """The Euclidean length of the closed tour through ``points[order[0]], ...`` and back to the first."""
    pts = [points[i] for i in order]
    return sum(math.dist(a, b) for a, b in zip(pts, pts[1:] + pts[:1])) if len(pts) > 1 else 0.0


def canonical_tour(order: Sequence[int]) -> list[int]:
    """A tour rotated to start at its smallest index, and of its two directions the one whose second index is
    smaller than its last."""
    order = list(order)
    if not order:
        return order
    start = order.index(min(order))
    order = order[start:] + order[:start]
    if len(order) > 2 and order[1] > order[-1]:
        order = order[:1] + order[1:][::-1]
    return order


@cache
def _held_karp_plan(m: int) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """For m cities besides the start, per subset size s = 2..m: every (subset, last city j in it) as index
    tensors (subsets, ends, subsets without the end)."""
    plan = []
    for s in range(2, m + 1):
        subsets, ends, before = [], [], []
        for combo in itertools.combinations(range(m), s):
            mask = sum(1 << c for c in combo)
            for j in combo:
                subsets.append(mask)
                ends.append(j)
                before.append(mask ^ (1 << j))
        plan.append((torch.tensor(subsets), torch.tensor(ends), torch.tensor(before)))
    return plan


def held_karp(points) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact optimal tours of a batch of instances with the same number n of cities, by Held–Karp dynamic
    programming (float64, vectorised over the batch).

    ``points`` (B, n, 2), a tensor or nested lists. Returns (lengths (B,) float64, tours (B, n) int64): each
    tour as city indices 0..n-1, starting at 0, in the direction whose second city is smaller than its last
    (:func:`canonical_tour`). Time and memory grow as B·n²·2^n.
    """
    pts = torch.as_tensor(points, dtype=torch.float64)
    if pts.dim() != 3 or pts.shape[2] != 2:
        raise ValueError(f"held_karp expects points of shape (B, n, 2), got {tuple(pts.shape)}")
    batch, n = pts.shape[:2]
    if n <= 1:
        return torch.zeros(batch, dtype=torch.float64), torch.zeros(batch, n, dtype=torch.long)
    dist = torch.cdist(pts, pts)  # (B, n, n)
    m = n - 1  # cities 1..n-1 are bit 0..m-1 of a subset; city 0 is the start
    between = dist[:, 1:, 1:]  # (B, m, m): between[b, k, j] = distance from city k+1 to city j+1
    cost = torch.full((batch, 1 << m, m), math.inf, dtype=torch.float64)  # cost[b, S, j]: 0 -> S -> j
    parent = torch.zeros(batch, 1 << m, m, dtype=torch.long)
    singles = 1 << torch.arange(m)
    cost[:, singles, torch.arange(m)] = dist[:, 0, 1:]
    for subsets, ends, before in _held_karp_plan(m):
        # cost of reaching j through S \ {j}, ending at k: cost[S \ {j}, k] (inf where k is not in it) + d(k, j)
        candidates = cost[:, before, :] + between[:, :, ends].transpose(1, 2)  # (B, L, m)
        best, arg = candidates.min(dim=2)
        cost[:, subsets, ends] = best
        parent[:, subsets, ends] = arg
    full = (1 << m) - 1
    closing = cost[:, full, :] + dist[:, 1:, 0]  # (B, m)
    lengths, last = closing.min(dim=1)
    rows = torch.arange(batch)
    tour = torch.zeros(batch, n, dtype=torch.long)
    subset = torch.full((batch,), full, dtype=torch.long)
    city = last
    for step in range(n - 1, 0, -1):  # walk back from the last city
        tour[:, step] = city + 1
        previous = parent[rows, subset, city]
        subset = subset ^ (1 << city)
        city = previous
    flip = tour[:, 1] > tour[:, -1]
    tour[flip, 1:] = tour[flip, 1:].flip(1)
    return lengths, tour


# ---- batches and predictions -------------------------------------------------------------------------


def _pad(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Answers (positions, without the end) as (B, longest + 1) int64 ids ending in 0, and their mask."""
    longest = max(len(r) for r in rows) + 1
    ids = torch.zeros(len(rows), longest, dtype=torch.long)
    mask = torch.zeros(len(rows), longest, dtype=torch.bool)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, :len(r) + 1] = True
    return ids, mask


def encode_points(points: list[list[Sequence[float]]], dims: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Examples of points (each a list of n tuples of ``dims`` coordinates) as the input (B, S, dims + 1)
    float32 with the end marker at position 0, S = 1 + the largest n, and its (B, S) mask."""
    steps = 1 + max(len(p) for p in points)
    x = torch.zeros(len(points), steps, dims + 1)
    mask = torch.zeros(len(points), steps, dtype=torch.bool)
    x[:, 0, dims] = 1.0
    for i, p in enumerate(points):
        if p:
            x[i, 1:1 + len(p), :dims] = torch.tensor(p, dtype=torch.float32).reshape(len(p), dims)
        mask[i, :1 + len(p)] = True
    return x, mask


def read_predictions(pred: torch.Tensor) -> list[list[int]]:
    """Predicted positions per example: float scores (B, T', S) read by argmax, or int ids (B, T'); each row's
    ids up to (not including) the first 0, or all T' ids when it holds no 0."""
    if pred.is_floating_point():
        pred = pred.argmax(-1)
    out = []
    for row in pred.tolist():
        row = [int(v) for v in row]
        out.append(row[:row.index(END)] if END in row else row)
    return out


def _examples(p, batch: dict[str, torch.Tensor]) -> list[tuple[list[tuple[float, ...]], list[int]]]:
    """Per example: its points (float64 tuples without the end flag; point k is position k + 1) and its
    answer (positions, without the final 0)."""
    x, xm = batch[p.input].double(), batch[f"{p.input}.mask"]
    y, ym = batch[p.target], batch[f"{p.target}.mask"]
    out = []
    for i in range(x.shape[0]):
        n = int(xm[i].sum()) - 1
        points = [tuple(v) for v in x[i, 1:1 + n, :-1].tolist()]
        answer = [int(v) for v in y[i][ym[i]].tolist()][:-1]
        out.append((points, answer))
    return out


def _prediction(p, outputs: dict[str, torch.Tensor]) -> list[list[int]]:
    return read_predictions(outputs[getattr(p, "outputs", {}).get(p.target, p.target)])


class PointerTask(Task):
    """Shared parts: the ``n`` range, the batch layout, sizes."""

    dims: int = 2  # coordinates per point (the input has one more feature: the end flag)

    def __init__(self, p):
        super().__init__(p)
        lo, hi = self.n = _pair(p.n)
        if not 1 <= lo <= hi:
            raise TaskError(f"task '{self.name}': n [{lo}, {hi}] must be [min, max] with 1 ≤ min ≤ max: "
                            f"the number of points in an example")
        if p.input == p.target:
            raise TaskError(f"task '{self.name}': input and target must have different names (both '{p.input}')")

    def sizes(self):
        p = self.p
        return {"inputs": {p.input: VType(self.dims + 1, p.input)},
                "targets": {p.target: VType(0, p.target, index=True, layout=("positions", p.input))}}

    def position_names(self, batch: dict[str, torch.Tensor], example: int = 0) -> dict[str, list[str]]:
        """Labels of one example's input positions for `attngraph inspect`: "end" for the marker, then each
        point's coordinates to two decimals ("0.37" or "(0.21, 0.80)")."""
        x, mask = batch[self.p.input][example], batch[f"{self.p.input}.mask"][example]
        names = ["end"]
        for point in x[1:int(mask.sum())].tolist():
            coords = [f"{v:.2f}" for v in point[:self.dims]]
            names.append(coords[0] if len(coords) == 1 else f"({', '.join(coords)})")
        return {self.p.input: names}

    @abc.abstractmethod
    def answers(self, points: list[list[tuple[float, ...]]]) -> list[list[int]]:
        """The answer (positions 1..n, without the end) of each example's points (float64 tuples)."""

    def sample(self, batch: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        p = self.p
        lo, hi = self.n
        counts = torch.randint(lo, hi + 1, (batch,), generator=gen).tolist()
        coords = torch.rand(batch, max(counts), self.dims, generator=gen)  # float32
        points = [[tuple(c) for c in row[:k]] for row, k in zip(coords.double().tolist(), counts)]
        x, xm = encode_points(points, self.dims)
        y, ym = _pad(self.answers(points))
        return {p.input: x, f"{p.input}.mask": xm, p.target: y, f"{p.target}.mask": ym}


def _n_param(default: list[int], extra: str = "") -> Param:
    return Param(IntRange(min=1), default, f"[min, max] number n of points, drawn per example{extra}")


@task("sort_numbers", params={"n": _n_param([5, 5]), **io_params("x", "y")}, metrics=("loss", "accuracy"),
      doc="Pointer-network sorting (Vinyals 2016): point at n numbers in increasing order, then the end marker.")
class SortNumbers(PointerTask):
    dims = 1

    def answers(self, points):
        return [[i + 1 for i in sort_order([v[0] for v in pts])] for pts in points]

    def metrics(self, outputs, batch):
        examples = _examples(self.p, batch)
        right = [pred == answer for pred, (_, answer) in zip(_prediction(self.p, outputs), examples)]
        return {"accuracy": sum(right) / len(right)}


def same_cycle(a: Sequence[int], b: Sequence[int]) -> bool:
    """Whether ``a`` is ``b`` rotated (same elements, same cyclic order, same direction)."""
    a, b = list(a), list(b)
    if len(a) != len(b):
        return False
    if not a:
        return True
    return any(a[k:] + a[:k] == b for k in range(len(a)) if a[k] == b[0])


@task("convex_hull", params={"n": _n_param([5, 5]), **io_params("x", "y")},
      metrics=("loss", "accuracy", "area_coverage", "valid"),
      doc="Pointer-network convex hull (Vinyals 2015): point at the hull's vertices counter-clockwise, then the end marker.")
class ConvexHull(PointerTask):
    def answers(self, points):
        return [[i + 1 for i in convex_hull_order(pts)] for pts in points]

    def metrics(self, outputs, batch):
        right, valid, coverage = 0, 0, []
        examples = _examples(self.p, batch)
        for pred, (points, answer) in zip(_prediction(self.p, outputs), examples):
            right += same_cycle(pred, answer)
            if not all(1 <= i <= len(points) for i in pred) or not is_simple_polygon(points, [i - 1 for i in pred]):
                continue
            valid += 1
            hull = polygon_area(points, [i - 1 for i in answer])
            if hull > 0:  # always, for a valid prediction: its points are not all on one line
                coverage.append(polygon_area(points, [i - 1 for i in pred]) / hull)
        return {"accuracy": right / len(examples), "area_coverage": sum(coverage) / len(coverage) if coverage else math.nan,
                "valid": valid / len(examples)}


@task("tsp", params={"n": _n_param([5, 5], f" (at most {TSP_MAX}: the targets are solved exactly)"),
                     **io_params("x", "y")},
      metrics=("loss", "tour_length", "optimal_length", "valid_tours"),
      lower_is_better=("loss", "tour_length", "optimal_length"),
      doc="Pointer-network travelling salesman (Vinyals 2015): point at the cities of an optimal tour from city 1.")
class TSP(PointerTask):
    def __init__(self, p):
        super().__init__(p)
        lo, hi = self.n
        if hi > TSP_MAX:
            raise TaskError(f"task 'tsp': n [{lo}, {hi}] must lie within [1, {TSP_MAX}]: the targets are optimal "
                            f"tours solved exactly (Held–Karp), whose cost grows as n²·2^n")

    def answers(self, points):
        out: list[list[int]] = [[] for _ in points]
        by_n: dict[int, list[int]] = {}
        for i, pts in enumerate(points):
            by_n.setdefault(len(pts), []).append(i)
        for members in by_n.values():
            _, tours = held_karp([points[i] for i in members])
            for i, tour in zip(members, (tours + 1).tolist()):
                out[i] = tour
        return out

    def metrics(self, outputs, batch):
        valid, lengths, optimal = 0, [], []
        examples = _examples(self.p, batch)
        for pred, (points, answer) in zip(_prediction(self.p, outputs), examples):
            optimal.append(tour_length(points, [i - 1 for i in answer]))
            if sorted(pred) == list(range(1, len(points) + 1)):
                valid += 1
                lengths.append(tour_length(points, [i - 1 for i in pred]))
        return {"tour_length": sum(lengths) / len(lengths) if lengths else math.nan,
                "optimal_length": sum(optimal) / len(optimal), "valid_tours": valid / len(examples)}
