"""Sweeps: equilibria over parameter grids, as a tidy table, resumable and parallel.

A *sweep* solves one game per *cell* of a parameter grid (or per item of a generator) and
returns one row per cell: the parameters, then the outcome (success, residual, payoffs, the
action taken or modal, the mean action, ...). Three things make it usable for thousands of
games:

* **Resumable.** With ``out=`` the rows are appended to a CSV file chunk by chunk as they
  finish; a sweep started again on the same file skips the cells already there (checking
  that their parameters match) and computes only the rest. An interrupted sweep
  (``Ctrl-C``, a killed job) loses at most the chunks in flight. ``.parquet`` outputs are
  written from a ``.partial.csv`` checkpoint once complete (needs ``pyarrow``).
* **Parallel** through :mod:`joblib`: ``n_jobs`` local processes (``backend="loky"``, the
  default), or a Dask cluster with joblib's Dask backend (``backend="dask"`` inside a
  ``dask.distributed.Client`` context): no scheduler of our own. The cells are cut into
  chunks (``chunk_size``) so that each task amortises its start-up.
* **Batched.** With ``batch=True`` the chunks whose games share a shape (``m`` principals,
  ``n`` actions, ``beta > 0``) are solved together by the torch backend
  (:func:`cage_games.torch.solve_batch`, float64); each row then comes from the batched
  solver, whose residual is reported just the same.

A progress bar (:mod:`tqdm`) counts finished cells.

>>> import cage_games as cg
>>> from cage_games.sweep import sweep
>>> def build(beta, w):
...     return cg.CommonAgencyGame(cg.Agent([0.0, 0.0], beta=beta),
...                                [cg.Principal([0.0, w], name="p")])
>>> table = sweep(build, {"beta": [0.5, 1.0], "w": [1.0, 2.0, 3.0]}, progress=False)
>>> len(table), table.columns[:4]
(6, ('cell', 'beta', 'w', 'success'))
>>> bool(all(table.column("success")))
True
"""

from __future__ import annotations

import csv
import itertools
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cage_games.actions import ContinuousActions
from cage_games.game import CommonAgencyGame

__all__ = ["SweepTable", "grid_cells", "sweep", "vary_game"]

_OUTCOME = (
    "success",
    "status",
    "method",
    "residual",
    "nit",
    "agent_payoff",
    "action",
)


def grid_cells(grid: Mapping[str, Sequence[Any]]) -> Iterator[dict[str, Any]]:
    """The cartesian product of a ``{name: values}`` grid, last name fastest."""
    names = list(grid)
    for values in itertools.product(*(list(grid[n]) for n in names)):
        yield {n: _plain(x) for n, x in zip(names, values, strict=True)}


def vary_game(base: CommonAgencyGame, **params: float) -> CommonAgencyGame:
    """``base`` with some parameters changed: the builder behind ``cage sweep``.

    Keys: ``beta`` (the agent's temperature, ``v`` held fixed), ``weight.<name>`` (principal
    ``<name>``'s utility multiplied by the value) and ``cap.<name>`` (its cap; ``inf`` for
    none). Picklable with :func:`functools.partial`, so it runs in joblib and Dask workers.

    >>> import cage_games as cg
    >>> base = cg.CommonAgencyGame(cg.Agent([0.0, 1.0], beta=1.0),
    ...                            [cg.Principal([1.0, 0.0], name="p")])
    >>> g = vary_game(base, **{"beta": 0.5, "weight.p": 2.0, "cap.p": 1.5})
    >>> g.beta, g.utilities.tolist(), g.caps.tolist()
    (0.5, [[2.0, 0.0]], [1.5])
    """
    from cage_games.game import Agent, Principal

    names = list(base.names)
    weights = dict.fromkeys(names, 1.0)
    caps = {
        n: (None if not np.isfinite(c) else float(c)) for n, c in zip(names, base.caps, strict=True)
    }
    beta = base.beta
    for key, value in params.items():
        kind, _, name = key.partition(".")
        if kind == "beta" and not name:
            beta = float(value)
        elif kind in ("weight", "cap") and name in weights:
            if kind == "weight":
                weights[name] = float(value)
            else:
                caps[name] = None if np.isposinf(float(value)) else float(value)
        else:
            raise ValueError(
                f"unknown sweep parameter {key!r}: use beta, weight.NAME or cap.NAME with NAME "
                f"one of {names}"
            )
    agent = Agent(base.agent.utility, beta=beta, support=base.agent.support)
    principals = [
        Principal(weights[p.name] * p.utility, name=p.name, cap=caps[p.name])
        for p in base.principals
    ]
    return CommonAgencyGame(agent, principals, base.action_names)


