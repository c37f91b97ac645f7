"""Specs: every zoo file loads, round-trips, and bad specs raise one clear error."""

import json
import textwrap

import pytest

import ppl_vae.data
import ppl_vae.models
from ppl_vae import spec as spec_module
from ppl_vae.families import GaussianPosterior, LearnedLaplace
from ppl_vae.spec import ConditionSpec, ModelSpec, NetworkSpec, SpecError

GOOD = """
name = "t"
latent_dim = 4
data_shape = [16]
kl = "monte-carlo"
[posterior]
family = "gaussian"
[prior]
family = "learned-laplace"
[likelihood]
family = "bernoulli"
[encoder]
hidden = [8]
[decoder]
hidden = []
"""


def write(tmp_path, text):
    path = tmp_path / "spec.toml"
    path.write_text(textwrap.dedent(text))
    return path


@pytest.mark.parametrize("name", ppl_vae.models.zoo_names())
def test_zoo_spec_round_trips(name):
    spec = ppl_vae.models.load_spec(name)
    assert spec.name == name
    assert spec_module.from_dict(spec.to_dict()) == spec


def test_zoo_covers_the_seed_table():
    pairs = {(s.posterior.name, s.prior.name)
             for s in map(ppl_vae.models.load_spec, ppl_vae.models.zoo_names())}
    assert {("gaussian", "standard-normal"), ("gaussian", "learned-normal"),
            ("gaussian", "learned-laplace"), ("laplace", "learned-laplace"),
            ("masked", "learned-laplace"), ("none", "learned-laplace")} <= pairs


def test_good_spec_loads(tmp_path):
    spec = spec_module.load(write(tmp_path, GOOD))
    assert spec.posterior == GaussianPosterior() and spec.prior == LearnedLaplace()
    assert spec.decoder == NetworkSpec(hidden=()) and spec.data_dim == 16


@pytest.mark.parametrize("change, words", [
    (("family = \"gaussian\"", "family = \"gausian\""),
     ["[posterior]", "'gausian'", "gaussian, laplace, masked, none"]),
    (("latent_dim = 4", "latent_dim = 0"), ["latent_dim must be an integer >= 1"]),
    (("name = \"t\"\n", ""), ["missing required field", "name"]),
    (("family = \"bernoulli\"", "family = \"bernoulli\"\nscale = 0.1"),
     ["[likelihood]", "scale does not apply", "'bernoulli'"]),
    (("kl = \"monte-carlo\"", "kl = \"analytic\""),
     ["no closed form", "kl = 'monte-carlo'", "gaussian/standard-normal"]),
    (("[encoder]\nhidden = [8]", "[encoder]\nhidden = [8]\nwidth = 3"),
     ["[encoder] unknown field", "width", "hidden, activation"]),
    (("hidden = [8]", "hidden = [8, -1]"), ["positive integers"]),
    (("data_shape = [16]", "data_shape = [16]\nlatent = 3"), ["unknown field", "latent"]),
    (("kl = \"monte-carlo\"", "kl = \"mc\""), ["kl must be one of analytic, monte-carlo"]),
])
def test_bad_spec_names_file_field_and_allowed_values(tmp_path, change, words):
    path = write(tmp_path, GOOD.replace(*change))
    with pytest.raises(SpecError) as err:
        spec_module.load(path)
    message = str(err.value)
    assert message.startswith(str(path))
    for word in words:
        assert word in message


def test_posterior_none_takes_no_encoder(tmp_path):
    text = GOOD.replace("family = \"gaussian\"", "family = \"none\"")
    with pytest.raises(SpecError, match="has no encoder: remove the \\[encoder\\] table"):
        spec_module.load(write(tmp_path, text))


def test_amortized_posterior_needs_encoder(tmp_path):
    text = GOOD.replace("[encoder]\nhidden = [8]\n", "")
    with pytest.raises(SpecError, match="needs an \\[encoder\\]"):
        spec_module.load(write(tmp_path, text))


