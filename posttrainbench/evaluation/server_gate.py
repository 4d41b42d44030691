"""inspect-ai's vLLM provider, with every request held at the HTTP client until the evaluation's `vllm serve` answers.

inspect does seconds of Python work per thousand items before their requests go out: sample set-up, solvers, the
model call's events and message copies, the OpenAI client building the request. The evaluation starts as soon as
the server is launched and each request waits, fully built, in the client's request hook, so all of that overlaps
the minutes the server takes to load instead of following them (benchmarks/gpu_eval.py measures the gap between the
evaluator and vLLM's engine). A gate in front of the solver, or of `generate`, left most of it after the start-up.
"""

from collections.abc import Iterator
from contextlib import contextmanager

from inspect_ai.model import modelapi
from inspect_ai.model._providers.vllm import VLLMAPI

from posttrainbench.evaluation.vllm_server import Starting

PROVIDER = "ptb-vllm"
_STARTING: dict[str, Starting] = {}  # served model name -> the start its requests wait for


@contextmanager
def held_until_served(served_name: str, starting: Starting) -> Iterator[None]:
    """Requests to `served_name` made inside the block wait for `starting`; if the server fails to start they raise
    its ServerStartError, which inspect does not retry."""
    _STARTING[served_name] = starting
    try:
        yield
    finally:
        del _STARTING[served_name]


class GatedVllmAPI(VLLMAPI):
    def _create_http_client(self):
        client = super()._create_http_client()
        starting = _STARTING.get(self.base_model)
        if starting is not None:
            async def wait_for_server(request: object) -> None:
                await starting.wait_async()
                if starting.error is not None:
                    raise starting.error

            client.event_hooks["request"].insert(0, wait_for_server)
        return client


@modelapi(name=PROVIDER)
def gated_vllm() -> type[GatedVllmAPI]:
    return GatedVllmAPI
