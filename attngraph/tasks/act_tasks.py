"""Three tasks of Graves 2016 (Adaptive Computation Time for Recurrent Neural Networks, arXiv 1603.08983):
parity (section 3.1), logic (section 3.2) and addition (section 3.3). Each presents a static vector per
step that takes several computation steps to resolve. For parity and logic the target is one bit per
step, trained with ``bce`` on a logit; the batch keys are named by ``input`` (default ``x``) and
``target`` (default ``y``), with ``x.mask`` (B, T) marking each example's valid steps and ``y.mask``
(B, T) the steps the loss and metrics count (the same steps). Predictions are logits, a bit is read as 1
where the logit is > 0 (sigmoid > 0.5). Addition's targets are classes, one target per digit of the sum
(its own section below).

``parity`` (3.1): "The input vectors had 64 elements, of which a random number from 1 to 64 were randomly
set to 1 or −1 and the rest were set to 0. The corresponding target was 1 if there was an odd number of
ones and 0 if there was an even number of ones. Each training sequence consisted of a single input and
target vector."

  input ``(B, 1, size)``, a sequence of one step (a model loops over it like any sequence); target
  ``(B, 1, 1)``; both masks ``(B, 1)`` all true.

  - n is drawn uniformly from ``ones`` = [lo, hi] per example (default [1, size]);
  - n entries are each +1 or −1 with probability 1/2, the other ``size − n`` are 0;
  - target 1 if the number of **+1** entries is odd, else 0. The −1 entries are the zero bits of the n
    "binary bits for which parity must be calculated" (the paper's difficulty, Figure 6, is n, the number
    of bits in the vector); the 0 entries are positions that hold no bit;
  - ``placement: random`` (default) puts the n entries at n distinct positions drawn uniformly,
    ``prefix`` at positions ``0 .. n−1``. The paper's text does not say which positions hold the n
    entries (its Figure 3 is an image); ``random`` is our choice, the reading of "randomly set" that
    PonderNet (Banino et al. 2021), which repeats the task, and its public re-implementations follow.
    With one seed both placements draw the same n and the same signs: the ``random`` vector is a
    permutation of the ``prefix`` one.

  Metrics: ``accuracy``, the fraction of examples whose bit is right (1 − the paper's error rate).
  PonderNet's extrapolation setting (section 3.1: vectors of 96 elements, trained with 1–48 non-zero
  entries, evaluated with 49–96) is ``size: 96, ones: [1, 48], eval: {ones: [49, 96]}``.

  Worked example (the test checks it)::

      size 8: x = [0, +1, 0, -1, +1, 0, +1, 0]  ->  three +1 entries (odd)  ->  y = 1

``logic`` (3.2): "Each input sequence consists of a random number from 1 to 10 of size 102 input
vectors. The first two elements of each input represent a pair of binary numbers; the remainder of the
vector is divided up into 10 chunks of size 10. The first B chunks, where B is a random number from 1 to
10, contain one-hot representations of randomly chosen numbers between 1 and 10; each of these numbers
correspond to an index into the subset of binary logic gates whose truth tables are listed in Table 1.
The remaining 10 − B chunks were zeroed [...]. The binary target b_{B+1} for each input is the truth
value yielded by recursively applying the B binary gates in the vector to the two initial bits b1, b0.
That is for 1 ≤ b [sic: i] ≤ B, b_{i+1} = T_i(b_i, b_{i−1}) (21) where T_i(.,.) is the truth table indexed by
chunk i in the input vector. For the first vector in the sequence, the two input bits b0, b1 were
randomly chosen to be false (0) or true (1) and assigned to the first two elements in the vector. For
subsequent vectors, only b1 was random, while b0 was implicitly equal to the target bit from the
previous vector (for the purposes of calculating the current target bit), but was always set to zero in
the input vector."

  Table 1 (P, Q = the gate's first and second argument; 1 = T)::

      P Q | NOR xq ABJ XOR NAND AND XNOR if/then then/if OR
      1 1 |  0   0  0   0   0    1   1     1       1     1
      1 0 |  0   0  1   1   1    0   0     0       1     1
      0 1 |  0   1  0   1   1    0   0     1       0     1
      0 0 |  1   0  0   0   1    0   1     1       1     0

  input ``(B, T, 102)``, target ``(B, T, 1)``, T = the batch's longest sequence; shorter sequences are
  padded with zero vectors and zero targets, ``x.mask`` = ``y.mask`` = the L valid steps (L drawn from
  ``length`` per example, default [1, 10]).

  - element 0: b0 at step 0; 0 at every later step (b0 is then the previous step's target, not shown);
  - element 1: b1, a fresh random bit at every step;
  - elements ``2 + 10·k .. 11 + 10·k``: chunk k (k = 0 .. 9). Chunks ``0 .. B−1`` are one-hot, chunks
    ``B .. 9`` zero; B is drawn from ``gates`` (default [1, 10]) per step, each gate uniformly from the 10
    of Table 1, independently;
  - target: b_{B+1} from equation (21), the gate of chunk k applied as ``b_{k+2} = T(b_{k+1}, b_k)``, the
    newer bit as P, the older as Q.

  Choices where the paper is silent: the gate "number" j (1..10) is the j-th column of Table 1 (NOR = 1
  .. OR = 10) and its one-hot sets element j − 1 of the chunk; B, the gates and the bits are uniform and
  independent, B per vector (its Figure 10 counts "the number of logic gates in each input vector").

  Metrics: ``accuracy``, the fraction of sequences with every valid step right (the paper's sequence
  error rate is 1 − accuracy), and ``bit_accuracy``, the fraction of valid steps right.

  Worked example, a 2-step sequence (the test checks it)::

      step 0: x[0] = b0 = 1, x[1] = b1 = 0, chunks ABJ, if/then (x[4] = x[19] = 1)
              b2 = ABJ(b1, b0) = ABJ(0, 1) = 0;  b3 = if/then(b2, b1) = if/then(0, 0) = 1  ->  y = 1
      step 1: x[0] = 0 (b0 = 1, the previous target), x[1] = b1 = 0, chunks xq, NOR (x[3] = x[12] = 1)
              b2 = xq(b1, b0) = xq(0, 1) = 1;  b3 = NOR(b2, b1) = NOR(1, 0) = 0  ->  y = 0

``addition`` (3.3): "The addition task presents the network with a input sequence of 1 to 5 size 50 input
vectors. Each vector represents a D digit number, where D is drawn randomly from 1 to 5, and each digit is
drawn randomly from 0 to 9. The first 10D elements of the vector are a concatenation of one-hot encodings
of the D digits in the number, and the remainder of the vector is set to 0. The required output is the
cumulative sum of all inputs up to the current one, represented as a set of 6 simultaneous
classifications for the 6 possible digits in the sum. There is no target for the first vector in the
sequence, as no sums have yet been calculated. [...] Each classification is modelled by a size 11
softmax, where the first 10 classes are the digits and the 11th is a special marker used to indicate that
the number is complete." Its loss was "the joint cross-entropy of all 6 targets at each time-step where
targets were present"; Figure 11: unused input digits "are represented by a vector of 10 zeros", the 11th
class "is used for digits beyond the end of the target number".

  input ``(B, T, 10·max_digits)`` float32; targets ``digit0`` .. ``digit{max_digits}`` (the names are the
  ``target`` prefix, default ``digit``, and k), each ``(B, T)`` int64 class indices in [0, 11): ``digitk``
  is the digit of 10^k of the cumulative sum, or 10 (:data:`NO_DIGIT`, the paper's 11th class) past the
  sum's most significant digit. T = the batch's longest sequence; L is drawn uniformly from
  [1, ``max_length``] per example; ``x.mask`` marks the L valid steps, each ``digitk.mask`` the valid
  steps but the first (the paper: no target for the first vector), so a sequence of one vector has no
  counted step. Train each target with ``loss: cross_entropy`` on 11 logits.

  - D is drawn uniformly from [1, ``max_digits``] per vector and each of its D digits uniformly from 0..9,
    independently, as the paper's text says: a number's leading digit may be 0 (D = 3 digits 5 9 0 is
    the number 95, shown with three digits, unlike an unused slot, which is all zero);
  - **digit order, least significant first** (our choice: the paper's text does not say, its Figure 11 is
    an image), in the input and in the targets alike: input slot k, elements ``10k .. 10k + 9``, is the
    one-hot of the digit of 10^k (element ``10k + d`` is 1 for digit d), slots ``D .. max_digits − 1``
    are zero; target ``digitk`` is the sum's digit of 10^k;
  - the sum is written without leading zeros: its digits up to the most significant non-zero one, then
    class 10; a sum of 0 is the one digit 0 (``digit0`` = 0, every other digit 10);
  - padded steps hold zero inputs and class 0 (not counted); the first step's targets hold the first
    number (the sum so far), not counted either.

  Sizes: ``max_length`` 5 and ``max_digits`` 5 are the paper's (inputs of 50, sums of 6 digits).
  ``max_digits`` changes both widths: the input has 10·max_digits elements and the sum max_digits + 1
  digits (targets ``digit0`` .. ``digit{max_digits}``), which the spec must declare; a run with
  max_digits (or max_length) below 5 is a downsized version of the paper's task and should say so in its
  name and report. ``max_length`` may be at most the number of max_digits-digit numbers whose sum always
  fits in max_digits + 1 digits, ⌊(10^(max_digits+1) − 1) / (10^max_digits − 1)⌋ (10; 11 for one digit).

  Metrics: ``accuracy``, the fraction of sequences whose every digit at every counted step is right (the
  argmax of the digit's logits is its class); the paper's sequence error rate ("the fraction of examples
  where any mistakes were made") is 1 − accuracy. A sequence of one vector has no output to get wrong
  and counts as right, as in that rate (with max_length 5, a fifth of the sequences). ``digit_accuracy``,
  the fraction of counted digit predictions that are right (1.0 for a batch that counts none). Each
  target is read from the output trained against it (the outputs are named like the targets in the
  examples).

  Worked example (the test checks it), max_digits 5, ``*`` = class 10::

      step 0: 427 as D = 3: slots 7 2 4 - - (x[7] = x[12] = x[24] = 1)    sum 427     ->  7 2 4 * * *  (not counted)
      step 1: 95 as D = 3: slots 5 9 0 - - (x[5] = x[19] = x[20] = 1)     sum 522     ->  2 2 5 * * *
      step 2: 99999 as D = 5: slots 9 9 9 9 9 (x[9], x[19] .. x[49] = 1)   sum 100521  ->  1 2 5 0 0 1
"""
from __future__ import annotations

