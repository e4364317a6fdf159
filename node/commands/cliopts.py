"""The settings flags (--coordinator, --ollama, --model) shared by the commands that talk to
Ollama or the coordinator, and the one call that turns them into `Settings`.

Cheap to import: no requests, no eth-account, no zmq (status uses it)."""
import functools
from collections.abc import Callable
from typing import Any

import click

from node.home import Home


def settings_options(*, coordinator: bool = True) -> Callable[[Callable[..., Any]], Any]:
    """Add --ollama (repeatable), --model and, unless `coordinator=False`, --coordinator. The
    command receives `ollama` (tuple), `model` and `coordinator` (None without the flag) as
    keyword arguments, for `load_from_flags`."""

    def decorate(func: Callable[..., Any]) -> Any:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            kwargs.setdefault("coordinator", None)
            return func(*args, **kwargs)

        wrapper = click.option("--model", metavar="NAME", default=None,
                               help="Model to serve [env PARALLELIX_MODEL; default llama3.2].")(wrapper)
        wrapper = click.option("--ollama", metavar="URL", multiple=True,
                               help="Ollama address; repeat for one Ollama per GPU "
                                    "[env OLLAMA_HOST].")(wrapper)
        if coordinator:
            wrapper = click.option("--coordinator", metavar="URL", default=None,
                                   help="Coordinator base URL [env PARALLELIX_COORDINATOR].")(wrapper)
        return wrapper

    return decorate


def node_options(func: Callable[..., Any]) -> Any:
    """--node-id, --gpu, --cpu, --workers and --metrics: how `start` runs, which `service install` also
    takes so the service runs the same way. The command receives `node_id`, `gpu`, `cpu`,
    `workers`, `metrics`; `gpu_choice` turns the two switches into one."""
    func = click.option("--metrics", metavar="[ADDR:]PORT",
                        help="Serve Prometheus metrics on http://ADDR:PORT/metrics; ADDR "
                             "defaults to 127.0.0.1 [env PARALLELIX_METRICS].")(func)
    func = click.option("--workers", type=click.IntRange(min=1), metavar="N",
                        help="Worker processes per Ollama endpoint [env PARALLELIX_WORKERS].")(func)
    func = click.option("--cpu", is_flag=True,
                        help="Run on the CPU and claim tier 1 (not with --gpu).")(func)
    func = click.option("--gpu", is_flag=True,
                        help="Refuse to start without a GPU (not with --cpu).")(func)
    return click.option("--node-id", type=click.IntRange(min=1), metavar="N",
                        help="The nodeId from registerNode (remembered in config.toml once the "
                             "coordinator accepts it) [env PARALLELIX_NODE_ID].")(func)


def gpu_choice(gpu: bool, cpu: bool) -> bool | None:
    """True for --gpu, False for --cpu, None for neither; both is a usage error."""
    if gpu and cpu:
        from node.errors import ConfigError
        raise ConfigError("--gpu and --cpu contradict each other; pass one of them (or neither "
                          "to use a GPU when there is one)")
    return True if gpu else (False if cpu else None)


def load_from_flags(home: Home, coordinator: str | None, ollama: tuple[str, ...],
                    model: str | None):
    """`load_settings` with the flags of `settings_options` (flag > env > config.toml > default)."""
    from node.settings import load_settings
    return load_settings(home, coordinator=coordinator, ollama=tuple(ollama), model=model)


def human_bytes(n: int | float | None) -> str:
    """1536 -> '1.5 KiB'; None -> '?'."""
    if n is None:
        return "?"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"
