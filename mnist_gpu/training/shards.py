"""A network's passes split over host threads by images: each batch's gradients in shards, each
evaluation's chunks in groups, the parts' results added in order.

On the CPU every product and compiled loop of a shard runs on its thread alone (the backend's
``sharded()``), so the threads of a step meet once, when its gradients are added, rather than at
every product (``backend/threads.py`` has the measurements and the rule that fixes the count).
The parts are contiguous runs of the batch's images and their sums are taken in order, so the
weights depend on the count of shards alone, never on which thread was late; one shard is the
whole batch, exactly the unsplit pass. An evaluation's chunks are those of
``network.evaluate``, added in its order: the same figures on any count.

Each shard has a context of its own (``model.layer.Context``: its compiled blocks keep buffers,
its masks come from a stream of its own: the first shard's is the run's); a thread pool, made
for the run, runs every shard but the first, which runs on the caller's thread.
"""

from __future__ import annotations

import contextlib
import copy
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np

from ..model import network
from ..model.chunks import chunk_bounds, summed
from ..model.layer import Context


def parts(n: int, count: int) -> list[tuple[int, int]]:
    """``n`` rows in ``min(count, n)`` contiguous parts whose sizes differ by one at most."""
    count = max(1, min(count, n))
    return [(n * i // count, n * (i + 1) // count) for i in range(count)]


class Shards:
    """``count`` training contexts, the first ``first``, the others alike with streams of masks
    of their own (``seed``), and an evaluation context per shard."""

    @classmethod
    def for_step(cls, first: Context, seed: int) -> Shards:
        """As many shards as the backend splits a batch into where the step runs compiled layer
        passes (``first.passes``, ``first.blocks``: loops on one thread each), else one: a step
        of matrix products alone leaves the threads to the BLAS, which splits dense products
        better (``--preset mlp`` on two cores: 7.2-7.7 s on two BLAS threads, 9.3-9.8 s in two
        shards)."""
        compiled = bool(first.passes or first.blocks)
        return cls(first.backend.shards() if compiled else 1, first, seed)

    def __init__(self, count: int, first: Context, seed: int):
        self.backend = first.backend
        self.contexts = [first] + [replace(first, rng=np.random.default_rng([seed, 2, s]),
                                           made={}) for s in range(1, count)]
        self.eval_contexts = [replace(ctx, rng=None, training=False, made={})
                              for ctx in self.contexts]
        self.pool = ThreadPoolExecutor(count - 1, "mnist-gpu-shard") if count > 1 else None
        # Its threads end with it, when a caller forgets ``close``.
        self._closed = weakref.finalize(self, self.pool.shutdown) if self.pool else None

    @property
    def count(self) -> int:
        return len(self.contexts)

    def close(self) -> None:
        if self._closed is not None:
            self._closed()

    def running(self):
        """The context the shards' passes run in: each library call on its thread (the
        backend's ``sharded()``) when there are several, else as the command set them."""
        return self.backend.sharded() if self.count > 1 else contextlib.nullcontext()

    def rng_states(self) -> list:
        """Where each shard's stream of masks stands (``restored`` puts it back)."""
        return [ctx.rng.bit_generator.state for ctx in self.contexts]

    def restored(self, states) -> Shards:
        """Shards on the same threads whose streams of masks stand at ``states`` again, with
        buffers of their own (to replay steps beside the run)."""
        again = copy.copy(self)
        again.contexts = [replace(ctx, rng=np.random.default_rng(), made={})
                          for ctx in self.contexts]
        for ctx, state in zip(again.contexts, states):
            ctx.rng.bit_generator.state = state
        again._closed = None  # the threads are this one's to end
        return again

    def _each(self, work, items, contexts):
        """``work(item, ctx)`` for each item with its context: the first on this thread, the
        others on the pool; the results in order."""
        futures = [self.pool.submit(work, item, ctx)
                   for item, ctx in zip(items[1:], contexts[1:])]
        first = work(items[0], contexts[0])
        return [first] + [future.result() for future in futures]

    def gradients(self, net, params, X, Y):
        """(summed loss, each layer's parameter gradients summed over the batch): the shards'
        own, added shard after shard."""
        bounds = parts(X.shape[0], self.count)
        if len(bounds) == 1:
            return network.gradients(net, params, X, Y, self.contexts[0])

        def shard(bound, ctx):
            start, stop = bound
            return network.gradients(net, params, X[start:stop], Y[start:stop], ctx)
        results = self._each(shard, bounds, self.contexts)
        loss, grads = results[0]
        for part_loss, part_grads in results[1:]:
            loss = loss + part_loss
            grads = [[a + b for a, b in zip(mine, theirs)]
                     for mine, theirs in zip(grads, part_grads)]
        return loss, grads

    def evaluate(self, net, params, X, labels, Y, chunk: int | None = None):
        """(number correct, summed loss), as ``network.evaluate`` gives them, its chunks scored
        in contiguous groups, one per shard, and added in its order."""
        chunks = chunk_bounds(X.shape[0], chunk or net.eval_chunk)
        groups = [chunks[a:b] for a, b in parts(len(chunks), self.count)]
        try:
            if len(groups) == 1:
                return network.evaluate(net, params, X, labels, Y, self.eval_contexts[0], chunk)

            def group(bounds, ctx):
                return [network.score(net, params, X, labels, Y, ctx, start, stop)
                        for start, stop in bounds]
            return summed(part for found in self._each(group, groups, self.eval_contexts)
                          for part in found)
        finally:
            # The blocks' buffers of an evaluation's chunks, given back until the next one:
            # training's are kept, which every step reuses.
            for ctx in self.eval_contexts:
                ctx.made.clear()
