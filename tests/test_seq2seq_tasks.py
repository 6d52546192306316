"""The sequence-to-sequence tasks for attention models: reversal, sort_tokens and dates."""
import datetime
import math
import re
from types import SimpleNamespace

import pytest
import torch

import attngraph
from attngraph.tasks import TASKS
from attngraph.tasks.base import TaskError

NAMES = ("reversal", "sort_tokens", "dates")


def make(name, **changes):
    """The task with its defaults, ``changes`` applied, and its target trained by an output named like it."""
    cls = TASKS[name]
    p = {k: v.default for k, v in cls.params.items()} | changes
    return cls(SimpleNamespace(**p, outputs={p["target"]: p["target"]}))


def sample(task, batch=16, seed=0):
    return task.sample(batch, torch.Generator().manual_seed(seed))


def ids(row, mask_row):
    """The ids of one example where its mask holds, as a plain list."""
    return [int(v) for v, m in zip(row.tolist(), mask_row.tolist()) if m]


def one_hot_logits(tgt, classes):
    return torch.nn.functional.one_hot(tgt, classes).float() * 10 - 5  # (B, T, V): argmax = tgt


def check_layout(batch, inp="src", tgt="tgt"):
    """Shared shape/mask/eos rules: returns per-example (source ids, target symbol ids)."""
    src, sm, y, ym = batch[inp], batch[f"{inp}.mask"], batch[tgt], batch[f"{tgt}.mask"]
    assert src.dtype == y.dtype == torch.int64 and sm.dtype == ym.dtype == torch.bool
    assert src.shape == sm.shape and y.shape == ym.shape and src.shape[0] == y.shape[0]
    s_len, t_len = sm.sum(1), ym.sum(1)
    assert int(s_len.max()) == src.shape[1] and int(t_len.max()) == y.shape[1]  # no all-padding column
    out = []
    for i in range(src.shape[0]):
        n, m = int(s_len[i]), int(t_len[i])
        assert sm[i].tolist() == [t < n for t in range(src.shape[1])]  # a prefix: valid, then padding
        assert ym[i].tolist() == [t < m for t in range(y.shape[1])]
        assert (src[i, :n] > 0).all() and (src[i, n:] == 0).all()  # 0 is <pad>, never a real token
        assert (y[i, :m - 1] >= 2).all()  # symbols: no <eos> (0), no <bos> (1)
        assert int(y[i, m - 1]) == 0 and (y[i, m:] == 0).all()  # one <eos>, then padding
        out.append((src[i, :n].tolist(), y[i, :m - 1].tolist()))
    return out


# ------------------------------------------------------------------------------------------------ reversal


def test_reversal_target_is_the_source_reversed():
    task = make("reversal", vocab=5, length=[1, 8])
    batch = sample(task, 64, seed=3)
    examples = check_layout(batch)
    assert {len(s) for s, _ in examples} == set(range(1, 9))  # lengths drawn over the whole range
    for s, t in examples:
        assert all(1 <= v <= 5 for v in s)
        assert t == [v + 1 for v in s[::-1]]  # source symbol k is target id k + 1
        words_src = task.decode("src", s).split(" ")
        assert task.decode("tgt", t + [0, 7, 7]).split(" ") == words_src[::-1]  # decode stops at the <eos>
    assert {v for s, _ in examples for v in s} == {1, 2, 3, 4, 5}


def test_symbol_vocabularies_line_up():
    task = make("reversal", vocab=4)
    assert task.vocab() == {"src": ["<pad>", "a", "b", "c", "d"], "tgt": ["<eos>", "<bos>", "a", "b", "c", "d"]}
    assert task.sizes() == {"inputs": {"src": attngraph.VType(5, "src", index=True)},
                            "targets": {"tgt": attngraph.VType(6, "tgt", index=True)}}
    assert task.decode("src", torch.tensor([1, 4, 0, 2])) == "a d"  # stops at the first <pad>
    big = make("sort_tokens", vocab=40, input="inp", target="out")
    v = big.vocab()
    assert v["inp"][1:4] == ["01", "02", "03"] and v["inp"][-1] == "40" and len(v["out"]) == 42
    assert v["inp"][1:] == v["out"][2:] == sorted(v["inp"][1:])  # name order is id order
    assert big.sizes()["inputs"]["inp"].size == 41 and big.sizes()["targets"]["out"].size == 42
    with pytest.raises(KeyError, match="no sequence 'src'"):
        big.decode("src", [1])


