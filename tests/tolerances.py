"""Parity bounds derived from the arithmetic, not from one CPU.

Two implementations of the same float32 computation (PyTorch's ATen/oneDNN kernels and TensorFlow's
Eigen/oneDNN ones, or one library on two instruction sets: AVX-512, AVX2, SSE4.1) sum the same products in
different orders and block sizes, so they agree only up to float32 rounding. Each function here turns
"up to float32 rounding" into a number from what the computation does (how many terms a sum has, how large
they are, how far one optimizer step can move a weight), so the same bound holds on every x86 CPU, and each
says how far below it the smallest real bug lands, so the test that uses it can still fail.

Notation: u = 2^-24 is float32's unit roundoff (round to nearest: |fl(a op b) - a op b| <= u |a op b|).
"""

from __future__ import annotations

import math

import numpy as np

from cnnrepro.train.engine.optimizers import KERAS2_EPSILON, KERAS2_RHO, KERAS3_EPSILON, KERAS3_RHO

UNIT_ROUNDOFF = 2.0**-24
# The float32 operations one first-step update takes per element on either side (square, scale, sqrt,
# add epsilon, multiply by lr, divide, subtract from the weight): each adds at most u relative.
UPDATE_OPERATIONS = 7
# The float32 operations a cross-entropy takes per example besides the logits' own (exp, sum, log, clip,
# subtract; softmax over at most 10 classes adds its 10-term sum).
LOSS_OPERATIONS = 16


def gamma(n_terms: int) -> float:
    """Higham's gamma_n = n u / (1 - n u): a float32 sum of n terms, in any order or blocking, is off by at
    most gamma_n * (sum of the terms' absolute values) (Higham, Accuracy and Stability, eq. 4.4).

    Worst case, not the typical sqrt(n) u random walk: the order a library sums in is its own and changes
    with the instruction set, so only the worst case is CPU-independent.
    """
    if n_terms * UNIT_ROUNDOFF >= 1:
        raise ValueError(f"{n_terms} terms: float32 gives no bound (n u >= 1)")
    return n_terms * UNIT_ROUNDOFF / (1 - n_terms * UNIT_ROUNDOFF)


def sum_rounding_bound(n_terms: int, abs_sum: float | np.ndarray) -> float | np.ndarray:
    """How far two float32 evaluations of the same sum of n_terms products can lie apart: each is within
    gamma_n * sum|terms| of the exact value, so the two are within twice that of each other."""
    return 2 * gamma(n_terms) * abs_sum


def gradient_rounding_bound(chain_terms: int, abs_sum_max: float) -> float:
    """Bound on |g_keras - g_torch| for every element of one weight tensor's gradient.

    A weight's gradient is a sum over the batch (and, for a conv, every output position) of
    (backpropagated error) x (layer input). Each factor is itself the result of float32 sums: the forward
    pass sums fan_in products per activation, the backward pass fan_out per error, layer after layer. To
    first order the relative errors of the factors add, so the whole gradient is off by at most
    gamma(chain_terms) times the sum of its terms' absolute values, chain_terms being the weight-gradient's
    own reduction length plus every forward and backward reduction length along the network. The per-tensor
    maximum of the absolute sums (the gradient computed on |error| and |input|) stands in for each element's.

    Measured, TF 2.21 / Keras 3.15 against torch 2.13 on one Intel Sapphire Rapids (the first step of
    tests/test_keras_parity.py, every variant): the largest |g_keras - g_torch| in any tensor was 0.003 of
    this bound with each library's default kernels (AVX-512), 0.02 with oneDNN capped at AVX2, and 0.42
    with TensorFlow's Eigen kernels (TF_ENABLE_ONEDNN_OPTS=0), there in VGG16's block5_conv3 kernel (its
    bias gradient agreed to 1e-5 of its bound): a 2x2 max pool whose maximum is decided by rounding routes
    the error to another position, which moves the gradient by a whole term, not by a rounding of it. The
    bound leaves room for a few such windows per tensor, not for many.
    """
    return sum_rounding_bound(chain_terms, abs_sum_max)


def first_step(optimizer: str, lr: float, gradient: np.ndarray) -> np.ndarray:
    """The first optimizer update from a zero state (what the parity test compares), in float64.

    rmsprop_keras2 (Keras 2.0.8): a = (1 - rho) g^2, step = lr g / (sqrt(a) + eps)   (rho 0.9, eps 1e-8)
    rmsprop_keras3 (Keras 3):     a = (1 - rho) g^2, step = lr g / sqrt(a + eps)     (rho 0.9, eps 1e-7)
    sgd:                          step = lr g
    Each is increasing in g, so over an interval of gradients it is extreme at the ends.
    """
    g = np.asarray(gradient, dtype=np.float64)
    if optimizer == "rmsprop_keras2":
        return lr * g / (np.sqrt((1 - KERAS2_RHO) * g * g) + KERAS2_EPSILON)
    if optimizer == "rmsprop_keras3":
        return lr * g / np.sqrt((1 - KERAS3_RHO) * g * g + KERAS3_EPSILON)
    if optimizer == "sgd":
        return lr * g
    raise ValueError(f"no first-step rule for {optimizer!r}")


