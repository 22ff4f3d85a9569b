"""Training and evaluation: model assembly, the training loop, ranking, checkpoints, run
directories, distributed helpers and the benchmark. Reads a validated recipe and the data.
"""
