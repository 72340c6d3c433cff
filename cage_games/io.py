"""Reading and writing games as JSON files (the format the ``cage`` command reads).

The format::

    {
      "actions": ["refuse", "hedge", "answer"],          # optional labels
      "agent": {"utility": [0.0, 0.5, 1.0], "beta": 0.5}  # or {"reference": [...], "beta": ...}
      "principals": [
        {"name": "helpful",  "utility": [0.0, 1.0, 2.0]},
        {"name": "harmless", "utility": [2.0, 1.0, 0.0], "cap": 1.5}
      ]
    }

``agent.reference`` (a probability vector) builds the KL-regularised agent
``v = beta * log(reference)``; ``agent.utility`` gives ``v`` directly. ``cap`` is optional.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cage_games.game import Agent, CommonAgencyGame, Principal

__all__ = ["game_from_dict", "game_to_dict", "load_game", "save_game"]


def game_from_dict(data: Any) -> CommonAgencyGame:
    """Build a game from the JSON structure above; errors name the offending field."""
    if not isinstance(data, dict):
        raise ValueError("a game file must hold a JSON object with 'agent' and 'principals'")
    unknown = set(data) - {"agent", "principals", "actions", "description"}
    if unknown:
        raise ValueError(
            f"unknown top-level field(s) {sorted(unknown)}; expected agent, principals, actions"
        )
    agent = data.get("agent")
    if not isinstance(agent, dict):
        raise ValueError("'agent' must be an object with 'beta' and 'utility' or 'reference'")
    if "beta" not in agent:
        raise ValueError("'agent.beta' is missing (the agent's temperature, >= 0)")
    if ("utility" in agent) == ("reference" in agent):
        raise ValueError("'agent' needs exactly one of 'utility' or 'reference'")
    try:
        if "reference" in agent:
            a = Agent.kl_regularized(agent["reference"], agent["beta"])
        else:
            a = Agent(utility=agent["utility"], beta=agent["beta"])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"agent: {exc}") from None
    principals = data.get("principals")
    if not isinstance(principals, list) or not principals:
        raise ValueError("'principals' must be a non-empty list of objects with 'utility'")
    ps = []
    for i, p in enumerate(principals):
        if not isinstance(p, dict) or "utility" not in p:
            raise ValueError(f"principals[{i}] must be an object with a 'utility' list")
        try:
            ps.append(Principal(utility=p["utility"], name=p.get("name"), cap=p.get("cap")))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"principals[{i}]: {exc}") from None
    try:
        return CommonAgencyGame(a, ps, action_names=data.get("actions"))
    except (TypeError, ValueError) as exc:
        raise ValueError(str(exc)) from None


def game_to_dict(game: CommonAgencyGame) -> dict:
    """The JSON structure of a game (agent written by its utility ``v``)."""
    out: dict[str, Any] = {}
    if game.action_names is not None:
        out["actions"] = list(game.action_names)
    out["agent"] = {"utility": game.agent.utility.tolist(), "beta": game.beta}
    out["principals"] = [
        {"name": p.name, "utility": p.utility.tolist(), **({"cap": p.cap} if p.cap else {})}
        for p in game.principals
    ]
    return out


def load_game(path: str | Path) -> CommonAgencyGame:
    """Read a game file; raises ``ValueError`` with a one-line reason for any bad file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    try:
        return game_from_dict(data)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def save_game(game: CommonAgencyGame, path: str | Path) -> None:
    """Write a game file readable by :func:`load_game`."""
    Path(path).write_text(json.dumps(game_to_dict(game), indent=2) + "\n", encoding="utf-8")
