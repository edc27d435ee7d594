"""The offline stages spread over a Ray cluster: PRAG encoding by passage, evaluation by question.

Why it is built this way:

- One actor per worker loads the model once and then takes one item at a time
  (a passage to encode, a question to answer). The driver hands the next item to
  whichever actor finished first, so a slow passage never holds up the others.
- Results land where the single-process path puts them, with the same guarantees:
  an actor writes its LoRA into the content-addressed store itself (atomically, so a
  killed actor leaves at most a hidden temp file); answers come back to the driver,
  which alone appends them to the prediction files (one writer per file, flushed and
  fsynced per question). Nothing is merged afterwards.
- Resuming is the single-process rule: whatever is in the store or the prediction
  files is skipped. A killed actor is restarted by Ray (it reloads the model) and its
  item is tried again; a killed driver takes its local cluster down with it, and the
  same command run again does only what is missing.
- Without an address Ray starts a one-node cluster on this machine, so the same code
  runs in tests and on a laptop; `address="auto"` or `ray://host:10001` joins a real
  one (every node needs prag-explorer installed, and the store and output folders on
  storage all nodes share).
- `prag encode --shard i/n` stays for schedulers without Ray (Slurm arrays): the
  shard test is the same passage-hash rule here, so both can be mixed on one store.

Ray is an optional extra (`pip install 'prag-explorer[cluster]'`) and is imported only here.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.config import Settings, load_settings
from engine.errors import Cancelled, InputError, PragError
from engine.offline.encode import EncodeSummary
from engine.progress import ProgressCallback, report
from engine.store import EncodeConfig, LoraStore, qa_source_of
from engine.validate import positive

if TYPE_CHECKING:
    from engine.evaluate import EvalOptions, EvalResult
    from engine.offline.records import AugmentRecord
    from engine.qa import QAItem


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide to run."""

    address: str | None = None
    """Ray cluster to join ("auto", "ray://host:10001", "host:6379"); None = start a local one-node cluster."""
    workers: int = 2
    """Actors, each with its own copy of the model."""
    cpus_per_worker: float = 1.0
    """CPUs Ray reserves per actor (and torch threads it uses, rounded down, at least 1)."""
    max_restarts: int = 3
    """How often Ray restarts a dead actor (and retries the item it had) before the run gives up."""

    def check(self) -> RayOptions:
        positive(self.workers, "workers")
        positive(float(self.cpus_per_worker), "CPUs per worker", "e.g. 1")
        return self


def _ray():
    try:
        import ray
    except ImportError:
        raise InputError("distributed runs need Ray", "pip install 'prag-explorer[cluster]'") from None
    return ray