def _plain(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    return x


class SweepTable:
    """A tidy table: one row per cell, one column per parameter or outcome.

    Attributes
    ----------
    columns : tuple of str
        Column names: ``cell``, the parameters, then the outcome (``success``, ``status``,
        ``method``, ``residual``, ``nit``, ``agent_payoff``, ``action``, ``payoff_<name>``
        per principal, ``coord_<dim>`` and ``mean_<dim>`` per action dimension,
        ``seconds``).
    rows : tuple of dict
        The rows, sorted by ``cell``.
    elapsed : float
        Wall-clock seconds of this call (cells resumed from a file cost nothing).
    computed, resumed : int
        Cells solved by this call and cells read back from ``out``.
    """

    def __init__(
        self,
        rows: Sequence[Mapping[str, Any]],
        columns: Sequence[str],
        elapsed: float = 0.0,
        computed: int = 0,
        resumed: int = 0,
    ) -> None:
        self.rows = tuple(dict(r) for r in sorted(rows, key=lambda r: int(r["cell"])))
        self.columns = tuple(columns)
        self.elapsed = float(elapsed)
        self.computed = int(computed)
        self.resumed = int(resumed)

    def __len__(self) -> int:
        return len(self.rows)

    def column(self, name: str) -> np.ndarray:
        """One column as an array (``KeyError`` naming the columns if absent)."""
        if name not in self.columns:
            raise KeyError(f"no column {name!r}; the columns are {list(self.columns)}")
        return np.array([r.get(name) for r in self.rows])

    def to_csv(self, path: str | os.PathLike) -> Path:
        """Write the table as CSV (floats written to round-trip exactly)."""
        path = Path(path)
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=self.columns)
            writer.writeheader()
            writer.writerows(self.rows)
        return path

    def to_parquet(self, path: str | os.PathLike) -> Path:
        """Write the table as Parquet (needs ``pyarrow``)."""
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:  # pragma: no cover - depends on the environment
            raise ImportError(
                "writing Parquet needs pyarrow: pip install pyarrow (or write .csv)"
            ) from None
        data = {c: [r.get(c) for r in self.rows] for c in self.columns}
        pq.write_table(pa.table(data), Path(path))
        return Path(path)

    def to_pandas(self) -> Any:
        """The table as a :class:`pandas.DataFrame` (needs pandas)."""
        import pandas as pd

        return pd.DataFrame(list(self.rows), columns=list(self.columns))

    def __repr__(self) -> str:
        return (
            f"SweepTable({len(self)} rows x {len(self.columns)} columns; computed "
            f"{self.computed}, resumed {self.resumed}, {self.elapsed:.3g} s)"
        )


def _row(cell: int, params: Mapping[str, Any], res: Any, seconds: float) -> dict[str, Any]:
    row: dict[str, Any] = {"cell": cell, **params}
    row.update(
        success=bool(res.success),
        status=int(res.status),
        method=str(res.method),
        residual=float(res.residual),
        nit=int(res.nit),
        agent_payoff=float(res.agent_payoff),
        action=int(res.action),
    )
    names = res.game.names if res.game is not None else range(len(res.payoffs))
    for name, pay in zip(names, res.payoffs, strict=True):
        row[f"payoff_{name}"] = float(pay)
    for dim, x in res.action_coords.items():
        row[f"coord_{dim}"] = float(x)
    for dim, x in res.mean_action.items():
        row[f"mean_{dim}"] = float(x)
    row["seconds"] = float(seconds)
    return row


