"""The pointer-network tasks (Vinyals et al. 2015, 2016): sort_numbers, convex_hull and tsp."""
import itertools
import math

import pytest
import torch
from test_ntm_tasks import assert_seeded, make, sample

from attngraph.components.base import VType
from attngraph.tasks import TASKS, pointer_tasks
from attngraph.tasks.base import TaskError
from attngraph.tasks.pointer_tasks import (
    canonical_tour,
    convex_hull_order,
    encode_points,
    held_karp,
    is_simple_polygon,
    polygon_area,
    read_predictions,
    same_cycle,
)

NAMES = ("sort_numbers", "convex_hull", "tsp")
FEATURES = {"sort_numbers": 2, "convex_hull": 3, "tsp": 3}


# ---- independent references (written apart from the module) -----------------------------------------


def orient(a, b, c):
    return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])


def in_closed_triangle(p, a, b, c):
    signs = [orient(a, b, p), orient(b, c, p), orient(c, a, p)]
    return all(s >= 0 for s in signs) or all(s <= 0 for s in signs)


def on_closed_segment(p, a, b):
    return orient(a, b, p) == 0 and min(a[0], b[0]) <= p[0] <= max(a[0], b[0]) and min(a[1], b[1]) <= p[1] <= max(a[1], b[1])


def reference_hull(points):
    """Positions (1-based) of the strict hull vertices: a point is one iff it lies in no closed triangle and on
    no closed segment of the other points; ordered by angle around their centroid (counter-clockwise), from
    the smallest position."""
    vertices = []
    for i, p in enumerate(points):
        others = points[:i] + points[i + 1:]
        inside = any(in_closed_triangle(p, *t) for t in itertools.combinations(others, 3)) or any(
            on_closed_segment(p, *s) for s in itertools.combinations(others, 2))
        if not inside:
            vertices.append(i)
    cx = sum(points[i][0] for i in vertices) / len(vertices)
    cy = sum(points[i][1] for i in vertices) / len(vertices)
    ordered = sorted(vertices, key=lambda i: math.atan2(points[i][1] - cy, points[i][0] - cx))
    start = ordered.index(min(ordered))
    return [i + 1 for i in ordered[start:] + ordered[:start]]


def cycle_length(points, positions):
    pts = [points[i - 1] for i in positions]
    return sum(math.hypot(a[0] - b[0], a[1] - b[1]) for a, b in zip(pts, pts[1:] + pts[:1]))


def brute_force_tsp(points):
    """(optimal length, every optimal tour as positions from 1) over all permutations of cities 2..n."""
    n = len(points)
    tours = [[1, *rest] for rest in itertools.permutations(range(2, n + 1))]
    lengths = [cycle_length(points, t) for t in tours]
    best = min(lengths)
    return best, [t for t, length in zip(tours, lengths) if length <= best + 1e-9]


def shoelace(points, positions):
    pts = [points[i - 1] for i in positions]
    return abs(sum(a[0] * b[1] - b[0] * a[1] for a, b in zip(pts, pts[1:] + pts[:1]))) / 2


def examples(batch, inp="x", tgt="y"):
    """Per example: (points as float tuples without the end flag, answer positions without the final 0),
    checking the layout rules of the module's docstring on the way."""
    x, xm, y, ym = batch[inp], batch[f"{inp}.mask"], batch[tgt], batch[f"{tgt}.mask"]
    assert x.dtype == torch.float32 and y.dtype == torch.int64 and xm.dtype == ym.dtype == torch.bool
    assert x.shape[:2] == xm.shape and y.shape == ym.shape and x.shape[0] == y.shape[0]
    counts, lengths = xm.sum(1) - 1, ym.sum(1)
    assert x.shape[1] == 1 + int(counts.max()) and y.shape[1] == int(lengths.max())  # T = longest answer + 1
    out = []
    for i in range(x.shape[0]):
        n, m = int(counts[i]), int(lengths[i])
        assert n >= 1 and xm[i].tolist() == [s <= n for s in range(x.shape[1])]
        assert ym[i].tolist() == [t < m for t in range(y.shape[1])]
        assert x[i, 0].tolist() == [0.0] * (x.shape[2] - 1) + [1.0]  # the end marker
        assert (x[i, 1:n + 1, -1] == 0).all() and (x[i, n + 1:] == 0).all()  # points, then zero padding
        assert ((x[i, 1:n + 1, :-1] >= 0) & (x[i, 1:n + 1, :-1] < 1)).all()
        assert int(y[i, m - 1]) == 0 and (y[i, m:] == 0).all()  # one 0 (eos), then padding 0
        answer = y[i, :m - 1].tolist()
        assert all(1 <= a <= n for a in answer) and len(set(answer)) == len(answer)
        out.append(([tuple(v) for v in x[i, 1:n + 1, :-1].double().tolist()], answer))
    return out


