import pytest
import torch
from torch import nn

import greenprof
from greenprof.errors import ConfigError
from greenprof.sensors import ReplaySensor


def sensor():
    return ReplaySensor([0.0, 3600.0], [0.0, 50.0 * 3600.0], name="const")


def model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))


def train_step(net, opt):
    net(torch.randn(4, 8)).sum().backward()
    opt.step()
    opt.zero_grad()


def energy_per_region(session):
    return session.layers().groupby("region")["energy_j"].sum().to_dict()


def test_context_manager_and_decorator_label_rows_and_rows_still_add_up():
    net = model()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)

    @greenprof.region("score")
    def score():
        return net(torch.randn(4, 8)).sum()

    with greenprof.profile(sensors=[sensor()], interval_s=0.001) as prof:
        for _ in range(3):
            train_step(net, opt)
        with greenprof.region("extra"):
            train_step(net, opt)
        score()
    layers = prof.session.layers()
    assert set(layers["region"]) == {"", "extra", "score"}
    extra = layers[layers["region"] == "extra"]
    assert set(extra["phase"]) >= {"forward", "backward", "optimizer"}
    assert extra["calls"][extra["module"] == "0"].sum() == 2  # forward and backward of one step
    assert layers.loc[layers["region"] == "", "calls"].max() == 3
    assert layers["energy_j"].sum() == pytest.approx(prof.session.total_energy_j)


def test_grad_free_forwards_are_eval_only_in_a_run_that_trains():
    net = model()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    with greenprof.profile(sensors=[sensor()]) as prof:
        train_step(net, opt)
        with torch.no_grad():
            net(torch.randn(4, 8))
    layers = prof.session.layers()
    evaluated = layers[(layers["region"] == "eval") & (layers["module"] == "0")]
    assert list(evaluated["calls"]) == [1]

    with greenprof.profile(sensors=[sensor()]) as inference:
        with torch.no_grad():
            net(torch.randn(4, 8))
    assert set(inference.session.layers()["region"]) == {""}


def test_a_user_region_is_kept_inside_grad_free_forwards():
    net = model()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    with greenprof.profile(sensors=[sensor()]) as prof:
        train_step(net, opt)
        with torch.no_grad(), greenprof.region("decode"):
            net(torch.randn(4, 8))
    regions = set(prof.session.layers()["region"])
    assert "decode" in regions and "eval" not in regions


def test_regions_outside_a_profile_do_nothing_and_bad_names_are_refused():
    with greenprof.region("free"):
        model()(torch.randn(2, 8))
    with pytest.raises(ConfigError, match="non-empty name"):
        greenprof.region("")


def test_a_region_raising_inside_closes_and_later_rows_are_outside_it():
    net = model()
    with greenprof.profile(sensors=[sensor()]) as prof:
        with pytest.raises(RuntimeError), greenprof.region("broken"):
            net(torch.randn(4, 8))
            raise RuntimeError("boom")
        net(torch.randn(4, 8))
    layers = prof.session.layers()
    assert layers.loc[(layers["region"] == "") & (layers["module"] == "0"), "calls"].sum() == 1
    assert (
        layers.loc[(layers["region"] == "broken") & (layers["module"] == "0"), "calls"].sum() == 1
    )
