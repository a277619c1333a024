"""Config loading: schema validation, overrides, error messages and the shipped YAML files."""
import copy
import pickle
from pathlib import Path

import pytest
import yaml

from utils.config import Config, ConfigError, SCHEMA, build_config, check_files, load_config, parse_override
from utils.errors import report_user_errors

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
SHIPPED = sorted(CONFIG_DIR.rglob("*.yaml"))

# The original repository's config files (same folders and names) plus the demo configs and the open_clip example.
EXPECTED_FILES = {
    "k400/k400_train_rgb_vitb-32-f8.yaml", "k400/k400_train_rgb_vitb-16-f8.yaml",
    "k400/k400_train_rgb_vitl-14-f8.yaml", "k400/k400_train_rgb_vitl-14-f16.yaml",
    "k400/k400_train_rgb_vitl-14-336-f8.yaml", "k400/k400_train_rgb_vitl-14-336-f16.yaml",
    "k400/k400_train_rgb_vitl-14-336-f32.yaml", "k400/k400_train_video_attr_vitb-32-f8.yaml",
    "k400/k400_few_shot.yaml",
    "k600/k600_zero_shot_split1.yaml", "k600/k600_zero_shot_split2.yaml", "k600/k600_zero_shot_split3.yaml",
    "ucf101/ucf_k400_finetune.yaml", "ucf101/ucf_k400_finetune_336.yaml", "ucf101/ucf_zero_shot.yaml",
    "ucf101/ucf_few_shot.yaml",
    "hmdb51/hmdb_k400_finetune.yaml", "hmdb51/hmdb_k400_finetune_336.yaml", "hmdb51/hmdb_zero_shot.yaml",
    "hmdb51/hmdb_few_shot.yaml",
    "anet/anet_k400_finetune.yaml", "anet/anet_k400_finetune_336.yaml", "anet/anet_zero_shot.yaml",
    "anet/anet_few_shot.yaml",
    "charades/charades_clip_finetune.yaml", "charades/charades_k400_finetune.yaml",
    "charades/charades_k400_finetune_336.yaml",
    "demo/demo.yaml", "demo/demo_no_temporal.yaml", "demo/demo_attributes.yaml", "demo/demo_vit.yaml",
    "k400/k400_train_rgb_openclip-vitb-32-laion2b-f8.yaml",
}

MINIMAL = {"data": {"dataset": "toy", "num_classes": 3, "label_list": "labels.csv"},
           "network": {"arch": "ViT-B/32"}}


def write_yaml(folder, content, name="config.yaml"):
    path = folder / name
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    return path


def with_value(section, key, value):
    raw = copy.deepcopy(MINIMAL)
    raw.setdefault(section, {})[key] = value
    return raw


def test_every_original_config_and_the_demo_is_shipped():
    assert {path.relative_to(CONFIG_DIR).as_posix() for path in SHIPPED} == EXPECTED_FILES


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.relative_to(CONFIG_DIR).as_posix())
def test_shipped_config_keeps_written_values_and_fills_defaults(path):
    raw = yaml.safe_load(path.read_text())
    config = load_config(path)
    for section, schema in SCHEMA.items():
        written = raw.get(section)
        if not isinstance(schema, dict):
            expected = written if section in raw else schema.default
            assert config[section] == expected, section
            continue
        for key, field in schema.items():
            value = config[section][key]
            if key not in (written or {}):
                assert value == field.default, f"{section}.{key}"
            elif "float" in field.kinds:
                assert value == pytest.approx(float(written[key])) and isinstance(value, float), f"{section}.{key}"
            else:
                assert value == written[key], f"{section}.{key}"


def test_shipped_list_paths_point_into_lists_folder():
    for path in SHIPPED:
        data = load_config(path).data
        if path.parent.name == "demo":
            continue
        for key in ("train_list", "val_list", "label_list"):
            if data[key] is not None:
                assert data[key].startswith(f"lists/{data.dataset}/"), (path, key)


def test_arch_spelling_and_float_values_of_original_configs_survive():
    config = load_config(CONFIG_DIR / "k400" / "k400_train_rgb_vitl-14-336-f32.yaml")
    assert config.network.arch == "ViT-L/14-336px"
    assert config.data.num_segments == 32 and config.data.batch_size == 5 and config.data.input_size == 336
    assert config.solver.lr == 5e-5 and config.solver.clip_ratio == 0.1
    zero_shot = load_config(CONFIG_DIR / "k600" / "k600_zero_shot_split2.yaml")
    assert zero_shot.data.modality == "video" and zero_shot.data.train_list is None
    assert zero_shot.solver.epochs == SCHEMA["solver"]["epochs"].default  # no solver section: defaults


