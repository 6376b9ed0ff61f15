"""Convergence runs: offline tasks, the training runner, LR rules and warm-up, layer-wise optimizers, curves.

How many steps each batch size needs to reach a target comes from here; how long each step takes comes
from the sweep. `bench.analysis.tta` joins the two.
"""
