"""Structured action spaces: products of labelled 1-D grids and continuous boxes.

A plain :class:`~cage_games.CommonAgencyGame` numbers its actions ``0..n-1`` and takes every
utility as a vector. Many models have actions with coordinates instead (tariffs on two goods,
a price and a quantity). This module describes them:

* :class:`ActionGrid` ``(t1=[...], t2=[...])``: the product of labelled one-dimensional grids.
  Action ``k`` is the ``k``-th point of the product in C order (the last dimension varies
  fastest), exactly ``np.meshgrid(*axes, indexing="ij")`` raveled.
* :class:`ContinuousActions` ``(t1=(lo, hi), t2=(lo, hi))``: a box. The solver discretises
  it on a product grid whose cells carry *reference weights* proportional to their volume
  (the agent's utility gets ``beta * log(w)``, ``w`` the cell's share of the box), so that the
  quantal agent behaves like a density on the box and its policy and payoffs converge as the
  grid is refined instead of shifting by ``beta * log(refinement)``; :func:`cage_games.solve`
  then refines the grid around the equilibrium's support until the payoffs and the mean
  action stop moving (see :func:`cage_games.continuous.solve_continuous`).

Utilities on such spaces are *vectorised callables of the coordinates*: ``u(t1=..., t2=...)``
receives one flat array per dimension (one entry per action) and returns one value per action
(or a scalar, broadcast). Arrays stay accepted on an :class:`ActionGrid` (shape ``grid.shape``
or ``(grid.size,)``).

>>> import numpy as np, cage_games as cg
>>> grid = cg.ActionGrid(x=[0.0, 1.0], y=[0.0, 0.5, 1.0])
>>> grid.shape, grid.size, grid.point(4)
((2, 3), 6, {'x': 1.0, 'y': 0.5})
>>> grid.evaluate(lambda x, y: x + y, "utility").tolist()
[0.0, 0.5, 1.0, 1.0, 1.5, 2.0]
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

__all__ = ["ActionGrid", "ContinuousActions"]


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(
            f"dimension names must be Python identifiers (they become keyword arguments of the "
            f"utilities), got {name!r}"
        )
    return name


class ActionGrid:
    """The product of labelled one-dimensional grids of action coordinates.

    Parameters
    ----------
    **axes : array_like, 1-D
        One strictly increasing, finite, non-empty grid per dimension, keyed by the
        dimension's name (a Python identifier). The order of the keywords is the order of
        the dimensions.

    Attributes
    ----------
    names : tuple of str
        The dimensions' names.
    axes : mapping of str to ndarray
        The grid of each dimension (read-only).
    shape : tuple of int
        Points per dimension.
    size : int
        Number of actions (the product of ``shape``).

    Examples
    --------
    >>> import cage_games as cg
    >>> grid = cg.ActionGrid(t=[0.0, 0.1, 0.2])
    >>> grid.coords["t"].tolist(), grid.index(t=0.1)
    ([0.0, 0.1, 0.2], 1)
    """

    def __init__(self, **axes: Any) -> None:
        if not axes:
            raise ValueError("ActionGrid needs at least one dimension, e.g. ActionGrid(t=[0, 1])")
        clean: dict[str, np.ndarray] = {}
        for name, values in axes.items():
            _check_name(name)
            try:
                arr = np.array(values, dtype=float)
            except (TypeError, ValueError):
                raise TypeError(f"grid {name!r} must be a 1-D array of numbers") from None
            if arr.ndim != 1 or arr.size == 0:
                raise ValueError(
                    f"grid {name!r} must be a non-empty 1-D array, got shape {arr.shape}"
                )
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"grid {name!r} contains non-finite values")
            if arr.size > 1 and np.any(np.diff(arr) <= 0):
                raise ValueError(
                    f"grid {name!r} must be strictly increasing; sort it and drop duplicates "
                    "(np.unique does both)"
                )
            arr.setflags(write=False)
            clean[name] = arr
        self._axes = clean
        self._coords: dict[str, np.ndarray] | None = None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._axes)

    @property
    def axes(self) -> Mapping[str, np.ndarray]:
        return dict(self._axes)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(a.size for a in self._axes.values())

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def coords(self) -> Mapping[str, np.ndarray]:
        """The coordinates of every action: one flat array of length ``size`` per dimension."""
        if self._coords is None:
            mesh = np.meshgrid(*self._axes.values(), indexing="ij")
            coords = {}
            for name, a in zip(self.names, mesh, strict=True):
                flat = a.ravel()
                flat.setflags(write=False)
                coords[name] = flat
            self._coords = coords
        return dict(self._coords)

    def point(self, index: int) -> dict[str, float]:
        """The coordinates of action ``index`` as ``{name: value}``."""
        idx = np.unravel_index(int(index), self.shape)
        return {n: float(self._axes[n][k]) for n, k in zip(self.names, idx, strict=True)}

    def index(self, **point: float) -> int:
        """The action whose coordinates are nearest to ``point`` (one value per dimension)."""
        if set(point) != set(self.names):
            raise ValueError(f"give one coordinate per dimension {list(self.names)}")
        idx = tuple(int(np.argmin(np.abs(self._axes[n] - point[n]))) for n in self.names)
        return int(np.ravel_multi_index(idx, self.shape))

    def evaluate(self, utility: Callable[..., Any] | Any, what: str) -> np.ndarray:
        """Tabulate ``utility`` on the grid: one value per action, shape ``(size,)``.

        ``utility`` is a vectorised callable of the coordinates (called once with one flat
        array per dimension, by name) or an array of shape ``shape`` or ``(size,)``.
        """
        if callable(utility):
            coords = self.coords
            try:
                inspect.signature(utility).bind(**coords)
            except TypeError as exc:
                raise TypeError(
                    f"{what} must accept the coordinates as keyword arguments "
                    f"{', '.join(self.names)} (flat arrays, one entry per action): {exc}"
                ) from None
            except ValueError:  # no signature available (a builtin): just call it
                pass
            try:
                values = utility(**coords)
                out = np.broadcast_to(np.asarray(values, dtype=float), (self.size,)).copy()
            except (TypeError, ValueError) as exc:
                # Not vectorised (math.exp, if/else on a coordinate, ...): evaluate point by
                # point, which is correct but slow, and say so.
                try:
                    out = np.vectorize(utility, otypes=[float])(**coords)
                except Exception:
                    raise ValueError(
                        f"{what} must be a vectorised callable: called with one flat array per "
                        f"dimension it must return one value per action (shape ({self.size},)) "
                        f"or a scalar; it raised {type(exc).__name__}: {exc}"
                    ) from None
                warnings.warn(
                    f"{what} is not vectorised ({type(exc).__name__}: {exc}); it was evaluated "
                    f"point by point on {self.size} actions. Use numpy functions (np.exp, "
                    "np.where, np.maximum) to make it fast.",
                    UserWarning,
                    stacklevel=4,
                )
                out = np.asarray(out, dtype=float).reshape(self.size)
        else:
            arr = np.asarray(utility, dtype=float)
            if arr.shape not in (self.shape, (self.size,)):
                raise ValueError(
                    f"{what} has shape {arr.shape}; on this grid give shape {self.shape} or "
                    f"({self.size},), or a callable of {', '.join(self.names)}"
                )
            out = arr.ravel().copy()
        if not np.all(np.isfinite(out)):
            bad = np.flatnonzero(~np.isfinite(out))[:3]
            raise ValueError(f"{what} is not finite at actions {[self.point(k) for k in bad]}")
        return out

    def marginals(self, policy: np.ndarray) -> dict[str, np.ndarray]:
        """Marginal distribution of ``policy`` on each dimension (aligned with ``axes``)."""
        p = np.asarray(policy, dtype=float).reshape(self.shape)
        d = len(self.shape)
        return {
            n: p.sum(axis=tuple(j for j in range(d) if j != k)) for k, n in enumerate(self.names)
        }

    def mean(self, policy: np.ndarray) -> dict[str, float]:
        """Mean coordinates under ``policy``."""
        return {n: float(marg @ self._axes[n]) for n, marg in self.marginals(policy).items()}

    def cell_volumes(self, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
        """Volume of each action's cell in the box ``[lower, upper]``, shape ``(size,)``.

        Cells are products of 1-D Voronoi cells (midpoints between neighbours, cut at the
        box), so that sums weighted by them are trapezoid-like quadratures of the box.
        """
        widths = []
        for k, x in enumerate(self._axes.values()):
            edges = np.concatenate([[lower[k]], 0.5 * (x[1:] + x[:-1]), [upper[k]]])
            widths.append(np.diff(edges))
        vol = widths[0]
        for w in widths[1:]:
            vol = np.multiply.outer(vol, w)
        return np.asarray(vol, dtype=float).ravel()

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, ActionGrid)
            and self.names == other.names
            and all(np.array_equal(self._axes[n], other._axes[n]) for n in self.names)
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        parts = ", ".join(f"{n}=[{a[0]:g} .. {a[-1]:g}] ({a.size})" for n, a in self._axes.items())
        return f"ActionGrid({parts})"


class ContinuousActions:
    """A box of continuous actions, discretised and refined adaptively by the solver.

    Parameters
    ----------
    bounds : mapping, optional (positional only)
        ``{name: (lo, hi)}``; an alternative to the keywords (for a dimension named
        ``resolution``).
    resolution : int, default 21
        Points per dimension of the first, uniform grid (including both ends).
    **axes : (float, float)
        ``name=(lo, hi)`` with ``lo < hi``, finite, one per dimension, in order.

    Notes
    -----
    The grid's cells get reference weights ``w`` proportional to their volume (the 1-D
    Voronoi cells of the nodes, cut at the box: a trapezoid rule), and the agent's tabulated
    utility is ``v(x) + beta * log(w)``. The quantal agent then chooses a density on the box,
    ``pi(x) ∝ exp((v(x) + sum_i tau_i(x)) / beta)`` with respect to the uniform measure, and
    sums over actions approximate integrals: refining the grid changes payoffs by ``O(h^2)``
    instead of by ``beta * log(refinement)``. At ``beta = 0`` the weights play no role.

    Examples
    --------
    >>> import cage_games as cg
    >>> box = cg.ContinuousActions(t1=(-0.3, 0.7), t2=(-0.3, 0.7), resolution=11)
    >>> box.names, box.initial_grid().shape
    (('t1', 't2'), (11, 11))
    """

    def __init__(
        self,
        bounds: Mapping[str, tuple[float, float]] | None = None,
        /,
        *,
        resolution: int = 21,
        **axes: tuple[float, float],
    ) -> None:
        spec = dict(bounds or {})
        for name in axes:
            if name in spec:
                raise ValueError(f"dimension {name!r} is given twice")
        spec.update(axes)
        if not spec:
            raise ValueError(
                "ContinuousActions needs at least one dimension, e.g. ContinuousActions(t=(0, 1))"
            )
        lo, hi = [], []
        for name, b in spec.items():
            _check_name(name)
            try:
                a, z = (float(x) for x in b)
            except (TypeError, ValueError):
                raise TypeError(f"bounds of {name!r} must be a pair (lo, hi), got {b!r}") from None
            if not (np.isfinite(a) and np.isfinite(z) and a < z):
                raise ValueError(f"bounds of {name!r} must be finite with lo < hi, got {b!r}")
            lo.append(a)
            hi.append(z)
        if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)):
            raise TypeError(f"resolution must be an integer >= 2, got {resolution!r}")
        if resolution < 2:
            raise ValueError(
                f"resolution must be >= 2 (both ends of each interval), got {resolution}"
            )
        self._names = tuple(spec)
        self.lower = np.array(lo)
        self.upper = np.array(hi)
        self.lower.setflags(write=False)
        self.upper.setflags(write=False)
        self.resolution = int(resolution)

    @property
    def names(self) -> tuple[str, ...]:
        return self._names

    @property
    def bounds(self) -> dict[str, tuple[float, float]]:
        return {
            n: (float(a), float(b))
            for n, a, b in zip(self._names, self.lower, self.upper, strict=True)
        }

    @property
    def volume(self) -> float:
        return float(np.prod(self.upper - self.lower))

    def initial_grid(self) -> ActionGrid:
        """The uniform grid with ``resolution`` points per dimension."""
        return ActionGrid(
            **{
                n: np.linspace(a, b, self.resolution)
                for n, a, b in zip(self._names, self.lower, self.upper, strict=True)
            }
        )

    def reference_weights(self, grid: ActionGrid) -> np.ndarray:
        """Each cell's share of the box's volume (sums to 1), shape ``(grid.size,)``."""
        return grid.cell_volumes(self.lower, self.upper) / self.volume

    def __repr__(self) -> str:
        parts = ", ".join(f"{n}=({a:g}, {b:g})" for n, (a, b) in self.bounds.items())
        return f"ContinuousActions({parts}, resolution={self.resolution})"