def scores(ids, positions):
    """(B, T') ids as (B, T', positions) float scores whose argmax is the ids."""
    return torch.nn.functional.one_hot(ids, positions).float() * 4 - 2


def ids(*rows):
    """Rows of ids padded with 0 to one length, as a (B, T') int64 tensor."""
    longest = max(len(r) for r in rows)
    return torch.tensor([list(r) + [0] * (longest - len(r)) for r in rows], dtype=torch.long)


def batch_of(points, answers, dims):
    """A hand-made batch (the module's encoder) with the answers as targets."""
    x, xm = encode_points(points, dims)
    longest = max(len(a) for a in answers) + 1
    y = torch.tensor([a + [0] * (longest - len(a)) for a in answers])
    ym = torch.tensor([[t <= len(a) for t in range(longest)] for a in answers])
    return {"x": x, "x.mask": xm, "y": y, "y.mask": ym}


# ---- registration, layout, types --------------------------------------------------------------------


@pytest.mark.parametrize("name, metrics, lower", [
    ("sort_numbers", ("loss", "accuracy"), {"loss"}),
    ("convex_hull", ("loss", "accuracy", "area_coverage", "valid"), {"loss"}),
    ("tsp", ("loss", "tour_length", "optimal_length", "valid_tours"), {"loss", "tour_length", "optimal_length"}),
])
def test_tasks_are_registered_with_their_metrics(name, metrics, lower):
    cls = TASKS[name]
    assert cls.metric_names == metrics and cls.lower_is_better == lower
    assert cls.params.keys() == {"n", "input", "target"}
    assert cls.params["n"].default == [5, 5] and cls.params["input"].default == "x" and cls.params["target"].default == "y"
    assert cls.doc.startswith("Pointer-network")


@pytest.mark.parametrize("name", NAMES)
def test_sizes_name_the_input_and_point_into_it(name):
    task = make(name, input="pts", target="order")
    assert task.sizes() == {"inputs": {"pts": VType(FEATURES[name], "pts")},
                            "targets": {"order": VType(0, "order", index=True, layout=("positions", "pts"))}}
    batch = sample(task, 4)
    assert batch.keys() == {"pts", "pts.mask", "order", "order.mask"}
    assert batch["pts"].shape[2] == FEATURES[name]
    examples(batch, "pts", "order")


@pytest.mark.parametrize("name", NAMES)
def test_batch_layout_masks_and_variable_n(name):
    task = make(name, n=[1, 8])
    batch = sample(task, 200, seed=3)
    counts = batch["x.mask"].sum(1) - 1
    assert set(counts.tolist()) == set(range(1, 9))  # n drawn per example, every value occurs
    assert batch["x"].shape == (200, 9, FEATURES[name])
    for points, answer in examples(batch):
        assert len(points[0]) == FEATURES[name] - 1
        if name != "convex_hull":  # sorting and tours visit every point
            assert sorted(answer) == list(range(1, len(points) + 1))


@pytest.mark.parametrize("name", NAMES)
def test_fixed_n_and_one_integer(name):
    task = make(name, n=4)
    batch = sample(task, 16)
    assert batch["x.mask"].all() and batch["x"].shape[1] == 5
    assert torch.equal(batch["x"], sample(make(name, n=[4, 4]), 16)["x"])


@pytest.mark.parametrize("name", NAMES)
def test_tasks_are_seeded(name):
    assert_seeded(make(name))
    assert_seeded(make(name, n=[1, 9]))


def test_coordinates_lie_on_the_grid_of_torch_rand():
    """The docstring's claim that makes the orientation tests exact: coordinates are multiples of 2^-24."""
    x = sample(make("convex_hull", n=[1, 20]), 64, seed=5)["x"].double()
    assert torch.equal(x * 2**24, (x * 2**24).round())


