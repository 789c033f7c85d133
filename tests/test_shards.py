"""A network's training step split over host threads (training/shards.py): the parts of a batch,
their gradients added in order (the count of shards fixes the weights, never the threads'
timing), evaluation's figures the same on any count, the libraries on one thread per shard, and
a run with shards deterministic, divergence replay included."""

from __future__ import annotations

import re

import numpy as np
import pytest

from mnist_gpu import kernels
from mnist_gpu.backend import choose_threads, get_backend, limited_threads, threads
from mnist_gpu.model import network
from mnist_gpu.model.architecture import parse_network
from mnist_gpu.model.layer import Context
from mnist_gpu.training import MLPConfig, to_device_data, train_mlp
from mnist_gpu.training.shards import Shards, parts

NET = "conv4x5+bias,pool2,relu,conv6x3+bias,pool2,relu,dropout0.2,dense16+bias,relu,dense10+bias"


def test_parts_are_contiguous_and_differ_by_one_at_most():
    assert parts(10, 3) == [(0, 3), (3, 6), (6, 10)]
    assert parts(2, 4) == [(0, 1), (1, 2)]  # never an empty part
    assert parts(7, 1) == [(0, 7)]
    for n, count in ((256, 2), (96, 4), (5, 5)):
        found = parts(n, count)
        assert found[0][0] == 0 and found[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(found, found[1:]))
        assert max(e - s for s, e in found) - min(e - s for s, e in found) <= 1


def _setup(dtype="float64", seed=0):
    numpy = get_backend("numpy")
    net = parse_network(NET, "ce")
    names = [layer.name for layer in net.layers]
    rng = np.random.default_rng(seed)
    X = rng.random((37, 784)).astype(dtype)
    Y = np.eye(10, dtype=dtype)[rng.integers(0, 10, 37)]

    def context():
        return Context(numpy, dtype, np.random.default_rng([seed, 2]), training=True,
                       passes=kernels.layer_passes(numpy, names, dtype),
                       blocks=kernels.layer_blocks(numpy, names))
    return net, network.init_params(net, seed, dtype), X, Y, context


def test_one_shard_is_the_unsplit_pass():
    net, params, X, Y, context = _setup()
    shards = Shards(1, context(), 0)
    assert shards.pool is None
    loss, grads = shards.gradients(net, params, X, Y)
    want_loss, want = network.gradients(net, params, X, Y, context())
    assert loss == want_loss
    for got, expected in zip(network.flat(grads), network.flat(want)):
        np.testing.assert_array_equal(got, expected)


def test_shards_add_their_parts_gradients_in_order():
    net, params, X, Y, context = _setup()
    shards = Shards(3, context(), 0)
    try:
        loss, grads = shards.gradients(net, params, X, Y)
    finally:
        shards.close()
    # Each part on a context like the shard's (the same masks), added first to last.
    expected_loss, expected = None, None
    for s, (start, stop) in enumerate(parts(37, 3)):
        ctx = context()
        if s:
            ctx.rng = np.random.default_rng([0, 2, s])
        part_loss, part = network.gradients(net, params, X[start:stop], Y[start:stop], ctx)
        expected_loss = part_loss if expected_loss is None else expected_loss + part_loss
        expected = part if expected is None else [[a + b for a, b in zip(m, t)]
                                                  for m, t in zip(expected, part)]
    assert loss == expected_loss
    for got, want in zip(network.flat(grads), network.flat(expected)):
        np.testing.assert_array_equal(got, want)


def test_evaluation_gives_the_same_figures_on_any_count():
    net, params, X, Y, context = _setup()
    labels = np.argmax(Y, axis=1)
    evaluating = context()
    evaluating.training, evaluating.rng = False, None
    want = network.evaluate(net, params, X, labels, Y, evaluating, chunk=5)
    for count in (1, 2, 3, 8):
        shards = Shards(count, context(), 0)
        try:
            got = shards.evaluate(net, params, X, labels, Y, chunk=5)
        finally:
            shards.close()
        assert int(got[0]) == int(want[0]) and float(got[1]) == float(want[1])
        # The evaluation's blocks and their buffers are given back, training's kept.
        assert all(not ctx.made for ctx in shards.eval_contexts)


def test_the_numpy_backend_splits_as_the_choice_in_force_says():
    numpy = get_backend("numpy")
    with limited_threads(choose_threads(3)):
        assert numpy.shards() == 3
    with limited_threads(choose_threads(None, environ={})):
        assert numpy.shards() == threads.rule_threads(threads.usable_cpus())


def test_only_a_step_of_compiled_layer_passes_is_split():
    numpy = get_backend("numpy")
    _, _, _, _, context = _setup()
    with limited_threads(choose_threads(3)):
        split = Shards.for_step(context(), 0)
        dense = Shards.for_step(Context(numpy, "float64", np.random.default_rng(0)), 0)
    try:
        # A dense network's products are left to the BLAS's threads.
        assert (split.count, dense.count) == (3, 1) and dense.pool is None
    finally:
        split.close()


def test_a_shard_runs_its_products_on_its_own_thread():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    numpy = get_backend("numpy")
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        with numpy.sharded():
            inside = [p["num_threads"] for p in threadpoolctl.threadpool_info()
                      if p["user_api"] == "blas"]
        after = [p["num_threads"] for p in threadpoolctl.threadpool_info()
                 if p["user_api"] == "blas"]
    if not inside:
        pytest.skip("threadpoolctl sees no BLAS")
    assert set(inside) == {1} and set(after) == {2}


def test_the_convolution_loops_run_on_the_callers_thread():
    pytest.importorskip("numba")
    from mnist_gpu.kernels import cpu_conv_loops as loops

    for loop in (loops.im2col, loops.col2im, loops.pool_relu, loops.unpool_relu):
        assert not loop.targetoptions.get("parallel"), loop.py_func.__name__


def _train(mnist, count, lr=0.01):
    small = type(mnist)(mnist.train_images[:384], mnist.train_labels[:384],
                        mnist.test_images[:200], mnist.test_labels[:200])
    config = MLPConfig(parse_network(NET, "ce"), lr=lr, batch_size=64, epochs=2,
                       optimizer="adam", settings={"betas": (0.7, 0.9)},
                       schedule="one-cycle-lr", shuffle=True)
    with limited_threads(choose_threads(count)):
        return train_mlp(to_device_data(get_backend("numpy"), small, "float32"), config)


def test_a_run_in_shards_gives_the_same_weights_every_time(mnist):
    first, again = _train(mnist, 2), _train(mnist, 2)
    assert first.curve == again.curve
    for a, b in zip(network.flat(first.params), network.flat(again.params)):
        np.testing.assert_array_equal(a, b)


def test_divergence_in_shards_is_named_at_its_step(run):
    status, _, err = run("train", "--backend", "numpy", "--layers", "conv4x5+bias,pool2,relu,"
                         "dense10+bias", "--loss", "ce", "--lr", "1e6", "--batch-size", "64",
                         "--limit", "640", "--threads", "2")
    assert status == 1
    assert re.search(r"diverged in epoch 1 at step \d+ of 10", err), err
