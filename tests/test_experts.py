"""Expert training: checkpoints that a later session resumes from."""

import json

from sb3_diffusion_il.benchmark.experts import train_expert

SAC_KWARGS = dict(learning_starts=100, batch_size=64)


def test_training_resumes_from_its_checkpoint(tmp_path):
    train_expert("Pendulum-v1", tmp_path, 300, seed=0, eval_every=150, algo_kwargs=SAC_KWARGS)
    model = train_expert("Pendulum-v1", tmp_path, 450, seed=0, eval_every=150, algo_kwargs=SAC_KWARGS)
    assert model.num_timesteps == 450
    # The buffer grew with the budget and kept the first run's transitions, oldest first.
    assert model.replay_buffer.buffer_size == 450 and model.replay_buffer.size() == 450
    assert [step for step, _, _ in json.loads((tmp_path / "curve.json").read_text())] == [150, 300, 450]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curve.json", "expert.zip", "replay_buffer.pkl"]
