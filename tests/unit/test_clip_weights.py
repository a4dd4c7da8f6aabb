import pytest
import redis

from shared.config import Settings
from shared.errors import ModelError
from workers.image.bundled import BUNDLED_SHA256, BUNDLED_WEIGHTS
from workers.image.service import ImageService


class _Presence:
    name = "test"

    def update(self, **_: object) -> None: ...


def _service(**settings: object) -> ImageService:
    return ImageService(Settings(**settings), client=redis.Redis(), presence=_Presence())  # type: ignore[arg-type]


def test_bundled_checkpoint_is_verified_by_sha256():
    path, sha = _service()._pretrained()
    assert path == str(BUNDLED_WEIGHTS) and sha == BUNDLED_SHA256


def test_a_checkpoint_path_and_its_expected_hash(tmp_path):
    copy = tmp_path / "clip.safetensors"
    copy.write_bytes(BUNDLED_WEIGHTS.read_bytes())
    assert _service(clip_pretrained=str(copy))._pretrained()[1] == BUNDLED_SHA256
    with pytest.raises(ModelError, match="expected"):
        _service(clip_pretrained=str(copy), clip_pretrained_sha256="0" * 64)._pretrained()


def test_hub_weights_need_downloads_allowed():
    with pytest.raises(ModelError, match="downloads are off"):
        _service(clip_model="ViT-B-32", clip_pretrained="laion2b_s34b_b79k")._pretrained()
    assert _service(clip_pretrained="laion2b_s34b_b79k", allow_downloads=True)._pretrained() == (
        "laion2b_s34b_b79k",
        "hub",
    )
