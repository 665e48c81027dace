"""Run one function over many shard tasks: in this process, in local worker processes, or on Ray.

    from lmforge.data.executors import make_executor
    executor = make_executor("local", workers=2)
    results = executor.map(clean_shard, tasks)      # results in task order, whatever finished first

Tasks and results are plain dicts (file paths in, statistics out): a task reads its shard from
disk and writes its outputs to disk, so the same function runs unchanged on a laptop's cores
or on a Ray cluster whose nodes share the run folder. Results come back in task order, which
is what keeps the output independent of the number of workers.

Ray is optional (`pip install lmforge[ray]`). `ray_address=""` starts a local Ray; otherwise
it joins the given cluster (e.g. "auto" or "ray://head:10001").
"""
from __future__ import annotations

import multiprocessing
import os
from typing import Callable, Iterable


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


class LocalExecutor:
    def __init__(self, workers: int = 0):
        self.workers = workers or cpu_count()

    def map(self, func: Callable[[dict], dict], tasks: Iterable[dict], on_result: Callable[[dict], None] | None = None
            ) -> list[dict]:
        tasks = list(tasks)
        workers = min(self.workers, len(tasks))
        results = []
        if workers <= 1:
            for task in tasks:
                results.append(func(task))
                if on_result:
                    on_result(results[-1])
            return results
        # fork is fast and shares the parent's imports; where it does not exist, spawn.
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        with multiprocessing.get_context(method).Pool(workers, maxtasksperchild=None) as pool:
            for result in pool.imap(func, tasks, chunksize=1):
                results.append(result)
                if on_result:
                    on_result(result)
        return results

    def close(self) -> None:
        pass


class RayExecutor:
    def __init__(self, address: str = "", workers: int = 0):
        try:
            import ray
        except ImportError:
            raise RuntimeError("clean.executor=ray needs Ray: pip install 'lmforge[ray]'") from None
        self.ray = ray
        self.workers = workers
        self.started_here = not ray.is_initialized()   # only a Ray we started is shut down again
        if self.started_here:
            kwargs = {"address": address} if address else {"num_cpus": workers or cpu_count(),
                                                           "include_dashboard": False}
            ray.init(ignore_reinit_error=True, log_to_driver=False, **kwargs)

    def map(self, func: Callable[[dict], dict], tasks: Iterable[dict], on_result: Callable[[dict], None] | None = None
            ) -> list[dict]:
        remote = self.ray.remote(func)
        refs = [remote.remote(task) for task in tasks]
        results = []
        for ref in refs:                  # in task order, so outputs do not depend on scheduling
            results.append(self.ray.get(ref))
            if on_result:
                on_result(results[-1])
        return results


    def close(self) -> None:
        if self.started_here and self.ray.is_initialized():
            self.ray.shutdown()


def make_executor(kind: str = "local", workers: int = 0, ray_address: str = ""):
    if kind == "ray":
        return RayExecutor(ray_address, workers)
    return LocalExecutor(workers)