def test_convex_hull_and_tsp_draw_the_same_points_for_one_seed():
    hull, tsp = sample(make("convex_hull", n=[3, 7]), 32, seed=2), sample(make("tsp", n=[3, 7]), 32, seed=2)
    assert torch.equal(hull["x"], tsp["x"]) and torch.equal(hull["x.mask"], tsp["x.mask"])


# ---- targets against independent references ---------------------------------------------------------


def test_sort_numbers_targets_are_python_sorted():
    batch = sample(make("sort_numbers", n=[1, 12]), 300, seed=1)
    for points, answer in examples(batch):
        values = [p[0] for p in points]
        assert answer == [i + 1 for i, _ in sorted(enumerate(values), key=lambda e: e[1])]
        assert [values[a - 1] for a in answer] == sorted(values)


def test_sort_numbers_keeps_equal_values_in_position_order():
    assert pointer_tasks.sort_order([0.5, 0.25, 0.5, 0.25]) == [1, 3, 0, 2]


@pytest.mark.parametrize("n, examples_", [([3, 3], 100), ([3, 12], 150), ([20, 20], 20)])
def test_convex_hull_targets_match_an_independent_reference(n, examples_):
    batch = sample(make("convex_hull", n=n), examples_, seed=4)
    sizes = set()
    for points, answer in examples(batch):
        assert answer == reference_hull(points)
        assert answer[0] == min(answer)
        pts = [points[a - 1] for a in answer]
        assert all(orient(a, b, c) > 0 for a, b, c in zip(pts, pts[1:] + pts[:1], pts[2:] + pts[:2]))  # left turns
        sizes.add(len(answer))
    assert len(sizes) > 2 or n == [3, 3]


def test_convex_hull_of_fewer_than_three_points():
    batch = sample(make("convex_hull", n=[1, 2]), 40, seed=0)
    for points, answer in examples(batch):
        assert answer == list(range(1, len(points) + 1))


def test_convex_hull_order_degenerate_cases():
    assert convex_hull_order([(0.5, 0.5)]) == [0]
    assert convex_hull_order([(0.75, 0.5), (0.25, 0.5)]) == [0, 1]
    assert convex_hull_order([(0.5, 0.5), (0.25, 0.25), (0.75, 0.75), (0.5, 0.5)]) == [1, 2]  # one line: end points
    # a point equal to another counts once, under its smaller index
    square = [(0.25, 0.25), (0.75, 0.25), (0.75, 0.75), (0.25, 0.75)]
    assert convex_hull_order([*square, (0.75, 0.25), (0.5, 0.5)]) == [0, 1, 2, 3]
    assert convex_hull_order([(0.75, 0.25), *square]) == [0, 3, 4, 1]
    # points on an edge are not vertices; clockwise input still gives counter-clockwise output
    assert convex_hull_order([(0.25, 0.25), (0.25, 0.75), (0.5, 0.75), (0.75, 0.75), (0.75, 0.25)]) == [0, 4, 3, 1]


def test_tsp_targets_are_optimal_against_brute_force():
    batch = sample(make("tsp", n=[1, 7]), 400, seed=7)
    seen = set()
    for points, answer in examples(batch):
        n = len(points)
        seen.add(n)
        best, tours = brute_force_tsp(points)
        assert abs(cycle_length(points, answer) - best) < 1e-9
        assert answer[0] == 1 and sorted(answer) == list(range(1, n + 1))
        if n > 2:
            assert answer[1] < answer[-1]  # the canonical direction
        # the optimum is unique up to direction (random points): the brute force's canonical one is the answer
        assert [t for t in tours if n <= 2 or t[1] < t[-1]] == [answer]
        assert len(tours) == (2 if n > 2 else 1)
    assert seen == set(range(1, 8))


@pytest.mark.parametrize("n", [4, 6, 8])
def test_held_karp_lengths_equal_brute_force(n):
    pts = torch.rand(40 if n < 8 else 6, n, 2, generator=torch.Generator().manual_seed(n), dtype=torch.float64)
    lengths, tours = held_karp(pts)
    assert lengths.dtype == torch.float64 and tours.shape == (pts.shape[0], n)
    for b in range(pts.shape[0]):
        points = [tuple(p) for p in pts[b].tolist()]
        best, _ = brute_force_tsp(points)
        tour = [int(c) + 1 for c in tours[b]]
        assert abs(float(lengths[b]) - best) < 1e-9 and abs(cycle_length(points, tour) - best) < 1e-9
        assert tour[0] == 1 and tour[1] < tour[-1]