def test_unknown_key_names_dotted_path_file_and_valid_keys(tmp_path):
    path = write_yaml(tmp_path, with_value("data", "num_segmnets", 8))
    with pytest.raises(ConfigError) as error:
        load_config(path)
    message = str(error.value)
    assert "data.num_segmnets" in message and str(path) in message
    assert "did you mean data.num_segments" in message
    assert "valid keys of section 'data': dataset, modality, num_segments" in message


def test_unknown_section_lists_top_level_keys(tmp_path):
    path = write_yaml(tmp_path, dict(MINIMAL, optimiser={"lr": 1}))
    valid = "seed, resume, pretrain, data, network, solver, logging"
    with pytest.raises(ConfigError, match=rf"unknown key optimiser.*valid keys of the top level: {valid}"):
        load_config(path)


@pytest.mark.parametrize("section, key, value, expected", [
    ("data", "batch_size", "eight", "an integer"),
    ("data", "batch_size", True, "an integer"),
    ("data", "random_shift", "yes please", "true/false"),
    ("solver", "lr", "fast", "a number"),
    ("network", "tm", 3, "true/false or a string or null"),
    ("solver", "lr_decay_step", [10, "x"], "an integer or a list of integers or null"),
])
def test_wrong_type_names_key_expected_type_and_value(tmp_path, section, key, value, expected):
    path = write_yaml(tmp_path, with_value(section, key, value))
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert f"{section}.{key} must be {expected}, got {value!r}" in str(error.value)


@pytest.mark.parametrize("value", ["tsm", True, "False"])
def test_a_temporal_module_in_the_image_encoder_is_an_error_naming_network_tm(tmp_path, value):
    with pytest.raises(ConfigError, match=f"network.tm is {value!r}.*set network.tm to False or null"):
        load_config(write_yaml(tmp_path, with_value("network", "tm", value)))
    for accepted in (False, None):
        assert load_config(write_yaml(tmp_path, with_value("network", "tm", accepted))).network.tm is accepted


def test_scientific_notation_without_dot_is_a_float(tmp_path):
    path = write_yaml(tmp_path, "data: {dataset: toy, num_classes: 3, label_list: l.csv}\n"
                                "network: {arch: RN50}\nsolver: {lr: 1e-5, weight_decay: 2, clip_ratio: 5.e-2}\n")
    assert yaml.safe_load(path.read_text())["solver"]["lr"] == "1e-5"  # why the loader must convert
    solver = load_config(path).solver
    assert solver.lr == 1e-5 and isinstance(solver.lr, float)
    assert solver.weight_decay == 2.0 and isinstance(solver.weight_decay, float)
    assert solver.clip_ratio == 0.05


def test_choices_and_minimum_are_enforced():
    with pytest.raises(ConfigError, match="network.sim_header must be one of Transf, None, got 'transf'"):
        build_config(with_value("network", "sim_header", "transf"))
    with pytest.raises(ConfigError, match="data.batch_size must be at least 1, got 0"):
        build_config(with_value("data", "batch_size", 0))
    with pytest.raises(ConfigError, match="solver.lr_decay_step must be at least 1"):
        build_config(with_value("solver", "lr_decay_step", [10, 0]))


@pytest.mark.parametrize("crops", [2, 4, 0])
def test_test_crops_must_be_a_supported_count(tmp_path, crops, capsys, monkeypatch):
    """data.test_crops takes only the crop counts the test transform has: one error line that names the key,
    not a ValueError of datasets/transforms.py when the dataset is built."""
    with pytest.raises(ConfigError, match=f"data.test_crops must be one of 1, 3, 5, 10, got {crops}"):
        build_config(with_value("data", "test_crops", crops))
    with pytest.raises(ConfigError, match="data.test_crops must be one of 1, 3, 5, 10"):
        build_config(MINIMAL, [f"data.test_crops={crops}"])
    monkeypatch.delenv("BIKE_TRACEBACK", raising=False)
    with pytest.raises(SystemExit) as exit_request:
        report_user_errors(load_config, write_yaml(tmp_path, with_value("data", "test_crops", crops)))
    err = capsys.readouterr().err
    assert exit_request.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert "data.test_crops" in err
    for supported in (1, 3, 5, 10):
        assert build_config(with_value("data", "test_crops", supported)).data.test_crops == supported


def test_missing_required_key_and_non_mapping_section(tmp_path):
    raw = copy.deepcopy(MINIMAL)
    del raw["network"]["arch"]
    with pytest.raises(ConfigError, match="missing required key network.arch"):
        build_config(raw)
    with pytest.raises(ConfigError, match="data must be a mapping of keys, got 5"):
        build_config(dict(MINIMAL, data=5))
    path = write_yaml(tmp_path, "- a list\n- not a mapping\n")
    with pytest.raises(ConfigError, match=f"{path}: a config must be a mapping of sections, got list"):
        load_config(path, ["seed=1"])