import torch

from ..components.base import VType
from ..spec.params import Choice, Int, IntRange, Param
from .base import Task, TaskError, io_params, task

GATES = ("NOR", "xq", "ABJ", "XOR", "NAND", "AND", "XNOR", "if/then", "then/if", "OR")
CHUNKS = 10  # gate chunks per logic vector
CHUNK = len(GATES)  # elements per chunk: a one-hot over the gates
LOGIC_SIZE = 2 + CHUNKS * CHUNK  # 102
DIGITS = 5  # addition: the paper's (and the largest) max_digits
NO_DIGIT = 10  # addition: the 11th class, a sum digit past the sum's most significant digit
DIGIT_CLASSES = 11

# Table 1, one row per gate, its value for (P, Q) = (1, 1), (1, 0), (0, 1), (0, 0) as in the paper.
_TABLE_1 = (
    (0, 0, 0, 1),  # NOR
    (0, 0, 1, 0),  # xq: not P and Q
    (0, 1, 0, 0),  # ABJ: P and not Q
    (0, 1, 1, 0),  # XOR
    (0, 1, 1, 1),  # NAND
    (1, 0, 0, 0),  # AND
    (1, 0, 0, 1),  # XNOR
    (1, 0, 1, 1),  # if/then: P implies Q
    (1, 1, 0, 1),  # then/if: Q implies P
    (1, 1, 1, 0),  # OR
)
# TRUTH[g * 4 + 2 * P + Q]: the gate's output (the table's rows reversed to index by 2P + Q).
TRUTH = torch.tensor([row[3 - i] for row in _TABLE_1 for i in range(4)], dtype=torch.long)


