"""`vl synth` against the server's capacity and against DCVLR's way, on the same stub server.

The stub (`python -m vlcli.testing.stub_server`, its own process) answers every chat after a fixed latency and
serves at most `--capacity` requests at once, so it can do at most capacity / latency requests per
second (16 / 0.2 s = 80 requests/s, 160 Q/A/s at 2 questions per image). Target (issue 6): `vl synth`
reaches >= 90% of that.

- **vl**: `run_synth(table, SynthSettings(mode="mcq", all_rows=True, backend="openai", concurrency=C))`
  on a fresh table of N rows with bin-style features; everything counted: prompts, HTTP, parsing, the
  commits to the table, provenance.
- **DCVLR's way** (its deepseek script, re-implemented): a ThreadPoolExecutor of 10 threads, one blocking
  OpenAI-style HTTP request per image (an httpx.Client shared by the threads), the reply's JSON recovered
  (fences stripped), retries done in the same thread, one after the other, and a JSONL file written at
  the end. Same prompts, same JSON schema, same stub.

- **Ceiling**: the same requests from a bare asyncio client with 4 x capacity in flight, nothing parsed
  or stored: what the stub (whose own per-request work sits inside its slots) really serves.

vl runs at `--concurrency` 16 (= the server's capacity, the default) and 32 (2x). The order of the
jobs rotates from run to run so that load from other processes lands on all of them; the median of
`--runs` is printed side by side.

    python benchmarks/synth.py                     # 400 images, 3 runs, ~2 minutes
    python benchmarks/synth.py --rows 100 --runs 1 --concurrency 16
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import jpeg_bytes, table_rows

from vlcli.steps.base import RunOptions
from vlcli.steps.synth.replies import reply_schema
from vlcli.steps.synth.step import SynthSettings, SynthStep, default_batch_size, run_synth
from vlcli.table.schema import CAPTION, ID, OBJECTS, OCR_TEXT, ingest_schema, status_column
from vlcli.table.storage import Table

PER_IMAGE = 2
DCVLR_THREADS = 10
DCVLR_RETRIES = 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_stub(latency: float, capacity: int) -> tuple[subprocess.Popen[bytes], str]:
    """The stub server in its own process (its own GIL); returns it and its base URL once it answers."""
    port = free_port()
    options = ["--port", str(port), "--latency", str(latency), "--capacity", str(capacity)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "vlcli.testing.stub_server", *options], stdout=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}/v1"
    for _ in range(200):
        try:
            httpx.get(f"{url}/models", timeout=1.0).raise_for_status()
            return proc, url
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("the stub server did not start")


def make_table(folder: str, n: int) -> Table:
    """N small rows with OCR text, objects and a caption (what `vl bin` would have stored)."""
    table = Table.create(os.path.join(folder, f"t{time.monotonic_ns()}.lance"), ingest_schema())
    table.append(table_rows([jpeg_bytes(i) for i in range(n)]))
    ids = table.to_arrow(["id"]).column("id").to_pylist()
    cols = [OCR_TEXT, OBJECTS, CAPTION, status_column("bin")]
    table.ensure_columns(c.field() for c in cols)
    objects = [
        [{"box": [i % 40, 5, i % 40 + 20, 30], "label": "cup", "score": 0.9}] * (1 + i % 3)
        + [{"box": [30, 20, 60, 45], "label": "person", "score": 0.8}]
        for i in range(n)
    ]
    data = {
        "id": ids,
        "ocr_text": [f"INVOICE {i}\nCoffee 3 x 2.50\nTea {i % 5} x 1.80\nTOTAL" for i in range(n)],
        "objects": objects,
        "caption": [f"a table with cups and a receipt number {i}" for i in range(n)],
        "bin_status": ["ok"] * n,
    }
    schema = pa.schema([ID.field(), *(c.field() for c in cols)])
    table.write_back(pa.Table.from_pydict(data, schema=schema))
    return table


def settings(url: str, concurrency: int) -> SynthSettings:
    return SynthSettings(
        mode="mcq", per_image=PER_IMAGE, all_rows=True, backend="openai", model="stub-model",
        base_url=url, concurrency=concurrency, max_tokens=1024,
    )  # fmt: skip


def run_vl(folder: str, n: int, url: str, concurrency: int, batch_size: int) -> tuple[float, int]:
    """Seconds for `vl synth` over a fresh table, and the Q/A items it stored."""
    table = make_table(folder, n)
    started = time.perf_counter()
    report = run_synth(table, settings(url, concurrency), RunOptions(batch_size=batch_size))
    seconds = time.perf_counter() - started
    if report.errors:
        print(f"  vl: {report.errors} errors {dict(report.reasons)}")
    return seconds, report.done * PER_IMAGE


def _recover_json(text: str) -> Any:
    """DCVLR-style JSON recovery: strip ``` fences, else take the outermost {...}."""
    fenced = re.search(r"```(?:json)?\s*(.*?)```", text, re.DOTALL)
    body = fenced.group(1) if fenced else text
    start, end = body.find("{"), body.rfind("}")
    return json.loads(body[start : end + 1])


def run_dcvlr(folder: str, n: int, url: str) -> tuple[float, int]:
    """Seconds for DCVLR's way over the same rows and prompts, and the Q/A items it wrote."""
    table = make_table(folder, n)
    step = SynthStep(settings(url, DCVLR_THREADS))
    cols = ["id", "width", "height", "ocr_text", "objects", "caption"]
    rows = table.to_arrow(cols).to_pylist()
    schema = reply_schema("mcq", PER_IMAGE)
    out_path = os.path.join(folder, f"dcvlr{time.monotonic_ns()}.jsonl")
    client = httpx.Client(timeout=120.0, limits=httpx.Limits(max_connections=DCVLR_THREADS))

    def one(row: dict[str, Any]) -> dict[str, Any]:
        prompt = step.question_prompt(step.prepare(row).facts, None)
        body = {
            "model": "stub-model",
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": 1024,
            "temperature": 0.7,
            "response_format": {"type": "json_schema", "json_schema": {"name": "reply", "schema": schema}},
        }
        for _ in range(1 + DCVLR_RETRIES):  # retried in this thread, one after the other
            try:
                reply = client.post(f"{url}/chat/completions", json=body)
                reply.raise_for_status()
                content = reply.json()["choices"][0]["message"]["content"]
                questions = _recover_json(content)["questions"]
                return {"id": row["id"], "questions": questions}
            except (httpx.HTTPError, ValueError, KeyError):
                time.sleep(1.0)
        return {"id": row["id"], "questions": []}

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(DCVLR_THREADS) as pool:
        results = list(pool.map(one, rows))
    with open(out_path, "w", encoding="utf-8") as fh:
        for record in results:
            fh.write(json.dumps(record) + "\n")
    seconds = time.perf_counter() - started
    client.close()
    return seconds, sum(len(r["questions"]) for r in results)


async def _bare(url: str, bodies: list[dict[str, Any]], in_flight: int) -> None:
    sem = asyncio.Semaphore(in_flight)
    limits = httpx.Limits(max_connections=in_flight)
    async with httpx.AsyncClient(timeout=120.0, limits=limits) as client:

        async def one(body: dict[str, Any]) -> None:
            async with sem:
                (await client.post(f"{url}/chat/completions", json=body)).raise_for_status()

        await asyncio.gather(*(one(b) for b in bodies))


def run_ceiling(folder: str, n: int, url: str, in_flight: int) -> tuple[float, int]:
    """What the stub really serves: the same requests from a bare async client (no parsing, no table)."""
    table = make_table(folder, n)
    step = SynthStep(settings(url, in_flight))
    rows = table.to_arrow(["id", "width", "height", "ocr_text", "objects", "caption"]).to_pylist()
    schema = {"name": "reply", "schema": reply_schema("mcq", PER_IMAGE)}
    bodies = [
        {
            "model": "stub-model",
            "messages": [{"role": "user", "content": step.question_prompt(step.prepare(r).facts, None)}],
            "response_format": {"type": "json_schema", "json_schema": schema},
        }
        for r in rows
    ]
    started = time.perf_counter()
    asyncio.run(_bare(url, bodies, in_flight))
    return time.perf_counter() - started, n * PER_IMAGE


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=400)
    parser.add_argument("--latency", type=float, default=0.2, help="stub seconds per request")
    parser.add_argument("--capacity", type=int, default=16, help="stub requests served at once")
    parser.add_argument(
        "--concurrency", type=int, nargs="+", default=[16, 32], help="vl synth --concurrency values to run"
    )
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    capacity_rps = args.capacity / args.latency
    cap = capacity_rps * PER_IMAGE
    proc, url = start_stub(args.latency, args.capacity)
    jobs: dict[str, Any] = {
        f"vl synth, concurrency {c}, batch {default_batch_size(c)}": (
            lambda folder, c=c: run_vl(folder, args.rows, url, c, default_batch_size(c))
        )
        for c in args.concurrency
    }
    jobs[f"DCVLR's way, {DCVLR_THREADS} threads"] = lambda folder: run_dcvlr(folder, args.rows, url)
    jobs[f"bare async client, {4 * args.capacity} in flight"] = lambda folder: run_ceiling(
        folder, args.rows, url, 4 * args.capacity
    )
    rates: dict[str, list[float]] = {name: [] for name in jobs}
    try:
        with tempfile.TemporaryDirectory() as folder:
            run_vl(folder, 32, url, 16, 64)  # warm-up: imports, first connections
            for i in range(args.runs):
                names = list(jobs)
                names = names[i % len(names) :] + names[: i % len(names)]  # rotate: load hits all alike
                for name in names:
                    seconds, items = jobs[name](folder)
                    rates[name].append(items / seconds)
                    print(
                        f"  run {i + 1}: {name}: {items} Q/A in {seconds:.2f}s = {items / seconds:.1f} Q/A/s"
                    )
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    print(
        f"\nstub: {args.latency * 1000:.0f} ms per request, {args.capacity} at once = {capacity_rps:.0f} "
        f"requests/s = {cap:.0f} Q/A/s ({PER_IMAGE} per image); {args.rows} images, mcq; median of "
        f"{args.runs} runs; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores"
    )
    medians = {name: statistics.median(r) for name, r in rates.items()}
    ceiling = list(medians.values())[-1]
    dcvlr = medians[f"DCVLR's way, {DCVLR_THREADS} threads"]
    print(f"{'':42s}{'Q/A/s':>8s}{'capacity':>10s}{'measured ceiling':>18s}{'vs DCVLR':>10s}")
    for name, rate in medians.items():
        print(f"{name:42s}{rate:8.1f}{rate / cap:10.0%}{rate / ceiling:18.0%}{rate / dcvlr:9.2f}x")
    best = max(medians[n] for n in jobs if n.startswith("vl "))
    print(
        f"target: vl synth >= 90% of capacity: {'met' if best / cap >= 0.9 else 'MISSED'} ({best / cap:.0%})"
    )


if __name__ == "__main__":
    main()
