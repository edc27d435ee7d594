"""Encoding and evaluation on a local Ray cluster: same store and files as one process, and kills lose nothing.

One local cluster (two CPUs) is started for the module and reused by every test; the
driver-kill test starts its own in a subprocess, since killing that driver is the test.
Skipped when Ray is not installed (`pip install 'prag-explorer[cluster]'`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from engine.config import load_settings
from engine.corpus import make_passage, sample_questions_path
from engine.offline.records import AugmentFile, AugmentRecord, QAPair, save_augment
from engine.store import LoraStore

pytestmark = [pytest.mark.model, pytest.mark.ray]
ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'prag-explorer[cluster]'")

from engine.distributed import RayOptions, encode_on_ray, evaluate_on_ray, start_ray  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
FACTS = [
    ("Velmora", "Velmora is a harbour town founded by Ysolde Marren in 1602.", "Who founded Velmora?", "Ysolde Marren"),
    ("Ferrowdale", "The Collegium of Ferrowdale was founded in 1412 on Lake Ombrith.", "Where is the Collegium?", "Lake Ombrith"),
    ("Halvorsk", "Halvorsk Airways paints a red fox on every tail.", "What is on the tails?", "a red fox"),
    ("Pennequin", "Pennequin Airport has one runway of grey basalt.", "What is the runway made of?", "grey basalt"),
]


def make_records(count: int) -> list[AugmentRecord]:
    """Short passages with one QA pair each: two training steps per passage keeps the tests quick."""
    return [AugmentRecord(make_passage(text, title), text, [QAPair(q, a, f"The answer is {a}.")]) for title, text, q, a in FACTS[:count]]


@pytest.fixture(scope="module")
def cluster():
    started = start_ray(RayOptions(workers=2))
    yield
    if started:
        ray.shutdown()


def store_files(store: LoraStore) -> tuple[list[str], list[Path]]:
    return store.keys(), sorted(store.dir.glob(".*.tmp")) if store.dir.is_dir() else []


def test_ray_encodes_into_the_store_as_one_process_does(cluster, loaded, tmp_path):
    from engine.offline.encode import encode_records

    records = make_records(2)
    settings = load_settings({"store": tmp_path / "ray"})
    events = []
    summary = encode_on_ray(records, settings, aug_model="handmade", ray_options=RayOptions(workers=2), progress=events.append)
    assert (summary.total, summary.encoded, summary.skipped, summary.steps) == (2, 2, 0, 4)
    assert events[-1].done == 2 and "passages/min" in events[-1].info
    store = LoraStore(tmp_path / "ray", loaded.model_id)
    assert store_files(store) == (sorted(r.passage.key for r in records), [])

    single = LoraStore(tmp_path / "single", loaded.model_id)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each worker runs: float sums in another thread split differ in the last bits
    try:
        encode_records(loaded, records[:1], single, "handmade")
    finally:
        torch.set_num_threads(threads)
    ours, theirs = store.get(records[0].passage), single.get(records[0].passage)
    assert ours is not None and theirs is not None
    for key, (a, b) in theirs.pairs.items():
        assert ours.pairs[key][0].allclose(a, atol=1e-5) and ours.pairs[key][1].allclose(b, atol=1e-5)

    again = encode_on_ray(records, settings, ray_options=RayOptions(workers=2))
    assert (again.skipped, again.encoded) == (2, 0)


def test_a_worker_that_cannot_load_the_model_is_one_clear_error(cluster, tmp_path):
    from engine.errors import PragError

    settings = load_settings({"store": tmp_path / "store", "model": str(tmp_path / "no-such-model")})
    with pytest.raises(PragError, match="does not exist") as caught:
        encode_on_ray(make_records(1), settings, ray_options=RayOptions(workers=1))
    assert caught.value.hint  # the hint survives the trip from the worker process


def _worker_pids(title: str) -> list[int]:
    """Processes whose title (set by Ray) starts with `title`, e.g. an actor running a method."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\x00", b" ").decode(errors="replace")
            except OSError:
                continue
            if cmdline.startswith(title):
                pids.append(int(entry.name))
    return pids


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds Ray's worker processes through /proc (Linux)")
def test_a_killed_worker_is_restarted_and_nothing_is_lost(cluster, loaded, tmp_path):
    from engine.offline.encode import encode_records

    records = make_records(4)
    store = LoraStore(tmp_path / "store", loaded.model_id)
    encode_records(loaded, records[:1], store, "handmade")  # finished before: must be kept and skipped
    leftover = store.dir / f".{records[1].passage.key}.safetensors.dead1234.tmp"
    leftover.write_bytes(b"half a LoRA from a killed writer")
    killed: list[int] = []
    stop = threading.Event()

    def kill_one_busy_worker() -> None:
        while not stop.is_set() and not killed:
            pids = _worker_pids("ray::EncodeWorker.encode")
            if pids:
                time.sleep(0.5)  # mid-training
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
            time.sleep(0.05)

    killer = threading.Thread(target=kill_one_busy_worker, daemon=True)
    killer.start()
    try:
        summary = encode_on_ray(records, load_settings({"store": tmp_path / "store"}), aug_model="handmade",
                                ray_options=RayOptions(workers=2))
    finally:
        stop.set()
        killer.join()
    assert killed, "no busy worker was found to kill"
    assert (summary.skipped, summary.encoded) == (1, 3)
    keys, temps = store_files(store)
    assert keys == sorted(r.passage.key for r in records) and temps == []
    for record in records:
        assert store.get(record.passage) is not None  # every file loads: none is partial


