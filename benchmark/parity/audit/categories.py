"""The audit's categories, in report order, and the introduction of each in the report."""

from __future__ import annotations



CATEGORIES = (
    "Parameters", "Layer shapes", "Architecture", "BatchNorm", "LayerNorm", "Initializers", "Regularization",
    "Train/eval mode", "Weight decay", "Optimizer", "LR schedule", "Loss", "Input normalization", "Precision",
)

INTRO = {
    "Parameters": "Parameter counts of the two built models (the backends' `parameter_counts`). Keras keeps "
                  "BatchNorm moving statistics as non-trainable weights, PyTorch as buffers: they are compared "
                  "with each other.",
    "Layer shapes": "Feature-map shapes at every stage/block boundary, from a forward pass with hooks (PyTorch) "
                    "and the symbolic graph (Keras), both written as (C, H, W).",
    "Architecture": "Structural details read from the built modules and layers: stem, pooling, where ResNet "
                    "downsamples, convolution biases, padding of strided convolutions (TensorFlow's 'same' pads "
                    "bottom/right first), activations and layer counts.",
    "BatchNorm": "BatchNorm layers paired in order of appearance. Momentum is written in PyTorch's convention "
                 "(weight of the new batch statistic; Keras momentum m is 1 - m here).",
    "LayerNorm": "LayerNorm layers (ConvNeXt) paired in order of appearance.",
    "Initializers": "Initialization per layer family. PyTorch: measured from the built weights (std against each "
                    "candidate formula, distribution shape from the excess kurtosis) and the `nn.init` calls in "
                    "torchvision's source. Keras: the initializer in each layer's `get_config()`, measured the "
                    "same way.",
    "Regularization": "Regularization built into the architectures, read from the modules/layers.",
    "Train/eval mode": "Forward passes on a random batch: the trainers' evaluation path twice (must not update "
                       "BatchNorm statistics and must be deterministic) and the model in training mode twice "
                       "(stochastic when dropout or stochastic depth is active).",
    "Weight decay": "One step of each trainer's real update with a zero loss gradient and every variable set to 1: "
                    "the step is pure weight decay, so its size per variable tells which variables are decayed and "
                    "how (coupled L2 through Nesterov momentum shrinks by (1 + m) * lr * wd from zero momentum, "
                    "decoupled decay by lr * wd).",
    "Optimizer": "The trainers' optimizers, and their update rules measured on a probe vector with a fixed random "
                 "gradient sequence under the run's real LR schedule (each backend's own scheduler).",
    "LR schedule": "Each backend's LR schedule object evaluated at every optimizer step of the configured run, "
                   "against `benchmark.schedule.Schedule.lr_at`.",
    "Loss": "The loss of each training step (PyTorch: the trainer's criterion object; Keras: read from the "
            "trainer's step source, then evaluated) on the same random logits.",
    "Input normalization": "Each trainer's input normalizer applied to the same random uint8 batch.",
    "Precision": "Mixed-precision policy and loss scaling of each trainer on the device the audit ran on.",
}
