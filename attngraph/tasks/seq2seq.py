"""Synthetic sequence-to-sequence tasks for attention models: ``reversal``, ``sort_tokens`` and ``dates``.

Each task feeds a token sequence ``src`` and asks for a token sequence ``tgt`` (names set by ``input`` and
``target``) of a possibly different length, in the style of the attention papers (Bahdanau et al. 2015,
Luong et al. 2015): an encoder reads the source, a decoder writes the answer one token at a time.

Token conventions
  - source vocabulary: id 0 is ``<pad>`` (never a real token); real symbols are ids 1, 2, ...
  - target vocabulary: id 0 is ``<eos>``, id 1 is ``<bos>`` (the decoder's first input, never in a
    target); real symbols are ids 2, 3, ...

A batch holds
  - ``src`` (B, S) int64, padded with 0; ``src.mask`` (B, S) bool marks the valid positions (S is the
    batch's longest source);
  - ``tgt`` (B, T) int64: the answer's symbols followed by one ``<eos>``, then padding 0; ``tgt.mask``
    (B, T) bool marks the symbols AND the ``<eos>`` (T is the longest answer + 1).

Metrics (``outputs[tgt]`` is either float logits (B, T', V), read by argmax, or int64 token ids (B, T')
from greedy or beam decoding; T' may differ from T)
  - ``sequence_accuracy``: the fraction of examples answered exactly. An example is correct iff
    T' reaches its ``<eos>`` (T' ≥ its symbols + 1) and the prediction equals the target wherever
    ``tgt.mask`` holds; what comes after the ``<eos>`` is ignored;
  - ``token_accuracy``: right positions / masked positions, over the whole batch; masked positions beyond
    T' count as wrong;
  - ``reversal`` adds ``sequence_accuracy_long``: ``sequence_accuracy`` over the examples whose source
    length lies in ``long`` (NaN when the batch has none); ``dates`` adds ``exact_match`` (the same number
    as ``sequence_accuracy``, under the name the date-translation literature uses).

Example (``reversal``, vocab 3, symbols a b c: source ids a=1 b=2 c=3, target ids a=2 b=3 c=4)::

    source "a b b"  -> src [1, 2, 2]    src.mask [T, T, T]
    answer "b b a"  -> tgt [3, 3, 2, 0] tgt.mask [T, T, T, T]      (the last 0 is the <eos>)
    prediction ids [3, 3, 2, 0, 4, 4]   -> correct (after the <eos> nothing counts)
    prediction ids [3, 2, 2, 0]         -> wrong; token accuracy 3/4
    prediction ids [3, 3, 2]            -> wrong (too short: the <eos> is missing); token accuracy 3/4

Symbols of ``reversal`` and ``sort_tokens`` are named ``a`` .. ``z`` when ``vocab`` ≤ 26, otherwise by
their number, zero-padded (``01`` .. ``40``), so that sorting names sorts ids; :meth:`Seq2SeqTask.decode`
joins them with spaces. ``dates`` writes characters, joined without a separator.

``dates`` draws a day uniformly from 1 January of ``years[0]`` to 31 December of ``years[1]`` and a format
uniformly from ``formats``; the target is the ISO 8601 date ``YYYY-MM-DD``. Each format is one fixed
convention (``dmy_dots`` is always day.month.year, ``mdy_slashes`` always month/day/year), so the mapping
from source to target is a function. The formats (3 May 1998, a Sunday)::

    d_month_yyyy            3 May 1998
    dd_month_yyyy           03 May 1998
    month_d_yyyy            May 3, 1998
    d_mon_yyyy              3 May 1998     (3-letter month: 3 Sep 1998)
    d_mon_yy                3 may 98       (lowercase 3-letter month, 2-digit year, see below)
    weekday_d_month_yyyy    Sunday, 3 May 1998
    upper_wkd_d_mon_yyyy    SUN 3 MAY 1998
    ordinal_of_month_yyyy   3rd of May 1998
    month_ordinal_yyyy      May 3rd, 1998
    dmy_dots                3.5.1998       (European day.month.year)
    dd_mm_yyyy_dashes       03-05-1998     (European day-month-year)
    mdy_slashes             5/3/1998       (US month/day/year)
    ymd_slashes             1998/05/03

``d_mon_yy`` gives the year's last two digits; the century is the one that puts the year inside ``years``,
so it is unambiguous only while ``years`` spans at most 100 years: with a wider range, selecting it is an
error. Month and weekday names are English, written here (no locale-dependent ``strftime``).
"""
from __future__ import annotations

import abc
import datetime
import math

import torch

from ..components.base import VType
from ..spec.params import Int, IntRange, NameList, Param
from .base import Task, TaskError, io_params, task