@pytest.mark.parametrize("change, words", [
    (("latent_dim = 4", "latent_dim = true"), "latent_dim must be an integer >= 1, got True"),
    (("hidden = [8]", "hidden = [true]"), "[encoder] hidden must be a list of positive"),
    (("data_shape = [16]", "data_shape = [true]"), "data_shape must be a list of positive"),
    (("kl = \"monte-carlo\"", "kl = \"monte-carlo\"\nscale_floor = inf"),
     "scale_floor = inf: every number in a spec must be finite"),
    (("kl = \"monte-carlo\"", "kl = \"monte-carlo\"\nscale_floor = -1e-5"),
     "scale_floor must be a finite number > 0"),
    (("family = \"bernoulli\"", "family = \"gaussian\"\nmin_scale = nan"),
     "likelihood.min_scale = nan"),
    (("family = \"learned-laplace\"", "family = \"mixture\"\ncomponents = true"),
     "[prior] components = true"),
    (("hidden = []", "hidden = []\n[training]\nlearning_rate = inf"),
     "training.learning_rate = inf"),
    (("hidden = []", "hidden = []\n[training]\nnum_steps = true"),
     "num_steps must be an integer >= 1, got True"),
    (("hidden = []", "hidden = []\n[training]\nbinarization = \"half\""),
     "binarization must be one of static, threshold, dynamic, none"),
])
def test_booleans_for_numbers_and_non_finite_numbers_are_refused(tmp_path, change, words):
    """TOML's true is a Python bool, an int subclass: it used to pass as 1 and crash later."""
    with pytest.raises(SpecError) as err:
        spec_module.load(write(tmp_path, GOOD.replace(*change)))
    assert words in str(err.value)


def test_a_folder_or_non_utf8_file_as_spec_names_the_path(tmp_path):
    with pytest.raises(SpecError, match=f"{tmp_path} is a folder; pass a spec file"):
        ppl_vae.models.load_spec(tmp_path)
    path = tmp_path / "latin1.toml"
    path.write_bytes('name = "café"\n'.encode("latin-1"))
    with pytest.raises(SpecError, match=f"{path}: not a UTF-8 text file"):
        spec_module.load(path)


def test_invalid_toml_and_missing_file(tmp_path):
    with pytest.raises(SpecError, match="not valid TOML"):
        spec_module.load(write(tmp_path, "name = "))
    with pytest.raises(SpecError, match="no such spec file"):
        spec_module.load(tmp_path / "absent.toml")


def test_unknown_zoo_name_lists_the_zoo():
    with pytest.raises(SpecError, match="gaussian_gaussian"):
        ppl_vae.models.load_spec("no_such_model")


def test_spec_constructible_in_python():
    spec = ModelSpec(name="py", latent_dim=2, data_shape=(3,), posterior=GaussianPosterior(),
                     prior=LearnedLaplace(), likelihood=ppl_vae.families.Bernoulli())
    assert spec.encoder.hidden == (400,)
    with pytest.raises(SpecError, match="closed form"):
        spec.replace(kl="analytic")


