"""``vitaccel eval --workers N`` / ``--scheduler tcp://HOST:PORT``: the evaluation sharded over a Dask cluster.

The images (already listed and sorted by :mod:`vitaccel.host.evaluate`) are cut into shards whose
boundaries are boundaries of the single-process run's batches, so every accelerator batch holds the same
images as there and the logits are the same bits. Each shard is one Dask task; each worker opens the
bundle once (an :class:`~vitaccel.host.accelerator.Accelerator` kept for the run, after checking that the
file it reads has the client's sha256) and runs its shards through it. Results are collected by shard
index and aggregated in image order once all are in, so the counts do not depend on which worker finished
first.

A shard that fails (an exception on the worker, or the worker lost) is reported, with the worker and the
error, and submitted again, to another worker when there is one, up to ``retries`` times; a shard that
still fails fails the run (a ``RuntimeError`` naming it): no image is ever dropped from the counts.

``--workers N`` starts a ``distributed.LocalCluster`` of N single-threaded worker processes (Dask's
nannies start them with one BLAS thread each); ``--scheduler`` connects to a running cluster, whose
workers must see the bundle and the images at the same paths (a shared filesystem) and have vitaccel
installed (start them without ``MALLOC_TRIM_THRESHOLD_``, which Dask's nanny sets by default and which
halves the simulator's speed: ``dask worker ADDR --nthreads 1 --no-nanny``, or that key of
``distributed.nanny.pre-spawn-environ`` removed from the Dask config). Dask is the optional extra ``vitaccel[scale]`` (``dask[distributed]``), imported only here and
only when asked for, so ``vitaccel.host`` still imports with numpy alone.
"""
from __future__ import annotations

import hashlib
import logging
import math
import os
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from vitaccel.safetext import printable

__all__ = ["evaluate_distributed", "plan_shards", "eval_shard", "import_distributed", "INSTALL_HINT"]

#: How long a connection to ``--scheduler`` may take before it is given up.
CONNECT_TIMEOUT = "20s"
INSTALL_HINT = "pip install 'vitaccel[scale]' (or: pip install 'dask[distributed]')"

#: Test hook, called as ``hook(shard, attempt)`` at the start of every shard on the worker (an in-process
#: cluster shares this module with the test): raising there is a failed shard.
_fault_hook: Optional[Callable[[int, int], None]] = None

# Per worker process: (worker address, bundle path, sha256, backend, config, batch) -> (Accelerator, lock).
_OPEN: Dict[tuple, tuple] = {}
_OPEN_LOCK = threading.Lock()


def import_distributed():
    """``distributed`` (Dask's scheduler), or an ImportError that says what to install."""
    try:
        import distributed
    except ImportError as e:
        raise ImportError(f"vitaccel eval --workers/--scheduler needs Dask's distributed scheduler, which is not "
                          f"installed ({e}): {INSTALL_HINT}") from None
    return distributed


def plan_shards(n: int, batch: int, workers: int, chunk: Optional[int] = None) -> List[Tuple[int, int]]:
    """``[(start, stop), ...]`` covering ``range(n)``. Boundaries are batch boundaries of the single-process
    run (chunks of ``chunk`` images, each cut into batches of ``batch``), and there are about four shards
    per worker (at most ``chunk`` images each) so a slow worker does not hold up the end."""
    from vitaccel.host.evaluate import CHUNK

    chunk = CHUNK if chunk is None else int(chunk)
    if chunk % batch == 0:
        per = chunk // batch                                  # batches per single-process chunk
        want = max(1, math.ceil(n / (4 * max(workers, 1) * batch)))
        k = max(d for d in range(1, per + 1) if per % d == 0 and d <= want)
        size = k * batch                                      # divides chunk: on the run's batch grid
    else:
        size = chunk                                          # exactly the single-process chunks
    return [(s, min(s + size, n)) for s in range(0, n, size)]


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _worker_address() -> str:
    try:
        from distributed import get_worker

        return get_worker().address
    except Exception:  # noqa: BLE001 - called outside a worker (tests calling eval_shard directly)
        return f"pid {os.getpid()}"


def _open(spec: dict, worker: str):
    key = (worker, spec["path"], spec["sha256"], spec["backend"], spec["config"], spec["batch"])
    with _OPEN_LOCK:
        if key not in _OPEN:
            from vitaccel.host.accelerator import Accelerator

            got = _sha256(spec["path"])
            if got != spec["sha256"]:
                raise ValueError(f"the bundle {spec['path']} on this worker is not the client's (sha256 {got[:12]} vs "
                                 f"{spec['sha256'][:12]}): workers must see the same file")
            _OPEN[key] = (Accelerator(spec["path"], backend=spec["backend"], config=spec["config"],
                                      batch_size=spec["batch"]), threading.Lock())
        return _OPEN[key]


