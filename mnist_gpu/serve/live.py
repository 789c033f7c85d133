"""The run a page watches: the project's own training loop (``runner.run`` over the trainee that
``train`` builds) in a thread of its own, advanced a chunk of steps at a time at the pace the
page asks for, paused, stepped and reset from any thread.

The loop is ``train``'s: the same trainee, the same orders, checkpoints and divergence handling,
so a run gives the weights of ``mnist-gpu train`` with the same settings after the same images,
bit for bit on the same backend and kernel, whatever its pace and pauses (a segment is cut only
between steps). Everything that touches the device happens in the training thread: a page asks
for a frame (``frame``), and the thread copies the weights to the host between two chunks,
once per frame however many pages ask, and never unless one does. At full speed a chunk is sized
to last a few milliseconds, so that a frame waits at most that long and the loop loses nothing
to the pages.
"""

from __future__ import annotations

import collections
import concurrent.futures
import threading
import time
from dataclasses import dataclass, replace

import numpy as np

from ..model import network, tutorial
from ..model.network import Network
from ..training import MLPConfig, config_from_preset, runner
from ..training import network as network_training
from ..training import tutorial as tutorial_training
from ..training.config import default_checkpoints, shuffle_rng
from . import snapshot

# The presets a page offers: the tutorial's network and the deeper ones that train in seconds.
LIVE_PRESETS = ("tutorial", "minibatch", "softmax", "mlp")
# At full speed a chunk of steps lasts between these many seconds (a frame waits at most that).
CHUNK_SECONDS = (0.002, 0.008)
# The subset of the test set is scored at most this often (seconds).
SUBSET_EVERY = 0.2
# Points kept on the subset's curve: past it, every other one is dropped.
MAX_CURVE_POINTS = 600


class Restart(Exception):
    """Raised in the training thread to leave the run: it was reset (or the server closes)."""


@dataclass(frozen=True)
class Setup:
    """What a run is: a preset, with the page's batch size and epochs (None: the preset's)."""

    preset: str = "tutorial"
    batch_size: int | None = None
    epochs: int | None = None


