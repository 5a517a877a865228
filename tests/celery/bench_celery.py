"""Celery's side of lro-bench: the same scenarios on the same RabbitMQ (broker) and Redis (result
backend), so that lro's figures can be read against Celery's from one run.

- throughput: `noop` tasks submitted by many client threads; submits/s and submit -> result/s;
- cancel: tasks running Celery's cooperative abort (`AbortableTask`, which polls the result
  backend), each aborted in turn; time from `abort()` to the task seeing it.

Prints one JSON object on stdout. Run through `run.sh`, which makes the virtualenv.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import redis
from celery import Celery
from celery.result import ResultSet
from celery.contrib.abortable import AbortableAsyncResult, AbortableTask

NS = os.environ.get("BENCH_NS", "celbench")
REDIS_URL = "redis://127.0.0.1:6379/0"
app = Celery(NS, broker="amqp://guest:guest@127.0.0.1:5672//", backend=REDIS_URL)
app.conf.update(
    task_default_queue=f"{NS}.celery",
    result_expires=600,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)


@app.task(name="bench.noop")
def noop():
    return {}


@app.task(name="bench.wait_abort", bind=True, base=AbortableTask)
def wait_abort(self):
    while not self.is_aborted():
        time.sleep(0.01)
    redis.Redis.from_url(REDIS_URL).set(f"{NS}:stopped:{self.request.id}", repr(time.time()))
    return "aborted"


def start_workers(processes, threads):
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, BENCH_NS=NS, PYTHONPATH=here)
    return [
        subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "bench_celery", "worker", "-P", "threads",
             "-c", str(threads), "-Q", f"{NS}.celery", "-n", f"{NS}-{i}@%h",
             "--loglevel=WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat"],
            env=env, cwd=here, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        for i in range(processes)
    ]


def throughput(ops, clients):
    noop.delay().get(timeout=60)  # warm up: the workers are consuming
    per_client = -(-ops // clients)
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        batches = list(pool.map(lambda _: [noop.delay() for _ in range(per_client)], range(clients)))
    submit_secs = time.perf_counter() - started
    results = [r for batch in batches for r in batch]
    # One thread collects: the Redis result backend's consumer is not thread-safe.
    ResultSet(results, app=app).join(timeout=300)
    e2e_secs = time.perf_counter() - started
    return {"ops": len(results), "submits_per_s": len(results) / submit_secs,
            "e2e_per_s": len(results) / e2e_secs}


def cancel(aborts):
    store = redis.Redis.from_url(REDIS_URL)
    running = [wait_abort.delay() for _ in range(aborts)]
    deadline = time.time() + 60
    for r in running:
        while AbortableAsyncResult(r.id, app=app).state != "STARTED" and time.time() < deadline:
            time.sleep(0.005)
    samples = []
    for r in running:
        sent = time.time()
        AbortableAsyncResult(r.id, app=app).abort()
        key = f"{NS}:stopped:{r.id}"
        while (stopped := store.get(key)) is None:
            if time.time() > sent + 10:
                raise SystemExit(f"task {r.id} not stopped 10 s after abort")
            time.sleep(0.0005)
        samples.append((float(stopped) - sent) * 1000)
        store.delete(key)
    samples.sort()
    return {"n": len(samples), "p50_ms": statistics.median(samples),
            "p99_ms": samples[min(len(samples) - 1, round(0.99 * (len(samples) - 1)))],
            "min_ms": samples[0], "max_ms": samples[-1]}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ops", type=int, default=20000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=64)
    parser.add_argument("--aborts", type=int, default=100)
    args = parser.parse_args()
    app.conf.task_track_started = True
    workers = start_workers(args.processes, args.threads)
    try:
        out = {"throughput": throughput(args.ops, args.clients),
               "cancel": cancel(args.aborts)}
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            try:
                w.wait(timeout=10)
            except subprocess.TimeoutExpired:
                w.kill()
        with app.connection_for_write() as conn:
            conn.default_channel.queue_delete(f"{NS}.celery")
    print(json.dumps(out))


if __name__ == "__main__":
    NS = f"celbench{uuid.uuid4().hex[:8]}" if "BENCH_NS" not in os.environ else NS
    os.environ["BENCH_NS"] = NS
    app.conf.task_default_queue = f"{NS}.celery"
    main()
