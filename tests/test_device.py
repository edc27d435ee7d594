"""--device / --dtype: resolution, bad input, and every method in bfloat16 on the CPU.

The GPU smoke test at the end runs where torch sees CUDA (marked `gpu`); on a CPU-only
machine it is skipped, and the bfloat16 tests above it exercise the same dtype plumbing.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch

from engine.adapters import from_state_dict, load_adapter
from engine.config import load_settings
from engine.corpus import load_corpus
from engine.device import Placement, check_names, resolve, resolve_device, resolve_dtype
from engine.errors import InputError
from engine.explorer import AskRequest
from engine.inject import inject
from engine.models import load_model
from engine.offline.encode import OnDemandEncoder, encode_records
from engine.offline.recipes import recipe_config
from engine.offline.records import AugmentRecord, QAPair
from engine.session import open_explorer
from engine.store import LoraStore
from tests.conftest import SHARED_MODEL_CACHE, assert_one_line_error, make_tiny_llama, run_cli

HAS_CUDA = torch.cuda.is_available()
BF16 = Placement("cpu", "bfloat16")
VELMORA_QA = QAPair("What colour is the town hall of Velmora painted?", "saffron yellow", "It is painted saffron yellow.")


# --- resolution ----------------------------------------------------------------------------------------


def test_auto_resolves_to_what_this_machine_has():
    expected = "cuda:0" if HAS_CUDA else "cpu"
    assert resolve_device("auto") == resolve_device(None) == expected
    assert resolve("cpu", "auto") == Placement("cpu", "float32")
    assert resolve_dtype("bf16", "cpu") == "bfloat16" and resolve_dtype("fp16", "cpu") == "float16"


@pytest.mark.parametrize(("device", "dtype", "needle"), [
    ("tpu", "auto", "unknown device 'tpu'"),
    ("cuda:99", "auto", "cuda:99"),
    ("cpu", "int4", "unknown dtype 'int4'"),
])
def test_bad_devices_and_dtypes_are_one_input_error(device, dtype, needle):
    with pytest.raises(InputError, match=needle):
        resolve(device, dtype)


def test_names_are_checked_without_torch_for_the_tui():
    """`prag tui` refuses a misspelt device or dtype before the app opens, without the second torch's import takes."""
    import subprocess
    import sys

    code = ("import sys; from engine.device import check_names; check_names('cuda:1', 'bf16'); check_names(None, None); "
            "print('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
    for device, dtype, needle in (("tpu", "auto", "unknown device"), ("cpu", "int4", "unknown dtype")):
        with pytest.raises(InputError, match=needle):
            check_names(device, dtype)
    assert_one_line_error(run_cli("tui", "--device", "tpu", timeout=120), "unknown device")


def test_a_dtype_the_device_cannot_run_is_one_input_error(monkeypatch):
    import engine.device as device

    monkeypatch.setattr(device, "_runs", lambda where, dtype: False)  # e.g. float16 kernels missing on this device
    with pytest.raises(InputError, match="cpu cannot run float16"):
        resolve_dtype("float16", "cpu")
    assert resolve_dtype("float32", "cpu") == "float32"  # float32 runs everywhere: never probed


@pytest.mark.skipif(HAS_CUDA, reason="checks the message where no CUDA GPU exists")
def test_cuda_on_a_cpu_only_machine_says_so():
    with pytest.raises(InputError, match="no CUDA GPU"):
        resolve_device("cuda")


def test_settings_read_device_and_dtype_from_the_environment(monkeypatch):
    monkeypatch.setenv("PRAG_DEVICE", "cpu")
    monkeypatch.setenv("PRAG_DTYPE", "bfloat16")
    settings = load_settings()
    assert (settings.device, settings.dtype) == ("cpu", "bfloat16")
    assert load_settings({"dtype": "float32"}).dtype == "float32"  # a flag wins


@pytest.mark.parametrize(("flags", "needle"), [
    (["--device", "cuda:99"], "cuda:99"),
    (["--device", "tpu"], "unknown device"),
    (["--dtype", "int4"], "unknown dtype"),
])
def test_cli_refuses_bad_devices_in_one_line(flags, needle):
    result = run_cli("ask", "Who wrote Hamlet?", "--methods", "vanilla", *flags, timeout=120)
    assert_one_line_error(result, needle)


# --- bfloat16 on the CPU -----------------------------------------------------------------------------


def test_bfloat16_injection_matches_peft_within_bfloat16_tolerance():
    from peft import LoraConfig, get_peft_model, get_peft_model_state_dict

    tiny = make_tiny_llama().to(torch.bfloat16)
    peft_model = get_peft_model(copy.deepcopy(tiny), LoraConfig(r=2, lora_alpha=32, lora_dropout=0.0,
                                                                target_modules=["gate_proj", "up_proj", "down_proj"]))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.1)
    ids = torch.tensor([[5, 17, 33, 9, 64, 101, 3]])
    with torch.no_grad():
        expected = peft_model(input_ids=ids).logits.float()
        base = tiny(input_ids=ids).logits.float()
        adapter = from_state_dict(get_peft_model_state_dict(peft_model), scale=32 / 2)
        with inject(tiny, [adapter]):
            got = tiny(input_ids=ids).logits
    assert got.dtype == torch.bfloat16, "activations stay in the model's dtype"
    assert (got.float() - base).abs().max() > 0.05, "the adapter must change the logits"
    torch.testing.assert_close(got.float(), expected, atol=0.05, rtol=0.02)