class LiveRun:
    """One run shared by every page. ``init``: the tutorial's (784, 10) weights to start from
    (``--weights``), else the seeded draw."""

    def __init__(self, data, seed: int = 0, kernel: str = "auto", init=None):
        self.data, self.seed, self.kernel, self.init = data, seed, kernel, init
        backend = data.backend
        self.train_pixels = data.pixels["train"]
        self.train_labels = backend.to_host(data.train_labels)
        self.subset = (np.asarray(data.pixels["test"][:snapshot.SUBSET]),
                       backend.to_host(data.test_labels[:snapshot.SUBSET]))
        self._cond = threading.Condition()
        self._wanted: list[concurrent.futures.Future] = []
        self._thread = None
        self._closing = self._restart = False
        self.setup, self.alpha, self._new_alpha = Setup(), None, None
        self.playing, self.pace, self._steps = False, 10.0, 0
        self.run_id = 0
        self.copies = 0  # snapshots made: the weights copied to the host for the pages
        self._fresh()

    def _fresh(self):
        """The state of a run not yet started (under the lock, or before the thread)."""
        self.version = self.seen = 0
        self.status, self.message, self.kernel_name = "starting", "", ""
        self.trainee, self.arch, self.config, self.order = None, Network.tutorial(), None, None
        self.curve, self.checkpoints = [], []
        self.seconds, self._rates = 0.0, collections.deque(maxlen=32)
        self._snapshot, self._subset_at = None, -1.0
        self._chunk, self._pace_clock = 1, (time.perf_counter(), 0)

    # ------------------------------------------------------------------ controls (any thread)

    def start(self):
        self._thread = threading.Thread(target=self._main, name="mnist-gpu live run",
                                        daemon=True)
        self._thread.start()

    def close(self, timeout: float = 2.0):
        with self._cond:
            self._closing = True
            for future in self._wanted:
                future.set_result(None)
            self._wanted.clear()
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def play(self):
        with self._cond:
            self.playing = self.status not in ("done", "diverged", "failed")
            self._pace_clock = (time.perf_counter(), 0)
            self._cond.notify_all()

    def pause(self):
        with self._cond:
            self.playing = False
            self._cond.notify_all()

    def step(self):
        """One step (an image, or a batch), paused before and after."""
        with self._cond:
            self.playing = False
            self._steps += 1
            self._cond.notify_all()

    def reset(self, setup: Setup | None = None):
        """Back to the start: the same run, or ``setup`` (a new preset resets alpha to its)."""
        with self._cond:
            if setup is not None:
                if setup.preset != self.setup.preset:
                    self.alpha = None
                self.setup = setup
            self.run_id += 1
            self._restart, self.playing, self._steps = True, False, 0
            for future in self._wanted:
                future.set_result(None)
            self._wanted.clear()
            self._cond.notify_all()

    def set_alpha(self, alpha: float):
        """The learning rate from the next step on, without a reset."""
        with self._cond:
            self.alpha = self._new_alpha = float(alpha)
            self._cond.notify_all()

    def set_pace(self, pace: float | None):
        """Steps a second, or None: as fast as the loop goes."""
        with self._cond:
            self.pace = pace
            self._pace_clock = (time.perf_counter(), 0)
            self._cond.notify_all()

    def frame(self, run_id: int | None = None, version: int | None = None):
        """A future of the latest ``Snapshot`` (None before the run has weights): at once when
        nothing was trained since the last one, else made by the training thread between two
        chunks. A caller that has ``run_id`` and ``version`` already gets None."""
        future = concurrent.futures.Future()
        with self._cond:
            if (run_id, version) == (self.run_id, self.version):
                future.set_result(None)
            elif self._snapshot is not None and self._snapshot.version == self.version \
                    and self._snapshot.run_id == self.run_id:
                future.set_result(self._snapshot)
            else:
                self._wanted.append(future)
                self._cond.notify_all()
        return future

    def state(self) -> dict:
        """The run's settings and progress (cheap: no device work)."""
        with self._cond:
            done = self._rates
            rate = ((done[-1][1] - done[0][1]) / (done[-1][0] - done[0][0])
                    if len(done) > 1 and done[-1][0] > done[0][0] else 0.0)
            config = self.config
            return {"run": self.run_id, "version": self.version, "seen": self.seen,
                    "status": self.status, "message": self.message, "playing": self.playing,
                    "pace": self.pace, "alpha": self.alpha, "preset": self.setup.preset,
                    "batch_size": config.batch_size if config else self.setup.batch_size,
                    "epochs": config.epochs if config else self.setup.epochs,
                    "n_train": self.data.n_train, "kernel": self.kernel_name,
                    "images_per_second": rate,
                    "training_images_per_second": self.seen / self.seconds if self.seconds else 0,
                    "curve": list(self.curve), "checkpoints": list(self.checkpoints)}

    def wait_for(self, predicate, timeout: float = 10.0) -> bool:
        """Wait until ``predicate(state)`` holds (a test's event, not a sleep)."""
        deadline = time.monotonic() + timeout
        while not predicate(self.state()):
            with self._cond:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
        return True

    # ------------------------------------------------------------------ the training thread

    def _main(self):
        while True:
            try:
                with self._cond:
                    if self._closing:
                        return
                    self._restart = False
                    self._fresh()
                    setup, alpha = self.setup, self.alpha
                try:
                    self._run(setup, alpha)
                except Restart:
                    raise
                except Exception as err:  # noqa: BLE001 - shown on the page, the server goes on
                    self._finish("failed", f"{type(err).__name__}: {err}".splitlines()[0])
                self._idle()
            except Restart:
                continue

    def _run(self, setup: Setup, alpha):
        data = self.data
        changes = {key: value for key, value in (("batch_size", setup.batch_size),
                                                 ("epochs", setup.epochs), ("alpha", alpha))
                   if value is not None}
        config = config_from_preset(setup.preset, seed=self.seed, **changes)
        n = data.n_train
        with data.backend.activate():
            if isinstance(config, MLPConfig):
                arch = config.net
                host = network.init_params(arch, config.seed, data.dtype)
                trainee, kernel = network_training.trainee(data, config, host), "array"
                checkpoints = [n * e for e in range(config.epochs + 1)]
            else:
                config = replace(config, kernel=self.kernel)
                arch = Network.tutorial()
                host_w = (tutorial.init_weights(config.seed, data.dtype) if self.init is None
                          else np.asarray(self.init, dtype=data.dtype))
                trainee, kernel = tutorial_training.trainee(data, config, host_w)
                checkpoints = sorted(set(default_checkpoints(n, 1))
                                     | {n * e for e in range(1, config.epochs + 1)})
            with self._cond:
                self.trainee, self.arch, self.config, self.kernel_name = (trainee, arch, config,
                                                                          kernel)
                self.status = "ready"
                self.alpha = config.lr if isinstance(config, MLPConfig) else config.alpha
            self._serve_frames()
            done = runner.run(_Paced(self, trainee), data.backend, n, config.epochs, checkpoints,
                              shuffle_rng(config.seed, config.data_seed), config.shuffle,
                              on_checkpoint=self._checkpoint)
        if done.diverged:
            self._finish("diverged", done.diverged[0].message)
        else:
            self._finish("done", f"trained {config.epochs} epoch(s): Reset to start again")

    def _finish(self, status: str, message: str):
        with self._cond:
            self.status, self.message, self.playing = status, message, False
            self._cond.notify_all()

    def _idle(self):
        """After a run: serve frames until a reset."""
        while True:
            self._serve_frames()
            with self._cond:
                self._leave_if_asked()
                if not self._wanted:
                    self._cond.wait()

    def _leave_if_asked(self):
        if self._closing or self._restart:
            raise Restart

    def _checkpoint(self, points):
        point = points[0]
        with self._cond:
            self.checkpoints.append((point.images_seen, point.accuracy))
            self._cond.notify_all()

    def allowance(self) -> int:
        """How many steps to train now: blocks while paused or ahead of the pace, serving
        frames; raises ``Restart`` when the run is reset or the server closes."""
        while True:
            self._serve_frames()
            with self._cond:
                self._leave_if_asked()
                if self._new_alpha is not None:
                    self._apply_alpha(self._new_alpha)
                    self._new_alpha = None
                if self._wanted:
                    continue
                if self._steps:
                    self._steps -= 1
                    return 1
                if not self.playing:
                    self.status = "paused" if self.seen else "ready"
                    self._cond.wait()
                    continue
                self.status = "training"
                if self.pace is None:
                    return self._chunk
                began, done = self._pace_clock
                elapsed = time.perf_counter() - began
                due = int(elapsed * self.pace) - done
                if due > max(1.0, self.pace):  # a second behind: the pace is past the loop's
                    self._pace_clock = (time.perf_counter() - done / self.pace, done)
                    due = 1
                if due > 0:
                    steps = min(due, max(1, int(self.pace * CHUNK_SECONDS[1])))
                    self._pace_clock = (began, done + steps)
                    return steps
                self._cond.wait((done + 1) / self.pace - elapsed)

    def _apply_alpha(self, alpha: float):
        if isinstance(self.config, MLPConfig):
            self.trainee.config = replace(self.trainee.config, lr=alpha)
        else:
            self.trainee.rates.alphas[0] = alpha
            self.trainee.alphas[0] = alpha

    def trained(self, segment, seconds: float):
        """After a chunk: the count, the clock, and the size of the next chunk at full speed."""
        with self._cond:
            self.version += 1
            self.seen = segment.offset + segment.stop
            self.order = segment
            self.seconds += seconds
            self._rates.append((time.perf_counter(), self.seen))
            if self.pace is None:
                if seconds < CHUNK_SECONDS[0]:
                    self._chunk *= 2
                elif seconds > CHUNK_SECONDS[1] and self._chunk > 1:
                    self._chunk //= 2
            self._cond.notify_all()

    def _serve_frames(self):
        """Make one snapshot for every page waiting, if any (the only copies to the host)."""
        with self._cond:
            wanted, self._wanted = self._wanted, []
        if not wanted:
            return
        made = self._make_snapshot() if self.trainee is not None else None
        with self._cond:
            if made is not None and made.run_id == self.run_id:
                self._snapshot = made
            for future in wanted:
                if not future.done():
                    future.set_result(made)

    def _make_snapshot(self) -> snapshot.Snapshot:
        backend, trainee = self.data.backend, self.trainee
        self.copies += 1
        if hasattr(trainee, "W"):
            params = [[backend.to_host(trainee.W)]]
        else:
            params = network.to_host(backend, trainee.params)
        with self._cond:
            run_id, version, seen, segment = self.run_id, self.version, self.seen, self.order
        index = snapshot.next_image(seen, self.data.n_train, segment)
        current = snapshot.readout(params, self.arch, self.train_pixels[index],
                                   int(self.train_labels[index]), index)
        now = time.perf_counter()
        if now - self._subset_at >= SUBSET_EVERY and (not self.curve
                                                      or self.curve[-1][0] != seen):
            self._subset_at = now
            point = (seen, snapshot.accuracy(params, self.arch, *self.subset))
            with self._cond:
                self.curve.append(point)
                if len(self.curve) > MAX_CURVE_POINTS:
                    self.curve[:] = self.curve[:1] + self.curve[1:-1:2] + self.curve[-1:]
        return snapshot.Snapshot(run_id, version, seen, params, self.arch,
                                 snapshot.weight_maps(params[0][0]), current)


class _Paced:
    """The trainee as ``runner.run`` sees it, its segments trained a chunk of steps at a time,
    as the live run allows."""

    def __init__(self, live: LiveRun, trainee):
        self.live, self.trainee = live, trainee
        self.models, self.batch_size = trainee.models, trainee.batch_size

    def train(self, segment):
        position, backend = segment.start, self.live.data.backend
        while position < segment.stop:
            steps = self.live.allowance()
            stop = min(segment.stop, position + steps * self.batch_size)
            chunk = runner.Segment(segment.offset, position, stop, segment.host_order,
                                   segment.order)
            with backend.stopwatch() as clock:
                self.trainee.train(chunk)
            self.live.trained(chunk, clock["seconds"])
            position = stop

    def __getattr__(self, name):  # the rest of the trainee: scores, checks, divergence
        return getattr(self.trainee, name)

