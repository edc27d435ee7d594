"""The translator shipped in assets/: present, small, made for the embedded model, and actually used."""

from __future__ import annotations

import json

import torch

from engine.explorer import default_translator_path
from engine.models import DEFAULT_MODEL_ID
from engine.translator import load_translator, passage_embeddings


def test_shipped_translator_fits_the_embedded_model(loaded) -> None:
    path = default_translator_path(DEFAULT_MODEL_ID)
    assert path is not None and path.is_file(), "assets/ must hold the translator for the default model"
    assert path.stat().st_size <= 10 * 1024 * 1024
    assert default_translator_path("some-other-model") is None
    sidecar = json.loads(path.with_suffix(".json").read_text())
    training = sidecar["training"]
    # Distilled from SQuAD dev passages (never the sample corpus or the evaluated PopQA / NQ-Swap rows), by `prag train`.
    assert training["objective"] == "distill" and training["examples_seen"] >= 1000
    assert "squad-dev.jsonl" in training["augment"]["command"] and training["command"].startswith("prag train")
    assert training["config"]["rank"] == sidecar["rank"] and sidecar["first_layer"] == training["config"]["first_layer"] == 15
    translator = load_translator(path, loaded.arch)
    # Trained, not a fresh init: different passages give different, non-trivial LoRAs.
    embeddings = passage_embeddings(loaded, ["Velmora is a hill town in Drasketh.", "The Nile flows north into the sea."])
    with torch.no_grad():
        first, second = translator.adapters(embeddings)
        deltas = [torch.cat([(b @ a).flatten() for a, b in adapter.pairs.values()]) for adapter in (first, second)]
    assert all(d.norm() > 0.1 for d in deltas) and (deltas[0] - deltas[1]).norm() > 0.01
