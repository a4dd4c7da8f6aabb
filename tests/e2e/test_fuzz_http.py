"""Property-based fuzzing of the HTTP routes (schemathesis) against the gateway's own OpenAPI document.

The document is fetched from a running gateway that has no workers. Requests valid and invalid by
the document go to every route with a key: no server error but the documented 503 (no worker),
every status, content type and body as the document says, invalid requests refused with a 4xx,
requests without the key refused with 401, unknown methods with 405. Then sequences along the
links schemathesis infers between routes (a file's id into a batch, a batch's id into its reads).
The gateway must still be alive and answering, with no traceback in its log.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import Case, CheckContext, Response

from tests.helpers import Stack, emptied, running_stack

KEY = "sk-fuzz-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}
EXAMPLES = 20  # generated cases per route and mode (valid, invalid), besides schemathesis's coverage cases
# The model ids the routes accept.
MODELS = {"/v1/chat/completions": "fuzz-llm", "/v1/audio/transcriptions": "fuzz-asr", "/v1/audio/speech": "fuzz-tts"}
# The one 5xx the routes may answer: no worker of the kind needed runs (this gateway has none).
NO_WORKER = {"decoder_unavailable", "audio_unavailable", "media_unavailable", "speech_unavailable"}


@pytest.fixture(scope="module")
def gateway(redis_base: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    url = emptied(f"{redis_base}/15")
    log_dir: Path = tmp_path_factory.mktemp("fuzz-http")
    with running_stack(
        url,
        log_dir,
        decoders=0,
        audio=0,
        image=0,
        api_keys=json.dumps([KEY]),
        served_model_name=MODELS["/v1/chat/completions"],
        asr_served_name=MODELS["/v1/audio/transcriptions"],
        tts_served_name=MODELS["/v1/audio/speech"],
        limit_requests_per_minute="0",  # the fuzz sends thousands a minute; limits have tests of their own
        decode_queue_timeout_s="1",  # a request that reaches a worker queue gets its 503 after 1 s, not 5
    ) as stack:
        yield stack


@pytest.fixture(scope="module")
def api(gateway: Stack) -> Any:
    config = schemathesis.Config.from_dict(
        {
            "seed": 20261129,  # the same cases every run
            "generation": {"mode": "all", "max-examples": EXAMPLES},
            "auth": {"openapi": {"apiKey": {"bearer": KEY}}},
            "request-timeout": 30,
            "checks": {
                # Replaced by `only_no_worker_errors`: a 503 is the answer when no worker runs.
                "not_a_server_error": {"enabled": False},
                # A schema cannot say every rule (an empty upload is no recording, a batch window is at
                # most 7 days), so a request valid by the document may get a 4xx; never a 5xx.
                "positive_data_acceptance": {"enabled": False},
                # Starlette answers an unknown method with the `Allow` of the first route on the path
                # (GET and DELETE /v1/files/{file_id} are two routes), not of all of them.
                "allow_header_conformance": {"enabled": False},
            },
            # Half the bodies ask for a model the routes accept, to get past that check.
            "dictionaries": {path: {"values": [model]} for path, model in MODELS.items()},
            "operations": [
                *(
                    {"include-path": path, "parameters": {"body.model": {"dictionary": path, "probability": 0.5}}}
                    for path in MODELS
                ),
                {
                    # A multipart file is bytes whatever the generator meant it to be: a `file` turned into
                    # an object arrives as a file holding JSON, which is a fine batch input.
                    "include-name": "POST /v1/files",
                    "checks": {"negative_data_rejection": {"enabled": False}},
                },
            ],
        }
    )
    return schemathesis.openapi.from_url(f"{gateway.http}/openapi.json", config=config, headers=AUTH)


def only_no_worker_errors(ctx: CheckContext, response: Response, case: Case) -> None:
    if response.status_code < 500:
        return
    assert response.status_code == 503, f"{case.operation.label} answered {response.status_code}: {response.text}"
    if case.operation.path != "/readyz":
        assert response.json()["error"]["code"] in NO_WORKER, response.text


@pytest.fixture(autouse=True)
def _node_id_for_schemathesis(request: pytest.FixtureRequest) -> None:
    # schemathesis 4.32 renames the test per route through `node._nodeid`, which pytest 9 no longer has.
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


schema = schemathesis.pytest.from_fixture("api")


@schema.parametrize()
def test_routes_answer_as_documented(case: Case) -> None:
    case.call_and_validate(additional_checks=[only_no_worker_errors])


def test_workflows_answer_as_documented(api: Any) -> None:
    """Sequences that follow the document's links: a file's id into a batch, a batch's into its reads."""

    class Workflow(api.as_state_machine()):  # type: ignore[misc]
        def validate_response(self, response: Response, case: Case, **kwargs: Any) -> None:
            super().validate_response(response, case, additional_checks=[only_no_worker_errors], **kwargs)

    Workflow.run(
        settings=settings(
            max_examples=15,
            stateful_step_count=6,
            deadline=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
    )


def test_gateway_survives_the_fuzz(gateway: Stack) -> None:
    assert gateway.procs["gateway"].poll() is None, gateway.logs()
    assert httpx.get(f"{gateway.http}/healthz", timeout=10).status_code == 200
    assert httpx.get(f"{gateway.http}/v1/models", headers=AUTH, timeout=10).status_code == 200
    log = (gateway.log_dir / "gateway.log").read_text()
    assert "Traceback" not in log and "internal error" not in log, log[-5000:]
