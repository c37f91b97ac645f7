"""One flag name per meaning across the commands: ``--num-points`` for "the first N
datapoints" (old names hidden aliases that warn), one ``--num-samples`` default, the dataset
flags on every command that reads data, ``train --estimator`` choices from the registry;
``ppl-vae zoo`` lists the zoo; ``dir(ppl_vae)`` shows the lazy names."""

from __future__ import annotations

from pathlib import Path

import pytest

import ppl_vae
from ppl_vae.cli import build_parser, main
from ppl_vae.commands import _args
from ppl_vae.commands import variance as variance_command
from ppl_vae.estimators import estimator_names

FIRST_N = {"evaluate": ["RUN"], "compare": ["SPEC"], "diagnose": ["RUN"]}
"""The commands that take "the first N datapoints", with their positional arguments."""
OLD_FIRST_N = {"evaluate": "--max-points", "compare": "--eval-points"}
READS_DATA = {"train": ["SPEC"], "evaluate": ["RUN"], "sample": ["RUN"], "diagnose": ["RUN"],
              "variance": ["SPEC"], "compare": ["SPEC"]}


def parse(argv):
    return build_parser().parse_args(argv)


def help_of(command, capsys):
    with pytest.raises(SystemExit):
        parse([command, "--help"])
    return capsys.readouterr().out


@pytest.mark.parametrize("command", FIRST_N)
def test_every_first_n_command_takes_num_points(command):
    assert parse([command, *FIRST_N[command], "--num-points", "7"]).num_points == 7


@pytest.mark.parametrize("command", OLD_FIRST_N)
def test_old_first_n_names_still_work_hidden_and_warn(command, capsys):
    old = OLD_FIRST_N[command]
    args = parse([command, *FIRST_N[command], old, "7"])
    assert args.num_points == 7
    assert f"{old} is now --num-points" in capsys.readouterr().err
    assert parse([command, *FIRST_N[command]]).num_points is None  # default: all
    text = help_of(command, capsys)
    assert "--num-points" in text and old not in text


def test_num_samples_has_one_default(capsys):
    defaults = {c: parse([c, *FIRST_N[c]]).num_samples for c in FIRST_N}
    assert defaults == dict.fromkeys(FIRST_N, _args.NUM_SAMPLES) and _args.NUM_SAMPLES == 1000
    assert capsys.readouterr().err == ""  # no rename warning without an old name


@pytest.mark.parametrize("command", READS_DATA)
def test_every_command_that_reads_data_takes_the_dataset_flags(command):
    args = parse([command, *READS_DATA[command], "--dataset", "d.npz", "--images-key", "px",
                  "--labels-key", "cls"])
    assert (args.dataset, args.images_key, args.labels_key) == ("d.npz", "px", "cls")
    assert _args.npz_keys(args) == {"images_key": "px", "labels_key": "cls"}


def test_train_help_lists_every_estimator_of_the_registry(capsys):
    text = " ".join(help_of("train", capsys).split())
    assert "score-nn-baseline" in estimator_names()
    for name in estimator_names():
        assert name in text
    assert "runs/NAME-BACKEND/" in text


def test_variance_defaults_are_the_studys():
    from ppl_vae.variance import DEFAULT_DRAWS, DEFAULT_PARTICLES

    args = parse(["variance", "SPEC"])
    assert args.draws == DEFAULT_DRAWS == variance_command.DEFAULT_DRAWS
    assert tuple(args.particles) == DEFAULT_PARTICLES


def test_zoo_lists_every_model_with_its_families(capsys):
    from ppl_vae.models import load_spec, zoo_names

    assert main(["zoo"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["model", "posterior", "prior", "likelihood", "decoder",
                                "description"]
    rows = {line.split()[0]: line for line in lines[1:]}
    shipped = {p.stem for p in (Path(__file__).parents[2] / "models").glob("*.toml")}
    assert set(rows) == set(zoo_names()) == shipped
    for name, line in rows.items():
        spec = load_spec(name)
        assert line.split()[1:4] == [spec.posterior.name, spec.prior.name,
                                     "|" if spec.condition else spec.likelihood.name]
        assert line.endswith(spec.description)
    assert rows["vlae_local"].split()[4] == "mlp+masked"
    assert "learned-normal | label" in rows["cvae_mnist"]


def test_dir_of_the_package_shows_the_lazy_names():
    names = dir(ppl_vae)
    for lazy in ("fit", "log_likelihood", "importance_sample", "diagnose", "run_study"):
        assert lazy in names
    assert set(ppl_vae.__all__) <= set(names)
