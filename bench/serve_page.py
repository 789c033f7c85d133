"""The figures of ``mnist-gpu serve`` (docs/serve.md): the time to the first weight maps after the
page is opened, the redraws a second while the run trains at full speed, and the training speed
with the page open against ``mnist-gpu train``'s for the same configuration.

    python bench/serve_page.py [--backend numpy] [--epochs 50] [--loads 5] [--json PATH]

It runs the commands themselves: ``mnist-gpu train --epochs E --json`` (its images/s: training
time only), then ``mnist-gpu serve --port 0`` in a subprocess and a headless Chromium (Debian's
chromium and chromium-driver, through Selenium) that opens the page ``--loads`` times (the first
maps: ``performance.now()`` when they are drawn, from the start of the navigation), then sets
the tutorial to E epochs at full speed, plays, and counts the redraws until the run ends. The
run's own count of training time gives its images/s (as ``train`` counts it); the wall-clock
rate, checkpoints and frames included, is reported beside it. Needs the serve extra, Selenium
and Chromium; run it on a quiet machine (every figure names the machine's CPU).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.keys import Keys
from websockets.sync.client import connect

OPTIONS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run",
           "--window-size=1480,900")


def cpu() -> str:
    model, flags = platform.processor() or "unknown CPU", set()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    isa = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    import os

    return f"{model}, {os.cpu_count()} cores, {isa}"


def train_rate(args) -> float:
    done = subprocess.run([sys.executable, "-m", "mnist_gpu.cli", "train", "--backend",
                           args.backend, "--epochs", str(args.epochs), "--quiet", "--json"],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout)["images_per_second"]


def state(port: int) -> dict:
    """The run's state, as a second page sees it (a control that changes nothing)."""
    with connect(f"ws://127.0.0.1:{port}/socket") as ws:
        ws.recv()
        ws.send(json.dumps({"type": "control", "action": "pause"}))
        return json.loads(ws.recv())["state"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="numpy")
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--loads", type=int, default=5)
    parser.add_argument("--json", default=None, metavar="PATH")
    args = parser.parse_args()

    train_ips = train_rate(args)
    server = subprocess.Popen([sys.executable, "-m", "mnist_gpu.cli", "serve", "--port", "0",
                               "--backend", args.backend], stdout=subprocess.PIPE, text=True)
    url = server.stdout.readline().split()[2]
    port = int(url.rsplit(":", 1)[1].strip("/"))
    options = webdriver.ChromeOptions()
    for option in (*OPTIONS, f"--user-data-dir={tempfile.mkdtemp()}"):
        options.add_argument(option)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    stats = "return window.mnistServe"
    try:
        firsts = []
        for _ in range(args.loads):
            driver.get(url)
            while not (driver.execute_script(stats) or {}).get("firstMaps"):
                time.sleep(0.02)
            firsts.append(driver.execute_script(stats)["firstMaps"])
        epochs = driver.find_element("id", "epochs")
        epochs.send_keys(Keys.CONTROL, "a")
        epochs.send_keys(str(args.epochs), Keys.TAB)
        while "ready" not in driver.find_element("id", "status").text or \
                driver.find_element("id", "epochs").get_attribute("value") != str(args.epochs):
            time.sleep(0.05)
        driver.find_element("css selector", "[data-testid=pace]").send_keys(Keys.END)
        before = driver.execute_script(stats)["redraws"]
        driver.find_element("css selector", "[data-testid=play]").click()
        began = time.perf_counter()
        while "done" not in driver.find_element("id", "status").text:
            time.sleep(0.02)
        wall = time.perf_counter() - began
        redraws = driver.execute_script(stats)["redraws"] - before
        run = state(port)
    finally:
        driver.quit()
        server.terminate()
        server.wait(10)
    total = run["seen"]
    serve_ips = run["training_images_per_second"]
    result = {
        "machine": cpu(), "backend": args.backend, "epochs": args.epochs,
        "configuration": "the tutorial: one image at a time, alpha 0.01, float32, seed 0",
        "first_maps_ms_median": statistics.median(firsts), "first_maps_ms": firsts,
        "redraws_per_second": redraws / wall, "wall_seconds": wall, "images": total,
        "train_images_per_second": train_ips, "serve_images_per_second": serve_ips,
        "serve_wall_images_per_second": total / wall, "ratio": serve_ips / train_ips,
        "kernel": run["kernel"],
    }
    print(f"machine: {result['machine']}; backend {args.backend}, kernel {run['kernel']}")
    print(f"first maps after opening the page: {result['first_maps_ms_median']:.0f} ms "
          f"(median of {args.loads} loads)")
    print(f"redraws a second at full speed: {result['redraws_per_second']:.1f} "
          f"({redraws} in {wall:.2f} s, {total:,} images)")
    print(f"training images/s with the page open: {serve_ips:,.0f} "
          f"({result['ratio']:.0%} of train's {train_ips:,.0f}); wall clock, checkpoints and "
          f"frames included: {total / wall:,.0f}")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(result, out, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
