# Helper functions of the rules: config lookups and file names. The logic lives in the unetflow package.
import os

from unetflow.importer import select_slices

ENV = "../../envs/unetflow.yaml"
MAIN_MODEL = "main"
ABLATION_MODEL = "ablation"


wildcard_constraints:
    volume="[A-Za-z0-9_-]+",
    model="[A-Za-z0-9_-]+",
    role="raw|labels",
    group="[0-9]+",


def check_config():
    """Cross-key checks the schema cannot express; an error names the key and the fix."""
    volume = config["split"]["volume"]
    if volume not in config["volumes"]:
        raise ValueError(
            f"config split.volume: {volume!r} is not a key of volumes ({', '.join(config['volumes'])})"
        )
    entry = config["volumes"][volume]
    if "synthetic" not in entry and "labels" not in entry:
        raise ValueError(
            f"config split.volume: volume {volume!r} has no labels; add volumes.{volume}.labels"
        )
    if "synthetic" in entry:
        slices = entry["synthetic"]["shape"][0]
        for role in ("train", "val", "test"):
            select_slices(config["split"].get(role), slices, what=f"split.{role}")


check_config()


def volumes():
    """Names of every configured volume."""
    return list(config["volumes"])


def models():
    """The trained models: the paper's weighted loss, and the ablation when switched on."""
    return [MAIN_MODEL, ABLATION_MODEL] if config["ablation"] else [MAIN_MODEL]


def loss_weights(wildcards):
    """Loss weighting of a model: the configured one, or class balance only for the ablation."""
    return "class" if wildcards.model == ABLATION_MODEL else config["train"]["loss_weights"]


def source_file(volume, role):
    """Local path of a volume's raw or labels input (downloaded, synthesized, or used in place)."""
    entry = config["volumes"][volume]
    if "synthetic" in entry:
        return f"data/raw/{volume}/synthetic/{role}.tif"
    source = entry[role]
    if "path" in source:
        return source["path"]
    name = os.path.basename(source["url"].rstrip("/")) or role
    return f"data/raw/{volume}/{role}/{name}"


def import_inputs(wildcards):
    """The raw (and labels, when configured) files of a volume."""
    entry = config["volumes"][wildcards.volume]
    inputs = {"raw": source_file(wildcards.volume, "raw")}
    if "synthetic" in entry or "labels" in entry:
        inputs["labels"] = source_file(wildcards.volume, "labels")
    return inputs


def download_source(wildcards):
    """The config entry of a volume role to download."""
    return config["volumes"][wildcards.volume][wildcards.role]


def split_volume():
    """The labelled volume that training and evaluation slice."""
    return config["split"]["volume"]


def block_groups():
    """Indices of the independent prediction jobs of a volume."""
    return list(range(config["predict"]["block_groups"]))


def predicted_blocks(wildcards):
    """Completion flags of every block group of one volume."""
    return expand(
        "results/predict/{model}/{volume}.blocks/{group}.done",
        model=wildcards.model,
        volume=wildcards.volume,
        group=block_groups(),
    )


def labelled_volumes():
    """Volumes with ground truth, evaluated on their test slices."""
    return [
        name
        for name, entry in config["volumes"].items()
        if "synthetic" in entry or "labels" in entry
    ]
