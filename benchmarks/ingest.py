"""Ingest throughput and memory: MB/s and peak RSS ingesting N generated, page-cached JPEGs.

    python benchmarks/ingest.py [--n 5000] [--size-kb 170] [--repeat 3]

Targets: >= 300 MB/s, peak RSS < 1.5 GB. The corpus is cached under the temp folder across runs.
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
from PIL import Image

from vlcli.ingestion.ingest import IngestOptions, IngestReport, ingest
from vlcli.table.storage import Table

TARGET_MBPS = 300.0
TARGET_RSS_MB = 1500.0
_BASES = 64  # distinct encoded noise images; each file adds a unique comment so every file hashes apart


def _noise_jpeg(rng: np.random.Generator, pixels: int) -> bytes:
    width = int((pixels * 4 / 3) ** 0.5)
    height = max(1, pixels // width)
    # Per-pixel noise over a smooth gradient: compresses about as badly as a detailed photo.
    noise = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, "JPEG", quality=85)
    return buf.getvalue()


def _bases(size_kb: int) -> list[bytes]:
    rng = np.random.default_rng(0)
    probe = _noise_jpeg(rng, 100_000)
    pixels = int(100_000 * size_kb * 1000 / len(probe))
    return [_noise_jpeg(rng, pixels) for _ in range(_BASES)]


def _with_comment(jpeg: bytes, text: bytes) -> bytes:
    """The same JPEG with a COM segment right after SOI: a distinct file, a valid image."""
    segment = b"\xff\xfe" + (len(text) + 2).to_bytes(2, "big") + text
    return jpeg[:2] + segment + jpeg[2:]


def corpus(n: int, size_kb: int) -> Path:
    """Generate (once) and return a folder of `n` distinct JPEGs of about `size_kb` KB."""
    folder = Path(tempfile.gettempdir()) / "vl-bench-ingest" / f"n{n}-kb{size_kb}"
    done = folder / ".complete"
    if done.exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    bases = _bases(size_kb)
    for i in range(n):
        sub = folder / f"{i // 1000:03d}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"{i:06d}.jpg").write_bytes(_with_comment(bases[i % _BASES], b"vl-bench %d" % i))
    done.touch()
    return folder


def warm(folder: Path) -> tuple[int, int]:
    """Read every file once so the timed run reads from the page cache; return (files, bytes)."""
    files = total = 0
    for path in folder.rglob("*.jpg"):
        total += len(path.read_bytes())
        files += 1
    return files, total


class PeakRss:
    """Sample this process's RSS in a thread; `peak` is the highest seen, in bytes."""

    def __init__(self, every: float = 0.01) -> None:
        self._proc = psutil.Process()
        self._every = every
        self._stop = threading.Event()
        self.peak = self._proc.memory_info().rss
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            time.sleep(self._every)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)


def timed_ingest(folder: Path, table: Path, options: IngestOptions) -> tuple[IngestReport, float, int]:
    """Run one ingest; return its report, wall seconds and peak RSS in bytes."""
    os.sync()  # start with no dirty pages left by earlier runs
    with PeakRss() as rss:
        started = time.perf_counter()
        report = ingest(folder, table, options)
        seconds = time.perf_counter() - started
    return report, seconds, rss.peak


def write_floor(total: int, folder: Path) -> float:
    """Seconds to write `total` bytes to fresh files in `folder`: what any ingest must at least pay."""
    block = os.urandom(16 * 2**20)
    os.sync()
    started = time.perf_counter()
    written = 0
    for i in range(0, total, 64 * 2**20):
        with open(folder / f"floor-{i}", "wb") as f:
            for _ in range(4):
                f.write(block)
                written += len(block)
    return (time.perf_counter() - started) * total / written


def main(argv: list[str] | None = None) -> int:
    """Generate, warm, ingest `--repeat` times into fresh tables, re-ingest once, print one result block."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=5000, help="number of JPEGs")
    parser.add_argument("--size-kb", type=int, default=170, help="approximate size of each JPEG")
    parser.add_argument(
        "--repeat", type=int, default=3, help="timed runs, each into a fresh table (median kept)"
    )
    parser.add_argument("--batch-rows", type=int, default=IngestOptions.batch_rows)
    parser.add_argument("--workers", type=int, default=None, help="reader threads (default: IngestOptions)")
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    folder = corpus(args.n, args.size_kb)
    generated = time.perf_counter() - t0
    files, total = warm(folder)
    options = IngestOptions(batch_rows=args.batch_rows, **({"workers": args.workers} if args.workers else {}))
    base_rss = psutil.Process().memory_info().rss

    runs: list[tuple[IngestReport, float, int]] = []
    with tempfile.TemporaryDirectory(prefix="vl-bench-table-", dir=folder.parent) as tmp:
        for i in range(args.repeat):
            runs.append(timed_ingest(folder, Path(tmp) / f"bench-{i}.lance", options))
            if i < args.repeat - 1:
                shutil.rmtree(Path(tmp) / f"bench-{i}.lance")
        table = Path(tmp) / f"bench-{args.repeat - 1}.lance"
        again, seconds_again, _ = timed_ingest(folder, table, options)
        on_disk = Table.open(table).size_on_disk()
        floor = write_floor(total, Path(tmp))

    first = runs[0][0]
    speeds = sorted(total / 1e6 / seconds for _, seconds, _ in runs)
    mbps = statistics.median(speeds)
    peak_mb = max(peak for _, _, peak in runs) / 2**20
    process_peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    ok = lambda good: "OK" if good else "BELOW TARGET"  # noqa: E731
    print(
        f"""
vl ingest benchmark ({os.cpu_count()} CPUs, workers={options.workers}, batch_rows={options.batch_rows})
  corpus       {files:,} JPEGs, {total / 1e6:,.1f} MB (avg {total / files / 1e3:.0f} KB), page-cached \
({"cached" if generated < 1 else f"generated in {generated:.1f}s"})
  ingest       {first.added:,} added, {first.errors} errors per run; wall time incl. tag + cleanup
  throughput   {mbps:,.1f} MB/s median of {len(speeds)} (runs: {", ".join(f"{s:,.0f}" for s in speeds)}), \
{files * mbps / (total / 1e6):,.0f} files/s   target >= {TARGET_MBPS:.0f} MB/s: {ok(mbps >= TARGET_MBPS)}
  peak RSS     {peak_mb:,.0f} MB during ingest (before: {base_rss / 2**20:,.0f} MB; \
process max {process_peak_mb:,.0f} MB)   target < {TARGET_RSS_MB:.0f} MB: {ok(peak_mb < TARGET_RSS_MB)}
  re-ingest    {again.added} added, {again.duplicates:,} duplicates in {seconds_again:.2f}s \
({total / 1e6 / seconds_again:,.0f} MB/s: read + hash + probe, no writes)
  disk floor   writing {total / 1e6:,.0f} MB to fresh files alone takes {floor:.2f}s here \
({total / 1e6 / floor:,.0f} MB/s)
  table        {on_disk / 1e6:,.1f} MB on disk
""".rstrip()
    )
    return 0 if mbps >= TARGET_MBPS and peak_mb < TARGET_RSS_MB else 1


if __name__ == "__main__":
    sys.exit(main())
