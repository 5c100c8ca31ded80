import pandas as pd
import pytest

from greenprof.attribute.tree import inclusive_energy
from greenprof.session import OUTSIDE_MODULE, Session


def layers(*rows: tuple[str, str, str, float]) -> pd.DataFrame:
    """Rows of (module, type, phase, joules); bounds are 0.9x and 1.2x, calls 2, time 1 s."""
    frame = pd.DataFrame(rows, columns=["module", "type", "phase", "energy_j"])
    frame["calls"] = 2
    frame["time_s"] = 1.0
    frame["energy_lo_j"] = frame["energy_j"] * 0.9
    frame["energy_hi_j"] = frame["energy_j"] * 1.2
    return frame


def by_module(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.set_index("module")


def test_inclusive_is_self_plus_descendants_over_all_phases() -> None:
    tree = by_module(
        inclusive_energy(
            layers(
                ("", "Net", "forward", 1.0),
                ("enc", "Encoder", "forward", 2.0),
                ("enc", "Encoder", "backward", 3.0),
                ("enc.fc", "Linear", "forward", 4.0),
                ("enc.fc", "Linear", "backward", 5.0),
                ("head", "Linear", "forward", 6.0),
            )
        )
    )
    assert tree.loc["enc.fc", "energy_j"] == 9.0
    assert tree.loc["enc", "energy_j"] == 14.0
    assert tree.loc["enc", "self_energy_j"] == 5.0
    assert tree.loc["", "energy_j"] == 21.0
    assert tree.loc["", "energy_lo_j"] == pytest.approx(21.0 * 0.9)
    assert tree.loc["", "energy_hi_j"] == pytest.approx(21.0 * 1.2)
    assert tree.loc["enc", "parent"] == "" and tree.loc["enc.fc", "parent"] == "enc"
    assert tree.loc["enc.fc", "depth"] == 2
    assert tree.loc["enc", "calls"] == 2  # a backward is not a second call
    assert tree.loc["enc", "self_time_s"] == 2.0


def test_prefix_is_by_name_component_not_by_characters() -> None:
    tree = by_module(
        inclusive_energy(
            layers(
                ("", "Net", "forward", 0.0),
                ("fc1", "L", "forward", 1.0),
                ("fc10", "L", "forward", 10.0),
            )
        )
    )
    assert tree.loc["fc1", "energy_j"] == 1.0


def test_containers_that_never_ran_are_added_with_zero_self_energy() -> None:
    tree = by_module(
        inclusive_energy(
            layers(("", "Net", "forward", 1.0), ("blocks.0.attn", "Attention", "forward", 2.0))
        )
    )
    assert tree.loc["blocks", "self_energy_j"] == 0.0
    assert tree.loc["blocks", "type"] == ""
    assert tree.loc["blocks", "energy_j"] == 2.0
    assert tree.loc["blocks.0", "energy_j"] == 2.0
    assert tree.loc["", "energy_j"] == 3.0


def test_outside_time_and_optimizers_are_not_part_of_the_model() -> None:
    tree = by_module(
        inclusive_energy(
            layers(
                ("", "Net", "forward", 1.0),
                ("optimizer:Adam", "Adam", "optimizer", 2.0),
                (OUTSIDE_MODULE, "", "other", 4.0),
            )
        )
    )
    assert tree.loc["", "energy_j"] == 1.0
    assert pd.isna(tree.loc[OUTSIDE_MODULE, "parent"]) and pd.isna(
        tree.loc["optimizer:Adam", "parent"]
    )
    assert tree["self_energy_j"].sum() == 7.0


def test_several_roots_without_a_common_root() -> None:
    tree = by_module(
        inclusive_energy(
            layers(
                ("Generator", "Generator", "forward", 1.0),
                ("Generator.fc", "Linear", "forward", 2.0),
                ("Critic.fc", "Linear", "forward", 3.0),
            )
        )
    )
    assert tree.loc["Generator", "energy_j"] == 3.0 and tree.loc["Generator", "depth"] == 0
    assert tree.loc["Critic", "energy_j"] == 3.0 and tree.loc["Critic.fc", "depth"] == 1
    assert "" not in tree.index


def test_sorted_by_inclusive_energy_and_empty_is_empty() -> None:
    tree = inclusive_energy(layers(("", "Net", "forward", 1.0), ("a", "L", "forward", 5.0)))
    assert tree["module"].tolist() == ["", "a"]
    assert inclusive_energy(layers()).empty


def test_session_inclusive_uses_it() -> None:
    frame = layers(("", "Net", "forward", 1.0), ("a", "L", "forward", 5.0))
    assert by_module(Session({}, frame).inclusive()).loc["", "energy_j"] == 6.0
