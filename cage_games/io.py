"""Reading and writing games as JSON files (the format the ``cage`` command reads).

The format::

    {
      "description": "free text, ignored",                 # optional
      "actions": ["refuse", "hedge", "answer"],            # optional labels
      "agent": {"utility": [0.0, 0.5, 1.0], "beta": 0.5,   # or {"reference": [...], "beta": ...}
                "support": [true, true, true]},            # optional, with "utility" only
      "principals": [
        {"name": "helpful",  "utility": [0.0, 1.0, 2.0]},
        {"name": "harmless", "utility": [2.0, 1.0, 0.0], "cap": 1.5}
      ]
    }

``agent.reference`` (a probability vector) builds the KL-regularised agent
``v = beta * log(reference)``, whose support is where the reference is positive;
``agent.utility`` gives ``v`` directly, and ``agent.support`` (booleans) the actions the agent
may take at all (default: every action). ``cap`` and ``name`` are optional.

The schema is strict: an unknown key (``"Cap"``), a duplicated key, a string or boolean where a
number belongs, ``NaN`` or ``Infinity`` are errors, never silently ignored or converted.
:func:`save_game` then :func:`load_game` gives back the same game (every float is written
exactly, and the support is kept).
"""

from __future__ import annotations

import difflib
import json
import os
import sys
from pathlib import Path
from typing import Any

from cage_games.game import Agent, CommonAgencyGame, Principal

__all__ = ["game_from_dict", "game_to_dict", "load_game", "parse_game", "save_game"]

_TOP_KEYS = ("agent", "principals", "actions", "description")
_AGENT_KEYS = ("utility", "reference", "beta", "support")
_PRINCIPAL_KEYS = ("name", "utility", "cap")


def _check_keys(obj: dict, allowed: tuple[str, ...], where: str) -> None:
    unknown = [k for k in obj if k not in allowed]
    if unknown:
        hints = []
        for k in unknown:
            close = difflib.get_close_matches(str(k).lower(), allowed, n=1, cutoff=0.6)
            hints.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ValueError(
            f"unknown field(s) in {where}: {', '.join(hints)}; allowed: {', '.join(allowed)}"
        )


def game_from_dict(data: Any) -> CommonAgencyGame:
    """Build a game from the JSON structure above.

    Raises
    ------
    ValueError
        For any departure from the schema, with a message naming the offending field.
    """
    if not isinstance(data, dict):
        raise ValueError("a game file must hold a JSON object with 'agent' and 'principals'")
    _check_keys(data, _TOP_KEYS, "the top level")
    agent = data.get("agent")
    if not isinstance(agent, dict):
        raise ValueError("'agent' must be an object with 'beta' and 'utility' or 'reference'")
    _check_keys(agent, _AGENT_KEYS, "'agent'")
    if "beta" not in agent:
        raise ValueError("'agent.beta' is missing (the agent's temperature, >= 0)")
    if ("utility" in agent) == ("reference" in agent):
        raise ValueError("'agent' needs exactly one of 'utility' or 'reference'")
    if "support" in agent and "reference" in agent:
        raise ValueError(
            "'agent.support' goes with 'utility' only: with 'reference' the support is where "
            "the reference is positive"
        )
    try:
        if "reference" in agent:
            a = Agent.kl_regularized(agent["reference"], agent["beta"])
        else:
            support = agent.get("support")
            if support is not None and not (
                isinstance(support, list) and all(isinstance(s, bool) for s in support)
            ):
                raise TypeError("support must be a list of true/false, one per action")
            a = Agent(utility=agent["utility"], beta=agent["beta"], support=support)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"agent: {exc}") from None
    principals = data.get("principals")
    if not isinstance(principals, list) or not principals:
        raise ValueError("'principals' must be a non-empty list of objects with 'utility'")
    ps = []
    for i, p in enumerate(principals):
        if not isinstance(p, dict) or "utility" not in p:
            raise ValueError(f"principals[{i}] must be an object with a 'utility' list")
        _check_keys(p, _PRINCIPAL_KEYS, f"principals[{i}]")
        try:
            ps.append(Principal(utility=p["utility"], name=p.get("name"), cap=p.get("cap")))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"principals[{i}]: {exc}") from None
    actions = data.get("actions")
    if actions is not None and not isinstance(actions, list):
        raise ValueError("'actions' must be a list of strings, one label per action")
    try:
        return CommonAgencyGame(a, ps, action_names=actions)
    except (TypeError, ValueError) as exc:
        raise ValueError(str(exc)) from None