def test_multistep_schedule_needs_decay_steps():
    with pytest.raises(ConfigError, match="lr_decay_step"):
        build_config(with_value("solver", "type", "multistep"))
    config = build_config(with_value("solver", "type", "multistep"), ["solver.lr_decay_step=[10, 20]"])
    assert config.solver.lr_decay_step == [10, 20]


def test_unreadable_or_invalid_yaml_names_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file .*absent.yaml"):
        load_config(tmp_path / "absent.yaml")
    path = write_yaml(tmp_path, "data: [unclosed\n")
    with pytest.raises(ConfigError, match=f"{path}: not valid YAML"):
        load_config(path)


def test_overrides_set_nested_keys_with_yaml_values(tmp_path):
    path = write_yaml(tmp_path, MINIMAL)
    config = load_config(path, ["solver.lr=1e-4", "data.num_segments=16", "network.arch=RN50", "resume=",
                                "data.random_shift=false", "seed=7", "data.train_list=lists/x.txt"])
    assert config.solver.lr == 1e-4 and isinstance(config.solver.lr, float)
    assert config.data.num_segments == 16
    assert config.network.arch == "RN50"
    assert config.resume is None
    assert config.data.random_shift is False
    assert config.seed == 7
    assert config.data.train_list == "lists/x.txt"


def test_override_wins_over_file_value_and_input_is_not_modified():
    raw = with_value("data", "batch_size", 32)
    config = build_config(raw, ["data.batch_size=4"])
    assert config.data.batch_size == 4 and raw["data"]["batch_size"] == 32


@pytest.mark.parametrize("override, message", [
    ("data.foo=1", r"override 'data.foo=1': unknown key data.foo; valid keys of section 'data': dataset"),
    ("optim.lr=1", r"unknown key optim; valid keys of the top level: seed"),
    ("solver.lr.x=1", r"solver.lr is a value, not a section"),
    ("data=3", r"data is a section; override one of its keys"),
    ("data.batch_size", r"malformed override 'data.batch_size': expected key.sub=value"),
    ("=3", r"malformed override"),
    ("data..batch_size=3", r"malformed override"),
    ("data.batch_size=big", r"override 'data.batch_size=big': data.batch_size must be an integer, got 'big'"),
    ("data.batch_size=[1", r"value is not valid YAML"),
])
def test_bad_overrides_are_reported(override, message):
    with pytest.raises(ConfigError, match=message):
        build_config(MINIMAL, [override])


def test_parse_override_splits_on_first_equals_only():
    assert parse_override("data.image_tmpl=a=b_{:05d}.jpg") == ("data.image_tmpl", "a=b_{:05d}.jpg")
    assert parse_override(" solver.lr_decay_step = [3, 6]") == ("solver.lr_decay_step", [3, 6])


def test_attribute_access_and_safety():
    config = build_config(MINIMAL)
    assert config.data.num_classes == config["data"]["num_classes"] == 3
    assert isinstance(config.network, Config) and isinstance(config, dict)
    with pytest.raises(AttributeError, match="no key 'dense_sample'"):
        config.data.dense_sample
    config.solver.start_epoch = 5
    assert config["solver"]["start_epoch"] == 5
    with pytest.raises(AttributeError, match="no key 'strat_epoch'"):
        config.solver.strat_epoch = 5
    restored = pickle.loads(pickle.dumps(config))
    assert restored == config and restored.data.dataset == "toy"
    assert copy.deepcopy(config).to_dict() == config.to_dict()
    assert type(config.to_dict()["data"]) is dict


def test_check_files_names_key_and_path(tmp_path):
    for name in ("train.txt", "labels.csv"):
        (tmp_path / name).write_text("x\n")
    data = {"train_list": str(tmp_path / "train.txt"), "label_list": str(tmp_path / "labels.csv"),
            "val_list": str(tmp_path / "missing_val.txt")}
    config = build_config({**MINIMAL, "data": {**MINIMAL["data"], **data}}, source="my.yaml")
    check_files(config, keys=("data.train_list", "data.label_list"))
    with pytest.raises(ConfigError) as error:
        check_files(config)
    assert str(error.value) == f"my.yaml: data.val_list: no such file or folder: {tmp_path / 'missing_val.txt'}"
    with pytest.raises(ConfigError, match="data.attributes_train_path is not set"):
        check_files(config, keys=("data.attributes_train_path",))
    with pytest.raises(ConfigError, match="unknown config key data.nope"):
        check_files(config, keys=("data.nope",))
