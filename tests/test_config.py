"""The one config model: config.yaml, the schema file and the model agree; errors name the key and the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from unetflow.config.base import script_safe
from unetflow.config.load import load_config, load_config_files, merge_config
from unetflow.config.model import AugmentConfig, ClusterConfig, Config, TrainConfig
from unetflow.config.schema import json_schema, schema_yaml
from unetflow.config.split import SplitConfig, check_entries, source_names
from unetflow.errors import InputError

ROOT = Path(__file__).resolve().parents[1]


def keys(values: dict[str, Any], prefix: str = "") -> set[str]:
    """Every key of a nested mapping, dotted (null values left out: they are unset optional keys)."""
    found = set()
    for key, value in values.items():
        if value is None:
            continue
        found.add(prefix + key)
        if isinstance(value, dict):
            found |= keys(value, f"{prefix}{key}.")
    return found


def test_config_yaml_lists_exactly_the_models_keys_with_its_defaults() -> None:
    written = yaml.safe_load((ROOT / "config.yaml").read_text())
    assert keys(written) == keys(Config().dump())
    assert load_config(written) == Config()


def test_the_schema_file_is_the_one_generated_from_the_model() -> None:
    assert (ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text() == schema_yaml()


def test_the_schema_states_every_default_and_enum_of_the_model() -> None:
    schema = json_schema()
    train = schema["$defs"]["TrainConfig"]["properties"]
    assert train["optimizer"]["enum"] == ["sgd", "adam"] and train["optimizer"]["default"] == "adam"
    assert schema["$defs"]["WeightsConfig"]["properties"]["w0"]["default"] == 10.0
    assert schema["additionalProperties"] is False
    for name, section in schema["$defs"].items():
        assert section.get("additionalProperties") is False, name
        for key, field in section["properties"].items():
            assert field.get("description"), f"{name}.{key} has no description"


def test_the_cli_and_the_workflow_merge_a_users_file_the_same_way(tmp_path: Path) -> None:
    user = tmp_path / "my.yaml"
    user.write_text(yaml.safe_dump({"train": {"steps": 7}, "model": {"base_channels": 16}}))
    config = load_config_files([user])
    assert config.train.steps == 7 and config.train.optimizer == "adam"  # the rest: config.yaml's
    assert config.model.base_channels == 16 and config.model.depth == 4
    workflow = merge_config(
        yaml.safe_load((ROOT / "config.yaml").read_text()), yaml.safe_load(user.read_text())
    )
    assert load_config(workflow) == config


def test_a_users_volumes_replace_the_default_ones_with_their_split(tmp_path: Path) -> None:
    user = {"volumes": {"mine": {"raw": {"path": "a.tif"}, "labels": {"path": "b.tif"}}}}
    merged = merge_config(Config().dump(), user)
    assert list(merged["volumes"]) == ["mine"] and merged["split"] is None
    with pytest.raises(InputError, match="split: training needs a split naming a labelled volume"):
        load_config(merged)
    predict_only = load_config(merge_config(merged, {"pretrained": {"path": "model.pt"}}))
    assert predict_only.split is None and predict_only.pretrained.path == "model.pt"
    both = merge_config(Config().dump(), {**user, "split": {"volume": "mine", "train": "0-3", "test": "4"}})
    assert load_config(both).split.volume == "mine"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"train": {"learning_rate": 0.1}}, "train.learning_rate: unknown key"),
        ({"train": {"lr": "1e-3"}}, "YAML reads 1e-3 as text"),
        ({"ablation": "true"}, "ablation: .*--config reads true as text: write True there"),
        ({"train": {"label_offset": "yes"}}, "train.label_offset: .*'none' or 'auto'"),
        ({"train": {"steps": 2.5}}, "train.steps: Input should be a valid integer"),
        ({"model": {"depth": 0}}, "model.depth: Input should be greater than or equal to 1"),
        ({"predict": {"threshold": "high"}}, 'predict.threshold: .*auto.*\\(got "high"\\)'),
        ({"predict": {"cluster": {"queue": "gpu\n#SBATCH --x"}}}, "predict.cluster.queue: must be one word"),
        ({"predict": {"cluster": {"job_extra": ["--qos=a; rm -rf /"]}}}, "predict.cluster.job_extra.0"),
        ({"predict": {"cluster": {"kind": "address"}}}, "kind address needs address"),
        ({"volumes": {}}, "volumes: names no volume"),
        ({"volumes": {"v": {"raw": {"path": "a", "url": "http://x/a"}}}}, "exactly one of url and path"),
        ({"volumes": {"v": {"raw": {"path": "a", "invert": True}}}}, "volumes.v.raw.invert: unknown key"),
        ({"volumes": {"v": {"raw": {"url": "http://x/"}}}}, "ends in no file name"),
        ({"volumes": {"synthetic": {"synthetic": {"shape": [0, 64, 64]}}}}, "shape.0"),
        ({"volumes": {"synthetic": {"synthetic": {"shape": [9000, 9000, 9000]}}}}, "make it smaller"),
        ({"split": {"test": "12-99"}}, "split.test: slice 99 is out of range"),
        ({"split": {"val": "9-11"}}, "split.train and split.val share slices \\[9\\]"),
        ({"split": {"volume": "nowhere"}}, "split.volume 'nowhere' is not a key of volumes"),
        ({"split": {"test": []}}, "split.test names no slices; give some"),
        (
            {"split": {"region": {"z": [0, 20]}}},
            r"split.region.z \[0, 20\] reaches past the volume's 16 slices",
        ),
        ({"split": {"region": {"y": [9, 9]}}}, r"split.region: y \[9, 9\]: start must be below stop[^;]*$"),
        (
            {"split": {"region": {"z": [0, 8]}}},
            r"split.train: slices \[8, 9\] lie outside split.region.z \[0, 8\)",
        ),
        ({"split": []}, "split: .*at least 1 item"),
        ({"split": [{"volume": "synthetic", "val": "0-2"}]}, "no entry of split has train slices"),
        (
            {"split": [{"volume": "synthetic", "train": "0-9"}, {"volume": "synthetic", "test": "9-12"}]},
            r"split\[0\]\.train and split\[1\]\.test share pixels of slices \[9\]",
        ),
        (
            {
                "split": [
                    {"volume": "synthetic", "train": "0-9", "name": "a"},
                    {"volume": "synthetic", "name": "a"},
                ]
            },
            "two entries are named 'a'",
        ),
        (
            {"split": [{"volume": "synthetic", "train": "0-9"}, {"volume": "x", "test": "1"}]},
            r"split\[1\]\.volume 'x'",
        ),
        ({"train": {"init_from": {"path": "m.pt"}}, "pretrained": {"path": "m.pt"}}, "init_from fine-tunes"),
        ({"volumes": {"v": {"raw": {"path": "a"}, "labels": {"path": "b", "ignore": 0}}}}, "labels.ignore"),
    ],
)
def test_a_bad_value_is_one_error_naming_the_key(change: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError, match=message):
        load_config(merge_config(Config().dump(), change))


def test_sections_built_by_hand_are_checked_like_the_file() -> None:
    with pytest.raises(InputError, match=r"train\.stepz: unknown key"):
        TrainConfig.from_dict({"stepz": 3})
    with pytest.raises(InputError, match="low must not exceed high"):
        AugmentConfig.from_dict({"gamma": [1.2, 0.8]})
    config = TrainConfig.from_dict({"steps": 5, "augment": {"elastic_std": 4.0, "contrast": [0.9, 1.1]}})
    assert config.augment == AugmentConfig(elastic_std=4.0, contrast=[0.9, 1.1])
    assert TrainConfig.from_dict(config.dump()) == config  # the checkpoint form reads back


def test_strings_bound_for_a_job_script_are_checked_again_where_the_script_is_built() -> None:
    assert script_safe("--constraint=a100", key="k") == "--constraint=a100"
    for bad in ("a\nb", "$(reboot)", "x y", "a;b", "`id`"):
        with pytest.raises(InputError, match="k: must be one word"):
            script_safe(bad, key="k")
    unchecked = ClusterConfig.model_construct(queue="gpu\n#SBATCH --mem=1T")
    from unetflow.predict.cluster import slurm_cluster_options

    with pytest.raises(InputError, match=r"predict\.cluster\.queue"):
        slurm_cluster_options(unchecked, log_directory="logs")


def test_a_config_file_that_is_not_a_mapping_or_not_yaml_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "none.yaml"
    with pytest.raises(InputError, match=f"config file {missing} does not exist"):
        load_config_files([missing])
    broken = tmp_path / "broken.yaml"
    broken.write_text("train: {steps: [1,\n")
    with pytest.raises(InputError, match="cannot be read as YAML"):
        load_config_files([broken])
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(InputError, match="not a mapping"):
        load_config_files([listing])


def test_the_split_is_one_entry_or_a_list_of_volumes_and_regions() -> None:
    """The old single mapping is one entry; a list names several volumes or annotated regions of one, and
    each entry gets a name (its volume's, numbered where a volume has several)."""
    single = Config()
    assert [entry.volume for entry in single.split_entries()] == ["synthetic"]
    assert single.split_keys() == ["split"] and single.training_volumes() == ["synthetic"]
    volumes = {
        "synthetic": {"synthetic": {"shape": [16, 256, 256]}},
        "other": {"synthetic": {"shape": [4, 64, 64], "seed": 1}},
    }
    split = [
        {"volume": "synthetic", "region": {"y": [0, 128]}, "train": "all"},
        {"volume": "synthetic", "region": {"y": [128, 256]}, "val": "0-1", "test": "2-15"},
        {
            "volume": "other",
            "name": "crop",
            "region": {"z": [1, 4], "x": [10, 50]},
            "train": "1-2",
            "test": "3",
        },
    ]
    config = load_config(merge_config(Config().dump(), {"volumes": volumes, "split": split}))
    entries = config.split_entries()
    assert source_names(entries) == ["synthetic-1", "synthetic-2", "crop"]
    assert config.split_keys() == ["split[0]", "split[1]", "split[2]"]
    assert config.training_volumes() == ["synthetic", "other"] and config.report_volume() == "synthetic"
    chosen = check_entries(entries, config.split_keys(), {"synthetic": (16, 256, 256), "other": (4, 64, 64)})
    assert chosen[0]["train"] == list(range(16)) and chosen[2] == {"train": [1, 2], "val": [], "test": [3]}
    outside = [
        SplitConfig.from_dict({"volume": "other", "region": {"z": [1, 3]}, "train": "all", "test": "3"})
    ]
    with pytest.raises(InputError, match=r"split\[2\]\.test: slices \[3\] lie outside split\[2\]\.region\.z"):
        check_entries(outside, ["split[2]"], {"other": (4, 64, 64)})
    assert config.dump()["split"][2]["region"] == {"z": [1, 4], "y": None, "x": [10, 50]}
    assert load_config(config.dump()) == config  # the dumped form (Snakemake's config) reads back
