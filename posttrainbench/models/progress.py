"""Progress display for long model fetches, and silencing the libraries' own bars when asked for quiet."""

import functools
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

console = Console(stderr=True)


def byte_progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not enabled,
    )


def step_progress(enabled: bool) -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        disable=not enabled,
    )


def say(enabled: bool, message: str) -> None:
    if enabled:
        console.print(message)


@contextmanager
def quiet_libraries(quiet: bool) -> Iterator[None]:
    """huggingface_hub and transformers draw their own tqdm bars, and transformers' GGUF reader a plain tqdm that
    neither switch reaches (nor TQDM_DISABLE, which tqdm reads once, when it is imported): that one is replaced by
    a disabled bar for the duration. These switches are process-wide, so restore them."""
    if not quiet:
        yield
        return
    import huggingface_hub.utils as hub_utils
    import transformers.modeling_gguf_pytorch_utils as gguf_utils
    from transformers.utils import logging as hf_logging

    hub_was_off = hub_utils.are_progress_bars_disabled()
    tf_was_on = hf_logging.is_progress_bar_enabled()
    gguf_tqdm = gguf_utils.tqdm
    hub_utils.disable_progress_bars()
    hf_logging.disable_progress_bar()
    gguf_utils.tqdm = functools.partial(gguf_tqdm, disable=True)
    try:
        yield
    finally:
        gguf_utils.tqdm = gguf_tqdm
        if not hub_was_off:
            hub_utils.enable_progress_bars()
        if tf_was_on:
            hf_logging.enable_progress_bar()