def first_step_ceiling(optimizer: str, lr: float, gradient_max: float) -> float:
    """The largest first step any element can take: lr / sqrt(1 - rho) for RMSprop (6.3e-5 at lr 2e-5),
    whatever the gradient (g / sqrt((1 - rho) g^2) = 1 / sqrt(1 - rho)); lr |g|max for SGD.

    This is what a real bug moves weights by: a learning rate off by a factor c moves every element whose
    gradient is clear of rounding by |c - 1| times its step (one full ceiling for c = 2), a flipped sign by
    twice the step, Keras 3's epsilon in place of Keras 2's by 0.3 to 0.9 of the ceiling for |g| from 1e-3
    to 1e-4.
    """
    if optimizer == "rmsprop_keras2":
        return lr / math.sqrt(1 - KERAS2_RHO)
    if optimizer == "rmsprop_keras3":
        return lr / math.sqrt(1 - KERAS3_RHO)
    if optimizer == "sgd":
        return lr * gradient_max
    raise ValueError(f"no first-step rule for {optimizer!r}")


def first_step_weight_bound(
    optimizer: str, lr: float, gradient: np.ndarray, gradient_bound: float, weight_after: np.ndarray
) -> np.ndarray:
    """Per element: how far the weights after one step from the same start may differ between two
    implementations whose gradients differ by at most `gradient_bound`.

    The other side's gradient lies in [g - d, g + d]; the update is increasing in g, so it lies between
    first_step(g - d) and first_step(g + d): the bound is the larger of the two distances from first_step(g).
    Where |g| >> d (the gradient clear of rounding), RMSprop's step is saturated and this is tiny (its
    slope lr eps / (sqrt(1 - rho)|g| + eps)^2 times d); where |g| <= d, the sign itself is rounding and the
    bound grows to twice the ceiling (the step can go either way). Plus each side's own rounding of the
    update (UPDATE_OPERATIONS u relative) and one float32 spacing (ulp) of the weight for each side's
    rounding of w - step: results are whole ulps apart, and a weight next to a power of two can round into
    the binade above, so the ulp, not u |w|, is the unit.

    A real bug lands far above this wherever the gradient is clear of rounding: a learning rate off by c
    moves such a weight by |c - 1| steps (1e-5 to 3e-3 for the book's rates), against a bound of a few
    float32 ulps of the weight (about 1e-9 for |w| ~ 0.05) there.
    """
    g = np.asarray(gradient, dtype=np.float64)
    step = first_step(optimizer, lr, g)
    spread = np.maximum(
        first_step(optimizer, lr, g + gradient_bound) - step, step - first_step(optimizer, lr, g - gradient_bound)
    )
    weight = np.abs(np.asarray(weight_after, dtype=np.float32)) + np.abs(step).astype(np.float32)
    rounding = 2 * np.spacing(weight).astype(np.float64) + 2 * UPDATE_OPERATIONS * UNIT_ROUNDOFF * np.abs(step)
    return spread + rounding


def forward_rounding_bound(chain_terms: int, abs_sum_max: float) -> float:
    """Bound on |y_keras - y_torch| for a network output y (logits, a feature map).

    The last layer sums fan_in products w a, rounded within gamma(fan_in) sum|w a|; the activations a it
    gets carry the earlier layers' rounding, each relative to its own sums, and to first order the relative
    errors along the chain add: gamma(chain_terms) times the last layer's sum of |w a| + |b| (its
    per-output maximum), chain_terms being every reduction length along the forward pass. ReLU and max
    pooling are 1-Lipschitz, so a gate or a pooled maximum decided by rounding moves the output by no more
    than the rounding that decided it.

    Not a worst case through the whole network: that one multiplies |W| layer after layer (for VGG16 it
    exceeds 1e19) and bounds nothing. This one assumes no layer amplifies the error carried in more than
    it amplifies the activations (the first-order picture); the worst-case gamma_n instead of the sqrt(n) u
    random walk leaves a factor sqrt(chain_terms) (about 200 for VGG16) for what that leaves out.
    """
    return sum_rounding_bound(chain_terms, abs_sum_max)


def loss_bound(logit_bound: float, loss: float, batch: int) -> float:
    """Bound on the difference of a mean cross-entropy between two implementations whose logits differ by
    at most logit_bound: d(loss)/d(logit) is sigmoid(z) - y for binary cross-entropy and p - y for softmax
    cross-entropy, whose absolute values sum to at most 2 per example, so a mean moves by at most
    2 logit_bound; plus the loss's own float32 operations (sigmoid or softmax, log, clipping, the batch mean:
    gamma(LOSS_OPERATIONS + batch) relative to |loss| + 1, the 1 for the log of a probability near 1).

    A wrong loss is far above it: the mean of a sum (a factor of the batch size), probabilities taken for
    logits (a sigmoid applied twice moves log 2 = 0.69 to 0.47), a swapped class order.
    """
    return 2 * logit_bound + 2 * gamma(LOSS_OPERATIONS + batch) * (abs(loss) + 1)


def same_rule_bound(optimizer: str, lr: float, gradient_max: float, weight: np.ndarray, steps: int) -> np.ndarray:
    """Per element: how far two implementations of the same update rule may drift apart over `steps` steps
    fed the same gradients. Each step differs only by each side's rounding: of the update (at most
    UPDATE_OPERATIONS u relative, the update being at most first_step_ceiling) and of w - step (one float32
    ulp of the weight each side); the accumulator's rounding changes a later step by the same relative
    amount, inside that term. Over n steps the differences add.

    A different rule is far above it: Keras 3's epsilon in the root instead of Keras 2's, or torch's default
    alpha, move weights by a fraction of lr (1e-4 and more at lr 1e-3) in the first steps, against a few
    ulps (about 1e-7 for |w| <= 1) here.
    """
    ceiling = first_step_ceiling(optimizer, lr, gradient_max)
    magnitude = (np.abs(np.asarray(weight, dtype=np.float32)) + np.float32(steps * ceiling)).astype(np.float32)
    per_step = 2 * np.spacing(magnitude).astype(np.float64) + 2 * UPDATE_OPERATIONS * UNIT_ROUNDOFF * ceiling
    return steps * per_step