def _pair(value) -> tuple[int, int]:
    """An IntRange value ([lo, hi], or one integer n meaning [n, n] when set from Python)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value, value
    lo, hi = value
    return int(lo), int(hi)


def parity_target(x: torch.Tensor) -> torch.Tensor:
    """The parity target of vectors ``(..., size)``: 1.0 where the number of +1 entries is odd."""
    return ((x == 1).sum(-1) % 2).float()


def logic_encode(b0: torch.Tensor, b1: torch.Tensor, gates: torch.Tensor,
                 lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The logic input and target for chosen bits and gates (what ``sample`` draws at random).

    ``b0`` (B,): the first step's b0; ``b1`` (B, T): every step's b1; ``gates`` (B, T, 10): the gate of
    each chunk as an index into :data:`GATES` (0 = NOR .. 9 = OR), -1 for a zero chunk (used chunks come
    first); ``lengths`` (B,): valid steps. Returns x (B, T, 102) and y (B, T, 1) float32, zero on
    padded steps.
    """
    batch, steps = b1.shape
    valid = torch.arange(steps)[None, :] < lengths[:, None]  # (B, T)
    used = gates >= 0  # (B, T, 10)
    x = torch.zeros(batch, steps, LOGIC_SIZE)
    x[:, 0, 0] = b0.float()
    x[:, :, 1] = b1.float()
    onehot = torch.zeros(batch, steps, CHUNKS, CHUNK)
    onehot.scatter_(3, gates.clamp_min(0)[..., None], 1.0)
    x[:, :, 2:] = (onehot * used[..., None]).reshape(batch, steps, CHUNKS * CHUNK)
    x = x * valid[:, :, None]
    # Every step's gates applied for both values its b0 may take (T_i on (B, T, 2) at once); then the
    # steps are chained, each reading the outcome for the b0 the previous step carried over.
    older = torch.tensor([0, 1]).expand(batch, steps, 2)  # b_{i-1}, starting at b0 = 0 or 1
    newer = b1.long()[:, :, None].expand(batch, steps, 2)  # b_i, starting at b1
    for k in range(CHUNKS):
        g = gates[:, :, k, None]  # (B, T, 1)
        out = TRUTH[g.clamp_min(0) * 4 + 2 * newer + older]  # b_{i+1} = T_i(b_i, b_{i-1})
        older, newer = torch.where(g >= 0, newer, older), torch.where(g >= 0, out, newer)
    y = torch.zeros(batch, steps, 1)
    carried = b0.long()  # b0 of the current step: the first step's bit, then the previous target
    for t in range(steps):
        carried = newer[:, t].gather(1, carried[:, None])[:, 0]
        y[:, t, 0] = carried.float()
    return x, y * valid[:, :, None]


