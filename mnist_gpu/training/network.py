"""Training a network of layers (``model/network.py``) by mini-batches, with an optimiser and a
learning-rate schedule of ``mnist_gpu/optim``, evaluated after every epoch, through the same loop
as the tutorial's (``runner.run``).

Diverged training stops with one message naming the epoch and the step: the weights are no longer
finite, or the loss per image (of a batch, or of the test set) passed ``runner.loss_bound``
(``DIVERGED_LOSS_FACTOR`` times the test loss at the start, or 1 if that was smaller), even while
the weights are still finite. A healthy run stays far below; a learning rate far too large blows
the loss up by orders of magnitude, then often leaves dead units and the accuracy at chance.
"""

from __future__ import annotations

import numpy as np

from .. import kernels
from ..model import network
from ..model.layer import Context
from ..model.tutorial import all_finite, batch
from ..optim import OPTIMIZERS, SCHEDULES
from . import runner
from .config import MLPConfig, shuffle_rng
from .device_data import DeviceData, device_memory_guard
from .results import Checkpoint, Divergence, MLPResult, TrainingDiverged
from .shards import Shards
from .trainee import Trainee

DIVERGED_LOSS_FACTOR = runner.DIVERGED_FACTOR


def train_mlp(data: DeviceData, config: MLPConfig, init_params_host=None,
              progress=None, on_checkpoint=None) -> MLPResult:
    """Mini-batches over ``config.epochs``, shuffled per epoch from the seed, evaluated after
    each epoch (the only host-device synchronisation). ``on_checkpoint(point)`` is called with
    each evaluation as soon as it is made. Diverged training raises ``TrainingDiverged`` naming
    the epoch and the step.
    """
    config.validate()
    backend, net = data.backend, config.net
    host = init_params_host or network.init_params(net, config.seed, data.dtype)
    n, b = data.n_train, config.batch_size
    what = "while training"
    workspace = net.workspace_bytes(b, np.dtype(data.dtype).itemsize)
    if workspace:
        what += (f" (the convolutions' patches take about {workspace / 2**20:,.0f} MiB per "
                 "batch)")
    checkpoints = [n * epoch for epoch in range(config.epochs + 1)]
    with backend.activate(), device_memory_guard(backend, what, b, data.resident_bytes):
        trainee = _Network(data, config, host)
        try:
            done = runner.run(trainee, backend, n, config.epochs, checkpoints,
                              shuffle_rng(config.seed, config.data_seed), config.shuffle,
                              progress=progress, on_checkpoint=on_checkpoint and (
                                  lambda points: on_checkpoint(points[0])))
        finally:
            trainee.shards.close()
        if done.diverged:
            raise TrainingDiverged(done.diverged[0].message)
        host_params = network.to_host(backend, trainee.params)
    cfg = config.to_json()
    cfg.update(dtype=data.dtype, n_train=n, architecture=net.describe(),
               rate=config.rate_words())
    return MLPResult(cfg, backend.describe(), done.curves[0], done.seconds, n * config.epochs,
                     host_params)


def trainee(data: DeviceData, config: MLPConfig, host):
    """A network (from the host parameters ``host``) as ``train_mlp`` hands it to ``runner.run``:
    for a caller that drives the loop itself (``mnist-gpu serve``). Build it inside
    ``data.backend.activate()``; ``trainee.params`` holds each layer's list of parameters;
    ``trainee.shards.close()`` ends its threads (else they end with it)."""
    return _Network(data, config, host)