PAD, EOS, BOS = 0, 0, 1
SRC_SPECIALS = ("<pad>",)
TGT_SPECIALS = ("<eos>", "<bos>")
METRICS = ("loss", "sequence_accuracy", "token_accuracy")

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")  # date.weekday() order


def _io_params() -> dict[str, Param]:
    return io_params("src", "tgt", "the model input it feeds (token ids, 0 = <pad>)",
                     "the model target it provides (token ids, 0 = <eos>, 1 = <bos>)")


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


# name -> how a date is written in that format; every format is one fixed convention
DATE_FORMATS = {
    "d_month_yyyy": lambda d: f"{d.day} {MONTHS[d.month - 1]} {d.year}",
    "dd_month_yyyy": lambda d: f"{d.day:02d} {MONTHS[d.month - 1]} {d.year}",
    "month_d_yyyy": lambda d: f"{MONTHS[d.month - 1]} {d.day}, {d.year}",
    "d_mon_yyyy": lambda d: f"{d.day} {MONTHS[d.month - 1][:3]} {d.year}",
    "d_mon_yy": lambda d: f"{d.day} {MONTHS[d.month - 1][:3].lower()} {d.year % 100:02d}",
    "weekday_d_month_yyyy": lambda d: f"{WEEKDAYS[d.weekday()]}, {d.day} {MONTHS[d.month - 1]} {d.year}",
    "upper_wkd_d_mon_yyyy": lambda d: f"{WEEKDAYS[d.weekday()][:3].upper()} {d.day} {MONTHS[d.month - 1][:3].upper()} {d.year}",
    "ordinal_of_month_yyyy": lambda d: f"{_ordinal(d.day)} of {MONTHS[d.month - 1]} {d.year}",
    "month_ordinal_yyyy": lambda d: f"{MONTHS[d.month - 1]} {_ordinal(d.day)}, {d.year}",
    "dmy_dots": lambda d: f"{d.day}.{d.month}.{d.year}",
    "dd_mm_yyyy_dashes": lambda d: f"{d.day:02d}-{d.month:02d}-{d.year}",
    "mdy_slashes": lambda d: f"{d.month}/{d.day}/{d.year}",
    "ymd_slashes": lambda d: f"{d.year}/{d.month:02d}/{d.day:02d}",
}
TWO_DIGIT_YEARS = frozenset({"d_mon_yy"})


def _date_chars() -> tuple[str, ...]:
    """Every character a format can write (found by writing every day of the leap year 2000 in every format,
    which meets every month, weekday and day number): space , - . / digits, capitals, small letters."""
    start = datetime.date(2000, 1, 1)
    written = {c for k in range(366) for f in DATE_FORMATS.values() for c in f(start + datetime.timedelta(days=k))}
    others = sorted(c for c in written if not c.isalnum())
    assert others == [" ", ",", "-", ".", "/"], others  # a new format with new punctuation: extend the docs
    return (*others, *"0123456789", *sorted(c for c in written if c.isupper()),
            *sorted(c for c in written if c.islower()))


DATE_SRC_VOCAB = (*SRC_SPECIALS, *_date_chars())
DATE_TGT_VOCAB = (*TGT_SPECIALS, *"0123456789-")


def _symbols(vocab: int) -> list[str]:
    """Names of symbols 1..vocab: letters while they last, else zero-padded numbers (sorting names sorts ids)."""
    if vocab <= 26:
        return [chr(ord("a") + k) for k in range(vocab)]
    width = len(str(vocab))
    return [f"{k:0{width}d}" for k in range(1, vocab + 1)]