def _error_row(cell: int, params: Mapping[str, Any], exc: BaseException) -> dict[str, Any]:
    return {
        "cell": cell,
        **params,
        "success": False,
        "status": -1,
        "method": f"error: {type(exc).__name__}: {exc}"[:300],
    }


def _build(build: Callable[..., CommonAgencyGame] | None, params: Mapping[str, Any]):
    if build is None:
        game = params["game"]
    else:
        game = build(**params)
    if not isinstance(game, CommonAgencyGame):
        raise TypeError(
            f"the sweep's build function must return a CommonAgencyGame, got {type(game).__name__}"
        )
    return game


def _solve_chunk(
    chunk: Sequence[tuple[int, dict[str, Any]]],
    build: Callable[..., CommonAgencyGame] | None,
    method: Any,
    options: Mapping[str, Any],
    batch: bool,
) -> list[dict[str, Any]]:
    """Solve one chunk of cells (runs in a worker)."""
    from cage_games.solvers import solve

    games = [(cell, params, _build(build, params)) for cell, params in chunk]
    rows: dict[int, dict[str, Any]] = {}
    if batch:
        rows.update(_solve_batched(games, options))
    for cell, params, game in games:
        if cell in rows:
            continue
        t0 = time.perf_counter()
        try:
            res = solve(game, method=method, options=dict(options))
        except (ValueError, TypeError, NotImplementedError, ArithmeticError) as exc:
            rows[cell] = _error_row(cell, _public(params), exc)
            continue
        rows[cell] = _row(cell, _public(params), res, time.perf_counter() - t0)
    return [rows[cell] for cell, _, _ in games]


def _public(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if k != "game"}


def _solve_batched(games, options) -> dict[int, dict[str, Any]]:
    """Rows for the games that share a shape, solved together by the torch backend."""
    try:
        import torch

        from cage_games.torch import solve_batch
    except ImportError:  # pragma: no cover - torch is optional
        return {}
    from cage_games.solvers._common import build_result
    from cage_games.thresholds import ThresholdSystem

    groups: dict[tuple[int, int], list] = {}
    for cell, params, game in games:
        if game.beta > 0 and not isinstance(game.actions, ContinuousActions):
            groups.setdefault((game.n_principals, game.n_actions), []).append((cell, params, game))
    out: dict[int, dict[str, Any]] = {}
    tol = float(options.get("tol", 1e-10))
    for members in groups.values():
        if len(members) < 2:
            continue
        t0 = time.perf_counter()
        g0 = [g for _, _, g in members]
        v = torch.tensor(
            np.stack([np.where(g.agent.support, g.agent.utility, -np.inf) for g in g0])
        )
        u = torch.tensor(np.stack([g.utilities for g in g0]))
        beta = torch.tensor([g.beta for g in g0], dtype=torch.float64)
        caps = torch.tensor(np.stack([g.caps for g in g0]))
        sol = solve_batch(v, u, beta, caps=caps)
        thresholds = sol.thresholds.detach().cpu().numpy()
        seconds = (time.perf_counter() - t0) / len(members)
        for k, (cell, params, game) in enumerate(members):
            system = ThresholdSystem(game)
            res = build_result(
                system,
                thresholds[k] / game.beta,
                status=0,
                method="torch-batch",
                nit=0,
                nfev=0,
                tol=tol,
                params={"batched": len(members)},
                history=[],
            )
            if not res.success:  # leave it to the per-game solver
                continue
            out[cell] = _row(cell, _public(params), res, seconds)
    return out


def _read_checkpoint(path: Path) -> list[dict[str, Any]]:
    if not path.exists() or path.stat().st_size == 0:
        return []
    with path.open(newline="", encoding="utf-8") as fh:
        return [_parse_row(r) for r in csv.DictReader(fh) if r.get("cell")]


