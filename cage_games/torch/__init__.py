"""Batched torch backend: many common-agency games at once, on CPU or GPU.

Importing this module imports :mod:`torch` (the core :mod:`cage_games` never does). It solves
``B`` independent games in one call, one game per row, with the tensors kept on their device:

* :func:`solve_batch` takes the agent's utilities ``v`` (B, n), the principals' utilities
  (B, m, n), the temperature ``beta`` and optional action masks and caps;
* :func:`solve_batch_kl` is the KL-regularised (LLM) case ``v = beta * log p0`` from logits;
* both return a :class:`BatchSolution` (log policy, thresholds, residual, iterations, success).

The algorithm is the safeguarded Newton method of :func:`cage_games.solve` (on the residual in
log form) written as a batched per-row state machine; see :func:`solve_batch` and
``docs/torch_backend.rst``. On a CPU with a C++ compiler the evaluations and the Newton phase
run in a small fused library compiled on first use (:mod:`cage_games.torch._native`; set
``CAGE_GAMES_TORCH_FUSED=0`` to use plain torch operations instead).
"""

from __future__ import annotations

from cage_games.torch._api import BatchSolution, solve_batch, solve_batch_kl

__all__ = ["BatchSolution", "solve_batch", "solve_batch_kl"]
