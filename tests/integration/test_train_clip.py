"""`mmstream train clip` is reproducible from its seed: two short runs give the same weights."""

from safetensors.torch import load_file

from training.clip import TrainConfig, train_clip


def test_training_is_reproducible(tmp_path):
    config = TrainConfig(seed=3, steps=3, batch_size=16, eval_images=20, warmup=1)
    a = train_clip(config, out=tmp_path / "a.safetensors", log=False)
    b = train_clip(config, out=tmp_path / "b.safetensors", log=False)
    wa, wb = load_file(str(tmp_path / "a.safetensors")), load_file(str(tmp_path / "b.safetensors"))
    assert wa.keys() == wb.keys() and all(bool((wa[k] == wb[k]).all()) for k in wa)
    assert a.final_loss == b.final_loss and a.held_out_accuracy == b.held_out_accuracy
    other = train_clip(
        TrainConfig(seed=4, steps=3, batch_size=16, eval_images=20, warmup=1), out=tmp_path / "c.safetensors", log=False
    )
    assert other.final_loss != a.final_loss
