from greenprof.sensors import ReplaySensor
from greenprof.sensors.ranks import local_rank, owned_sensors


def sensor(name, device):
    return ReplaySensor([0.0, 1.0], [0.0, 1.0], name=name, device=device)


def node():
    return [
        sensor("nvml:0", "gpu:0"),
        sensor("nvml:1", "gpu:1"),
        sensor("rapl:package-0", "cpu"),
        sensor("rapl:package-0:dram", "cpu:dram"),
    ]


def names(sensors):
    return [s.name for s in sensors]


def test_single_process_keeps_everything():
    assert names(owned_sensors(node(), rank=None)) == names(node())


def test_rank_zero_owns_its_gpu_and_the_cpu():
    assert names(owned_sensors(node(), rank=0)) == [
        "nvml:0",
        "rapl:package-0",
        "rapl:package-0:dram",
    ]


def test_other_ranks_own_only_their_gpu():
    assert names(owned_sensors(node(), rank=1)) == ["nvml:1"]
    assert names(owned_sensors(node(), rank=1, cuda_device=0)) == ["nvml:0"]


def test_local_rank_from_launcher_variables():
    assert local_rank({}) is None
    assert local_rank({"LOCAL_RANK": "3"}) == 3
    assert local_rank({"SLURM_LOCALID": "1"}) == 1
    assert local_rank({"LOCAL_RANK": "x"}) is None