def _worker_env() -> dict[str, str]:
    """What every worker process needs on any node: offline Hugging Face, quiet libraries (paths come in `Settings`)."""
    return {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1", "TOKENIZERS_PARALLELISM": "false"}


def start_ray(options: RayOptions) -> bool:
    """Connect to (or start) the cluster; returns True when this call started the connection (then call `ray.shutdown`)."""
    ray = _ray()
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": "WARNING",
                              "runtime_env": {"env_vars": _worker_env()}, "configure_logging": True}
    if options.address is None:
        # A local cluster sized to the workers asked for, whatever the machine has: Ray schedules by these numbers.
        kwargs["num_cpus"] = max(1, int(options.workers * options.cpus_per_worker + 0.999))
    else:
        kwargs["address"] = options.address
    try:
        ray.init(**kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = options.address or "a local cluster"
        raise InputError(f"cannot start Ray on {where}: {exc}", "check --ray-address (or leave it out for a local cluster)") from None
    return True


def _threads(options: RayOptions) -> int:
    return max(1, int(options.cpus_per_worker))


def _quiet_worker(threads: int) -> None:
    import torch
    from transformers.utils import logging as hf_logging

    torch.set_num_threads(threads)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def _unwrap(exc: BaseException) -> BaseException:
    """A PragError raised in an actor comes back wrapped in RayTaskError: give the user its one line."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, PragError) else exc


class _Actor:
    """Actor base: a failure while loading is kept and reported by `ready()`.

    An exception in an actor's constructor reaches the driver only as text inside
    ActorDiedError; kept here, it comes back as the PragError it was (one line, exit 2).
    """

    error: PragError | None = None

    def ready(self) -> PragError | None:
        return self.error


READY_TIMEOUT_S = 600.0
"""How long workers may take to be placed and load the model before the run gives up."""


def _wait_ready(actors: Sequence[Any], cpus: float) -> None:
    """Every actor placed and loaded; its loading error raised here. A cluster too small to place them all is an error, not a hang."""
    ray = _ray()
    try:
        errors = ray.get([actor.ready.remote() for actor in actors], timeout=READY_TIMEOUT_S)
    except ray.exceptions.GetTimeoutError:
        raise InputError(f"{len(actors)} Ray workers with {cpus:g} CPUs each were not ready after {READY_TIMEOUT_S:.0f}s",
                         "the cluster may be too small: pass fewer --workers, or add nodes") from None
    for error in errors:
        if error is not None:
            raise error


def _dispatch(
    actors: Sequence[Any],
    items: Sequence[Any],
    submit: Callable[[Any, Any], Any],
    on_result: Callable[[Any, Any], None],
    cancel: threading.Event | None,
) -> bool:
    """Keep every actor busy with one item until all are done; returns False when cancelled.

    On cancel, no new item starts and the ones in flight are awaited (their results kept).
    """
    ray = _ray()
    queue = deque(items)
    in_flight: dict[Any, tuple[Any, Any]] = {}
    for actor in actors:
        if queue:
            item = queue.popleft()
            in_flight[submit(actor, item)] = (actor, item)
    cancelled = False
    while in_flight:
        ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=0.5)
        if cancel is not None and cancel.is_set():
            cancelled = True
        for ref in ready:
            actor, item = in_flight.pop(ref)
            try:
                result = ray.get(ref)
            except ray.exceptions.RayTaskError as exc:
                raise _unwrap(exc) from None
            except ray.exceptions.RayActorError as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise PragError(f"a Ray worker died and was not restarted ({first})",
                                "finished work is saved; run the same command again to resume") from None
            on_result(item, result)
            if queue and not cancelled:
                next_item = queue.popleft()
                in_flight[submit(actor, next_item)] = (actor, next_item)
    return not cancelled


def _make_actors(cls: type, options: RayOptions, *args: Any) -> list[Any]:
    ray = _ray()
    remote = ray.remote(cls).options(num_cpus=options.cpus_per_worker, max_restarts=options.max_restarts,
                                     max_task_retries=options.max_restarts)
    return [remote.remote(*args) for _ in range(options.workers)]


def _kill(actors: Sequence[Any]) -> None:
    ray = _ray()
    for actor in actors:
        try:
            ray.kill(actor, no_restart=True)
        except Exception:  # already dead or the cluster is gone: nothing left to stop
            pass


# --- encoding --------------------------------------------------------------------------------


class EncodeWorker(_Actor):
    """A Ray actor: the model loaded once, then one passage's LoRA per call, written to the shared store."""

    def __init__(self, settings: Settings, config: EncodeConfig, threads: int, qa_source: str = "") -> None:
        from engine.session import open_model

        _quiet_worker(threads)
        try:
            self.loaded = open_model(settings)
        except PragError as exc:
            self.error = exc
            return
        self.store = LoraStore(settings.store_dir, self.loaded.model_id, config, qa_source)

    def model_id(self) -> str:
        return self.loaded.model_id

    def encode(self, record: AugmentRecord, aug_model: str) -> dict[str, Any]:
        """`engine.offline.encode.encode_records` on this one passage: skipped when stored; its own stale temp file removed first."""
        from engine.offline.encode import encode_records

        summary = encode_records(self.loaded, [record], self.store, aug_model)
        return {"key": record.passage.key, "skipped": summary.skipped == 1, "steps": summary.steps,
                "seconds": summary.seconds, "cpu_s": summary.cpu_seconds, "pid": os.getpid()}


@dataclass
class RayEncodeSummary(EncodeSummary):
    """An `EncodeSummary` from a Ray run, plus what only the driver can tell the CLI."""

    store_dir: Path | None = None
    """The LoRA folder written (the driver never loads the model, so the CLI cannot build this path itself)."""
    workers: int = 0


def encode_on_ray(
    records: Sequence[AugmentRecord],
    settings: Settings | None = None,
    config: EncodeConfig | None = None,
    aug_model: str = "",
    ray_options: RayOptions = RayOptions(),
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    shard: tuple[int, int] | None = None,
    label: str = "Encoding PRAG LoRAs (Ray)",
) -> RayEncodeSummary:
    """`engine.offline.encode.encode_records` over a Ray cluster: same store, same skip rule, same summary.

    Args:
        records: augmented passages (from `load_augment`).
        settings: model and store; None = the resolved defaults.
        config: the PRAG recipe (the store key); None = the defaults `prag ask` reads.
        aug_model: recorded in each LoRA's metadata.
        ray_options: cluster address and width.
        progress: one event per finished passage (done/total of this shard).
        cancel: stop handing out passages; the ones in flight finish and are kept.
        shard: also restrict to shard (i, n) by passage hash, as `prag encode --shard`.

    Returns:
        A `RayEncodeSummary`: the `EncodeSummary` fields plus the LoRA folder and worker CPU time.
    """
    from engine.offline.encode import in_shard

    settings = settings or load_settings()
    config = config or EncodeConfig()
    ray_options = ray_options.check()
    chosen = list({r.passage.key: r for r in records if in_shard(r.passage, shard)}.values())
    started_here = start_ray(ray_options)
    actors: list[Any] = []
    try:
        qa_source = qa_source_of(aug_model)
        actors = _make_actors(EncodeWorker, ray_options, settings, config, _threads(ray_options), qa_source)
        _wait_ready(actors, ray_options.cpus_per_worker)
        ray = _ray()
        model_id = ray.get(actors[0].model_id.remote())
        store = LoraStore(settings.store_dir, model_id, config, qa_source)
        summary = RayEncodeSummary(len(chosen), store_dir=store.dir, workers=ray_options.workers)
        # A killed writer's temp file belongs to a passage not stored yet: the worker that encodes it removes it first.
        todo = [r for r in chosen if not store.has(r.passage)]
        summary.skipped = len(chosen) - len(todo)
        report(progress, label, summary.skipped, summary.total, f"{ray_options.workers} workers")
        start = time.perf_counter()

        def on_result(record: AugmentRecord, result: dict[str, Any]) -> None:
            if result["skipped"]:
                summary.skipped += 1
            else:
                summary.encoded += 1
                summary.steps += int(result["steps"])
                summary.cpu_seconds += float(result["cpu_s"])
            summary.seconds = time.perf_counter() - start
            per_minute = 60 * summary.encoded / summary.seconds if summary.seconds else 0.0
            report(progress, label, summary.skipped + summary.encoded, summary.total, f"{per_minute:.1f} passages/min")

        finished = _dispatch(actors, todo, lambda actor, record: actor.encode.remote(record, aug_model), on_result, cancel)
        summary.seconds = time.perf_counter() - start
    finally:
        _kill(actors)
        if started_here:
            _ray().shutdown()
    if not finished:
        raise Cancelled(f"encoding stopped after {summary.skipped + summary.encoded} of {summary.total} passages",
                        "run the same command again to resume")
    return summary


# --- evaluation ------------------------------------------------------------------------------


class _Collect:
    """Stands in for a `PredictionFile` inside an actor: the answers go back to the driver, which writes them."""

    def __init__(self, done: bool, item_id: str) -> None:
        self.records: dict[str, dict[str, Any]] = {item_id: {}} if done else {}
        self.new: list[dict[str, Any]] = []

    def append(self, record: dict[str, Any]) -> None:
        self.new.append(record)


class EvalWorker(_Actor):
    """A Ray actor: one explorer (model, retriever, store, translator) opened once, then one question per call."""

    def __init__(self, settings: Settings, options: EvalOptions, pool: Sequence[QAItem], threads: int) -> None:
        from engine.evaluate import open_explorer

        _quiet_worker(threads)
        self.options = options
        self.settings = settings
        try:
            self.explorer = open_explorer(settings, options, pool, None)
        except PragError as exc:
            self.error = exc

    def fingerprint(self) -> dict[str, Any]:
        from engine.evaluate import fingerprint
        from engine.explorer import default_translator_path

        path = self.settings.translator or default_translator_path(self.explorer.loaded.model_id)
        return {"model": self.explorer.loaded.model_id, "fp": fingerprint(self.explorer, self.options, path)}

    def answer(self, item: QAItem, done_methods: Sequence[str]) -> dict[str, Any]:
        """All methods of `item` not in `done_methods`, in one compare call; the records, not written."""
        from engine.evaluate import answer_one

        files = {m.name: _Collect(m.name in done_methods, item.id) for m in self.options.methods}
        wall = answer_one(self.explorer, item, self.options, files, None, "", 0, 0, None)  # type: ignore[arg-type]
        return {"records": [r for f in files.values() for r in f.new], "wall": wall}


def evaluate_on_ray(
    options: EvalOptions,
    settings: Settings | None = None,
    ray_options: RayOptions = RayOptions(),
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> EvalResult:
    """`engine.evaluate.evaluate` with questions spread over Ray actors; the same files, table and resume rule.

    The driver keeps the prediction files through the same `open_predictions` as the
    single-process run (lock, repair, append, fsync); actors only answer. A question
    answered by an actor but not yet written when the driver dies is asked again next run.
    """
    from engine.atomic import write_text
    from engine.evaluate import EvalResult, open_predictions, prepare_run, summarize
    from engine.evaluate.paired import question_groups

    started = time.perf_counter()
    ray_options = ray_options.check()
    settings, items, out_dir = prepare_run(options, settings)
    # Without a corpus the explorer's index is unused (each row brings its passages): keep the actors' copy tiny.
    pool = items if options.corpus is not None else items[:1]
    started_here = start_ray(ray_options)
    actors: list[Any] = []
    computed = 0
    walls: list[float] = []
    try:
        actors = _make_actors(EvalWorker, ray_options, settings, options, pool, _threads(ray_options))
        _wait_ready(actors, ray_options.cpus_per_worker)
        ray = _ray()
        head = ray.get(actors[0].fingerprint.remote())
        fp = head["fp"]
        label = f"Evaluating {Path(options.data).stem} (Ray)"
        with open_predictions(out_dir, Path(options.data), fp, options.methods) as (prefix, files, repaired):
            resumed = sum(item.id in f.records for item in items for f in files.values())
            pending = [item for item in items if any(item.id not in f.records for f in files.values())]
            done = len(items) - len(pending)
            report(progress, label, done, len(items), f"{ray_options.workers} workers")

            def submit(actor: Any, item: QAItem) -> Any:
                finished = [name for name, f in files.items() if item.id in f.records]
                return actor.answer.remote(item, finished)

            def on_result(item: QAItem, result: dict[str, Any]) -> None:
                nonlocal computed, done
                for record in result["records"]:
                    files[record["method"]].append(record)
                if result["wall"] is not None:
                    walls.append(result["wall"])
                    computed += 1
                    done += 1
                report(progress, label, done, len(items), f"{sum(walls) / len(walls):.1f} s/question" if walls else "")

            _dispatch(actors, pending, submit, on_result, cancel)
            records = {name: f.records for name, f in files.items()}
            result = EvalResult(
                data=Path(options.data), n=len(items), methods=summarize(items, options.methods, records),
                predictions={name: f.path for name, f in files.items()}, model=head["model"],
                top_k=options.top_k, max_new_tokens=options.max_new_tokens, computed=computed, resumed=resumed, repaired=repaired,
                wall_s=time.perf_counter() - started,
                seconds_per_question=sum(walls) / len(walls) if walls else None,
                groups=question_groups(items),
            )
            write_text(out_dir / f"{prefix}.results.json", json.dumps(result.to_json(), indent=2) + "\n")
    finally:
        _kill(actors)
        if started_here:
            _ray().shutdown()
    if cancel is not None and cancel.is_set():
        raise Cancelled(f"evaluation stopped after {done} of {len(items)} questions", "run the same command again to resume")
    return result

