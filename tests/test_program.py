"""The ``program`` scope (Neural Programmer) against a hand-written reference of the paper's equations, the ops on
worked examples, the op registry, hard selection and what ``record`` shows."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import attngraph
from attngraph.components import ops as ops_mod
from attngraph.components.ops import LIBRARIES, op, program_step, table_spread

SPEC = """
attngraph: 1
name: programmer
inputs:
  qvec: {size: 5, time: false}
  table: {size: 3}
targets:
  answer: {size: 1, time: false}
model:
  prog:
    kind: program
    table: table
    steps: STEPS
    ops: op
    columns: col
    pivot: piv
    hard: HARD
    body:
      hist: {kind: rnn, size: 6, in: [qvec, prog.prev_op, prog.prev_column]}
      op:   {kind: linear, size: 9, in: [qvec, hist]}
      col:  {kind: linear, size: 3, in: [qvec, hist]}
      piv:  {kind: linear, size: 1, in: [qvec, hist]}
outputs:
  answer: {from: prog.scalar, loss: mse}
  rows: {from: prog.rows, loss: none}
  lookup: {from: prog.lookup, loss: none}
"""


def build(tmp_path: Path, steps: int = 4, hard: bool = False, seed: int = 0, text: str = SPEC,
          ) -> attngraph.CompiledModel:
    path = tmp_path / "prog.yaml"
    path.write_text(text.replace("STEPS", str(steps)).replace("HARD", "true" if hard else "false"))
    torch.manual_seed(seed)
    model = attngraph.build(attngraph.load(path)).double()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.8)
    return model


def make_batch(seed: int = 1, b: int = 5, r: int = 4) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    mask = torch.ones(b, r, dtype=torch.bool)
    mask[1, 2:] = False  # a two-row table
    mask[3, 3:] = False
    table = torch.randn(b, r, 3, generator=gen, dtype=torch.float64) * mask.unsqueeze(-1)
    return {"qvec": torch.randn(b, 5, generator=gen, dtype=torch.float64), "table": table, "table.mask": mask,
            "answer": torch.randn(b, 1, generator=gen, dtype=torch.float64)}


def reference(w: dict[str, torch.Tensor], batch: dict[str, torch.Tensor], steps: int, hard: bool = False):
    """Neelakantan et al. 2015 written out per example and row, with Python loops: the history RNN on the last
    op and column distributions, α_op and α_col by softmax (or argmax when ``hard``), every op on the previous
    step's registers, the results mixed by type. The comparisons are exact with the straight-through gradient of
    σ((x − pivot) / s), s the sample standard deviation of the example's valid entries."""
    q, table, valid = batch["qvec"], batch["table"], batch["table.mask"]
    B, R, C = table.shape
    p = "nodes.prog."
    h = torch.zeros(B, 6, dtype=torch.float64)
    prev_op, prev_col = torch.zeros(B, 9, dtype=torch.float64), torch.zeros(B, C, dtype=torch.float64)
    out_scalar, out_rows, out_lookup = [], [], []
    for b in range(B):
        n_rows = int(valid[b].sum())
        entries = table[b, :n_rows].detach().flatten()
        spread = float(entries.std()) if entries.numel() > 1 else 1e-3
        rows_1 = [1.0] * n_rows  # the selection of the previous step, then of the step before
        rows_2 = [1.0] * n_rows
        s1 = s2 = s3 = torch.zeros((), dtype=torch.float64)
        lookup = [[torch.zeros((), dtype=torch.float64)] * C for _ in range(n_rows)]
        hb, po, pc = h[b], prev_op[b], prev_col[b]
        for _ in range(steps):
            x = torch.cat([q[b], po, pc])
            hb = torch.tanh(w[p + "hist.rnn.weight_ih_l0"] @ x + w[p + "hist.rnn.bias_ih_l0"]
                            + w[p + "hist.rnn.weight_hh_l0"] @ hb + w[p + "hist.rnn.bias_hh_l0"])
            z = torch.cat([q[b], hb])
            a = torch.softmax(w[p + "op.proj.weight"] @ z + w[p + "op.proj.bias"], 0)
            c = torch.softmax(w[p + "col.proj.weight"] @ z + w[p + "col.proj.bias"], 0)
            if hard:
                a = torch.nn.functional.one_hot(a.argmax(), 9).double()
                c = torch.nn.functional.one_hot(c.argmax(), C).double()
            pivot = (w[p + "piv.proj.weight"] @ z + w[p + "piv.proj.bias"])[0]
            col_value = [sum(c[j] * table[b, i, j] for j in range(C)) for i in range(n_rows)]

            def compare(sign, b=b, n_rows=n_rows, pivot=pivot, spread=spread, c=c):
                out = []
                for i in range(n_rows):
                    total = 0.0
                    for j in range(C):
                        d = sign * (table[b, i, j] - pivot)
                        soft = torch.sigmoid(d / spread)
                        total = total + c[j] * ((1.0 if float(d.detach()) > 0 else 0.0) + soft - soft.detach())
                    out.append(total)
                return out

            total = sum(rows_1[i] * col_value[i] for i in range(n_rows))
            count = sum(rows_1)
            diff = s3 - s1
            greater, lesser = compare(1.0), compare(-1.0)
            both = [torch.minimum(torch.as_tensor(rows_2[i]), torch.as_tensor(rows_1[i])) for i in range(n_rows)]
            either = [torch.maximum(torch.as_tensor(rows_2[i]), torch.as_tensor(rows_1[i])) for i in range(n_rows)]
            # sum, count, difference, greater, lesser, and, or, print, reset
            scalar = a[0] * total + a[1] * count + a[2] * diff
            rows = [a[3] * greater[i] + a[4] * lesser[i] + a[5] * both[i] + a[6] * either[i] + a[8] * 1.0
                    for i in range(n_rows)]
            lookup = [[a[7] * rows_1[i] * c[j] for j in range(C)] for i in range(n_rows)]
            s3, s2, s1 = s2, s1, scalar
            rows_2, rows_1 = rows_1, rows
            po, pc = a, c
        out_scalar.append(s1.reshape(1))
        pad = [torch.zeros((), dtype=torch.float64)] * (R - n_rows)
        out_rows.append(torch.stack([torch.as_tensor(v, dtype=torch.float64) for v in rows_1] + pad))
        out_lookup.append(torch.stack([torch.stack(row) for row in lookup]
                                      + [torch.zeros(C, dtype=torch.float64)] * (R - n_rows)))
    return torch.stack(out_scalar), torch.stack(out_rows), torch.stack(out_lookup)