def _pad(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of ids as a (B, longest) int64 tensor padded with 0, and the (B, longest) bool mask of the rows."""
    longest = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), longest, dtype=torch.long)
    mask = torch.zeros(len(rows), longest, dtype=torch.bool)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, :len(r)] = True
    return ids, mask


def _accuracies(right: torch.Tensor, mask: torch.Tensor, correct: torch.Tensor) -> dict[str, float]:
    """sequence_accuracy and token_accuracy from :func:`sequence_scores`."""
    return {"sequence_accuracy": float(correct.float().mean()),
            "token_accuracy": float(right.sum()) / max(int(mask.sum()), 1)}


def sequence_scores(p, outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Score the prediction for target ``p.target`` (read from the output ``p.outputs`` trains against it, else
    the output of the target's name), with the conventions of this module's docstring: (B, T) bool: position
    predicted right and counted; (B, T) bool: the target mask; (B,) bool: the example answered exactly."""
    pred = outputs[getattr(p, "outputs", {}).get(p.target, p.target)]
    if pred.is_floating_point():
        pred = pred.argmax(-1)  # (B, T', V) logits -> (B, T') ids
    tgt, mask = batch[p.target], batch[f"{p.target}.mask"]
    steps = tgt.shape[1]
    if pred.shape[1] < steps:  # missing positions never match (-1 is no id)
        pred = torch.cat([pred, pred.new_full((pred.shape[0], steps - pred.shape[1]), -1)], dim=1)
    right = (pred[:, :steps] == tgt) & mask
    return right, mask, (right | ~mask).all(dim=1)


def sequence_metrics(p, outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> dict[str, float]:
    """sequence_accuracy and token_accuracy of the prediction for target ``p.target``."""
    return _accuracies(*sequence_scores(p, outputs, batch))


def tally_by_length(lengths: torch.Tensor, correct: torch.Tensor) -> dict[int, tuple[int, int]]:
    """(B,) lengths and (B,) bool answered exactly -> {length: (exact, examples)}, sorted by length."""
    out: dict[int, list[int]] = {}
    for n, ok in zip(lengths.tolist(), correct.tolist()):
        entry = out.setdefault(int(n), [0, 0])
        entry[0] += int(ok)
        entry[1] += 1
    return {n: (c, t) for n, (c, t) in sorted(out.items())}


def decode_ids(task_name: str, vocab: dict[str, list[str]], name: str, ids, separator: str) -> str:
    """The symbols of ``ids`` (a 1-D tensor or list) in ``vocab[name]`` up to the first id 0 (``<pad>`` of a
    source, ``<eos>`` of a target), joined with ``separator``."""
    if name not in vocab:
        raise KeyError(f"task '{task_name}' has no sequence '{name}' (it has {', '.join(vocab)})")
    out = []
    for i in (ids.tolist() if isinstance(ids, torch.Tensor) else ids):
        if int(i) == 0:  # <pad> in the source, <eos> in the target
            break
        out.append(vocab[name][int(i)])
    return separator.join(out)


class Seq2SeqTask(Task):
    """Shared parts: sizes, vocabularies, decoding to text and the sequence/token metrics."""

    separator = " "

    def __init__(self, p):
        super().__init__(p)
        if p.input == p.target:
            raise TaskError(f"task '{self.name}': input and target must have different names (both '{p.input}')")

    @abc.abstractmethod
    def source_vocab(self) -> list[str]:
        """The input's vocabulary, id -> string (id 0 is <pad>)."""

    @abc.abstractmethod
    def target_vocab(self) -> list[str]:
        """The target's vocabulary, id -> string (ids 0 and 1 are <eos> and <bos>)."""

    def vocab(self) -> dict[str, list[str]]:
        """id -> string for the input and the target, e.g. {"src": ["<pad>", "a", ...], "tgt": ["<eos>", "<bos>", ...]}."""
        return {self.p.input: self.source_vocab(), self.p.target: self.target_vocab()}

    def decode(self, name: str, ids) -> str:
        """The symbols of ``ids`` (a 1-D tensor or list) up to the first ``<pad>`` (input) or ``<eos>`` (target)."""
        return decode_ids(self.name, self.vocab(), name, ids, self.separator)

    def sizes(self):
        p = self.p
        return {"inputs": {p.input: VType(len(self.source_vocab()), p.input, index=True)},
                "targets": {p.target: VType(len(self.target_vocab()), p.target, index=True)}}

    def _batch(self, sources: list[list[int]], answers: list[list[int]]) -> dict[str, torch.Tensor]:
        """Source ids (no padding) and answer target ids (no eos) as the padded batch with masks."""
        p = self.p
        src, src_mask = _pad(sources)
        tgt, tgt_mask = _pad([a + [EOS] for a in answers])
        return {p.input: src, f"{p.input}.mask": src_mask, p.target: tgt, f"{p.target}.mask": tgt_mask}

    def _scores(self, outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, T) bool: position predicted right and counted; (B, T) bool: the target mask; (B,) bool: the
        example answered exactly."""
        return sequence_scores(self.p, outputs, batch)

    def metrics(self, outputs, batch):
        return _accuracies(*self._scores(outputs, batch))

    def accuracy_by_length(self, outputs, batch) -> dict[int, tuple[int, int]]:
        """Source length -> (examples answered exactly, examples), for an accuracy-by-length plot."""
        return tally_by_length(batch[f"{self.p.input}.mask"].sum(dim=1), self._scores(outputs, batch)[2])


class _SymbolTask(Seq2SeqTask):
    """Random symbols 1..vocab (source ids), shown to the target as ids 2..vocab+1."""

    def source_vocab(self):
        return [*SRC_SPECIALS, *_symbols(self.p.vocab)]

    def target_vocab(self):
        return [*TGT_SPECIALS, *_symbols(self.p.vocab)]

    def _sources(self, batch: int, gen: torch.Generator) -> list[list[int]]:
        lo, hi = self.p.length
        lengths = torch.randint(lo, hi + 1, (batch,), generator=gen).tolist()
        symbols = torch.randint(1, self.p.vocab + 1, (batch, max(lengths)), generator=gen).tolist()
        return [row[:n] for row, n in zip(symbols, lengths)]


@task("reversal", params={
    "vocab": Param(Int(min=1), 10, "number of distinct symbols"),
    "length": Param(IntRange(min=1), [1, 30], "[min, max] source length, drawn per example"),
    "long": Param(IntRange(min=1), [25, 30], "[min, max] source lengths counted by sequence_accuracy_long"),
    **_io_params(),
}, metrics=("loss", "sequence_accuracy", "sequence_accuracy_long", "token_accuracy"),
    doc="Sequence reversal: read L random symbols, write them in reverse order, then <eos>.")
class Reversal(_SymbolTask):
    def sample(self, batch: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        sources = self._sources(batch, gen)
        return self._batch(sources, [[s + 1 for s in reversed(row)] for row in sources])

    def metrics(self, outputs, batch):
        right, mask, correct = self._scores(outputs, batch)
        lengths = batch[f"{self.p.input}.mask"].sum(dim=1)
        lo, hi = self.p.long
        long = (lengths >= lo) & (lengths <= hi)
        m = _accuracies(right, mask, correct)
        return {"sequence_accuracy": m["sequence_accuracy"],
                "sequence_accuracy_long": float(correct[long].float().mean()) if bool(long.any()) else math.nan,
                "token_accuracy": m["token_accuracy"]}


@task("sort_tokens", params={
    "vocab": Param(Int(min=1), 10, "number of distinct symbols"),
    "length": Param(IntRange(min=1), [1, 10], "[min, max] source length, drawn per example"),
    **_io_params(),
}, metrics=METRICS, doc="Token sorting: read L random symbols, write them sorted ascending (repeats kept), then <eos>.")
class SortTokens(_SymbolTask):
    def sample(self, batch: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        sources = self._sources(batch, gen)
        return self._batch(sources, [[s + 1 for s in sorted(row)] for row in sources])


@task("dates", params={
    "years": Param(IntRange(min=1000), [1950, 2049], "[first, last] year; days are drawn uniformly in between"),
    "formats": Param(NameList(tuple(DATE_FORMATS), "date format"), list(DATE_FORMATS),
                     "the human formats a source is written in, each drawn with equal probability"),
    **_io_params(),
}, metrics=("loss", "sequence_accuracy", "exact_match", "token_accuracy"),
    doc="Date normalisation: read a date written in one of 13 human formats, write it as ISO 8601 YYYY-MM-DD.")
class Dates(Seq2SeqTask):
    separator = ""

    def __init__(self, p):
        super().__init__(p)
        first, last = p.years
        if first > last or first < 1000 or last > 9999:
            raise TaskError(f"task 'dates': years must be [first, last] with 1000 ≤ first ≤ last ≤ 9999, "
                            f"got [{first}, {last}]")
        formats = [p.formats] if isinstance(p.formats, str) else list(p.formats)
        unknown = [f for f in formats if f not in DATE_FORMATS]
        if not formats or unknown:
            raise TaskError(f"task 'dates': unknown format{'s' if len(unknown) > 1 else ''} "
                            f"{', '.join(repr(f) for f in unknown) or '(none given)'}; "
                            f"known formats: {', '.join(DATE_FORMATS)}")
        two_digit = [f for f in formats if f in TWO_DIGIT_YEARS]
        if two_digit and last - first >= 100:
            raise TaskError(f"task 'dates': format '{two_digit[0]}' writes 2-digit years, ambiguous when years "
                            f"[{first}, {last}] spans more than 100 years; narrow years or leave it out of formats")
        self.formats = formats
        self.start = datetime.date(first, 1, 1)
        self.days = (datetime.date(last, 12, 31) - self.start).days + 1
        self.char_ids = {c: i for i, c in enumerate(DATE_SRC_VOCAB)}
        self.digit_ids = {c: i for i, c in enumerate(DATE_TGT_VOCAB)}

    def source_vocab(self):
        return list(DATE_SRC_VOCAB)

    def target_vocab(self):
        return list(DATE_TGT_VOCAB)

    def sample(self, batch: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        offsets = torch.randint(0, self.days, (batch,), generator=gen).tolist()
        picks = torch.randint(0, len(self.formats), (batch,), generator=gen).tolist()
        sources, answers = [], []
        for offset, pick in zip(offsets, picks):
            day = self.start + datetime.timedelta(days=offset)
            sources.append([self.char_ids[c] for c in DATE_FORMATS[self.formats[pick]](day)])
            answers.append([self.digit_ids[c] for c in day.isoformat()])
        return self._batch(sources, answers)

    def metrics(self, outputs, batch):
        m = super().metrics(outputs, batch)
        return {"sequence_accuracy": m["sequence_accuracy"], "exact_match": m["sequence_accuracy"],
                "token_accuracy": m["token_accuracy"]}
