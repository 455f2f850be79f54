"""Every key in conf/ does something: the keys of a node with a ``_target_`` are parameters of its
target (in every option of every group, every experiment and debug file), and the apps' own keys
(``train.yaml``, ``evaluate.yaml``, ``predict.yaml``) are read by the app or interpolated."""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hydra
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = ROOT / "conf"
# train.yaml's groups whose options each get composed (hparams_search needs a plugin: composed when installed).
GROUPS = ("model/transform", "model/backbone", "model/anchor_generator", "model/rpn", "model/roi_heads",
          "data", "optimizer", "scheduler", "trainer", "precision", "callbacks", "logger", "experiment", "debug")  # fmt: skip
APPS = {"train": ["train.py"], "evaluate": ["evaluate.py"], "predict": ["predict.py"]}
# Targets whose **kwargs go on to another callable, named by the library's documentation.
KWARGS_GO_TO = {"lightning.pytorch.strategies.DDPStrategy": "torch.nn.parallel.DistributedDataParallel"}


def _compose(config_name: str, overrides: list[str]) -> dict[str, Any]:
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose(config_name=config_name, overrides=overrides)
    return OmegaConf.to_container(cfg, resolve=False)  # keys only: no resolver needs Hydra's runtime


def _compositions() -> list[tuple[str, list[str]]]:
    cases = [("train", []), ("evaluate", [])]  # predict.yaml has no _target_: test_every_app_key_is_read
    for group in GROUPS:
        cases += [("train", [f"{group}={path.stem}"]) for path in sorted((CONF_DIR / group).glob("*.yaml"))]
    return cases


def _target_nodes(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every dict with a ``_target_`` in a config tree, with its dotted path."""
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    if isinstance(node, dict) and "_target_" in node:
        yield path, node
    for key, child in children:
        yield from _target_nodes(child, f"{path}.{key}".lstrip("."))


def _unread_keys(node: dict[str, Any]) -> set[str]:
    """Keys of a ``_target_`` node that its target does not take. A target with ``**kwargs``
    hands the rest to its ``source`` node's target (the data module) or to ``KWARGS_GO_TO``'s."""
    parameters = inspect.signature(hydra.utils.get_method(node["_target_"])).parameters
    rest = {key for key in node if not key.startswith("_")} - set(parameters)
    takes_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    if rest and takes_kwargs and isinstance(node.get("source"), dict):
        rest -= set(inspect.signature(hydra.utils.get_method(node["source"]["_target_"])).parameters)
    if rest and takes_kwargs and node["_target_"] in KWARGS_GO_TO:
        rest -= set(inspect.signature(hydra.utils.get_method(KWARGS_GO_TO[node["_target_"]])).parameters)
    return rest


@pytest.mark.parametrize(("config_name", "overrides"), _compositions(), ids=lambda value: str(value))
def test_every_target_node_key_is_a_parameter(config_name, overrides):
    cfg = _compose(config_name, overrides)
    cfg.pop("hydra", None)
    nodes = dict(_target_nodes(cfg))
    assert nodes, "a composition without any _target_"
    for path, node in nodes.items():
        assert not _unread_keys(node), f"{config_name} {overrides}: {path}: {_unread_keys(node)} are not parameters of {node['_target_']}"


def _plain_keys(node: dict[str, Any], path: str = "") -> Iterator[str]:
    """Dotted paths of the leaves outside ``_target_`` nodes (what the app itself must read)."""
    for key, child in node.items():
        dotted = f"{path}.{key}".lstrip(".")
        if isinstance(child, dict) and "_target_" not in child:
            yield from _plain_keys(child, dotted)
        elif not isinstance(child, dict):
            yield dotted


@pytest.mark.parametrize("app", sorted(APPS))
def test_every_app_key_is_read(app):
    cfg = _compose(app, [])
    cfg.pop("hydra", None)
    code = "\n".join((ROOT / name).read_text() for name in APPS[app])
    code += "\n".join(path.read_text() for path in (ROOT / "frcnn").rglob("*.py"))
    conf = "\n".join(path.read_text() for path in CONF_DIR.rglob("*.yaml"))
    unread = []
    for dotted in _plain_keys(cfg):
        if dotted.startswith("callbacks.") or dotted.startswith("logger."):
            continue  # a null entry that turns a callback or logger off
        key = dotted.rsplit(".", 1)[-1]
        read = re.search(rf"(\.{key}\b|\"{key}\"|'{key}')", code) is not None
        interpolated = re.search(rf"\$\{{{re.escape(dotted)}\}}", conf) is not None
        if not (read or interpolated):
            unread.append(dotted)
    assert not unread, f"{app}.yaml keys that nothing reads: {unread}"


def test_a_dead_key_is_caught():
    """The check fails where it should: a key the target lacks, a key nothing reads."""
    assert _unread_keys({"_target_": "frcnn.modeling.transform.ImageTransform", "min_size": 800, "shrink": 2}) == {"shrink"}
    data = {"_target_": "frcnn.data.datamodule.DetectionDataModule", "source": {"_target_": "frcnn.data.sources.shapes.Shapes"}}
    assert _unread_keys({**data, "shapes": {}, "batch_size": 2, "colour": "red"}) == {"colour"}
