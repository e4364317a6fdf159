"""`start`: attach this machine to an on-chain node and serve inference until stopped."""
import asyncio
import logging
import os
import resource
import sys

import click

from node.commands.clikit import common_options
from node.commands.cliopts import settings_options
from node.errors import ConfigError
from node.home import Home

log = logging.getLogger("parallelix.start")


@click.command("start")
@click.option("--node-id", type=click.IntRange(min=1), help="The nodeId from registerNode "
              "(remembered in config.toml) [env PARALLELIX_NODE_ID].")
@click.option("--gpu/--cpu", "gpu", default=None,
              help="--gpu: refuse to start without a GPU. --cpu: run on the CPU, claim tier 1.")
@click.option("--workers", type=click.IntRange(min=1), help="Worker processes per Ollama endpoint.")
@click.option("--metrics", metavar="[ADDR:]PORT", help="Serve Prometheus metrics on "
              "http://ADDR:PORT/metrics; ADDR defaults to 127.0.0.1 [env PARALLELIX_METRICS].")
@click.option("--graceful-timeout", type=click.FloatRange(1, 600), default=15.0,
              show_default=True, help="Seconds to finish requests in flight on SIGTERM.")
@common_options
@settings_options()
def cmd(home: Home, as_json: bool, node_id: int | None, coordinator: str | None,
        ollama: tuple[str, ...], model: str | None, gpu: bool | None, workers: int | None,
        metrics: str | None, graceful_timeout: float) -> None:
    """Attach to the node (--node-id) and serve inference until stopped (SIGTERM drains)."""
    from node.settings import load_settings, remember_node_id

    def resolve():
        return load_settings(home, coordinator=coordinator, ollama=ollama, model=model,
                             node_id=node_id, workers=workers, metrics=metrics)

    settings = resolve()
    if settings.node_id is None:
        raise ConfigError("no node id: pass --node-id N (the nodeId the Console showed when "
                          "you registered this key)")
    from node.keyfile import read_key
    from node.logsetup import setup_logging
    from node.daemon.runlock import RunLock
    from node.daemon.supervisor import Supervisor

    secret = read_key(home.key)
    os.umask(0o077)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file can carry the key
    lock = RunLock(home)
    lock.acquire()  # before logging: a refused second start must not write to the first's log
    try:
        setup_logging(home.log, as_json, debug=os.environ.get("PARALLELIX_DEBUG") == "1")
        run = prepare(settings, secret, gpu, graceful_timeout, resolve)
        if node_id is not None:
            remember_node_id(home, node_id)
        code = asyncio.run(Supervisor(run).run())
    finally:
        lock.release()
    sys.exit(code)


def prepare(settings, secret: bytes, gpu: bool | None, graceful_timeout: float, resolve):
    """Probe the machine and Ollama, and build the signed-manifest inputs."""
    from node.machine.hardware import probe_hardware
    from node.identity import Signer
    from node.daemon.manifest import build_manifest
    from node.daemon.supervisor import NodeRun
    from node.machine.tier import tier_for
    from workers.ollama import OllamaError, get_version, has_model, list_models

    hw = probe_hardware()
    if gpu and not hw.gpus:
        raise ConfigError("--gpu was given but no GPU was found (see `parallelix-node probe`); "
                          "drop --gpu or use --cpu")
    cpu_only = gpu is False
    tier = tier_for(hw, cpu_only=cpu_only)
    models: list[str] = []
    version = None
    for spec in settings.workers:
        try:
            version = version or get_version(spec.ollama)
            found = list_models(spec.ollama)
        except OllamaError as e:
            log.warning("ollama.unavailable endpoint=%s reason=%s: requests will fail until "
                        "it answers", spec.ollama, e)
            continue
        models += [m["name"] for m in found]
        if not has_model(found, settings.model):
            log.warning("ollama.model_missing endpoint=%s model=%s: run `parallelix-node "
                        "models pull %s`", spec.ollama, settings.model, settings.model)
    signer = Signer(secret)
    manifest = build_manifest(hw, tier, models, settings.slots, version)
    log.info("starting node=%s address=%s tier=%d workers=%d coordinator=%s", settings.node_id,
             signer.address, tier, settings.slots, settings.coordinator)
    return NodeRun(settings=settings, node_id=settings.node_id, signer=signer, secret=secret,
                   manifest=manifest, tier=tier, cpu_only=cpu_only,
                   graceful_timeout=graceful_timeout, reload=resolve)