def _parse_value(text: str) -> Any:
    if text == "":
        return None
    if text in ("True", "False"):
        return text == "True"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _parse_row(row: Mapping[str, str]) -> dict[str, Any]:
    return {k: _parse_value(v) for k, v in row.items() if k is not None}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b)
    return str(a) == str(b)


class _Writer:
    """Appends rows to the CSV checkpoint, widening the header when new columns appear."""

    def __init__(self, path: Path | None, existing: list[dict[str, Any]]) -> None:
        self.path = path
        self.columns: list[str] = []
        for r in existing:
            self._add_columns(r)

    def _add_columns(self, row: Mapping[str, Any]) -> bool:
        new = [k for k in row if k not in self.columns]
        self.columns.extend(new)
        return bool(new)

    def write(self, rows: list[dict[str, Any]], all_rows: list[dict[str, Any]]) -> None:
        widened = False
        for r in rows:
            widened |= self._add_columns(r)
        if self.path is None:
            return
        if widened or not self.path.exists():
            tmp = self.path.with_name(self.path.name + ".tmp")
            with tmp.open("w", newline="", encoding="utf-8") as fh:
                w = csv.DictWriter(fh, fieldnames=self.columns)
                w.writeheader()
                w.writerows(all_rows)
            os.replace(tmp, self.path)
        else:
            with self.path.open("a", newline="", encoding="utf-8") as fh:
                csv.DictWriter(fh, fieldnames=self.columns).writerows(rows)