def leaves(model):
    return {k: v.detach().clone().requires_grad_(True) for k, v in model.state_dict().items()}


@pytest.mark.parametrize("steps", [1, 4])
def test_program_matches_the_reference_values_and_gradients(tmp_path, steps):
    model = build(tmp_path, steps)
    model.train()
    batch = make_batch()
    out = model(batch)
    w = leaves(model)
    scalar, rows, lookup = reference(w, batch, steps)
    torch.testing.assert_close(out["answer"], scalar, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(out["rows"].squeeze(-1), rows, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(out["lookup"], lookup, rtol=1e-10, atol=1e-10)
    weights = torch.linspace(0.5, 1.5, 5, dtype=torch.float64)
    mine = (out["answer"].squeeze(1) * weights).sum() + (out["rows"].squeeze(-1) ** 2).sum() + out["lookup"].sum()
    theirs = (scalar.squeeze(1) * weights).sum() + (rows ** 2).sum() + lookup.sum()
    mine.backward()
    theirs.backward()
    got = dict(model.named_parameters())
    for name, leaf in w.items():
        assert got[name].grad is not None, name
        torch.testing.assert_close(got[name].grad, leaf.grad, rtol=1e-8, atol=1e-10, msg=name)


def test_hard_selection_applies_the_most_probable_op_and_column_outside_training(tmp_path):
    model = build(tmp_path, 4, hard=True)
    batch = make_batch(seed=3)
    model.eval()
    with torch.no_grad():
        out = model(batch)
    scalar, rows, lookup = reference(leaves(model), batch, 4, hard=True)
    torch.testing.assert_close(out["answer"], scalar.detach(), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(out["lookup"], lookup.detach(), rtol=1e-10, atol=1e-10)
    model.train()  # in training the same model mixes softly
    soft, _, _ = reference(leaves(model), batch, 4, hard=False)
    torch.testing.assert_close(model(batch)["answer"], soft, rtol=1e-10, atol=1e-10)
    assert not torch.allclose(soft, scalar)


def one_hot(i: int, n: int, b: int = 1) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.full((b,), i), n).double()


TABLE = torch.tensor([[[1.0, 50.0], [3.0, 20.0], [7.0, 90.0], [0.0, 0.0]]], dtype=torch.float64)  # last row: padding
VALID = torch.tensor([[1.0, 1.0, 1.0, 0.0]], dtype=torch.float64)


def run_program(names: list[str], columns: list[int], pivots: list[float], library: str = "neelakantan",
                table=TABLE, valid=VALID):
    """Apply a program of one-hot ops (the scope's step, without a controller) and return the last registers."""
    ops = list(LIBRARIES[library].values())
    index = {o.name: i for i, o in enumerate(ops)}
    values = {"scalar": torch.zeros(1, 1, dtype=torch.float64)}
    values["scalar_2"] = values["scalar_3"] = values["scalar"]
    lookup = None
    if table is not None:
        values.update(table=table, valid=valid, rows=valid, rows_2=valid, spread=table_spread(table, valid))
        lookup = torch.zeros_like(table)
    pivots = list(pivots) + [0.0] * (len(names) - len(pivots))  # the steps after the comparisons ignore it
    for name, col, piv in zip(names, columns, pivots, strict=True):
        if table is not None:
            values["column"] = one_hot(col, table.shape[2])
        values["pivot"] = torch.tensor([[piv]], dtype=torch.float64)
        scalar, rows, lookup = program_step(ops, one_hot(index[name], len(ops)), values, values.get("rows"), lookup)
        values["scalar_3"], values["scalar_2"], values["scalar"] = values["scalar_2"], values["scalar"], scalar
        if table is not None:
            values["rows_2"], values["rows"] = values["rows"], rows
    return values, lookup


@pytest.mark.parametrize("program, expected", [
    ((["sum"], [0], [0]), 11.0),                                   # 1 + 3 + 7 (the padded row is not a row)
    ((["sum"], [1], [0]), 160.0),
    ((["count"], [0], [0]), 3.0),
    ((["greater", "count"], [1, 0], [30.0]), 2.0),                 # B > 30: rows 1 and 3
    ((["lesser", "count"], [1, 0], [30.0]), 1.0),                  # B < 30: row 2 (the padding 0 is not counted)
    ((["greater", "sum"], [1, 0], [30.0]), 8.0),                   # A over the rows where B > 30
    ((["greater", "lesser", "and", "count"], [0, 1, 0, 0], [2.0, 60.0]), 1.0),   # A > 2 and B < 60: row 2
    ((["greater", "lesser", "or", "count"], [0, 1, 0, 0], [2.0, 30.0]), 2.0),    # A > 2 or B < 30: rows 2, 3
    ((["sum", "reset", "sum", "difference"], [1, 0, 0, 0], [0, 0, 0, 0]), 160.0 - 11.0),  # s(t−3) − s(t−1)
    ((["greater", "reset", "count"], [0, 0, 0], [5.0]), 3.0),
])
def test_neelakantan_programs_on_a_worked_table(program, expected):
    values, _ = run_program(*program)
    assert float(values["scalar"]) == pytest.approx(expected)


def test_print_looks_up_the_chosen_column_of_the_selected_rows_and_no_padding():
    values, lookup = run_program(["greater", "print"], [1, 0], [30.0])
    want = torch.zeros_like(TABLE)
    want[0, 0, 0] = want[0, 2, 0] = 1.0  # column A of the rows where B > 30
    torch.testing.assert_close(lookup, want)
    assert float(values["scalar"]) == 0.0  # print gives a lookup: the scalar register mixes nothing
    values, lookup = run_program(["reset", "print"], [0, 1], [0, 0])
    assert lookup[0, 3].abs().sum() == 0  # the padded row
    assert lookup[0, :3, 1].tolist() == [1.0, 1.0, 1.0]


def test_comparisons_are_strict_and_exact():
    values, _ = run_program(["greater", "count"], [0, 0], [3.0])
    assert float(values["scalar"]) == 1.0  # 7 only: 3 > 3 is false
    values, _ = run_program(["lesser", "count"], [0, 0], [3.0])
    assert float(values["scalar"]) == 1.0  # 1 only (0 is padding)


def test_arithmetic_program_calculates_left_to_right():
    values, _ = run_program(["number", "add", "multiply", "subtract"], [0] * 4, [3.0, 4.0, 2.0, 5.0],
                            library="arithmetic", table=None)
    assert float(values["scalar"]) == (3 + 4) * 2 - 5


def test_pivot_learns_through_the_straight_through_comparison():
    """The comparison's value is exact, its gradient that of a sigmoid: a larger pivot selects fewer rows."""
    pivot = torch.tensor([[30.0]], dtype=torch.float64, requires_grad=True)
    rows = ops_mod.LIBRARIES["neelakantan"]["greater"]({"table": TABLE, "spread": table_spread(TABLE, VALID),
                                                         "column": one_hot(1, 2),
                                                         "pivot": pivot})
    assert rows.tolist() == [[1.0, 0.0, 1.0, 0.0]]
    (rows * VALID).sum().backward()  # the scope never selects a padded row (program_step masks it)
    assert float(pivot.grad) < 0
    entries = TABLE[0, :3].flatten()
    s = float(entries.std())
    want = -sum(math.exp(-(v - 30) / s) / (1 + math.exp(-(v - 30) / s)) ** 2 / s for v in (50.0, 20.0, 90.0))
    assert float(pivot.grad) == pytest.approx(want)


def test_a_mixture_mixes_only_values_of_one_type():
    ops = list(LIBRARIES["neelakantan"].values())
    p = torch.tensor([[0.25, 0.25, 0, 0.5, 0, 0, 0, 0, 0]], dtype=torch.float64)  # sum, count, greater
    values = {"table": TABLE, "valid": VALID, "rows": VALID, "rows_2": VALID, "column": one_hot(0, 2),
              "spread": table_spread(TABLE, VALID),
              "pivot": torch.tensor([[2.0]], dtype=torch.float64)}
    values["scalar"] = values["scalar_2"] = values["scalar_3"] = torch.zeros(1, 1, dtype=torch.float64)
    scalar, rows, lookup = program_step(ops, p, values, VALID, torch.zeros_like(TABLE))
    assert float(scalar) == pytest.approx(0.25 * 11 + 0.25 * 3)
    assert rows.tolist() == [[0.0, 0.5, 0.5, 0.0]]  # greater(A, 2) weighted 0.5
    assert lookup.abs().sum() == 0


def test_record_shows_the_program_step_by_step(tmp_path):
    model = build(tmp_path, 3)
    batch = make_batch()
    batch["table.mask"][:] = True  # record runs unmasked: equal-length examples
    _, rec = model.record(batch)
    assert rec["prog.op"].shape == (5, 3, 9) and rec["prog.column"].shape == (5, 3, 3)
    torch.testing.assert_close(rec["prog.op"].sum(-1), torch.ones(5, 3, dtype=torch.float64))
    assert rec["prog.rows"].shape == (5, 3, 4) and rec["prog.scalar"].shape == (5, 3, 1)
    assert rec["prog.pivot"].shape == (5, 3, 1)
    torch.testing.assert_close(rec["prog.scalar"][:, -1], model(batch)["answer"])


def test_op_registration_checks_its_declaration():
    with pytest.raises(ValueError, match="unknown argument 'colour'"):
        op("paint", "test_lib", takes=("colour",), gives="rows")
    with pytest.raises(ValueError, match="gives 'vector'"):
        op("paint", "test_lib", takes=("rows",), gives="vector")
    with pytest.raises(ValueError, match="takes 2 arguments .* but its function has 1 parameter"):
        op("paint", "test_lib", takes=("rows", "valid"), gives="rows")(lambda rows: rows)
    assert "test_lib" not in LIBRARIES


def test_a_plugin_library_runs_in_a_program(tmp_path):
    lib = "test_plugin_tables"
    if lib not in LIBRARIES:
        @op("maximum", lib, takes=("table", "column", "rows"), gives="scalar", doc="largest chosen entry")
        def _maximum(table, column, rows):
            return ((table * column.unsqueeze(1)).sum(-1) * rows).amax(1, keepdim=True)

        @op("halve", lib, takes=("rows",), gives="rows")
        def _halve(rows):
            return rows / 2
    text = SPEC.replace("table: table\n    steps", f"library: {lib}\n    table: table\n    steps") \
        .replace("size: 9, in", "size: 2, in").replace("    pivot: piv\n", "").replace(
            "      piv:  {kind: linear, size: 1, in: [qvec, hist]}\n", "")
    model = build(tmp_path, 2, text=text)
    batch = make_batch()
    batch["table.mask"][:] = True
    batch["table"] = batch["table"].abs()
    out, rec = model.record(batch)
    a, c = rec["prog.op"], rec["prog.column"]  # (B, 2 steps, 2)
    chosen = [(batch["table"] * c[:, t].unsqueeze(1)).sum(-1) for t in range(2)]  # (B, R) per step
    rows_1 = a[:, 0, 1:2] * 0.5  # step 1: halve(all rows), weighted by its probability
    want = a[:, 1, 0:1] * (chosen[1] * rows_1).amax(1, keepdim=True)
    torch.testing.assert_close(out["answer"], want)


def test_inspect_draws_the_induced_program(tmp_path):
    from attngraph.inspect import induced_program, inspect

    model = build(tmp_path, 3)
    batch = {k: v[:1] for k, v in make_batch().items()}
    batch["table.mask"][:] = True
    written = inspect(model, batch, tmp_path / "inspect")
    assert tmp_path / "inspect" / "program-prog.png" in written
    _, rec = model.record({k: v for k, v in batch.items() if k in model.ir.inputs})
    ops = [o.name for o in LIBRARIES["neelakantan"].values()]
    text = induced_program(next(n for n in model.ir.nodes() if n.kind == "program"), rec)
    assert len(text) == 3
    for t, step in enumerate(text):
        name = ops[int(rec["prog.op"][0, t].argmax())]
        assert step.split("(")[0] == name
        if name in ("greater", "lesser"):  # column letter and pivot
            col = "ABC"[int(rec["prog.column"][0, t].argmax())]
            assert step == f"{name}({col}, {float(rec['prog.pivot'][0, t].detach()):.4g})"