def test_reversal_long_accuracy_counts_only_the_bucket():
    task = make("reversal", vocab=6, length=[1, 6], long=[5, 6])
    batch = sample(task, 40, seed=2)
    lengths = batch["src.mask"].sum(1).tolist()
    pred = batch["tgt"].clone()
    for i in range(40):
        if i % 3 == 0:  # every third example gets its first symbol wrong
            pred[i, 0] = 2 + (int(pred[i, 0]) - 1) % 6
    wrong = {i for i in range(40) if i % 3 == 0}
    long = [i for i in range(40) if lengths[i] >= 5]
    assert long and len(long) < 40
    m = task.metrics({"tgt": pred}, batch)
    assert m["sequence_accuracy"] == pytest.approx(1 - len(wrong) / 40)
    assert m["sequence_accuracy_long"] == pytest.approx(sum(i not in wrong for i in long) / len(long))
    assert m["token_accuracy"] == pytest.approx(1 - len(wrong) / int(batch["tgt.mask"].sum()))
    by_length = task.accuracy_by_length({"tgt": pred}, batch)
    expected = {}
    for i, n in enumerate(lengths):
        c, t = expected.get(n, (0, 0))
        expected[n] = (c + (i not in wrong), t + 1)
    assert by_length == expected and list(by_length) == sorted(by_length)
    short = make("reversal", length=[1, 3], long=[5, 6])
    b = sample(short, 8)
    assert math.isnan(short.metrics({"tgt": b["tgt"]}, b)["sequence_accuracy_long"])  # no long example: NaN


def test_the_docstring_example():
    task = make("reversal", vocab=3)
    batch = {"src": torch.tensor([[1, 2, 2]]), "src.mask": torch.ones(1, 3, dtype=torch.bool),
             "tgt": torch.tensor([[3, 3, 2, 0]]), "tgt.mask": torch.ones(1, 4, dtype=torch.bool)}
    assert task.decode("src", batch["src"][0]) == "a b b" and task.decode("tgt", batch["tgt"][0]) == "b b a"

    def score(pred):
        return task.metrics({"tgt": torch.tensor([pred])}, batch)

    perfect = score([3, 3, 2, 0, 4, 4])
    assert (perfect["sequence_accuracy"], perfect["token_accuracy"]) == (1.0, 1.0)
    assert math.isnan(perfect["sequence_accuracy_long"])  # length 3 is outside long = [25, 30]
    assert (score([3, 2, 2, 0])["sequence_accuracy"], score([3, 2, 2, 0])["token_accuracy"]) == (0.0, 0.75)
    assert (score([3, 3, 2])["sequence_accuracy"], score([3, 3, 2])["token_accuracy"]) == (0.0, 0.75)


# ------------------------------------------------------------------------------------------------ sort_tokens


def test_sort_tokens_target_is_the_source_sorted_with_repeats():
    task = make("sort_tokens", vocab=4, length=[1, 10])
    batch = sample(task, 64, seed=4)
    examples = check_layout(batch)
    assert any(len(set(s)) < len(s) for s, _ in examples)  # repeats occur and are kept
    for s, t in examples:
        assert t == [v + 1 for v in sorted(s)]
        words = task.decode("src", s).split(" ")
        assert task.decode("tgt", t).split(" ") == sorted(words)


# ------------------------------------------------------------------------------------------------ dates

MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
          "november", "december"]
DAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
M = "(?P<month>[A-Za-z]+)"
D, DD, Y, YY = r"(?P<day>[1-9]|[12]\d|3[01])", r"(?P<day>[0-2]\d|3[01])", r"(?P<year>\d{4})", r"(?P<year>\d{2})"
NUM_M, NUM_MM = r"(?P<month>[1-9]|1[0-2])", r"(?P<month>0[1-9]|1[0-2])"
W = "(?P<weekday>[A-Za-z]+)"
ORD = r"(?P<day>[1-9]|[12]\d|3[01])(?P<suffix>st|nd|rd|th)"
# format name -> (pattern, how the month is written): an independent reading of every format
PARSERS = {
    "d_month_yyyy": (f"{D} {M} {Y}", "full"),
    "dd_month_yyyy": (f"{DD} {M} {Y}", "full"),
    "month_d_yyyy": (f"{M} {D}, {Y}", "full"),
    "d_mon_yyyy": (f"{D} {M} {Y}", "abbr"),
    "d_mon_yy": (f"{D} {M} {YY}", "lower_abbr"),
    "weekday_d_month_yyyy": (f"{W}, {D} {M} {Y}", "full"),
    "upper_wkd_d_mon_yyyy": (f"{W} {D} {M} {Y}", "upper_abbr"),
    "ordinal_of_month_yyyy": (f"{ORD} of {M} {Y}", "full"),
    "month_ordinal_yyyy": (f"{M} {ORD}, {Y}", "full"),
    "dmy_dots": (rf"{D}\.{NUM_M}\.{Y}", "number"),
    "dd_mm_yyyy_dashes": (f"{DD}-{NUM_MM}-{Y}", "number"),
    "mdy_slashes": (f"{NUM_M}/{D}/{Y}", "number"),
    "ymd_slashes": (f"{Y}/{NUM_MM}/{DD}", "number"),
}