def _release(path: str, sha: str) -> int:
    """Close this worker process's accelerators for the bundle (run on every worker at the end)."""
    with _OPEN_LOCK:
        keys = [k for k in _OPEN if k[1] == path and k[2] == sha]
        for k in keys:
            _OPEN.pop(k)[0].close()
    return len(keys)


def eval_shard(spec: dict, shard: int, files: Sequence[str], labels: Sequence[int], attempt: int) -> dict:
    """One shard on a worker: ``{"ok": True, "logits", "latency_us", ...}`` or ``{"ok": False, "error"}``."""
    from vitaccel.host.run import load_image_files

    worker = _worker_address()
    t0 = time.perf_counter()
    try:
        if _fault_hook is not None:
            _fault_hook(shard, attempt)
        acc, lock = _open(spec, worker)
        with lock:                                            # a worker with several threads shares its accelerator
            imgs = load_image_files([Path(f) for f in files], size=spec["size"], chans=spec["chans"],
                                    mean=spec["mean"], std=spec["std"], say=False)
            res = acc.run(imgs, np.asarray(labels, np.int64), progress=False)
        return {"ok": True, "shard": shard, "worker": worker, "logits": res.logits, "backend": acc.backend,
                "latency_us": res.report.latency_us, "latency_kind": res.report.latency_kind,
                "wall_s": time.perf_counter() - t0}
    except Exception as e:  # noqa: BLE001 - reported to the client, which retries the shard
        msg = printable(e)
        return {"ok": False, "shard": shard, "worker": worker,
                "error": f"{type(e).__name__}: {msg if len(msg) <= 300 else msg[:300] + '...'}"}


def _say(msg: str) -> None:
    from tqdm import tqdm

    tqdm.write(msg, file=sys.stderr)


