"""Running a Trainer well: backends (CPU/CUDA/Gaudi), our Trainer classes and their private hooks, checkpoints
and resume, the run lock, the non-finite guard, throughput, memory, curves, outputs and the model card."""
