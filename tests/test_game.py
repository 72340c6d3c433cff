"""Model objects: validation at the front door, immutability."""

import numpy as np
import pytest

import cage_games as cg


def test_agent_and_principal_are_immutable():
    a = cg.Agent([0.0, 1.0], 1.0)
    with pytest.raises(AttributeError):
        a.beta = 2.0  # type: ignore[misc]
    with pytest.raises(ValueError):
        a.utility[0] = 3.0
    p = cg.Principal([1.0, 2.0])
    with pytest.raises(ValueError):
        p.utility[0] = 3.0


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"utility": [0.0, np.nan], "beta": 1.0}, ValueError, "NaN"),
        ({"utility": [0.0, np.inf], "beta": 1.0}, ValueError, "finite"),
        ({"utility": [], "beta": 1.0}, ValueError, "at least one action"),
        ({"utility": [[0.0, 1.0]], "beta": 1.0}, ValueError, "1-D"),
        ({"utility": "abc", "beta": 1.0}, TypeError, "utility"),
        ({"utility": [0.0, 1.0], "beta": -0.5}, ValueError, "beta must be >= 0"),
        ({"utility": [0.0, 1.0], "beta": np.nan}, ValueError, "beta must be finite"),
        ({"utility": [0.0, 1.0], "beta": "1"}, TypeError, "beta"),
        ({"utility": [0.0, 1.0], "beta": 1.0, "support": [False, False]}, ValueError, "support"),
        ({"utility": [0.0, 1.0], "beta": 1.0, "support": [1, 0]}, TypeError, "booleans"),
    ],
)
def test_agent_validation(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        cg.Agent(**kwargs)


@pytest.mark.parametrize(
    ("reference", "match"),
    [([0.0, 0.0], "all zeros"), ([0.5, -0.5, 1.0], "negative"), ([0.2, 0.2], "sum to 1")],
)
def test_kl_agent_validation(reference, match):
    with pytest.raises(ValueError, match=match):
        cg.Agent.kl_regularized(reference, 1.0)


def test_kl_agent_utility():
    a = cg.Agent.kl_regularized([0.25, 0.75, 0.0], beta=2.0)
    np.testing.assert_allclose(a.utility[:2], 2.0 * np.log([0.25, 0.75]))
    assert a.support.tolist() == [True, True, False]


@pytest.mark.parametrize(
    ("cap", "exc"), [(0.0, ValueError), (-1.0, ValueError), (np.nan, ValueError), ("2", TypeError)]
)
def test_principal_cap_validation(cap, exc):
    with pytest.raises(exc, match="cap"):
        cg.Principal([0.0, 1.0], cap=cap)


def test_infinite_cap_means_uncapped():
    assert cg.Principal([0.0, 1.0], cap=np.inf).cap is None


def test_game_validation():
    agent = cg.Agent([0.0, 1.0], 1.0)
    with pytest.raises(ValueError, match="at least one principal"):
        cg.CommonAgencyGame(agent, [])
    with pytest.raises(ValueError, match="2 actions"):
        cg.CommonAgencyGame(agent, [cg.Principal([0.0, 1.0, 2.0])])
    with pytest.raises(TypeError, match="wrap a single one"):
        cg.CommonAgencyGame(agent, cg.Principal([0.0, 1.0]))
    with pytest.raises(TypeError, match="Principal"):
        cg.CommonAgencyGame(agent, [[0.0, 1.0]])
    with pytest.raises(TypeError, match="Agent"):
        cg.CommonAgencyGame([0.0, 1.0], [cg.Principal([0.0, 1.0])])
    with pytest.raises(ValueError, match="unique"):
        cg.CommonAgencyGame(agent, [cg.Principal([0.0, 1.0], "a"), cg.Principal([1.0, 0.0], "a")])
    with pytest.raises(ValueError, match="action_names"):
        cg.CommonAgencyGame(agent, [cg.Principal([0.0, 1.0])], action_names=["x"])


def test_game_defaults():
    g = cg.CommonAgencyGame(
        cg.Agent([0.0, 1.0], 1.0), [cg.Principal([0.0, 1.0]), cg.Principal([1.0, 0.0], cap=2.0)]
    )
    assert g.names == ("principal_0", "principal_1")
    assert g.caps[0] == np.inf and g.caps[1] == 2.0 and g.has_caps
    assert g.utilities.shape == (2, 2)
    assert "principal_0" in repr(g)


def test_action_names_as_one_string_is_an_error():
    # a str is a sequence of characters: "abc" must not silently become three labels
    agent = cg.Agent([0.0, 1.0, 2.0], beta=1.0)
    with pytest.raises(TypeError, match="not one string"):
        cg.CommonAgencyGame(agent, [cg.Principal([1.0, 0.0, 0.0])], action_names="abc")
    game = cg.CommonAgencyGame(agent, [cg.Principal([1.0, 0.0, 0.0])], action_names=["a", "b", "c"])
    assert game.action_names == ("a", "b", "c")