def test_held_karp_at_ten_cities_is_a_shortest_tour_among_many():
    batch = sample(make("tsp", n=[10, 10]), 8, seed=9)
    gen = torch.Generator().manual_seed(0)
    for points, answer in examples(batch):
        length = cycle_length(points, answer)
        assert answer[0] == 1 and sorted(answer) == list(range(1, 11)) and answer[1] < answer[-1]
        for _ in range(300):  # random tours are never shorter
            assert cycle_length(points, [1, *(torch.randperm(9, generator=gen) + 2).tolist()]) >= length - 1e-9
        for i, j in itertools.combinations(range(1, 10), 2):  # no 2-opt move shortens it
            assert cycle_length(points, answer[:i] + answer[i:j + 1][::-1] + answer[j + 1:]) >= length - 1e-9


def test_held_karp_small_cases():
    lengths, tours = held_karp([[[0.5, 0.5]], [[0.25, 0.75]]])
    assert lengths.tolist() == [0.0, 0.0] and tours.tolist() == [[0], [0]]
    lengths, tours = held_karp([[[0.0, 0.0], [0.75, 1.0]]])
    assert lengths.tolist() == [2.5] and tours.tolist() == [[0, 1]]
    with pytest.raises(ValueError, match=r"held_karp expects points of shape \(B, n, 2\), got \(3, 2\)"):
        held_karp([[0.0, 0.0], [1.0, 1.0], [0.5, 0.5]])


def test_canonical_tour():
    assert canonical_tour([3, 4, 1, 2]) == [1, 2, 3, 4]
    assert canonical_tour([2, 1, 4, 3]) == [1, 2, 3, 4]
    assert canonical_tour([1, 4, 3, 2]) == [1, 2, 3, 4]
    assert canonical_tour([2, 1]) == [1, 2] and canonical_tour([]) == []


# ---- worked examples of the docstring ---------------------------------------------------------------

HULL_POINTS = [(0.75, 0.75), (0.5, 0.5), (0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.5, 0.25)]
TSP_POINTS = [(0.25, 0.25), (0.75, 0.75), (0.75, 0.25), (0.25, 0.75)]


def test_worked_example_sort_numbers():
    doc = pointer_tasks.__doc__
    assert "x = [[0, 1], [0.5, 0], [0.25, 0], [0.75, 0]]    x.mask = [T, T, T, T]" in doc
    assert "y = [2, 1, 3, 0]                                y.mask = [T, T, T, T]" in doc
    task = make("sort_numbers")
    x, xm = encode_points([[(0.5,), (0.25,), (0.75,)]], 1)
    assert x.tolist() == [[[0, 1], [0.5, 0], [0.25, 0], [0.75, 0]]] and xm.tolist() == [[True] * 4]
    assert task.answers([[(0.5,), (0.25,), (0.75,)]]) == [[2, 1, 3]]
    batch = batch_of([[(0.5,), (0.25,), (0.75,)]], [[2, 1, 3]], 1)
    assert task.metrics({"y": ids([2, 1, 3, 0])}, batch) == {"accuracy": 1.0}


