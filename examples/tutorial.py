"""The tutorial, through mnist-gpu's public API: the first file to read.

784 pixel inputs, 10 outputs, no bias, no activation, weights uniform in [0, 1), trained one image
at a time with the tutorial's four lines (mnist_gpu/model/tutorial.py):

    pred  = x @ W
    delta = pred - onehot(label)
    error = delta ** 2                # reported at the checkpoints, not used
    W    -= alpha * outer(x, delta)

Run it with ``python examples/tutorial.py`` (MNIST is read from ./data or $MNIST_GPU_DATA, and
downloaded, verified, when missing).
"""

import mnist_gpu as mg

mnist = mg.load_mnist()                       # four verified uint8 arrays, on the host
backend = mg.get_backend("auto")              # CuPy, PyTorch on a GPU, or NumPy (why: stderr)
data = mg.to_device_data(backend, mnist)      # uploaded once: pixels / 255, labels one-hot


def show(title, result):
    print(title)
    print(f"{'images seen':>12}  {'test accuracy':>13}  {'test MSE':>10}")
    for point in result.curve:               # one row per checkpoint, as the tutorial prints
        print(f"{point.images_seen:>12,}  {point.accuracy:>12.2%}  {point.mse:>10.4f}")
    print(f"trained {result.images_trained:,} images in {result.seconds:.3f} s\n")


# One image at a time, one pass in file order, alpha 0.01: the tutorial itself.
show("one image at a time (the tutorial)", mg.train(data, mg.TrainConfig(alpha=0.01)))

# The same update on mini-batches of 100 images, 20 passes: W -= (alpha / b) X_b^T (X_b W - Y_b).
minibatch = mg.TrainConfig(alpha=0.02, batch_size=100, epochs=20)
show("mini-batches of 100 images, 20 epochs", mg.train(data, minibatch))