def evaluate_distributed(bundle_path, items: Sequence[Tuple[Path, int]], *, workers: Optional[int] = None,
                         scheduler: Optional[str] = None, backend: str = "auto", config=None, batch_size: int = 16,
                         mean=None, std=None, retries: int = 2, progress: bool = True, return_logits: bool = False,
                         processes: bool = True, say: Callable[[str], None] = _say) -> Dict[str, object]:
    """:func:`vitaccel.host.evaluate.evaluate`'s document for ``items`` (path, class), computed by a Dask
    cluster: a local one of ``workers`` processes (threads with ``processes=False``), or the one whose
    scheduler is at ``scheduler``. Adds ``workers`` (images per worker address), ``shards``, ``failures``
    (every failed attempt, retried), ``cluster_start_s``."""
    from tqdm import tqdm

    from vitaccel.host.bundle import load_bundle
    from vitaccel.host.evaluate import check_classes, topk_counts
    from vitaccel.host.run import load_image_files

    if (workers is None) == (scheduler is None):
        raise ValueError("give one of workers (a local cluster) or scheduler (an existing one)")
    dist = import_distributed()
    path = os.path.abspath(os.fspath(bundle_path))
    bundle = load_bundle(path)                                # BundleError names the file
    dims = bundle.model
    if not items:
        raise ValueError("no images to evaluate")
    check_classes(items, dims.num_classes)
    # Compiled here once on the simulator (numpy only, whatever the workers' backend), so that what every
    # worker would refuse alike (bundle format, config, size limits) is one error before any cluster starts.
    from vitaccel.host.accelerator import Accelerator

    Accelerator(bundle, backend="sim", config=config, batch_size=batch_size).close()
    # Decoded here once, so unreadable images and the once-per-kind notes (resized, converted) show before
    # any worker starts; the workers decode silently.
    load_image_files([items[0][0]], size=dims.img_size, chans=dims.in_chans, mean=mean, std=std, say=True)
    spec = {"path": path, "sha256": _sha256(path), "backend": backend, "config": config, "batch": int(batch_size),
            "size": dims.img_size, "chans": dims.in_chans, "mean": None if mean is None else list(mean),
            "std": None if std is None else list(std)}
    n = len(items)
    k5 = min(5, dims.num_classes)
    t0 = time.perf_counter()
    cluster = None
    try:
        if scheduler is not None:
            try:
                client = dist.Client(scheduler, timeout=CONNECT_TIMEOUT)
            except (OSError, TimeoutError, ValueError) as e:
                raise OSError(f"cannot reach the Dask scheduler at {printable(scheduler)} ({type(e).__name__}: "
                              f"{printable(e)})") from None
        else:
            import dask

            # Dask's nannies start workers with MALLOC_TRIM_THRESHOLD_=65536, which makes glibc hand every
            # freed activation buffer back to the kernel: the simulator ran at half speed (2.06 s vs 1.02 s
            # for 64 demo images). The other settings (one BLAS thread per worker) stay.
            env = {k: v for k, v in dask.config.get("distributed.nanny.pre-spawn-environ", {}).items()
                   if k != "MALLOC_TRIM_THRESHOLD_"}
            with dask.config.set({"distributed.nanny.pre-spawn-environ": env}):
                cluster = dist.LocalCluster(n_workers=int(workers), threads_per_worker=1, processes=processes,
                                            dashboard_address=None, silence_logs=logging.ERROR)
            client = dist.Client(cluster)
        try:
            try:
                client.wait_for_workers(1, timeout=60)
            except (TimeoutError, OSError):
                raise RuntimeError(f"the Dask cluster at {printable(client.scheduler.address)} has no workers") from None
            n_workers = len(client.scheduler_info()["workers"])
            started = time.perf_counter() - t0
            shards = plan_shards(n, int(batch_size), n_workers)
            results: Dict[int, dict] = {}
            failures: List[dict] = []
            lost: List[dict] = []

            def submit(s: int, attempt: int, avoid: Optional[str] = None):
                a, b = shards[s]
                kw = {}
                others = [w for w in client.scheduler_info()["workers"] if w != avoid]
                if avoid is not None and others:
                    kw = dict(workers=others, allow_other_workers=True)
                fut = client.submit(eval_shard, spec, s, [str(f) for f, _ in items[a:b]], [c for _, c in items[a:b]],
                                    attempt, pure=False, **kw)
                pending[fut] = (s, attempt)
                return fut

            pending: Dict[object, Tuple[int, int]] = {}
            t_run = time.perf_counter()
            queue = dist.as_completed([submit(s, 0) for s in range(len(shards))])
            bar = tqdm(total=n, desc=f"eval ({n_workers} Dask worker{'s' if n_workers > 1 else ''})", unit="image",
                       disable=not progress, leave=False)
            for fut in queue:
                s, attempt = pending.pop(fut)
                try:
                    r = fut.result()
                except Exception as e:  # noqa: BLE001 - the worker died or the task was lost
                    r = {"ok": False, "shard": s, "worker": "a lost worker", "error": f"{type(e).__name__}: {printable(e)}"}
                fut.release()
                if r["ok"]:
                    a, b = shards[s]
                    labels = np.array([c for _, c in items[a:b]], np.int64)
                    r["counts"] = topk_counts(r["logits"], labels, k5)
                    if not return_logits:
                        r.pop("logits")
                    r["images"] = b - a
                    results[s] = r
                    bar.update(b - a)
                    continue
                a, b = shards[s]
                rec = {"shard": s, "first": a, "last": b - 1, "worker": r["worker"], "attempt": attempt,
                       "error": r["error"]}
                failures.append(rec)
                if attempt < retries:
                    say(f"vitaccel: shard {s} (images {a}-{b - 1}) failed on {printable(r['worker'])}: {r['error']}; "
                        f"retrying (attempt {attempt + 2} of {retries + 1})")
                    queue.add(submit(s, attempt + 1, avoid=r["worker"]))
                else:
                    say(f"vitaccel: shard {s} (images {a}-{b - 1}) failed on {printable(r['worker'])}: {r['error']}; "
                        f"no retries left")
                    lost.append(rec)
            bar.close()
            run_s = time.perf_counter() - t_run
        finally:
            try:
                client.run(_release, spec["path"], spec["sha256"])
            except Exception:  # noqa: BLE001 - a worker already gone has nothing left to close
                pass
            client.close()
    finally:
        if cluster is not None:
            cluster.close()
    if lost:
        first = lost[0]
        raise RuntimeError(f"{len(lost)} shard(s) failed {retries + 1} time(s), so {sum(r['last'] - r['first'] + 1 for r in lost)} "
                           f"image(s) have no result: shard {first['shard']} (images {first['first']}-{first['last']}, "
                           f"{printable(items[first['first']][0])}) last on {printable(first['worker'])}: {first['error']}")
    order = [results[s] for s in range(len(shards))]          # image order, whatever the completion order
    top1 = sum(r["counts"][0] for r in order)
    top5 = sum(r["counts"][1] for r in order)
    per_worker: Dict[str, int] = {}
    for r in order:
        per_worker[r["worker"]] = per_worker.get(r["worker"], 0) + r["images"]
    doc = {"images": n, "top1": top1 / n, "top5": top5 / n, "top5_k": k5,
           "backend": "+".join(sorted({r["backend"] for r in order})), "latency_kind": order[0]["latency_kind"],
           "latency_us_per_image": sum(r["images"] * r["latency_us"] for r in order) / n,
           "wall_s": time.perf_counter() - t0, "cluster_start_s": started, "images_per_s": n / run_s if run_s > 0 else float("inf"),
           "shards": len(shards), "workers": per_worker, "failures": failures}
    if return_logits:
        doc["logits"] = np.concatenate([r["logits"] for r in order])
    return doc