DRIVER = """
import sys
from pathlib import Path
from engine.offline.records import load_augment
from engine.config import load_settings
from engine.distributed import RayOptions, encode_on_ray
aug = load_augment(Path(sys.argv[1]))
encode_on_ray(aug.records, load_settings({"store": sys.argv[2]}), aug_model=aug.aug_model, ray_options=RayOptions(workers=1))
"""


def test_a_killed_driver_then_the_same_run_again_completes(cluster, loaded, tmp_path):
    records = make_records(3)
    aug = tmp_path / "aug.json"
    save_augment(aug, AugmentFile("handmade", records))
    store = LoraStore(tmp_path / "store", loaded.model_id)
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(aug), str(tmp_path / "store")], cwd=REPO,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not store.keys() and driver.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert store.keys(), ("the driver wrote nothing before it ended: "
                              f"{driver.stderr.read().decode()[-2000:] if driver.poll() is not None else 'timeout'}")
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(timeout=30)
    finally:
        if driver.poll() is None:
            driver.kill()
    written = store.keys()
    assert 1 <= len(written) < 3
    time.sleep(2)  # Ray's reaper takes the dead driver's local cluster down
    summary = encode_on_ray(records, load_settings({"store": tmp_path / "store"}), aug_model="handmade", ray_options=RayOptions(workers=2))
    assert summary.skipped >= len(written) and summary.skipped + summary.encoded == 3
    keys, temps = store_files(store)
    assert keys == sorted(r.passage.key for r in records) and temps == []
    assert set(written) <= set(keys)
    try:  # Ray's own helpers of the dead cluster exit by themselves within a minute or two; don't leave them to CI
        os.killpg(driver.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def test_ray_evaluation_writes_the_files_a_single_process_run_resumes(cluster, tmp_path):
    from engine.evaluate import EvalOptions, evaluate
    from engine.methods import METHODS

    rows = [line for line in sample_questions_path().read_text(encoding="utf-8").splitlines() if line.strip()][:3]
    data = tmp_path / "qa.jsonl"
    data.write_text("\n".join(rows) + "\n", encoding="utf-8")
    options = EvalOptions(data=data, methods=(METHODS["vanilla"], METHODS["rag"]), max_new_tokens=4, out_dir=tmp_path / "eval")
    settings = load_settings()
    events = []
    result = evaluate_on_ray(options, settings, RayOptions(workers=2), progress=events.append)
    assert (result.n, result.computed) == (3, 3) and events[-1].done == 3
    lines = {name: [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()] for name, path in result.predictions.items()}
    assert all(len(v) == 3 for v in lines.values())

    resumed = evaluate(options, settings)  # one process, same files: nothing left to do, same table
    assert resumed.computed == 0 and set(resumed.predictions.values()) == set(result.predictions.values())
    assert {k: v.to_json()["em"] for k, v in resumed.methods.items()} == {k: v.to_json()["em"] for k, v in result.methods.items()}

    alone = evaluate(EvalOptions(data=data, methods=options.methods, max_new_tokens=4, out_dir=tmp_path / "alone"), settings)
    for name, path in alone.predictions.items():
        expected = {r["id"]: r["prediction"] for r in map(json.loads, path.read_text(encoding="utf-8").splitlines())}
        assert {r["id"]: r["prediction"] for r in lines[name]} == expected