def sweep(
    build: Callable[..., CommonAgencyGame] | None,
    cells: Mapping[str, Sequence[Any]] | Iterable[Mapping[str, Any]] | Iterable[CommonAgencyGame],
    *,
    method: str | Callable[..., Any] = "auto",
    options: Mapping[str, Any] | None = None,
    out: str | os.PathLike | None = None,
    n_jobs: int = 1,
    backend: str | None = None,
    chunk_size: int | None = None,
    batch: bool = False,
    progress: bool = True,
) -> SweepTable:
    """Solve one game per cell of a parameter grid (or generator) and tabulate the outcomes.

    Parameters
    ----------
    build : callable or None
        ``build(**params) -> CommonAgencyGame``; it must be picklable for ``n_jobs != 1``
        (a module-level function; cloudpickle, which joblib uses, also ships lambdas and
        closures). ``None`` when ``cells`` yields games (or dicts with a ``"game"`` key).
    cells : mapping, or iterable of dicts, or iterable of games
        A grid ``{name: values}`` (its cartesian product, last name fastest), or any
        iterable (a generator) of parameter dicts, or of games. Cell ``k`` is the ``k``-th
        item: a resumed sweep must enumerate the same cells in the same order.
    method, options
        Passed to :func:`cage_games.solve` for every game.
    out : path, optional
        ``.csv`` or ``.parquet``. Rows are appended to the CSV (for Parquet: to
        ``<out>.partial.csv``) as chunks finish; an existing file resumes the sweep: its
        cells are read back, checked against the current parameters, and skipped.
    n_jobs : int
        Parallel workers (joblib; ``-1`` = all cores). ``1`` runs in this process.
    backend : str, optional
        joblib backend: ``"loky"`` (default for ``n_jobs != 1``), ``"threading"``, or
        ``"dask"`` (requires a live ``dask.distributed.Client``; then ``n_jobs=-1`` uses all
        of the cluster's workers).
    chunk_size : int, optional
        Cells per task (default: about 4 tasks per worker, at most 200 cells each; 50 cells
        when ``n_jobs == 1``, which is also the checkpoint granularity).
    batch : bool
        Solve chunks of games that share a shape with the torch backend's batched Newton
        (``beta > 0`` only; rows that do not meet ``tol`` are re-solved one by one).
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    SweepTable
        The rows of every cell (resumed and computed), sorted by cell.

    Raises
    ------
    ValueError
        If ``out`` holds a sweep whose parameters differ from this one's at some cell.
    """
    from tqdm.auto import tqdm

    t_start = time.perf_counter()
    if build is not None and not callable(build):
        raise TypeError(f"build must be a callable returning a game, or None; got {build!r}")
    options = dict(options or {})
    if isinstance(cells, Mapping):
        items: Iterable[Any] = grid_cells(cells)
    else:
        items = cells
    enumerated: list[tuple[int, dict[str, Any]]] = []
    for k, item in enumerate(items):
        if isinstance(item, CommonAgencyGame):
            if build is not None:
                raise TypeError("cells yields games: pass build=None")
            enumerated.append((k, {"game": item}))
        elif isinstance(item, Mapping):
            if build is None and "game" not in item:
                raise TypeError("with build=None every cell must be a game or have a 'game' key")
            enumerated.append((k, {key: _plain(x) for key, x in item.items()}))
        else:
            raise TypeError(
                f"cell {k} is {type(item).__name__}; cells must be parameter dicts or games"
            )
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs == 0:
        raise ValueError(f"n_jobs must be a non-zero integer (-1 = all cores), got {n_jobs!r}")

    final: Path | None = Path(out) if out is not None else None
    checkpoint: Path | None = None
    if final is not None:
        if final.suffix not in (".csv", ".parquet"):
            raise ValueError(f"out must end in .csv or .parquet, got {final.name!r}")
        checkpoint = (
            final if final.suffix == ".csv" else final.with_name(final.name + ".partial.csv")
        )
    done = _read_checkpoint(checkpoint) if checkpoint is not None else []
    by_cell = {int(r["cell"]): r for r in done}
    params_of = dict(enumerated)
    for cell, row in by_cell.items():
        params = params_of.get(cell)
        if params is None or any(not _same(row.get(k), v) for k, v in _public(params).items()):
            raise ValueError(
                f"{checkpoint} holds a different sweep (cell {cell} has other parameters): "
                "write to a new file or delete it"
            )
    todo = [(k, p) for k, p in enumerated if k not in by_cell]
    workers = (os.cpu_count() or 1) if n_jobs == -1 else abs(n_jobs)
    if chunk_size is None:
        chunk_size = 50 if n_jobs == 1 else max(1, min(200, -(-len(todo) // (4 * workers))))
    chunks = [todo[i : i + chunk_size] for i in range(0, len(todo), chunk_size)]
    writer = _Writer(checkpoint, done)
    rows = list(done)
    bar = tqdm(total=len(enumerated), initial=len(done), disable=not progress, unit="game")
    try:
        if n_jobs == 1 and backend is None:
            results: Iterable[list[dict[str, Any]]] = (
                _solve_chunk(c, build, method, options, batch) for c in chunks
            )
            for chunk_rows in results:
                rows.extend(chunk_rows)
                writer.write(chunk_rows, rows)
                bar.update(len(chunk_rows))
        else:
            from joblib import Parallel, delayed, parallel_config

            with parallel_config(backend=backend or "loky", n_jobs=n_jobs):
                parallel = Parallel(return_as="generator")
                for chunk_rows in parallel(
                    delayed(_solve_chunk)(c, build, method, options, batch) for c in chunks
                ):
                    rows.extend(chunk_rows)
                    writer.write(chunk_rows, rows)
                    bar.update(len(chunk_rows))
    finally:
        bar.close()
    for col in ("cell", *[k for k in (enumerated[0][1] if enumerated else {}) if k != "game"]):
        if col not in writer.columns:
            writer.columns.insert(0, col)
    columns = _order_columns(writer.columns, enumerated)
    table = SweepTable(
        rows,
        columns,
        elapsed=time.perf_counter() - t_start,
        computed=len(todo),
        resumed=len(done),
    )
    if final is not None and final.suffix == ".parquet":
        table.to_parquet(final)
        assert checkpoint is not None
        checkpoint.unlink(missing_ok=True)
    return table


def _order_columns(columns: Sequence[str], enumerated) -> list[str]:
    params = [k for k in (enumerated[0][1] if enumerated else {}) if k != "game"]
    first = ["cell", *params, *_OUTCOME]
    rest = [c for c in columns if c not in first]
    return [c for c in first if c in columns] + rest
