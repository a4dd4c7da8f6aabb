"""The broker carries JSON only: a pickled message would let anyone who can write to Redis run code in a worker."""

import pytest
from kombu.exceptions import ContentDisallowed
from kombu.serialization import dumps, loads

from shared.celery_app import create_celery
from shared.config import Settings


@pytest.mark.parametrize("broker", ["redis://127.0.0.1:1/0", "amqp://guest@127.0.0.1:1//"])
def test_tasks_are_sent_and_accepted_as_json_only(broker: str):
    conf = create_celery(Settings(broker_url=broker)).conf
    assert conf.task_serializer == conf.result_serializer == "json"
    assert list(conf.accept_content) == ["json"]
    content_type, encoding, body = dumps({"request": {"v": 1}}, serializer="pickle")
    with pytest.raises(ContentDisallowed):  # what a worker does with a pickled message
        loads(body, content_type, encoding, accept=conf.accept_content)