def test_worked_example_convex_hull():
    doc = pointer_tasks.__doc__
    assert ("positions 1: (0.75, 0.75)  2: (0.5, 0.5)  3: (0.25, 0.25)  4: (0.75, 0.25)  5: (0.25, 0.75)  "
            "6: (0.5, 0.25)") in doc
    assert "y = [1, 5, 3, 4, 0]    (top right, top left, bottom left, bottom right; 2 is inside, 6 on an edge)" in doc
    for line in ("prediction [3, 4, 1, 5, 0]  -> accuracy 1, valid, area_coverage 1   (the same cycle, rotated)",
                 "prediction [1, 4, 3, 5, 0]  -> accuracy 0, valid, area_coverage 1   (clockwise)",
                 "prediction [1, 5, 3, 0]     -> accuracy 0, valid, area_coverage 0.5 (a triangle: half the square)",
                 "prediction [1, 3, 5, 4, 0]  -> accuracy 0, not valid                (edges 1-3 and 5-4 cross)"):
        assert line in doc
    task = make("convex_hull")
    assert task.answers([HULL_POINTS]) == [[1, 5, 3, 4]] and reference_hull(HULL_POINTS) == [1, 5, 3, 4]
    x, xm = encode_points([HULL_POINTS], 2)
    assert x.tolist() == [[[0, 0, 1], *[[a, b, 0] for a, b in HULL_POINTS]]] and xm.tolist() == [[True] * 7]
    batch = batch_of([HULL_POINTS], [[1, 5, 3, 4]], 2)
    assert batch["y"].tolist() == [[1, 5, 3, 4, 0]] and batch["y.mask"].tolist() == [[True] * 5]

    def measure(*pred):
        return task.metrics({"y": ids(list(pred))}, batch)

    assert measure(1, 5, 3, 4, 0) == {"accuracy": 1.0, "area_coverage": 1.0, "valid": 1.0}
    assert measure(3, 4, 1, 5, 0) == {"accuracy": 1.0, "area_coverage": 1.0, "valid": 1.0}
    assert measure(1, 4, 3, 5, 0) == {"accuracy": 0.0, "area_coverage": 1.0, "valid": 1.0}
    assert measure(1, 5, 3, 0) == {"accuracy": 0.0, "area_coverage": 0.5, "valid": 1.0}
    crossing = measure(1, 3, 5, 4, 0)
    assert crossing["accuracy"] == 0.0 and crossing["valid"] == 0.0 and math.isnan(crossing["area_coverage"])


def test_worked_example_tsp():
    doc = pointer_tasks.__doc__
    assert "tsp, the corners of a square, 1: (0.25, 0.25)  2: (0.75, 0.75)  3: (0.75, 0.25)  4: (0.25, 0.75):" in doc
    assert "y = [1, 3, 2, 4, 0]    (length 2.0; the other direction, 1 4 2 3, has second city 4 > last city 3)" in doc
    assert "prediction [2, 4, 1, 3, 0]  -> valid, tour_length 2.0" in doc
    assert "prediction [1, 2, 3, 4, 0]  -> valid, tour_length 1 + √2 ≈ 2.414    (crosses itself)" in doc
    assert "prediction [1, 3, 2, 0]     -> not valid                             (city 4 is missing)" in doc
    task = make("tsp")
    assert task.answers([TSP_POINTS]) == [[1, 3, 2, 4]]
    batch = batch_of([TSP_POINTS], [[1, 3, 2, 4]], 2)
    assert task.metrics({"y": ids([2, 4, 1, 3, 0])}, batch) == {"tour_length": 2.0, "optimal_length": 2.0, "valid_tours": 1.0}
    crossing = task.metrics({"y": ids([1, 2, 3, 4, 0])}, batch)
    assert crossing["valid_tours"] == 1.0 and abs(crossing["tour_length"] - (1 + math.sqrt(2))) < 1e-12
    missing = task.metrics({"y": ids([1, 3, 2, 0])}, batch)
    assert missing["valid_tours"] == 0.0 and missing["optimal_length"] == 2.0 and math.isnan(missing["tour_length"])


# ---- metrics on hand-written predictions ------------------------------------------------------------


def test_read_predictions():
    assert read_predictions(ids([2, 1, 3, 0, 4, 4], [3, 0, 0, 1, 2, 2], [1, 2, 3, 4, 5, 6])) == [
        [2, 1, 3], [3], [1, 2, 3, 4, 5, 6]]  # up to the first 0; no 0: every id
    assert read_predictions(scores(ids([2, 1, 0], [0, 3, 3]), 4)) == [[2, 1], []]
    assert read_predictions(torch.zeros(2, 0, dtype=torch.long)) == [[], []]