class _Network(Trainee):
    """A network's parameters and optimiser state as ``runner.run`` trains them."""

    models = 1

    def __init__(self, data: DeviceData, config: MLPConfig, host):
        backend, xp = data.backend, data.backend.xp
        self.data, self.config, self.xp = data, config, xp
        self.batch_size = config.batch_size
        # Every batch is a step, the last and shorter one of an epoch too.
        self.total_steps = -(-data.n_train // config.batch_size) * config.epochs
        self.params = network.to_device(backend, host)
        self.optimizer = self._optimizer(self.params)
        self.schedule = SCHEDULES[config.schedule]
        # The backend's compiled passes for the layers and runs of layers that have them (the
        # array path for the rest, and on a backend without), shared by training and
        # evaluation; the layers' random masks from a stream of their own; each batch in as
        # many shards as the backend splits such a step into.
        names = [layer.name for layer in config.net.layers]
        ctx = Context(backend, data.dtype, np.random.default_rng([config.seed, 2]),
                      training=True, passes=kernels.layer_passes(backend, names, data.dtype),
                      blocks=kernels.layer_blocks(backend, names))
        self.shards = Shards.for_step(ctx, config.seed)
        self.step = 0
        self.worst = None  # the worst batch loss per image since the last checkpoint, on device
        self.loss_bound = None  # set by the evaluation at the start
        self.at_good = None

    def _optimizer(self, params):
        config = self.config
        return OPTIMIZERS[config.optimizer](network.flat(params), self.xp, **config.settings)

    def _train_step(self, params, optimizer, one, step: int, shards):
        """One step over the batch ``one``: its loss summed over its images (on device), and the
        update to apply."""
        data, config, xp = self.data, self.config, self.xp
        Xb, Yb = batch(data.train_x, data.train_y, one.start, one.stop, one.order, xp)
        size = one.stop - one.start
        loss, grads = shards.gradients(config.net, params, Xb, Yb)
        lr, cycled = self.schedule(step, self.total_steps, config.lr)
        return loss, lambda: optimizer.step(network.flat(params), network.flat(grads), size, lr,
                                            cycled)

    def train(self, segment):
        with self.shards.running():
            self._train(segment)

    def _train(self, segment):
        xp = self.xp
        for one in segment.steps(self.batch_size):
            loss, update = self._train_step(self.params, self.optimizer, one, self.step,
                                            self.shards)
            # The worst batch loss per image, kept on the device: a blow-up that the network
            # survives (its units dead, its loss back down) still counts.
            per_image = loss / (one.stop - one.start)
            self.worst = per_image if self.worst is None else xp.maximum(self.worst, per_image)
            update()
            self.step += 1

    def _finite(self, params) -> bool:
        return all(bool(all_finite(p, xp=self.xp)) for p in network.flat(params))

    def non_finite(self, diverged) -> list[int]:
        return [] if self._finite(self.params) else [0]

    def score(self, seen, diverged) -> list:
        data = self.data
        with self.shards.running():
            correct, loss = self.shards.evaluate(self.config.net, self.params, data.test_x,
                                                 data.test_labels, data.test_y)
        point = Checkpoint(seen, int(correct) / data.n_test, float(loss) / data.n_test)
        if self.loss_bound is None:
            self.loss_bound = runner.loss_bound(point.mse)
        return [point]

    def over_bound(self, model, point) -> bool:
        # A NaN loss fails these comparisons too.
        return (not point.mse <= self.loss_bound
                or (self.worst is not None and not float(self.worst) <= self.loss_bound))

    def _copies(self, params):
        return [[self.xp.astype(p, p.dtype, copy=True) for p in layer] for layer in params]

    def mark_good(self):
        self.at_good = (self._copies(self.params), self.optimizer.state(), self.step,
                        self.shards.rng_states())
        self.worst = None

    def diverge(self, model, segments, seen, point) -> Divergence:
        """Replay the failed epoch one step at a time from its start to name the step where the
        weights stopped being finite or the batch's loss per image passed the bound."""
        params, state, step, rng_states = self.at_good
        params = self._copies(params)
        optimizer = self._optimizer(params)
        optimizer.restore(state)
        shards = self.shards.restored(rng_states)  # the same masks as the failed epoch's
        counter = [step]

        def replayed(one):
            loss, update = self._train_step(params, optimizer, one, counter[0], shards)
            per_image = float(loss) / (one.stop - one.start)
            if not per_image <= self.loss_bound:
                return (f"the loss per image on its batch reached {per_image:.4g}, over "
                        f"{DIVERGED_LOSS_FACTOR:g} times its start")
            update()
            counter[0] += 1
            return None if self._finite(params) else "the weights became NaN or infinite"

        with self.shards.running():
            one, what = runner.replay(segments, self.batch_size, replayed)
        n, b, lr = self.data.n_train, self.batch_size, self.config.lr
        epoch = segments[0].offset // n + 1
        if one is None:  # no single batch showed it: name the epoch, and what its evaluation found
            what = ("the weights became NaN or infinite" if point is None else
                    f"the test loss per image reached {point.mse:.4g}, over "
                    f"{DIVERGED_LOSS_FACTOR:g} times its start")
            where = f"in epoch {epoch}"
        else:
            where = (f"in epoch {epoch} at step {one.start // b + 1:,} of {-(-n // b):,} (images "
                     f"{one.start + 1:,} to {one.stop:,} of the epoch)")
        return Divergence(where, seen, f"training diverged {where}: {what} (lr = {lr}); try a "
                                       "smaller --lr")
