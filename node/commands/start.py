"""`start`: attach this machine to an on-chain node and serve inference until stopped."""
import asyncio
import logging
import os
import resource
import sys

import click

from node.commands.clikit import common_options
from node.commands.cliopts import gpu_choice, node_options, settings_options
from node.errors import ConfigError, NodeError
from node.home import Home

log = logging.getLogger("parallelix.start")


@click.command("start")
@node_options
@click.option("--graceful-timeout", type=click.FloatRange(1, 600), default=15.0,
              show_default=True, help="Seconds to finish requests in flight on SIGTERM.")
@common_options
@settings_options()
def cmd(home: Home, as_json: bool, node_id: int | None, coordinator: str | None,
        ollama: tuple[str, ...], model: str | None, gpu: bool, cpu: bool, workers: int | None,
        metrics: str | None, graceful_timeout: float) -> None:
    """Attach to the node (--node-id) and serve inference until stopped (SIGTERM drains).

    Once the coordinator accepts the attach, the settings given as flags (--node-id,
    --coordinator, --ollama, --model, --metrics) are saved in config.toml, so a plain `start` and the
    service run the same node the same way; a refused attach saves nothing."""
    from node.settings import load_settings

    use_gpu = gpu_choice(gpu, cpu)

    def resolve():
        return load_settings(home, coordinator=coordinator, ollama=ollama, model=model,
                             node_id=node_id, workers=workers, metrics=metrics)

    settings = resolve()
    if settings.node_id is None:
        raise ConfigError("no node id: pass --node-id N (the nodeId the Console showed when "
                          "you registered this key)")
    from node.keyfile import read_key
    from node.logsetup import setup_logging, LastError
    from node.daemon.runlock import RunLock
    from node.daemon.supervisor import Supervisor

    secret = read_key(home)
    os.umask(0o077)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file can carry the key
    lock = RunLock(home)
    lock.acquire()  # before logging: a refused second start must not write to the first's log
    try:
        setup_logging(home.log, as_json, debug=os.environ.get("PARALLELIX_DEBUG") == "1")
        last_error = LastError.install()
        given = [name for name, flag in (("node_id", node_id), ("coordinator", coordinator),
                                         ("ollama", ollama), ("model", model),
                                         ("metrics", metrics)) if flag]
        run = prepare(settings, secret, use_gpu, graceful_timeout, resolve,
                      on_attached=lambda: _remember(settings, given))
        code = asyncio.run(Supervisor(run).run())
    finally:
        lock.release()
    if code != 0:
        raise DaemonExit(last_error.message or f"the daemon stopped with status {code}; see "
                         f"{home.log}", code)
    sys.exit(code)


class DaemonExit(NodeError):
    """The daemon stopped with a failure status: its last error is the one line shown (and
    {"error", "exitCode"} with --json)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _remember(settings, given: list[str]) -> None:
    """Save the flags this start attached with (see `cmd`); a failure to save is a warning."""
    from node.settings import config_values, remember

    values = config_values(settings, given)
    if not values:
        return
    try:
        notes = remember(settings.home, values)
    except ConfigError as e:
        log.warning("config.not_saved reason=%s", e)
        return
    for note in notes:
        log.warning("config.not_saved reason=%s", note)
    saved = [k for k in values if not (k == "ollama" and notes)]
    if saved:
        log.info("config.saved keys=%s file=%s", ",".join(saved), settings.home.config)


def prepare(settings, secret: bytes, gpu: bool | None, graceful_timeout: float, resolve,
            on_attached):
    """Probe the machine and Ollama, and build the signed-manifest inputs."""
    from node.machine.hardware import probe_hardware
    from node.identity import Signer
    from node.daemon.manifest import build_manifest, survey_ollama
    from node.daemon.supervisor import NodeRun
    from node.machine.tier import tier_for

    hw = probe_hardware()
    if gpu and not hw.gpus:
        raise ConfigError("--gpu was given but no GPU was found (see `parallelix-node probe`); "
                          "drop --gpu or use --cpu")
    cpu_only = gpu is False
    tier = tier_for(hw, cpu_only=cpu_only)
    survey = survey_ollama([spec.ollama for spec in settings.workers], settings.model)
    for endpoint, reason in survey.down.items():
        log.warning("ollama.unavailable endpoint=%s reason=%s: the node attaches but takes no "
                    "requests for this endpoint until it answers", endpoint, reason)
    for endpoint in survey.missing_model:
        log.warning("ollama.model_missing endpoint=%s model=%s: run `parallelix-node "
                    "models pull %s`", endpoint, settings.model, settings.model)
    signer = Signer(secret)
    manifest = build_manifest(hw, tier, survey.models, settings.slots, survey.version)
    log.info("starting node=%s address=%s tier=%d workers=%d coordinator=%s", settings.node_id,
             signer.address, tier, settings.slots, settings.coordinator)
    return NodeRun(settings=settings, node_id=settings.node_id, signer=signer, secret=secret,
                   manifest=manifest, tier=tier, cpu_only=cpu_only,
                   graceful_timeout=graceful_timeout, reload=resolve, on_attached=on_attached)
