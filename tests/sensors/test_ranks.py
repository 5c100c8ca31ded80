from greenprof.sensors import ReplaySensor
from greenprof.sensors.ranks import local_rank, owned_sensors, share_out


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


def test_a_rank_that_sees_one_gpu_owns_it(fake_nvml, monkeypatch):
    from greenprof.sensors import nvml

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")  # the launcher gave local rank 1 its GPU
    kept, ownership = share_out(nvml.discover(), rank=1)
    assert names(kept) == ["nvml:1"] and ownership.warnings == []
    assert ownership.warnings_at_end(0) == []  # cuda:0 is that same GPU


def test_cuda_initialised_on_another_ranks_gpu_is_named(fake_nvml):
    from greenprof.sensors import nvml

    kept, ownership = share_out(nvml.discover(), rank=1, cuda_device=0)
    assert names(kept) == ["nvml:0"]
    (warning,) = ownership.warnings_at_end(0)
    assert warning.startswith("local rank 1 had CUDA initialised on cuda:0")
    assert "torch.cuda.set_device(int(os.environ['LOCAL_RANK']))" in warning
    assert "CUDA_VISIBLE_DEVICES" in warning


def test_a_rank_that_ends_on_a_gpu_it_did_not_measure_is_named(fake_nvml):
    from greenprof.sensors import nvml

    kept, ownership = share_out(nvml.discover(), rank=1)  # CUDA not initialised yet
    assert names(kept) == ["nvml:1"] and ownership.warnings == []
    assert ownership.warnings_at_end(1) == []  # it did compute on its own GPU
    assert ownership.warnings_at_end(None) == []  # it never used CUDA
    (warning,) = ownership.warnings_at_end(0)  # every rank stayed on the default cuda:0
    assert "local rank 1 was measured on gpu:1" in warning and "cuda:0" in warning
    assert "set_device" in warning


def test_more_ranks_than_gpus_measure_no_gpu_and_say_so(fake_nvml):
    from greenprof.sensors import nvml

    kept, ownership = share_out(nvml.discover(), rank=2)
    assert names(kept) == []
    assert ownership.warnings[0].startswith("local rank 2 sees 2 GPUs (gpu:0, gpu:1)")


def test_profile_under_a_launcher_puts_the_warning_in_the_session(fake_nvml, monkeypatch):
    import torch

    import greenprof
    from greenprof.sensors import ranks

    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(ranks, "current_cuda_device", lambda: 0)
    with greenprof.profile(sensors=["nvml"], calibrate=False) as prof:
        torch.nn.Linear(2, 2)(torch.randn(1, 2))
    assert [s["name"] for s in prof.session.meta["sensors"]] == ["nvml:0"]
    assert any(w.startswith("local rank 1 had CUDA initialised") for w in prof.session.warnings)


def test_the_merge_names_ranks_that_measured_the_same_gpu(tmp_path):
    from greenprof.launch import merge_parts
    from greenprof.testing.synthetic import synthetic_session

    for rank in (0, 1):
        part = synthetic_session(duration_s=1.0, n_blocks=1, seed=rank)
        part.meta.update(command="c", rank=rank, world_size=2, host="node7")
        part.meta["sensors"] = [{"name": "nvml:0", "device": "gpu:0", "measured": True}]
        part.save(tmp_path / f"rank-{rank}")
    warning = merge_parts(tmp_path).warnings[0]
    assert warning.startswith("ranks 0, 1 on node7 all measured nvml:0: its joules are counted 2")
    assert "CUDA_VISIBLE_DEVICES" in warning
