"""pretrain --data "a:W b:W": a weighted mixture of prepared folders, recorded in the manifest, resumed exactly."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from babyllama.errors import BabyLlamaError
from conftest import pretrain_tiny, resume_matches_whole


@pytest.fixture(scope="module")
def second_folder(prepared_512, tinystories, tmp_path_factory):
    """The validation stories prepared with the first folder's tokenizer: a second, different corpus."""
    from babyllama.data.prepare import PrepareConfig, prepare

    out = tmp_path_factory.mktemp("mix") / "valid-512"
    prepare(PrepareConfig(data=str(tinystories / "valid.txt"), tokenizer=str(prepared_512), out=str(out),
                          valid_fraction=0.05, disable_tqdm=True), log=lambda _: None)
    return out


def test_a_mixture_trains_is_recorded_and_resumes_bit_identically(prepared_512, second_folder, tmp_path):
    spec = f"{prepared_512}:0.75 {second_folder}:0.25"
    whole = pretrain_tiny(spec, tmp_path, "whole", max_steps=10, save_steps=4,
                          save_total_limit=None)
    manifest = json.loads((whole / "manifest.json").read_text())
    mixture = manifest["data"]["mixture"]
    assert [m["path"] for m in mixture] == [str(prepared_512), str(second_folder)]
    assert [m["share"] for m in mixture] == pytest.approx([0.75, 0.25], abs=1e-3)

    assert resume_matches_whole(whole, 4, tmp_path)


def test_the_mixture_changes_what_is_trained_on(prepared_512, second_folder, tmp_path):
    alone = pretrain_tiny(prepared_512, tmp_path, "alone", max_steps=3)
    mixed = pretrain_tiny(f"{prepared_512}:0.5 {second_folder}:0.5", tmp_path, "mixed",
                          max_steps=3)
    a = load_file(str(alone / "model" / "model.safetensors"))
    b = load_file(str(mixed / "model" / "model.safetensors"))
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_a_mixture_needs_one_tokenizer(prepared_512, tinystories, tmp_path):
    from babyllama.data.prepare import PrepareConfig, prepare

    other = tmp_path / "other-300"
    prepare(PrepareConfig(data=str(tinystories / "valid.txt"), vocab_size=300, out=str(other), valid_fraction=0.05,
                          disable_tqdm=True), log=lambda _: None)
    with pytest.raises(BabyLlamaError, match="another tokenizer"):
        pretrain_tiny(f"{prepared_512}:0.5 {other}:0.5", tmp_path, "bad", max_steps=2)
