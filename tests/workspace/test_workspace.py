"""Reading, validating, patching and pruning workspaces; errors name what is at fault."""

from __future__ import annotations

import copy
import gzip
import json

import pytest

import difflike as dl
from difflike import errors
from difflike.workspace import digest, read_patchset, read_workspace


@pytest.fixture
def spec():
    return json.loads(dl.example_workspace().read_text())


def write(tmp_path, name, obj, compress=False):
    path = tmp_path / name
    text = json.dumps(obj)
    if compress:
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def test_reads_plain_gzip_dict_and_pyhf(tmp_path, spec):
    import pyhf

    plain = read_workspace(write(tmp_path, "ws.json", spec))
    packed = read_workspace(write(tmp_path, "ws.json.gz", spec, compress=True))
    from_dict = read_workspace(spec)
    from_pyhf = read_workspace(pyhf.Workspace(spec))
    assert plain.spec == packed.spec == from_dict.spec == from_pyhf.spec
    assert plain.channels == ["CR", "SR_high", "SR_low"]
    assert plain.digest() == pyhf.utils.digest(spec)


def test_reading_does_not_modify_the_callers_dict(spec):
    before = copy.deepcopy(spec)
    ws = read_workspace(spec)
    ws.prune(channels=["CR"])
    dl.load(spec, signal_regions=["SR_low"])
    assert spec == before


def test_invalid_json_names_file_and_position(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"channels": [1, 2,]}')
    with pytest.raises(
        errors.InvalidJSONError, match=r"broken\.json.*line 1, column"
    ) as info:
        dl.load(path)
    assert isinstance(info.value, ValueError)


def test_corrupt_gzip(tmp_path):
    path = tmp_path / "ws.json.gz"
    path.write_bytes(b"\x1f\x8b" + b"not really gzip")
    with pytest.raises(errors.InvalidJSONError, match="gzip"):
        read_workspace(path)


def test_schema_violation_gives_json_path(tmp_path, spec):
    del spec["channels"][1]["samples"][0]["data"]
    path = write(tmp_path, "ws.json", spec)
    with pytest.raises(errors.SchemaValidationError) as info:
        read_workspace(path)
    message = str(info.value)
    assert "ws.json" in message and "/channels/1/samples/0" in message
    assert "'data' is a required property" in message


def test_missing_top_level_key(spec):
    del spec["observations"]
    with pytest.raises(errors.SchemaValidationError, match="observations"):
        read_workspace(spec)


def test_bad_modifier_data_is_named(spec):
    spec["channels"][0]["samples"][1]["modifiers"][1]["data"] = {
        "hi": "high",
        "lo": 0.9,
    }
    with pytest.raises(errors.SchemaValidationError) as info:
        read_workspace(spec)
    message = str(info.value)
    assert "/channels/0/samples/1/modifiers/1/data/hi" in message
    assert "'wjets_xsec'" in message and "'SR_low'" in message


def test_unknown_modifier_type(spec):
    spec["channels"][2]["samples"][0]["modifiers"][1]["type"] = "normfactr"
    with pytest.raises(errors.UnknownModifierError) as info:
        read_workspace(spec)
    message = str(info.value)
    assert "normfactr" in message and "mu_ttbar" in message and "'CR'" in message
    assert "/channels/2/samples/0/modifiers/1/type" in message
    assert "normfactor" in message  # the expected types are listed


@pytest.mark.parametrize(
    ("value", "problem"),
    [(-1.0, "negative"), (float("nan"), "not finite"), (float("inf"), "not finite")],
)
def test_bad_observations(spec, value, problem):
    spec["observations"][1]["data"][1] = value
    with pytest.raises(errors.InvalidDataError, match=problem) as info:
        read_workspace(spec)
    assert "bin 1 of channel 'SR_high'" in str(info.value)


def test_observations_of_wrong_length(spec):
    spec["observations"][0]["data"].append(3)
    with pytest.raises(
        errors.InvalidDataError, match="wrong number of bins.*expected 2, got 3"
    ):
        read_workspace(spec)


def test_patch_file(tmp_path, spec):
    ops = [{"op": "replace", "path": "/channels/0/samples/0/data/0", "value": 13.0}]
    model, _ = dl.load(spec, patch=write(tmp_path, "p.json", ops), poi_name="mu_ttbar")
    assert model.config.poi_name == "mu_ttbar"
    assert float(model.nominal[model.config.samples.index("ttbar"), 5]) == 13.0
    assert spec["channels"][0]["samples"][0]["data"][0] == 12.0  # untouched


def test_patch_that_does_not_apply(tmp_path, spec):
    ops = [
        {"op": "add", "path": "/channels/0/samples/0/modifiers/0", "value": {}},
        {"op": "remove", "path": "/channels/7/samples/0"},
    ]
    with pytest.raises(errors.PatchError) as info:
        dl.load(spec, patch=write(tmp_path, "bad.json", ops))
    message = str(info.value)
    assert (
        "bad.json" in message
        and "operation 1" in message
        and "/channels/7/samples/0" in message
    )


def test_patch_making_an_invalid_workspace(spec):
    ops = [
        {
            "op": "replace",
            "path": "/channels/0/samples/0/modifiers/1/type",
            "value": "bogus",
        }
    ]
    with pytest.raises(errors.UnknownModifierError, match="bogus"):
        dl.load(spec, patch=ops)


