"""LoRA-as-data maths: norms, merges, files, shape checks (tiny shapes, no model)."""

from __future__ import annotations

import pytest
import torch

from engine.adapters import Adapter, check_adapter, load_adapter, lora_norm, merge_mean, merge_sum, random_adapter, save_adapter
from engine.errors import ArtifactError
from engine.models import ModelArch

ARCH = ModelArch("tiny", hidden_size=8, intermediate_size=12, num_layers=2)


def delta(adapter: Adapter, key) -> torch.Tensor:
    a, b = adapter.pairs[key]
    return adapter.scale * b @ a


def test_norm_matches_dense_frobenius():
    ad = random_adapter(ARCH, rank=3, scale=16.0, std=0.3, seed=1)
    for key in ad.pairs:
        assert lora_norm(*ad.pairs[key], ad.scale) == pytest.approx(torch.linalg.norm(delta(ad, key)).item(), rel=1e-5)
    rows = ad.layer_norms()
    assert [r["layer"] for r in rows] == [0, 1]
    assert rows[1]["down_proj"] == pytest.approx(torch.linalg.norm(delta(ad, (1, "down_proj"))).item(), rel=1e-5)


def test_merge_sum_is_sum_of_deltas_with_different_scales():
    one = random_adapter(ARCH, rank=2, scale=16.0, std=0.3, seed=1)
    two = random_adapter(ARCH, rank=2, scale=4.0, std=0.3, seed=2)
    merged = merge_sum([one, two])
    assert merged.rank == 4 and merged.scale == 1.0
    for key in one.pairs:
        torch.testing.assert_close(delta(merged, key), delta(one, key) + delta(two, key))


def test_merge_mean_is_elementwise_mean_of_a_and_b():
    one = random_adapter(ARCH, rank=2, std=0.3, seed=1)
    two = random_adapter(ARCH, rank=2, std=0.3, seed=2)
    merged = merge_mean([one, two])
    key = (0, "gate_proj")
    torch.testing.assert_close(merged.pairs[key][0], (one.pairs[key][0] + two.pairs[key][0]) / 2)
    torch.testing.assert_close(merged.pairs[key][1], (one.pairs[key][1] + two.pairs[key][1]) / 2)
    with pytest.raises(ValueError):
        merge_mean([one, Adapter(two.pairs, scale=2.0)])


def test_save_load_round_trip_keeps_scale_and_meta(tmp_path):
    ad = random_adapter(ARCH, rank=2, scale=16.0, seed=3)
    ad.meta["note"] = "x"
    path = tmp_path / "a.safetensors"
    save_adapter(ad, path)
    back = load_adapter(path)
    assert back.scale == 16.0 and back.meta["note"] == "x"
    for key in ad.pairs:
        torch.testing.assert_close(back.pairs[key][0], ad.pairs[key][0])
        torch.testing.assert_close(back.pairs[key][1], ad.pairs[key][1])
    assert not list(tmp_path.glob(".*.tmp"))


def test_corrupt_adapter_file_is_one_clear_error(tmp_path):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(b"not a safetensors file at all")
    with pytest.raises(ArtifactError, match="corrupt"):
        load_adapter(path)


def test_check_adapter_names_the_sizes_that_disagree():
    other = ModelArch("other", hidden_size=10, intermediate_size=12, num_layers=2)
    with pytest.raises(ArtifactError, match=r"needs A \(r, 10\)"):
        check_adapter(random_adapter(ARCH, rank=2), other)
    check_adapter(random_adapter(ARCH, rank=2), ARCH)
