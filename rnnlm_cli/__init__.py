"""rnnlm: train recurrent neural network language models in numpy and measure what
backpropagation through time does to their gradients."""

__version__ = "0.1.0"