def test_sort_numbers_metrics():
    task = make("sort_numbers")
    batch = batch_of([[(0.5,), (0.25,), (0.75,)], [(0.125,), (0.625,)], [(0.875,), (0.375,), (0.0625,), (0.5,)]],
                     [[2, 1, 3], [1, 2], [3, 2, 4, 1]], 1)
    assert batch["y"].shape == (3, 5) and batch["y.mask"].sum(1).tolist() == [4, 3, 5]

    def accuracy(pred):
        values = task.metrics({"y": pred}, batch)
        assert values == task.metrics({"y": scores(pred, 6)}, batch)  # scores read by argmax: the same numbers
        return values["accuracy"]

    assert accuracy(batch["y"]) == 1.0
    assert accuracy(ids([2, 1, 3, 0, 5, 5, 5, 5], [1, 2, 0, 3, 3, 3, 3, 3], [3, 2, 4, 1, 0, 2, 2, 2])) == 1.0  # T' > T
    assert accuracy(ids([2, 1, 3, 0], [1, 2, 0], [3, 2, 4, 1])) == 1.0  # T' < T: the last, cut off, reads all T' ids
    assert accuracy(ids([2, 1, 3, 4, 0], [1, 2, 0], [3, 2, 4, 1, 0])) == 2 / 3  # an extra id before the end
    assert accuracy(ids([2, 1, 3, 1, 2], [1, 2, 0], [3, 2, 4, 1, 0])) == 2 / 3  # the end missing within T' = T
    assert accuracy(ids([2, 1, 0], [1, 2, 0], [3, 2, 4, 0])) == 1 / 3  # too short
    assert accuracy(ids([1, 2, 3, 0], [2, 1, 0], [3, 2, 4, 1, 0])) == 1 / 3  # wrong order
    assert accuracy(ids([0], [0], [0])) == 0.0


def test_sort_numbers_metrics_ignore_padding_of_sampled_batches():
    task = make("sort_numbers", n=[1, 9], input="v", target="order")
    task.p.outputs = {"order": "pointer"}
    batch = sample(task, 64, seed=6)
    y = batch["order"]
    assert task.metrics({"pointer": y}, batch) == {"accuracy": 1.0}
    assert task.metrics({"pointer": scores(y, batch["v"].shape[1])}, batch) == {"accuracy": 1.0}
    noisy = y.clone()
    noisy[~batch["order.mask"]] = 7  # after the end: not read
    assert task.metrics({"pointer": noisy}, batch) == {"accuracy": 1.0}
    longer = torch.cat([y, torch.full((64, 5), 3)], dim=1)
    assert task.metrics({"pointer": longer}, batch) == {"accuracy": 1.0}
    wrong = y.clone()
    wrong[:16, 0] = 0  # an immediate end
    assert task.metrics({"pointer": wrong}, batch) == {"accuracy": 0.75}


def test_convex_hull_metrics():
    task = make("convex_hull")
    triangle = [(0.0, 0.0), (0.5, 0.0), (0.0, 0.5), (0.125, 0.125)]  # hull 1 2 3, area 1/8; 4 inside
    batch = batch_of([HULL_POINTS, triangle], [[1, 5, 3, 4], [1, 2, 3]], 2)
    assert task.answers([HULL_POINTS, triangle]) == [[1, 5, 3, 4], [1, 2, 3]]

    def measure(*preds):
        pred = ids(*preds)
        values = task.metrics({"y": pred}, batch)
        again = task.metrics({"y": scores(pred, max(7, int(pred.max()) + 1))}, batch)
        assert values.keys() == again.keys() == {"accuracy", "area_coverage", "valid"}
        assert all(values[k] == again[k] or math.isnan(values[k]) and math.isnan(again[k]) for k in values)
        return values

    assert measure([1, 5, 3, 4, 0], [1, 2, 3, 0]) == {"accuracy": 1.0, "area_coverage": 1.0, "valid": 1.0}
    assert measure([4, 1, 5, 3, 0, 6, 6], [2, 3, 1, 0]) == {"accuracy": 1.0, "area_coverage": 1.0, "valid": 1.0}
    assert measure([1, 4, 3, 5, 0], [1, 3, 2, 0]) == {"accuracy": 0.0, "area_coverage": 1.0, "valid": 1.0}  # clockwise
    # the hull with the interior point 4 of the triangle: a simple quadrilateral with a dent, half the area
    assert measure([1, 5, 3, 4, 0], [1, 2, 4, 3, 0]) == {"accuracy": 0.5, "area_coverage": (1 + 0.5) / 2, "valid": 1.0}
    # the point 6 on the square's bottom edge as an extra vertex: a valid polygon, not the answer
    assert measure([1, 5, 3, 6, 4, 0], [1, 2, 3]) == {"accuracy": 0.5, "area_coverage": 1.0, "valid": 1.0}
    # T' = the answer without its end: the cut-off prediction is read whole
    assert measure([1, 5, 3, 4], [2, 3, 1, 0]) == {"accuracy": 1.0, "area_coverage": 1.0, "valid": 1.0}
    # invalid ones: self-intersecting, repeated point, too few points, no such point, an empty prediction
    for bad in ([1, 3, 5, 4, 0], [1, 5, 3, 4, 1, 0], [1, 5, 0], [1, 5, 3, 4, 7], [1, 5, 3, 0, 0], [0]):
        values = measure(bad, [3, 1, 2, 0])
        if bad == [1, 5, 3, 0, 0]:
            assert values == {"accuracy": 0.5, "area_coverage": (0.5 + 1) / 2, "valid": 1.0}  # a triangle: valid
            continue
        assert values == {"accuracy": 0.5, "area_coverage": 1.0, "valid": 0.5}, bad
    padding = measure([1, 5, 3, 4, 0], [1, 2, 5, 0])  # position 5 of the triangle's example is padding
    assert padding == {"accuracy": 0.5, "area_coverage": 1.0, "valid": 0.5}
    both_bad = measure([1, 3, 5, 4, 0], [1, 2, 1, 0])
    assert both_bad["accuracy"] == both_bad["valid"] == 0.0 and math.isnan(both_bad["area_coverage"])


