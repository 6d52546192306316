"""Nothing users have breaks: every gallery checkpoint computes exactly (bit for bit) the outputs it computed
when the golden files were written (``tests/gallery_golden.py``), on the same fixed batch."""
from __future__ import annotations

import pytest
import torch
from gallery_golden import GOLDEN, names, outputs
from safetensors.torch import load_file


def test_every_entry_has_a_golden_file():
    assert names() and sorted(p.stem for p in GOLDEN.glob("*.safetensors")) == names()


@pytest.mark.parametrize("name", names())
def test_gallery_entry_outputs_are_unchanged(name):
    want = load_file(str(GOLDEN / f"{name}.safetensors"))
    got = outputs(name)
    assert sorted(got) == sorted(want)
    for key, value in want.items():
        assert got[key].dtype == value.dtype and got[key].shape == value.shape, key
        assert torch.equal(got[key], value), f"{name}: {key} differs by {(got[key].double() - value.double()).abs().max()}"
