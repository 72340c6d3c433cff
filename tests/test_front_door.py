"""One front door: ``solve(game, method=name|callable, options)`` from one registry, one record
type, and no import cycle between the menu auction and the solvers."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

import cage_games as cg
from cage_games.solvers.registry import available_methods, get_method

ROOT = Path(__file__).resolve().parents[1]


def small_game(beta):
    return cg.CommonAgencyGame(
        cg.Agent([0.0, 0.3, 0.0], beta=beta),
        [cg.Principal([2.0, 0.0, 1.0]), cg.Principal([0.0, 1.5, 1.0])],
    )


@pytest.mark.parametrize(
    ("beta", "method"),
    [(1.0, "auto"), (1.0, "newton"), (1.0, "gauss-seidel"), (0.0, "auto"), (0.0, "menu-auction")],
)
def test_every_method_returns_the_one_record_type(beta, method):
    res = cg.solve(small_game(beta), method=method)
    assert isinstance(res, cg.EquilibriumResult) and res.success
    for name in ("policy", "transfers", "thresholds", "payoffs", "residual", "action_coords"):
        assert hasattr(res, name)
    if beta == 0:
        assert isinstance(res, cg.MenuAuctionResult)
        assert res.action == res.efficient_action == res.taken_action


def test_options_dict_like_scipy_root():
    game = small_game(0.5)
    loose = cg.solve(game, method="gauss-seidel", options={"tol": 1e-4, "max_iter": 3})
    assert loose.params["tol"] == 1e-4 and loose.nit <= 3
    auction = cg.solve(small_game(0.0), method="menu-auction", options={"selection": "max-sum"})
    assert auction.selection == "max-sum"
    with pytest.raises(TypeError, match="does not take option"):
        cg.solve(game, method="newton", options={"selection": "max-sum"})
    with pytest.raises(ValueError, match="both as a keyword and in options"):
        cg.solve(game, options={"tol": 1e-3}, tol=1e-4)


def test_a_callable_method_and_a_registered_one():
    calls = []

    def my_method(game, *, tol=1e-10):
        calls.append(tol)
        return cg.solve(game, method="gauss-seidel", tol=tol)

    res = cg.solve(small_game(1.0), method=my_method, options={"tol": 1e-9})
    assert calls == [1e-9] and res.success

    def bad(game):
        return "not a result"

    with pytest.raises(TypeError, match="must return an EquilibriumResult"):
        cg.solve(small_game(1.0), method=bad)
    name = "test-only-gs"
    cg.register_method(name, my_method, replace=True)
    assert name in available_methods() and get_method(name).func is my_method
    assert cg.solve(small_game(1.0), method=name).success
    with pytest.raises(ValueError, match="already registered"):
        cg.register_method(name, my_method)
    with pytest.raises(ValueError, match="reserved"):
        cg.register_method("auto", my_method)


def test_unknown_method_and_beta_zero_misuse():
    with pytest.raises(ValueError, match="method must be one of"):
        cg.solve(small_game(1.0), method="simplex")
    with pytest.raises(NotImplementedError, match="menu auction"):
        cg.solve(small_game(0.0), method="newton")
    with pytest.raises(ValueError, match="beta = 0 games"):
        cg.solve(small_game(1.0), method="menu-auction")


def _imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_no_import_cycle_between_menu_auction_and_solvers():
    # Anywhere in the file, function bodies included.
    menu = _imported_modules(ROOT / "cage_games" / "menu_auction.py")
    assert not any(
        m.startswith(("cage_games.solvers", "cage_games.zero_temperature")) for m in menu
    )
    for path in (ROOT / "cage_games" / "solvers").glob("*.py"):
        assert "cage_games.zero_temperature" not in _imported_modules(path)


def test_one_formatter_for_records_and_reports():
    from cage_games.existence import render_report
    from cage_games.result import format_record

    res = cg.solve(small_game(1.0))
    assert format_record(res) == repr(res)
    report = cg.check_existence(small_game(1.0))
    assert render_report(report, "ExistenceReport") == format_record(
        report, title="ExistenceReport"
    )


def test_results_are_immutable():
    res = cg.solve(small_game(0.0))
    with pytest.raises(ValueError):
        res.policy[0] = 0.5
    with pytest.raises(AttributeError):
        res.success = False  # type: ignore[misc]
    assert np.isclose(res.policy.sum(), 1.0)
