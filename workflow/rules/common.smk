# Helper functions of the rules: config lookups and file names. The logic lives in the unetflow package.
import os
from urllib.parse import unquote, urlparse

from unetflow.slices import select_slices

ENV = "../../envs/unetflow.yaml"
MAIN_MODEL = "main"
ABLATION_MODEL = "ablation"


wildcard_constraints:
    volume="[A-Za-z0-9_-]+",
    model="[A-Za-z0-9_-]+",
    filename="[^/]+",
    group="[0-9]+",


def use_volumes_of_configfile():
    """Volumes named in a --configfile (or --config) are the run's only ones.

    Snakemake merges a --configfile into config.yaml key by key; for volumes that would add config.yaml's
    synthetic volume to the user's. Every other key keeps the key-by-key merge.
    """
    named = (workflow.config_settings.overwrite_config or {}).get("volumes")
    if named:
        for name in [name for name in config["volumes"] if name not in named]:
            del config["volumes"][name]


def download_name(source):
    """Local file name of a url source: its `filename`, else the last part of the URL's path."""
    if source.get("filename"):
        return source["filename"]
    return os.path.basename(unquote(urlparse(source["url"]).path).rstrip("/"))


def check_sources(volume, entry):
    """A volume's sources: url ones need a file name, raw and labels share a name only for one URL."""
    downloads = {}
    for role in ("raw", "labels"):
        source = entry.get(role)
        if source is None:
            continue
        key = f"config volumes.{volume}.{role}"
        if role == "raw" and source.get("invert"):
            raise ValueError(f"{key}.invert: invert applies to labels only; drop it from raw")
        if "url" not in source:
            if source.get("filename"):
                raise ValueError(
                    f"{key}.filename: a path source is used in place, not downloaded; drop filename"
                )
            continue
        name = download_name(source)
        if name in ("", ".", ".."):
            raise ValueError(
                f"{key}.url: {source['url']!r} ends in no file name; set {key}.filename"
            )
        first_role, first = downloads.setdefault(name, (role, source))
        if first is source:
            continue
        other = f"volumes.{volume}.{first_role}"
        if first["url"] != source["url"]:
            raise ValueError(
                f"{key}: {other} downloads another URL to the same file data/raw/{volume}/{name}; "
                "give one of them its own filename"
            )
        if first.get("sha256") != source.get("sha256"):
            raise ValueError(
                f"{key}.sha256: {other} is the same URL (one download) with another sha256; "
                "give both the file's sha256"
            )


def check_config():
    """Cross-key checks the schema cannot express; an error names the key and the fix."""
    for name, entry in config["volumes"].items():
        check_sources(name, entry)
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
    if not config["split"]["train"]:
        raise ValueError('config split.train: no training slices; give some, e.g. "0-9"')
    if "synthetic" in entry:
        slices = entry["synthetic"]["shape"][0]
        for role in ("train", "val", "test"):
            select_slices(config["split"].get(role), slices, what=f"split.{role}")


use_volumes_of_configfile()
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
    return f"data/raw/{volume}/{download_name(source)}"


def import_inputs(wildcards):
    """The raw (and labels, when configured) files of a volume."""
    entry = config["volumes"][wildcards.volume]
    inputs = {"raw": source_file(wildcards.volume, "raw")}
    if "synthetic" in entry or "labels" in entry:
        inputs["labels"] = source_file(wildcards.volume, "labels")
    return inputs


def download_source(wildcards):
    """The url source downloaded to data/raw/{volume}/{filename} (raw and labels may share it)."""
    entry = config["volumes"][wildcards.volume]
    for role in ("raw", "labels"):
        source = entry.get(role)
        if source and "url" in source and download_name(source) == wildcards.filename:
            return source
    raise ValueError(
        f"data/raw/{wildcards.volume}/{wildcards.filename}: no url source of volumes.{wildcards.volume} "
        "downloads to this file"
    )


def split_volume():
    """The labelled volume that training and evaluation slice."""
    return config["split"]["volume"]


def block_groups():
    """Indices of the independent prediction jobs of a volume."""
    return list(range(config["predict"]["block_groups"]))


def predict_cluster_kind():
    """None for the threads engine; else where the dask workers of prediction run (local, slurm, address)."""
    if config["predict"]["scheduler"] != "distributed":
        return None
    return config["predict"]["cluster"]["kind"]


def predict_threads():
    """Cores of a predict job: its own threads, its local dask workers, or one (a client of remote workers)."""
    kind = predict_cluster_kind()
    if kind is None:
        return 2
    if kind == "local":
        cluster = config["predict"]["cluster"]
        return cluster["workers"] * cluster["threads"]
    return 1


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