def parse(text, years):
    """{format name: date} for every format that reads ``text`` as a valid date."""
    found = {}
    for name, (pattern, month_style) in PARSERS.items():
        match = re.fullmatch(pattern, text)
        if not match:
            continue
        g = match.groupdict()
        month = g["month"]
        if month_style == "number":
            number = int(month)
        else:
            names = {"full": [m.capitalize() for m in MONTHS], "abbr": [m[:3].capitalize() for m in MONTHS],
                     "lower_abbr": [m[:3] for m in MONTHS], "upper_abbr": [m[:3].upper() for m in MONTHS]}[month_style]
            if month not in names:
                continue
            number = names.index(month) + 1
        year = int(g["year"])
        if len(g["year"]) == 2:  # the century that puts it inside years
            year = next(c + year for c in range(years[0] // 100 * 100, years[1] + 1, 100) if years[0] <= c + year <= years[1])
        try:
            date = datetime.date(year, number, int(g["day"]))
        except ValueError:
            continue
        if "suffix" in g:
            n = date.day
            right = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
            if g["suffix"] != right:
                continue
        if "weekday" in g:
            day = DAYS[date.weekday()]
            if g["weekday"] not in (day.capitalize(), day[:3].upper()):
                continue
        found[name] = date
    return found


def test_dates_target_is_the_iso_date_of_the_source():
    task = make("dates")
    batch = sample(task, 3000, seed=5)
    examples = check_layout(batch)
    vocab = task.vocab()
    seen = set()
    for s, t in examples:
        text = "".join(vocab["src"][v] for v in s)
        assert text == task.decode("src", s)
        iso = task.decode("tgt", t)
        assert len(t) == 10 and re.fullmatch(r"\d{4}-\d{2}-\d{2}", iso)
        readings = parse(text, [1950, 2049])
        assert readings, text  # every source is a valid date in some format
        assert {d.isoformat() for d in readings.values()} == {iso}, text  # and every reading agrees
        assert 1950 <= int(iso[:4]) <= 2049
        seen |= readings.keys()
    assert seen == set(PARSERS) == set(task.p.formats)  # every format appears
    assert batch["tgt"].shape[1] == 11 and batch["tgt.mask"].all()  # 10 characters + <eos>, always


def test_dates_formats_and_years_restrict_the_data():
    task = make("dates", years=[2001, 2003], formats=["dmy_dots", "mdy_slashes"])
    batch = sample(task, 800, seed=6)
    years, kinds = set(), set()
    for s, t in check_layout(batch):
        text, iso = task.decode("src", s), task.decode("tgt", t)
        readings = parse(text, [2001, 2003])
        assert {d.isoformat() for d in readings.values()} == {iso}
        kinds |= readings.keys() & {"dmy_dots", "mdy_slashes"}
        assert "." in text or "/" in text
        years.add(int(iso[:4]))
    assert years == {2001, 2002, 2003} and kinds == {"dmy_dots", "mdy_slashes"}
    one_day = make("dates", years=[2000, 2000], formats=["ymd_slashes"])
    texts = {one_day.decode("src", s) for s, _ in check_layout(sample(one_day, 2000, seed=1))}
    assert "2000/02/29" in texts and "2000/01/01" in texts and "2000/12/31" in texts and len(texts) > 300


def test_dates_two_digit_years_need_an_unambiguous_century():
    task = make("dates", years=[1900, 1999], formats=["d_mon_yy"])  # 100 years: still one century per yy
    for s, t in check_layout(sample(task, 200)):
        text, iso = task.decode("src", s), task.decode("tgt", t)
        assert re.fullmatch(r"\d{1,2} [a-z]{3} \d{2}", text) and text[-2:] == iso[2:4]
    with pytest.raises(TaskError, match=r"'d_mon_yy' writes 2-digit years.*\[1900, 2049\]"):
        make("dates", years=[1900, 2049])
    make("dates", years=[1900, 2049], formats=["dmy_dots"])  # without it: fine


def test_dates_unknown_format_lists_the_known_ones():
    with pytest.raises(TaskError, match=r"unknown format 'iso'; known formats: d_month_yyyy, .*ymd_slashes"):
        make("dates", formats=["dmy_dots", "iso"])


def test_dates_vocabularies():
    task = make("dates")
    v = task.vocab()
    assert v["tgt"] == ["<eos>", "<bos>", *"0123456789", "-"]
    assert v["src"][:16] == ["<pad>", " ", ",", "-", ".", "/", *"0123456789"]
    assert len(v["src"]) == len(set(v["src"])) == task.sizes()["inputs"]["src"].size
    assert task.sizes()["targets"]["tgt"] == attngraph.VType(13, "tgt", index=True)
    assert task.decode("tgt", [4, 11, 11, 10, 12, 2, 7, 12, 2, 5, 0, 3]) == "2998-05-03"


# ------------------------------------------------------------------------------------------------ all three


@pytest.mark.parametrize("name", NAMES)
def test_tasks_are_seeded(name):
    task = make(name)
    a, b, c = sample(task, 8, 1), sample(task, 8, 1), sample(task, 8, 2)
    assert a.keys() == {"src", "src.mask", "tgt", "tgt.mask"}
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(a[k].shape != c[k].shape or not torch.equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize("name", NAMES)
def test_metrics_follow_the_eos_rules(name):
    task = make(name, input="inp", target="out")
    task.p.outputs = {"out": "head"}  # the metrics read the output trained against the target
    batch = sample(task, 32, seed=9)
    y, ym = batch["out"], batch["out.mask"]
    classes = task.sizes()["targets"]["out"].size
    full = {"sequence_accuracy": 1.0, "token_accuracy": 1.0}

    def score(pred):
        m = task.metrics({"head": pred}, batch)
        assert set(m) == set(task.metric_names) - {"loss"}
        if "exact_match" in m:
            assert m["exact_match"] == m["sequence_accuracy"]
        return {k: m[k] for k in full}

    assert score(one_hot_logits(y, classes)) == full  # logits, read by argmax
    assert score(y) == full  # token ids from a decoder
    junk = y.clone()
    junk[~ym] = 3  # anything after the <eos> is ignored ...
    longer = torch.cat([junk, torch.full((32, 4), 5)], dim=1)  # ... and so are extra steps
    assert score(junk) == full and score(longer) == full and score(one_hot_logits(longer, classes)) == full

    lengths = ym.sum(1)
    n = int(ym.sum())
    shorter = y[:, :-1]  # one step fewer: examples whose <eos> sat on the last step are wrong
    cut = int((lengths == y.shape[1]).sum())
    assert cut > 0
    assert score(shorter) == {"sequence_accuracy": 1 - cut / 32, "token_accuracy": pytest.approx((n - cut) / n)}

    wrong = y.clone()
    wrong[5, 0] = 2 + (int(wrong[5, 0]) - 1) % (classes - 2)  # another real symbol
    assert wrong[5, 0] != y[5, 0]
    assert score(wrong) == {"sequence_accuracy": 31 / 32, "token_accuracy": pytest.approx((n - 1) / n)}
    wrong[7, int(lengths[7]) - 1] = 2  # the <eos> replaced by a symbol: wrong too
    assert score(one_hot_logits(wrong, classes)) == {"sequence_accuracy": 30 / 32,
                                                     "token_accuracy": pytest.approx((n - 2) / n)}


@pytest.mark.parametrize("name", NAMES)
def test_tasks_are_registered_with_their_metrics(name):
    cls = TASKS[name]
    assert cls.metric_names[:2] == ("loss", "sequence_accuracy") and "token_accuracy" in cls.metric_names
    assert cls.lower_is_better == {"loss"}
    assert {"input", "target"} <= cls.params.keys()
    assert cls.params["input"].default == "src" and cls.params["target"].default == "tgt"
    assert cls.doc and "\n" not in cls.doc
    with pytest.raises(TaskError, match="different names"):
        make(name, target="src")
    assert TASKS["reversal"].metric_names == ("loss", "sequence_accuracy", "sequence_accuracy_long", "token_accuracy")
    assert TASKS["dates"].metric_names == ("loss", "sequence_accuracy", "exact_match", "token_accuracy")


SPEC = """attngraph: 1
inputs:
  src: {{vocab: {src}}}
targets:
  tgt: {{classes: {tgt}}}
model:
  emb: {{kind: embedding, size: 8, in: src}}
  enc: {{kind: lstm, size: 16, in: emb}}
  head: {{kind: linear, size: {tgt}, in: enc}}
outputs:
  tgt: {{from: head, loss: cross_entropy}}
task:
  kind: {name}
"""
SIZES = {"reversal": (11, 12), "sort_tokens": (11, 12), "dates": (59, 13)}


@pytest.mark.parametrize("name", NAMES)
def test_spec_with_the_task_checks(tmp_path, name):
    """A spec declaring token input and target checks against the task. (The model here is no decoder: its
    output has the source's length, so only the metrics, which take any length, are run on it.)"""
    path = tmp_path / "s.yaml"
    src, tgt = SIZES[name]
    path.write_text(SPEC.format(name=name, src=src, tgt=tgt))
    spec, report = attngraph.check(path)
    assert spec is not None, [str(d) for d in report]
    section = spec.sections["task"]
    assert section.train.p.outputs == {"tgt": "tgt"}
    batch = section.train.sample(4, torch.Generator().manual_seed(0))
    outputs = attngraph.build(spec)(batch)
    assert outputs["tgt"].shape == (4, batch["src"].shape[1], tgt)
    assert set(section.train.metrics(outputs, batch)) == set(section.train.metric_names) - {"loss"}

    spec, report = attngraph.check(path, ["inputs.src.vocab=7"])
    errors = [str(d) for d in report if d.severity == "error"]
    assert spec is None and errors == [
        f"{path}:13:3: task: input 'src': the task produces a sequence of {src} classes but the model declares a "
        f"sequence of 7 classes (change inputs.src or the task's parameters)"]


def test_spec_parameters_are_validated(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(SPEC.format(name="dates", src=59, tgt=13))
    spec, report = attngraph.check(path, ["task.formats=[dmy_dots, ymd_slashes]", "task.years=[1990, 1999]"])
    assert spec is not None and spec.sections["task"].train.p.formats == ["dmy_dots", "ymd_slashes"]
    spec, report = attngraph.check(path, ["task.formats=dmy_dots"])
    assert spec is not None and spec.sections["task"].train.p.formats == ["dmy_dots"]
    spec, report = attngraph.check(path, ["task.formats=[dmy_dots, iso]"])
    errors = [str(d) for d in report if d.severity == "error"]
    assert spec is None and len(errors) == 1
    assert "task.formats[1]: unknown value 'iso': expected one of d_month_yyyy, dd_month_yyyy" in errors[0]
    spec, report = attngraph.check(path, ["task.formats=[dmy_dots, dmy_dots]"])
    assert spec is None and "format 'dmy_dots' is listed twice" in str(report[0])
    spec, report = attngraph.check(path, ["task.years=[1900, 2049]"])
    assert spec is None and "'d_mon_yy' writes 2-digit years" in str(report[0])
    spec, report = attngraph.check(path, ["task.eval={years: [2050, 2099]}"])
    assert spec is not None and spec.sections["task"].eval.p.years == [2050, 2099]
    path.write_text(SPEC.format(name="reversal", src=11, tgt=12))
    spec, report = attngraph.check(path, ["task.length=[5, 1]"])
    assert spec is None and "the range [5, 1] is empty" in str(report[0])
    spec, report = attngraph.check(path, ["task.eval={length: [31, 40], long: [36, 40]}"])
    assert spec is not None and spec.sections["task"].eval.p.long == [36, 40]