def test_convex_hull_metrics_on_sampled_batches():
    task = make("convex_hull", n=[1, 12])
    batch = sample(task, 64, seed=8)
    values = task.metrics({"y": batch["y"]}, batch)
    small = int(((batch["x.mask"].sum(1) - 1) < 3).sum())  # hulls of 1 or 2 points: right but not polygons
    assert small > 0
    assert values == {"accuracy": 1.0, "area_coverage": 1.0, "valid": (64 - small) / 64}
    rotated = []
    for _, answer in examples(batch):
        k = len(answer) // 2
        rotated.append(answer[k:] + answer[:k] + [0])
    assert task.metrics({"y": ids(*rotated)}, batch) == values
    reversed_ = ids(*[answer[::-1] + [0] for _, answer in examples(batch)])
    backwards = task.metrics({"y": reversed_}, batch)
    hulls = [len(answer) for _, answer in examples(batch)]
    assert backwards["accuracy"] == sum(1 for h in hulls if h <= 2) / 64  # a 1- or 2-cycle reads the same reversed
    assert backwards["area_coverage"] == 1.0 and backwards["valid"] == values["valid"]


def test_tsp_metrics():
    task = make("tsp")
    line = [(0.0, 0.0), (0.75, 0.0), (0.75, 1.0)]  # a right triangle: every tour has length 3
    batch = batch_of([TSP_POINTS, line], [[1, 3, 2, 4], [1, 2, 3]], 2)

    def measure(*preds):
        pred = ids(*preds)
        values = task.metrics({"y": pred}, batch)
        again = task.metrics({"y": scores(pred, 6)}, batch)
        assert all(values[k] == again[k] or math.isnan(values[k]) and math.isnan(again[k]) for k in values)
        assert values["optimal_length"] == 2.5  # (2 + 3) / 2, whatever is predicted
        return values

    assert measure([1, 3, 2, 4, 0], [1, 2, 3, 0]) == {"tour_length": 2.5, "optimal_length": 2.5, "valid_tours": 1.0}
    assert measure([4, 2, 3, 1, 0, 5], [3, 2, 1]) == {"tour_length": 2.5, "optimal_length": 2.5, "valid_tours": 1.0}
    crossing = measure([1, 2, 3, 4, 0], [2, 1, 3, 0])
    assert crossing["valid_tours"] == 1.0 and abs(crossing["tour_length"] - (1 + math.sqrt(2) + 3) / 2) < 1e-12
    for bad in ([1, 3, 2, 0], [1, 3, 2, 4, 1, 0], [1, 3, 2, 4, 5], [1, 3, 3, 4, 0], [0]):
        assert measure(bad, [1, 2, 3, 0]) == {"tour_length": 3.0, "optimal_length": 2.5, "valid_tours": 0.5}, bad
    none = measure([0], [1, 2, 0])
    assert none["valid_tours"] == 0.0 and math.isnan(none["tour_length"])


def test_tsp_metrics_on_sampled_batches():
    task = make("tsp", n=[1, 8])
    batch = sample(task, 64, seed=10)
    values = task.metrics({"y": batch["y"]}, batch)
    optimal = sum(cycle_length(points, answer) for points, answer in examples(batch)) / 64
    assert values["valid_tours"] == 1.0 and abs(values["tour_length"] - optimal) < 1e-12
    assert abs(values["optimal_length"] - optimal) < 1e-12
    identity = ids(*[list(range(1, len(points) + 1)) + [0] for points, _ in examples(batch)])
    worse = task.metrics({"y": identity}, batch)
    assert worse["valid_tours"] == 1.0 and worse["optimal_length"] == values["optimal_length"]
    assert worse["tour_length"] > values["tour_length"]


