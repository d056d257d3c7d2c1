"""The paper's experiments, one module each: what each simulates or trains (the registry of their sweeps and trained
runs is `wdrank.sweeps`, torch-free)."""