def addition_max_length(max_digits: int) -> int:
    """The most numbers of ``max_digits`` digits whose sum always fits in ``max_digits + 1`` digits."""
    return (10 ** (max_digits + 1) - 1) // (10 ** max_digits - 1)


def addition_encode(digits: torch.Tensor, counts: torch.Tensor, lengths: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """The addition input and targets for chosen numbers (what ``sample`` draws at random).

    ``digits`` (B, T, max_digits) int: each vector's digits, least significant first (slots at or past its
    count are ignored); ``counts`` (B, T): D, the digits each vector shows; ``lengths`` (B,): valid steps.
    Returns x (B, T, 10·max_digits) float32, zero on padded steps, and the sum digits (B, T, max_digits + 1)
    int64: digit k of the cumulative sum (least significant first), :data:`NO_DIGIT` past its most
    significant digit, 0 on padded steps. The first step is encoded like any other (the task masks it).
    """
    batch, steps, width = digits.shape
    valid = torch.arange(steps)[None, :] < lengths[:, None]  # (B, T)
    used = (torch.arange(width) < counts[..., None]) & valid[..., None]  # (B, T, max_digits)
    digits = digits.long() * used
    onehot = torch.zeros(batch, steps, width, 10)
    onehot.scatter_(3, digits[..., None], 1.0)
    x = (onehot * used[..., None]).reshape(batch, steps, width * 10)
    powers = 10 ** torch.arange(width + 1)  # int64
    sums = (digits * powers[:width]).sum(-1).cumsum(1)  # (B, T): the cumulative sum
    places = sums[..., None] // powers % 10  # (B, T, max_digits + 1)
    present = (sums[..., None] >= powers) | (powers == 1)  # a sum of 0 is the one digit 0
    out = torch.where(present, places, NO_DIGIT)
    return x, torch.where(valid[..., None], out, 0)


def _step_correct(task: Task, outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]):
    """(right, counted): (B, T) bools, the step's bit predicted right, the step counted (``y.mask``)."""
    p = task.p
    logits = outputs[p.outputs[p.target]]  # (B, T, 1)
    right = ((logits > 0).float() == batch[p.target]).all(-1)
    return right, batch[f"{p.target}.mask"]


@task("parity", params={
    "size": Param(Int(min=1), 64, "elements per input vector"),
    "ones": Param(IntRange(min=1), None, "[min, max] number n of non-zero (±1) entries, drawn per example "
                  "(default [1, size])"),
    "placement": Param(Choice("random", "prefix"), "random", "where the n entries go: n random distinct "
                       "positions, or the first n"),
    **io_params("x", "y"),
}, metrics=("loss", "accuracy"),
    doc="Graves 2016 parity: one vector of ±1 and 0 entries; is the number of +1 entries odd?")