def test_zoo_usable_from_an_installed_package(tmp_path):
    """A non-editable install ships models/*.toml as ppl_vae.zoo and finds them by name."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                    "--no-build-isolation", "--target", str(target), str(root)],
                   check=True, cwd=tmp_path, capture_output=True)
    code = (f"import ppl_vae.models as m; assert m.__file__.startswith({str(target)!r}); "
            "print(m.load_spec('laplace_laplace').name, len(m.zoo_names()))")
    out = subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path,
                         capture_output=True, text=True, env={"PYTHONPATH": str(target)})
    assert out.stdout.split() == ["laplace_laplace", str(len(ppl_vae.models.zoo_names()))]


def test_the_spec_knows_the_binarizations_of_the_data_package():
    assert spec_module.BINARIZATIONS == ppl_vae.data.BINARIZATIONS


VAMP = ("family = \"learned-laplace\"", "family = \"vamp\"\ncomponents = 5")


@pytest.mark.parametrize("changes, words", [
    ([VAMP, ("family = \"gaussian\"", "family = \"masked\"")],
     ["prior family 'vamp'", "single code site z", "'masked' has the sites gate, slab",
      "use posterior family 'gaussian' or 'laplace'"]),
    ([VAMP, ("family = \"gaussian\"", "family = \"none\""), ("[encoder]\nhidden = [8]\n", "")],
     ["'none' has no encoder", "use posterior family 'gaussian' or 'laplace'"]),
    ([VAMP, ("kl = \"monte-carlo\"", "kl = \"analytic\"")],
     ["KL(gaussian ‖ vamp) has no closed form", "set kl = 'monte-carlo'"]),
    ([("family = \"learned-laplace\"", "family = \"flow\""),
      ("kl = \"monte-carlo\"", "kl = \"analytic\"")],
     ["KL(gaussian ‖ flow) has no closed form", "set kl = 'monte-carlo'"]),
    ([("family = \"learned-laplace\"", "family = \"vamp\"\ncomponents = 0")],
     ["[prior] family 'vamp'", "components must be an integer >= 1, got 0"]),
    ([("family = \"learned-laplace\"", "family = \"flow\"\nlayers = 0")],
     ["[prior] family 'flow'", "layers must be an integer >= 1, got 0"]),
    ([("family = \"learned-laplace\"", "family = \"flow\"\nhidden = [16, 0]")],
     ["[prior] family 'flow'", "hidden must be a positive integer or a non-empty list"]),
    ([("family = \"learned-laplace\"", "family = \"flow\"\nwidth = 3")],
     ["width does not apply to family 'flow'", "allowed: layers, hidden"]),
])
def test_learned_prior_spec_errors_name_the_problem_and_the_fix(tmp_path, changes, words):
    text = GOOD
    for change in changes:
        assert change[0] in text
        text = text.replace(*change, 1)
    with pytest.raises(SpecError) as err:
        spec_module.load(write(tmp_path, text))
    for word in words:
        assert word in str(err.value)


def test_flow_prior_hidden_takes_a_number_or_a_list(tmp_path):
    flow = "family = \"flow\"\nlayers = 3\nhidden = "
    one = spec_module.load(write(tmp_path, GOOD.replace("family = \"learned-laplace\"",
                                                        flow + "16")))
    two = spec_module.load(write(tmp_path, GOOD.replace("family = \"learned-laplace\"",
                                                        flow + "[16]")))
    assert one.prior == two.prior and one.prior.hidden == (16,) and one.prior.layers == 3
    assert spec_module.from_dict(one.to_dict()) == one


CONDITIONED = GOOD + "[condition]\nclasses = 10\nprior = \"learned\"\n"


def test_condition_refuses_the_vampprior(tmp_path):
    text = CONDITIONED.replace("family = \"learned-laplace\"", "family = \"vamp\"", 1) \
        .replace("prior = \"learned\"", "prior = \"fixed\"")
    with pytest.raises(SpecError, match="pseudo-inputs, which carry no label"):
        spec_module.load(write(tmp_path, text))


def test_condition_table_loads_and_round_trips(tmp_path):
    spec = spec_module.load(write(tmp_path, CONDITIONED))
    assert spec.condition == ConditionSpec(classes=10, prior="learned")
    assert spec.condition.learned_prior
    assert spec.to_dict()["condition"] == {"classes": 10, "prior": "learned"}
    assert spec_module.from_dict(spec.to_dict()) == spec
    fixed = spec_module.load(write(tmp_path, CONDITIONED.replace('"learned"\n', '"fixed"\n')))
    assert not fixed.condition.learned_prior
    assert "condition" not in spec_module.load(write(tmp_path, GOOD)).to_dict()


@pytest.mark.parametrize("text, words", [
    (CONDITIONED.replace("classes = 10", "classes = 1"),
     ["[condition] classes must be an integer >= 2", "got 1"]),
    (CONDITIONED.replace("classes = 10", "classes = true"), ["classes must be an integer >= 2"]),
    (CONDITIONED.replace("classes = 10\n", ""), ["classes must be an integer >= 2", "got 0"]),
    (CONDITIONED.replace('"learned"\n', '"per-class"\n'),
     ["[condition] prior must be one of fixed, learned", "'per-class'"]),
    (CONDITIONED + "labels = 3\n", ["[condition] unknown field", "labels", "classes, prior"]),
    (CONDITIONED.replace('family = "learned-laplace"', 'family = "standard-normal"'),
     ["prior = 'learned'", "'standard-normal'", "learned-normal, learned-laplace",
      "[condition] prior = 'fixed'"]),
    (CONDITIONED.replace('family = "gaussian"', 'family = "none"')
     .replace("[encoder]\nhidden = [8]\n", ""),
     ["[condition] needs an encoder", "family 'gaussian'", "remove the [condition] table"]),
])
def test_bad_condition_tables_say_the_fix(tmp_path, text, words):
    path = write(tmp_path, text)
    with pytest.raises(SpecError) as err:
        spec_module.load(path)
    message = str(err.value)
    assert message.startswith(str(path))
    for word in words:
        assert word in message


def test_condition_refuses_a_local_autoregressive_decoder():
    spec = ppl_vae.models.load_spec("vlae_local")
    with pytest.raises(SpecError, match="local autoregressive decoder"):
        spec.replace(condition=ConditionSpec(10))



@pytest.mark.parametrize("name, words", [
    ("../../escaped", "contains '/'"), ("/abs/path", "contains '/'"), ("a/b", "contains '/'"),
    ("a\\b", "contains '\\\\'"), ("..", "is a relative folder"),
    (".", "is a relative folder"), (" tiny", "starts or ends with white space"),
    ("", "name must be a non-empty string"),
])
def test_a_spec_name_is_one_plain_folder_name(tmp_path, name, words):
    """The name becomes runs/NAME-BACKEND, a compare cell and variance-NAME: no separators,
    no '..', nothing absolute."""
    path = write(tmp_path, GOOD.replace('name = "t"', f"name = {json.dumps(name)}"))
    with pytest.raises(SpecError) as err:
        spec_module.load(path)
    assert str(err.value).startswith(f"{path}: ") and words in str(err.value)
    if name:
        assert "give a plain name" in str(err.value)