@pytest.fixture(scope="module")
def bf16_model():
    return load_model(None, SHARED_MODEL_CACHE, placement=BF16)


@pytest.mark.model
def test_bfloat16_model_answers_with_all_six_methods_and_scores(bf16_model, tmp_path, monkeypatch):
    monkeypatch.setenv("PRAG_HOME", str(tmp_path))
    assert bf16_model.placement == BF16
    settings = load_settings({"dtype": "bfloat16", "device": "cpu", "store": tmp_path / "loras", "recipe": "reference"})
    explorer = open_explorer(settings)
    assert explorer.loaded.placement == BF16
    assert next(explorer.translator.parameters()).dtype == torch.float32
    request = AskRequest("What colour is the town hall of Velmora painted?", top_k=1, max_new_tokens=6,
                         encode_missing=True, scores=("saffron yellow", "red"))
    comparison = explorer.ask(request)
    assert comparison.to_json()["dtype"] == "bfloat16" and comparison.to_json()["device"] == "cpu"
    for answer in comparison.answers:
        assert answer.status == "done" and answer.error is None, (answer.method, answer.error)
        assert answer.text.strip(), answer.method
        assert len(answer.scores) == 2 and all(torch.isfinite(torch.tensor(s.logprob)) for s in answer.scores)
    rag = comparison.answer("rag")
    vanilla = comparison.answer("vanilla")
    assert rag.scores[0].logprob > vanilla.scores[0].logprob, "reading the passage makes the gold answer more likely"


@pytest.mark.model
def test_loras_trained_on_a_bfloat16_model_are_stored_in_float32(bf16_model, tmp_path):
    passage = next(p for p in load_corpus(None) if p.title == "Velmora")
    record = AugmentRecord(passage, passage.text, [VELMORA_QA])
    store = LoraStore(tmp_path / "loras", bf16_model.model_id, recipe_config("reference"))
    summary = encode_records(bf16_model, [record], store, "test")
    assert summary.encoded == 1
    stored = load_adapter(store.path_for(passage))
    assert {a.dtype for a, _ in stored.pairs.values()} == {torch.float32}
    assert max(float(b.abs().max()) for _, b in stored.pairs.values()) > 0, "B moved away from its zero init"


@pytest.mark.model
def test_on_demand_encoding_follows_the_model_dtype(bf16_model, tmp_path):
    passage = next(p for p in load_corpus(None) if p.title == "Velmora")
    store = LoraStore(tmp_path / "loras", bf16_model.model_id, recipe_config("reference"))
    OnDemandEncoder(bf16_model)([passage], store)
    assert store.has(passage)


# --- a real GPU ----------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
def test_gpu_smoke_six_methods_encode_and_one_training_step(tmp_path, monkeypatch):
    from engine.offline.train import TrainConfig, train_translator

    monkeypatch.setenv("PRAG_HOME", str(tmp_path))
    settings = load_settings({"device": "cuda", "store": tmp_path / "loras", "recipe": "reference"})
    explorer = open_explorer(settings)
    assert explorer.loaded.placement.device.startswith("cuda")
    comparison = explorer.ask(AskRequest("What colour is the town hall of Velmora painted?", top_k=1, max_new_tokens=6,
                                         encode_missing=True, scores=("saffron yellow",)))
    assert all(a.status == "done" and a.error is None for a in comparison.answers), json.dumps(comparison.to_json())[:2000]
    passage = next(p for p in load_corpus(None) if p.title == "Velmora")
    record = AugmentRecord(passage, passage.text, [VELMORA_QA])
    summary = train_translator(explorer.loaded, [record], explorer.store, tmp_path / "t.safetensors",
                               TrainConfig(epochs=1, checkpoint_every=0))
    assert summary.steps >= 1 and all(v == v for v in summary.final.values())