class Parity(Task):
    def __init__(self, p):
        super().__init__(p)
        self.ones = (1, p.size) if p.ones is None else _pair(p.ones)
        lo, hi = self.ones
        if not 1 <= lo <= hi <= p.size:
            raise TaskError(f"task 'parity': ones [{lo}, {hi}] must lie within [1, size] = [1, {p.size}] "
                            f"with min ≤ max: the number of non-zero entries of a vector of {p.size} elements")

    def sizes(self):
        p = self.p
        return {"inputs": {p.input: VType(p.size, p.input)}, "targets": {p.target: VType(1, p.target)}}

    def sample(self, batch: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        p = self.p
        lo, hi = self.ones
        n = torch.randint(lo, hi + 1, (batch,), generator=gen)  # (B,)
        signs = torch.where(torch.rand(batch, p.size, generator=gen) < 0.5, 1.0, -1.0)  # (B, size)
        x = torch.where(torch.arange(p.size)[None, :] < n[:, None], signs, 0.0)  # (B, size): prefix placement
        if p.placement == "random":  # position j takes the entry of rank j in a random order
            rank = torch.rand(batch, p.size, generator=gen).argsort(1).argsort(1)
            x = torch.gather(x, 1, rank)
        y = parity_target(x)  # (B,)
        every = torch.ones(batch, 1, dtype=torch.bool)
        return {p.input: x[:, None, :], f"{p.input}.mask": every, p.target: y[:, None, None],
                f"{p.target}.mask": every.clone()}

    def metrics(self, outputs, batch):
        right, counted = _step_correct(self, outputs, batch)
        return {"accuracy": float((right | ~counted).all(1).float().mean())}

    def difficulty(self, batch):
        """What ponder time is plotted against (Graves 2016, Fig. 5): each vector's number of non-zero entries
        -> (label, values (B, 1), valid (B, 1))."""
        x = batch[self.p.input]
        return "non-zero entries", (x != 0).sum(-1), batch[f"{self.p.input}.mask"]


@task("logic", params={
    "length": Param(IntRange(min=1), [1, 10], "[min, max] vectors per sequence, drawn per example"),
    "gates": Param(IntRange(min=1), [1, 10], "[min, max] gates B per vector (at most 10), drawn per vector"),
    **io_params("x", "y"),
}, metrics=("loss", "accuracy", "bit_accuracy"),
    doc="Graves 2016 logic: per vector, apply B binary logic gates recursively to two bits, carrying the result.")
class Logic(Task):
    def __init__(self, p):
        super().__init__(p)
        lo, hi = self.length = _pair(p.length)
        if not 1 <= lo <= hi:
            raise TaskError(f"task 'logic': length [{lo}, {hi}] must be [min, max] with 1 ≤ min ≤ max: "
                            f"the number of vectors in a sequence")
        lo, hi = self.gates = _pair(p.gates)
        if not 1 <= lo <= hi <= CHUNKS:
            raise TaskError(f"task 'logic': gates [{lo}, {hi}] must lie within [1, {CHUNKS}] with min ≤ max: "
                            f"the number of gates in a vector of {CHUNKS} gate chunks")

    def sizes(self):
        p = self.p
        return {"inputs": {p.input: VType(LOGIC_SIZE, p.input)}, "targets": {p.target: VType(1, p.target)}}

    def sample(self, batch: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        p = self.p
        lengths = torch.randint(self.length[0], self.length[1] + 1, (batch,), generator=gen)  # (B,)
        steps = int(lengths.max())
        counts = torch.randint(self.gates[0], self.gates[1] + 1, (batch, steps), generator=gen)  # (B, T): B
        chosen = torch.randint(0, len(GATES), (batch, steps, CHUNKS), generator=gen)
        gates = torch.where(torch.arange(CHUNKS) < counts[..., None], chosen, -1)  # (B, T, 10)
        b0 = torch.randint(0, 2, (batch,), generator=gen)
        b1 = torch.randint(0, 2, (batch, steps), generator=gen)
        valid = torch.arange(steps)[None, :] < lengths[:, None]  # (B, T)
        x, y = logic_encode(b0, b1, gates, lengths)
        return {p.input: x, f"{p.input}.mask": valid, p.target: y, f"{p.target}.mask": valid.clone()}

    def metrics(self, outputs, batch):
        right, counted = _step_correct(self, outputs, batch)
        return {"accuracy": float((right | ~counted).all(1).float().mean()),
                "bit_accuracy": int((right & counted).sum()) / max(int(counted.sum()), 1)}

    def difficulty(self, batch):
        """Each vector's number of gates B (Graves 2016, Fig. 9) -> (label, values (B, T), valid (B, T))."""
        x = batch[self.p.input]
        gates = x[..., 2:].reshape(*x.shape[:2], CHUNKS, CHUNK).sum(-1).gt(0).sum(-1)  # a used chunk holds a one
        return "logic gates per vector", gates, batch[f"{self.p.input}.mask"]


@task("addition", params={
    "max_length": Param(Int(min=1), 5, "numbers per sequence: L drawn per example from [1, max_length] (at most "
                        "10; 11 with max_digits 1)"),
    "max_digits": Param(Int(min=1, max=DIGITS), DIGITS, "digits per number: D drawn per number from [1, "
                        "max_digits]; input width 10·max_digits, sums of max_digits + 1 digits (targets "
                        "<target>0 .. <target>{max_digits}); below 5 the task is downsized"),
    **io_params("x", "digit", target_doc="the prefix of the target names: <target>0 .. <target>{max_digits}, "
                "the sum's digits, least significant first"),
}, metrics=("loss", "accuracy", "digit_accuracy"),
    doc="Graves 2016 addition: a sequence of 1-5 numbers of 1-5 one-hot digits; at each step after the first, "
        "the digits of the cumulative sum.")
class Addition(Task):
    def __init__(self, p):
        super().__init__(p)
        if not 1 <= p.max_digits <= DIGITS:  # the spec's schema says so too; this guards the Python API
            raise TaskError(f"task 'addition': max_digits {p.max_digits} must lie within [1, {DIGITS}]: the "
                            f"digits of a number (the paper's input holds {DIGITS})")
        limit = addition_max_length(p.max_digits)
        if not 1 <= p.max_length <= limit:
            raise TaskError(f"task 'addition': max_length {p.max_length} must lie within [1, {limit}]: the sum of "
                            f"up to max_length numbers of max_digits = {p.max_digits} digits must fit in "
                            f"max_digits + 1 = {p.max_digits + 1} digits")
        self.targets = [f"{p.target}{k}" for k in range(p.max_digits + 1)]

    def sizes(self):
        p = self.p
        return {"inputs": {p.input: VType(10 * p.max_digits, p.input)},
                "targets": {name: VType(DIGIT_CLASSES, name, index=True) for name in self.targets}}

    def sample(self, batch: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        p = self.p
        lengths = torch.randint(1, p.max_length + 1, (batch,), generator=gen)  # (B,)
        steps = int(lengths.max())
        counts = torch.randint(1, p.max_digits + 1, (batch, steps), generator=gen)  # (B, T): D
        digits = torch.randint(0, 10, (batch, steps, p.max_digits), generator=gen)
        x, sums = addition_encode(digits, counts, lengths)
        valid = torch.arange(steps)[None, :] < lengths[:, None]  # (B, T)
        counted = valid & (torch.arange(steps) > 0)  # no target at the first step
        out = {p.input: x, f"{p.input}.mask": valid}
        for k, name in enumerate(self.targets):
            out[name] = sums[..., k].contiguous()
            out[f"{name}.mask"] = counted.clone()
        return out

    def metrics(self, outputs, batch):
        p = self.p  # p.outputs: target -> the output trained against it (set when the task section is bound)
        hit = torch.stack([outputs[p.outputs[name]].argmax(-1) == batch[name] for name in self.targets])  # (D, B, T)
        counted = torch.stack([batch[f"{name}.mask"] for name in self.targets])
        n = int(counted.sum())
        return {"accuracy": float((hit | ~counted).all(0).all(1).float().mean()),  # every counted digit, per sequence
                "digit_accuracy": int((hit & counted).sum()) / n if n else 1.0}

    def difficulty(self, batch):
        """Each number's digit count D (Graves 2016 plots ponder time per input digit) -> (label, values (B, T),
        valid (B, T))."""
        x = batch[self.p.input]
        digits = x.reshape(*x.shape[:2], self.p.max_digits, 10).sum(-1).gt(0).sum(-1)  # a used slot holds a one
        return "digits per number", digits, batch[f"{self.p.input}.mask"]