def game_to_dict(game: CommonAgencyGame) -> dict:
    """The JSON structure of a game (the agent written by its utility ``v`` and support)."""
    out: dict[str, Any] = {}
    if game.action_names is not None:
        out["actions"] = list(game.action_names)
    agent: dict[str, Any] = {"utility": game.agent.utility.tolist(), "beta": game.beta}
    if not game.agent.support.all():
        agent["support"] = game.agent.support.tolist()
    out["agent"] = agent
    out["principals"] = [
        {"name": p.name, "utility": p.utility.tolist(), **({"cap": p.cap} if p.cap else {})}
        for p in game.principals
    ]
    return out


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict:
    keys = [k for k, _ in pairs]
    dup = sorted({k for k in keys if keys.count(k) > 1})
    if dup:
        raise ValueError(f"duplicated key(s) {dup}: each field may appear once")
    return dict(pairs)


def _no_constants(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number; write a finite number (or null for no cap)")


def parse_game(text: str | bytes, source: str = "<string>") -> CommonAgencyGame:
    """Parse the text of a game file; every error is a ``ValueError`` naming ``source``.

    Parameters
    ----------
    text : str or bytes
        The JSON text (bytes must be UTF-8).
    source : str
        What to call the input in error messages (a path, ``"<stdin>"``).
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")  # a byte-order mark from some editors is fine
        except UnicodeDecodeError as exc:
            raise ValueError(
                f"{source}: not a text file (byte {exc.start} is not UTF-8); a game file is "
                "JSON text, see docs/cli.rst"
            ) from None
    text = text.removeprefix("\ufeff")
    if "\x00" in text:
        raise ValueError(f"{source}: not a text file (it contains NUL bytes); a game file is JSON")
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"{source}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    except RecursionError:
        raise ValueError(
            f"{source}: the JSON is nested too deeply to be a game file (a game needs 3 levels)"
        ) from None
    except ValueError as exc:
        if "integer string conversion" in str(exc):
            raise ValueError(
                f"{source}: a number has more than 4300 digits; write it with an exponent "
                "(e.g. 1e300) or rescale the game"
            ) from None
        raise ValueError(f"{source}: {exc}") from None
    try:
        return game_from_dict(data)
    except ValueError as exc:
        raise ValueError(f"{source}: {exc}") from None


def load_game(path: str | Path) -> CommonAgencyGame:
    """Read a game file (``"-"``: standard input).

    Raises
    ------
    ValueError
        For any bad file, with a one-line reason that starts with the file's name.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a file path (str or os.PathLike), got {type(path).__name__}")
    if str(path) == "-":
        if sys.stdin.isatty():  # nothing piped in: say what is awaited instead of hanging mutely
            print("reading a JSON game from standard input (end with Ctrl-D)...", file=sys.stderr)
        return parse_game(sys.stdin.buffer.read(), "<stdin>")
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ValueError(f"{path}: is a directory; give a JSON game file") from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot read ({exc.strerror})") from None
    return parse_game(raw, str(path))


def save_game(game: CommonAgencyGame, path: str | Path) -> None:
    """Write a game file readable by :func:`load_game` (lossless: floats are written exactly).

    Raises
    ------
    TypeError
        ``game`` is not a game, or ``path`` not a path.
    ValueError
        The file cannot be written (the message names it and gives the reason).
    """
    if not isinstance(game, CommonAgencyGame):
        raise TypeError(f"game must be a cage_games.CommonAgencyGame, got {type(game).__name__}")
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a file path (str or os.PathLike), got {type(path).__name__}")
    text = json.dumps(game_to_dict(game), indent=2, allow_nan=False) + "\n"
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"{path}: cannot write the game file ({exc.strerror or exc})") from None