def test_invalid_added_sample_is_named_by_its_path(spec):
    # only the samples a patch changes are validated again; an error must still
    # name the sample's real place in the document
    nsamples = len(spec["channels"][1]["samples"])
    for bad, error in (
        ({"name": "signal", "data": [1.0], "modifiers": "none"}, "SchemaValidation"),
        ({"name": "signal", "data": [1.0], "modifiers": [{"name": "mu"}]}, "Unknown"),
    ):
        ops = [{"op": "add", "path": "/channels/1/samples/-", "value": bad}]
        with pytest.raises(errors.InputError) as info:
            dl.load_workspace(spec, patch=ops)
        assert type(info.value).__name__.startswith(error)
        assert f"/channels/1/samples/{nsamples}" in str(info.value)


def test_patchset_point_by_name_and_values():
    ps = read_patchset(dl.example_patchset())
    assert len(ps) == 11 and ps.labels == ("m1", "m2")
    assert ps["sig_400_100"] is ps[400, 100]
    model, data = dl.load(dl.example_workspace(), patchset=ps, point="sig_400_100")
    assert model.config.poi_name == "mu" and "signal" in model.config.samples
    assert "sig_theory" in model.config.par_order


def test_unknown_point_suggests_close_names():
    with pytest.raises(errors.UnknownPointError) as info:
        dl.load(
            dl.example_workspace(), patchset=dl.example_patchset(), point="sig_400_10"
        )
    assert "did you mean 'sig_400_100'" in str(info.value)
    assert "sig_400_100" in info.value.suggestions
    assert isinstance(info.value, KeyError) and isinstance(info.value, ValueError)


def test_patchset_for_another_workspace(spec):
    spec["observations"][0]["data"][0] = 23
    with pytest.raises(errors.PatchSetVerificationError, match="digest") as info:
        dl.load(spec, patchset=dl.example_patchset(), point="sig_400_100")
    assert info.value.expected == read_patchset(dl.example_patchset()).digests["sha256"]
    model, _ = dl.load(
        spec, patchset=dl.example_patchset(), point="sig_400_100", verify=False
    )
    assert model.config.poi_name == "mu"


def test_patchset_needs_a_point():
    with pytest.raises(errors.InputError, match="point="):
        dl.load(dl.example_workspace(), patchset=dl.example_patchset())


def test_invalid_patchset(tmp_path):
    ps = json.loads(gzip.decompress(dl.example_patchset().read_bytes()))
    ps["patches"][1]["metadata"]["name"] = ps["patches"][0]["metadata"]["name"]
    with pytest.raises(errors.InvalidPatchSetError, match="two points are named"):
        read_patchset(ps)
    del ps["metadata"]["labels"]
    with pytest.raises(errors.SchemaValidationError, match="labels"):
        read_patchset(write(tmp_path, "ps.json", ps))


def test_measurement_choice(spec):
    second = copy.deepcopy(spec["measurements"][0])
    second["name"] = "other"
    second["config"]["parameters"][0]["sigmas"] = [0.05]
    spec["measurements"].append(second)
    first, _ = dl.load(spec, signal_regions=["SR_low"])
    other, _ = dl.load(spec, signal_regions=["SR_low"], measurement="other")
    assert first.config.measurement == "example" and other.config.measurement == "other"
    lumi = other.config.auxdata_order.index("lumi")
    assert float(other.aux_sigma[lumi]) == 0.05
    with pytest.raises(errors.UnknownMeasurementError, match="did you mean 'other'"):
        dl.load(spec, measurement="othre")


def test_unknown_signal_region(spec):
    with pytest.raises(errors.UnknownSignalRegionError) as info:
        dl.load(spec, signal_regions=["SR_low", "SR_hihg"])
    assert "'SR_hihg'" in str(info.value) and "did you mean 'SR_high'" in str(
        info.value
    )


def test_prune(spec):
    ws = read_workspace(spec)
    pruned = ws.prune(channels=["CR"], modifiers=["jes"], samples=["wjets"])
    assert pruned.channels == ["SR_high", "SR_low"]
    names = {
        m["name"]
        for c in pruned.spec["channels"]
        for s in c["samples"]
        for m in s["modifiers"]
    }
    assert "jes" not in names and "mu_ttbar" in names
    assert all(
        s["name"] != "wjets" for c in pruned.spec["channels"] for s in c["samples"]
    )
    typed = ws.prune(modifier_types=["staterror", "shapesys"])
    types = {
        m["type"]
        for c in typed.spec["channels"]
        for s in c["samples"]
        for m in s["modifiers"]
    }
    assert "staterror" not in types and "shapesys" not in types and "normsys" in types
    with pytest.raises(errors.UnknownChannelError, match="'SR'"):
        ws.prune(channels=["SR"])


def test_digest_matches_pyhf_on_published(likelihoods):
    import pyhf

    path = likelihoods / "ATLAS-SUSY-2018-04" / "BkgOnly.json"
    ws = read_workspace(path)
    ps = read_patchset(likelihoods / "ATLAS-SUSY-2018-04" / "patchset.json.gz")
    assert ws.digest() == pyhf.utils.digest(json.loads(path.read_text()))
    ps.verify(ws)
    assert digest(ws.spec) == ps.digests["sha256"]