# ---- geometry helpers --------------------------------------------------------------------------------


def test_polygon_helpers():
    square = [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0), (0.5, 0.0), (0.5, 0.5), (2.0, 0.0)]
    assert polygon_area(square, [0, 1, 2, 3]) == polygon_area(square, [3, 2, 1, 0]) == 1.0
    assert shoelace(square, [1, 2, 3, 4]) == 1.0
    assert is_simple_polygon(square, [0, 1, 2, 3]) and is_simple_polygon(square, [3, 2, 1, 0])
    assert is_simple_polygon(square, [0, 4, 1, 2, 3])  # a straight angle at 4 is not a fold
    assert not is_simple_polygon(square, [0, 2, 1, 3])  # a bow tie
    assert not is_simple_polygon(square, [0, 1, 4])  # three points on one line: 1 -> 4 folds back along 0 -> 1
    assert not is_simple_polygon(square, [0, 6, 1, 2, 3])  # 6 -> 1 folds back along 0 -> 6
    assert not is_simple_polygon(square, [0, 1, 2, 3, 4, 5])  # edge 3-4 ends on edge 0-1 (touching)
    assert not is_simple_polygon(square, [0, 1, 2, 0])  # a repeated vertex
    assert not is_simple_polygon(square, [0, 1])
    assert not is_simple_polygon([(0.0, 0.0), (0.0, 0.0), (1.0, 0.0), (0.0, 1.0)], [0, 1, 2, 3])  # an edge of length 0
    assert not is_simple_polygon(square, [0, 1, 2, 5, 3, 4])  # 4 -> 0 runs back along 0 -> 1
    assert is_simple_polygon(square, [0, 1, 2, 5, 3])  # a dent at 5


def test_same_cycle():
    assert same_cycle([1, 2, 3], [2, 3, 1]) and same_cycle([3, 1, 2], [1, 2, 3])
    assert not same_cycle([1, 3, 2], [1, 2, 3]) and not same_cycle([1, 2], [1, 2, 3])
    assert same_cycle([4, 1, 4, 2], [4, 2, 4, 1]) and not same_cycle([4, 1, 4, 2], [4, 1, 2, 4])


# ---- parameters ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, changes, message", [
    ("sort_numbers", {"n": [0, 3]}, "task 'sort_numbers': n [0, 3] must be [min, max] with 1 ≤ min ≤ max: the number "
                                    "of points in an example"),
    ("convex_hull", {"n": [6, 4]}, "task 'convex_hull': n [6, 4] must be [min, max] with 1 ≤ min ≤ max: the number "
                                   "of points in an example"),
    ("tsp", {"n": 0}, "task 'tsp': n [0, 0] must be [min, max] with 1 ≤ min ≤ max: the number of points in an example"),
    ("tsp", {"n": [5, 11]}, "task 'tsp': n [5, 11] must lie within [1, 10]: the targets are optimal tours solved "
                            "exactly (Held–Karp), whose cost grows as n²·2^n"),
    ("tsp", {"n": 12}, "task 'tsp': n [12, 12] must lie within [1, 10]: the targets are optimal tours solved "
                       "exactly (Held–Karp), whose cost grows as n²·2^n"),
    ("convex_hull", {"target": "x"}, "task 'convex_hull': input and target must have different names (both 'x')"),
])
def test_task_errors(name, changes, message):
    with pytest.raises(TaskError) as err:
        make(name, **changes)
    assert str(err.value) == message
    with pytest.raises(TaskError):  # an evaluation variant or curriculum step is checked too
        make(name).with_params(**changes)


def test_tsp_accepts_ten_cities_and_large_n_elsewhere():
    batch = sample(make("tsp", n=[10, 10]), 4)
    assert batch["y"].shape == (4, 11) and batch["y.mask"].all()
    assert sample(make("convex_hull", n=[50, 50]), 2)["x"].shape == (2, 51, 3)
    assert sample(make("sort_numbers", n=[30, 40]), 2)["x"].shape[2] == 2
