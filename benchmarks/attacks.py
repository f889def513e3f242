"""Memory attacks: the peak RSS of each step on small hostile files, against a 2 GB bound.

    nice python benchmarks/attacks.py [--big 16] [--cap-gb 4] [--keep]

The issue's inputs, all in one table so every step meets every one of them:
- a 32x60000 PNG (~20 KB): `vl crop` resizes its short side to 1024 (1024x1920000: 5.9 GB of RGB);
- a 1x50000 PNG: `vl export --images --size 256 --upscale` would make it 256x12800000 (9.8 GB);
- `--big` PNGs of 10000x10000 (a few hundred KB each): `vl filter` decoded them full size, a batch at a
  time, with more batches read ahead (7.5 GB for 16).
Each command runs in its own process, as a user runs it, with the offline preset's models (tiny random
stand-ins for DINOv2, BLIP and CLIP, the shipped NudeNet and RapidOCR, a random YOLOv8n); a watchdog
kills a step whose RSS passes --cap-gb, so a regression cannot take the machine down. The peak is the
process's ru_maxrss. Each row a step will not take says why in its status (`vl status` prints them).
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import psutil
from PIL import Image, ImageDraw

BOUND_GB = 2.0


def png(img: Image.Image) -> bytes:
    """`img` as PNG bytes."""
    buf = io.BytesIO()
    img.save(buf, "PNG", compress_level=9)
    return buf.getvalue()


def with_text(data: bytes, text: str) -> bytes:
    """The same PNG with a tEXt chunk after its header: a distinct file (and id), the same pixels."""
    body = b"Comment\x00" + text.encode()
    chunk = struct.pack(">I", len(body)) + b"tEXt" + body + struct.pack(">I", zlib.crc32(b"tEXt" + body))
    return data[:33] + chunk + data[33:]  # 8-byte signature + 25-byte IHDR chunk


def big_png() -> bytes:
    """A 10000x10000 RGB PNG of a few shapes: small on disk, 300 MB decoded."""
    img = Image.new("RGB", (10_000, 10_000), (235, 230, 220))
    draw = ImageDraw.Draw(img)
    for i in range(12):
        x, y = 700 * i, 600 * i
        draw.ellipse((x, y, x + 2500, y + 1800), fill=(40 + 15 * i, 90, 200 - 10 * i))
        draw.rectangle((9000 - x, y, 9900 - x, y + 700), fill=(200, 60 + 10 * i, 40))
    return png(img)


def write_inputs(folder: Path, big: int) -> None:
    """The hostile files, into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    strip = Image.new("L", (32, 60_000), 128)
    ImageDraw.Draw(strip).rectangle((4, 100, 28, 59_000), fill=30)
    (folder / "strip_32x60000.png").write_bytes(png(strip))
    (folder / "line_1x50000.png").write_bytes(png(Image.new("L", (1, 50_000), 200)))
    data = big_png()
    for i in range(big):
        (folder / f"big_{i:02d}.png").write_bytes(with_text(data, f"copy {i}"))


def measure(name: str, argv: list[str], cap_gb: float) -> tuple[float, bool, int, float]:
    """Run `argv`; return its peak RSS in GB, whether the watchdog killed it, its exit code, seconds."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    killed, done = threading.Event(), threading.Event()

    def watch() -> None:  # psutil never reaps the child: os.wait4 below must, to read its rusage
        ps = psutil.Process(proc.pid)
        while not done.is_set():
            try:
                if ps.memory_info().rss > cap_gb * 2**30:
                    killed.set()
                    os.kill(proc.pid, signal.SIGKILL)
                    return
            except psutil.NoSuchProcess:  # a zombie too: it has ended
                return
            time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    output = proc.stdout.read() if proc.stdout is not None else ""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    done.set()
    watcher.join()
    seconds = time.perf_counter() - started
    tail = "\n".join(line for line in output.strip().splitlines()[-6:])
    print(f"--- {name}: {' '.join(argv[1:])}\n{tail}")
    return usage.ru_maxrss / 2**20, killed.is_set(), proc.returncode, seconds


def build(work: Path, big: int) -> dict[str, Any]:
    """Write the inputs and build the offline preset's models; returns the preset's settings. Runs in a
    child process, so this one stays small: a child's ru_maxrss counts the memory it forked from."""
    write_inputs(work / "imgs", big)
    from vlcli.run.presets import offline

    return offline(Path(tempfile.gettempdir()) / "vl-bench-attacks-models")


def main() -> None:
    """Build the inputs and the offline models, run every step, print peak RSS against the bound."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--big", type=int, default=16, help="how many 10000x10000 PNGs (default 16)")
    parser.add_argument("--cap-gb", type=float, default=4.0, help="kill a step past this RSS (default 4)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="vl-attacks-"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("YOLO_OFFLINE", "1")
    try:
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            models = pool.submit(build, work, args.big).result()
        crop, bin_ = models["crop"], models["bin"]
        vl = [sys.executable, "-c", "from vlcli.cli.app import main; main()"]
        table = str(work / "t.lance")
        steps = [
            ("ingest", [*vl, "ingest", str(work / "imgs"), table]),
            # keep every row for the later steps: no size rule, no dedup (the big PNGs share their pixels)
            ("filter", [*vl, "filter", table, "--min-side", "1", "--phash-distance", "0", "--quiet"]),
            ("crop", [*vl, "crop", table, "--model", crop["model"], "--min-side", "1", "--quiet"]),
            (
                "bin",
                [
                    *vl, "bin", table, "--ocr", bin_["ocr"], "--detector", bin_["detector"],
                    "--captioner", bin_["captioner"], "--clip", bin_["clip"], "--quiet",
                ],
            ),
            ("export --images", [*vl, "export", table, "--images", str(work / "out"), "--size", "256",
                                 "--upscale", "--quiet"]),
            ("status", [*vl, "status", table]),
        ]  # fmt: skip
        results = [(name, *measure(name, argv, args.cap_gb)) for name, argv in steps]
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"work folder kept: {work}")
    print(f"\npeak RSS per step ({args.big} PNGs of 10000x10000, a 32x60000 and a 1x50000 PNG)")
    print(f"{'step':<16} {'peak RSS':>9} {'seconds':>8}  vs {BOUND_GB:.0f} GB")
    for name, peak, killed, code, seconds in results:
        verdict = "KILLED over the cap" if killed else ("ok" if peak <= BOUND_GB else "OVER")
        verdict += f" (exit {code})" if code and not killed else ""
        print(f"{name:<16} {peak:>7.2f} GB {seconds:>8.1f}  {verdict}")


if __name__ == "__main__":
    main()
