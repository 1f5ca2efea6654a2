"""The network: cells, the time loop, output layers, the model, gradients, kernels."""
