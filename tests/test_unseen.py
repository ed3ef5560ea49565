"""``core.unseen`` and ``serumrnn evaluate --unseen``: case sets the same for a seed and
reachable where they should be, sessions run through WAV files and ``suggest`` with each
system's arguments, tables in the shapes of ``core.evaluation``; the sets on the real
linux-vst plugins (skipped without them on a user's machine, failing under CI)."""

from __future__ import annotations

import functools
import gzip
import json
import struct

import numpy as np
import pytest
from ci_needs import require
from test_vst_rack import require_plugins
from typer.testing import CliRunner

from serumrnn.cli.app import app
from serumrnn.core import PluginError, get_plugin_manager
from serumrnn.core import session as session_module
from serumrnn.core.errors import ParameterError
from serumrnn.core.evaluation import KEEP_RULES
from serumrnn.core.loudness import LUFS_14
from serumrnn.core.metrics import METRICS
from serumrnn.core.unseen import (
    BASE_SYSTEMS, CASE_SETS, FILES, HELD_OUT_FIRST_SEED, UnseenOptions, build_cases, choose_systems, default_sets,
    register_case_set, run_unseen, system_table,
)
from serumrnn.plugins import toml_rack, zyn_banks

runner = CliRunner()
# Core does not import plugins: the ZynAddSubFX set comes from its plugin module, as the CLI registers it.
register_case_set(zyn_banks.case_set())


def test_plugin_sets_register_once_and_keep_the_published_order():
    register_case_set(zyn_banks.case_set())  # the same set again: nothing changes
    assert default_sets() == ("varied", "zynaddsubfx", "vst-effects")
    assert CASE_SETS["zynaddsubfx"] is zyn_banks.case_set()
    other = type(zyn_banks.case_set())("varied", "another set of the same name", lambda *args: [])
    with pytest.raises(PluginError, match="'varied' is registered already"):
        register_case_set(other)


def _same_cases(first, second) -> None:
    assert [case.case_id for case in first] == [case.case_id for case in second]
    for a, b in zip(first, second):
        assert a.meta == b.meta
        np.testing.assert_array_equal(a.input_audio, b.input_audio)
        # Real plugins may leave denormal-level noise (1e-37) that differs between runs.
        np.testing.assert_allclose(a.target_audio, b.target_audio, rtol=0, atol=1e-9)


def test_varied_cases_are_deterministic_held_out_and_reachable(rack):
    from serumrnn.core.session import trim_leading_silence
    from serumrnn.synths.varied import varied_seed

    cases = build_cases("varied", 5, seed=3)
    _same_cases(cases, build_cases("varied", 5, seed=3))
    _same_cases(cases[:3], build_cases("varied", 3, seed=3))  # a case does not depend on the count
    assert [c.meta["source"] for c in build_cases("varied", 5, seed=4)] != [c.meta["source"] for c in cases]
    assert [len(case.true_chain) for case in cases] == [1, 2, 3, 4, 5]
    for case in cases:
        assert varied_seed(case.meta["source"]) >= HELD_OUT_FIRST_SEED
        assert len(set(case.true_chain)) == len(case.true_chain) and set(case.true_chain) <= set(rack.effect_names)
        assert all(0.0 <= value <= 1.0 for _, knobs in case.meta["chain"] for value in knobs.values())
        # what suggest makes of the input is the input, and the built-in rack reaches the target exactly
        assert trim_leading_silence(case.input_audio).shape == case.input_audio.shape == (44100,)
        np.testing.assert_array_equal(rack.render(case.input_audio, case.meta["chain"]), case.target_audio)
    # targets are made under the convention of the bundle that will hear them
    levelled = build_cases("varied", 2, seed=3, loudness=LUFS_14)
    np.testing.assert_array_equal(levelled[1].target_audio,
                                  rack.render(levelled[1].input_audio, levelled[1].meta["chain"], loudness=LUFS_14))
    assert not np.array_equal(levelled[1].target_audio, cases[1].target_audio)


def test_preset_cases_are_the_rack_presets_through_reachable_chains(rack):
    cases = build_cases("presets", 3, seed=2)  # the budget study's "presets" targets
    _same_cases(cases, build_cases("presets", 3, seed=2))
    assert {case.meta["source"] for case in cases} <= {preset.name for preset in rack.synth.presets}
    for case in cases:
        np.testing.assert_array_equal(rack.render(case.input_audio, case.meta["chain"]), case.target_audio)


def _spy_on_suggest(monkeypatch) -> list[dict]:
    """Record every ``suggest`` call (its file contents too) and run the real one."""
    from serumrnn.core.audio import load_audio

    calls = []
    real = session_module.suggest

    @functools.wraps(real)  # keeps the signature the system table reads
    def spy(input, target, **kwargs):
        calls.append({"input": input, "target": target, "kwargs": kwargs,
                      "input_audio": load_audio(input, duration_s=None), "target_audio": load_audio(target, duration_s=None)})
        return real(input, target, **kwargs)

    monkeypatch.setattr(session_module, "suggest", spy)
    return calls


def test_runner_runs_every_system_through_files_and_suggest(tiny_bundle, monkeypatch):
    from serumrnn.core.bundle import ModelBundle

    calls = _spy_on_suggest(monkeypatch)
    table = system_table()
    table["random-plain"] = ("random", {**table["random"][1], "to_c4": False})  # a system by name, extra kwargs
    systems = ("rnn", "oracle", "random-plain")
    result = run_unseen(tiny_bundle, UnseenOptions(sets=("varied",), cases=3, seed=1, systems=systems, progress=False),
                        systems_table=table)
    bundle = ModelBundle.load(tiny_bundle, rack=get_plugin_manager().rack("builtin"))
    cases = build_cases("varied", 3, seed=1, loudness=bundle.loudness)

    assert len(calls) == 3 * len(systems)
    for index, call in enumerate(calls):
        case, system = cases[index // len(systems)], systems[index % len(systems)]
        assert call["input"].suffix == call["target"].suffix == ".wav"
        np.testing.assert_array_equal(call["input_audio"], case.input_audio)
        np.testing.assert_array_equal(call["target_audio"], case.target_audio)
        selector, extra = table[system]
        assert call["kwargs"]["selector"] == selector and extra.items() <= call["kwargs"].items()
        assert call["kwargs"]["true_chain"] == (case.true_chain if system == "oracle" else None)
        assert call["kwargs"]["tolerance"] == 5  # run to the end; the stopping rule is applied afterwards
    if "search" in table["rnn"][1]:  # suggest searches by default: the paper's systems must not
        assert all(call["kwargs"]["search"] is False for call in calls)

    assert [(row["set"], row["system"], row["kept"]) for row in result.systems] == [
        ("varied", system, keep) for keep in KEEP_RULES for system in systems]  # no paper rows
    for system in systems:
        rows = [row for row in result.progress if row["system"] == system]
        assert [(row["kept"], row["metric"]) for row in rows] == [
            (keep, m.upper()) for keep in KEEP_RULES for m in METRICS] + [("", "sessions")]
        assert rows[-1]["initial"] == 3
    assert [(row["system"], row["kept"], row["cases"]) for row in result.closer] == [
        (system, keep, 3) for keep in KEEP_RULES for system in systems]

    # the oracle is given the hidden chain, and follows it
    for summary, case in zip(result.cases, cases):
        assert summary["systems"]["oracle"]["effects"] == case.true_chain
    # % closer, recomputed from the per-case figures
    closer = {(row["system"], row["kept"]): row["closer_pct"] for row in result.closer}
    medians = {(row["system"], row["kept"]): row["closer_median_pct"] for row in result.closer}
    for system in systems:
        expected = []
        for summary in result.cases:
            info = summary["systems"][system]
            before = info["initial"]["mssmae"]
            after = info["steps"][info["best"] - 1]["mssmae"] if info["best"] else before
            expected.append(100 * (before - after) / before)
        assert closer[(system, "best")] == pytest.approx(np.mean(expected))
        assert medians[(system, "best")] == pytest.approx(np.median(expected))
    markdown = result.to_markdown()
    assert "### Set `varied`" in markdown and "How much closer on MSSMAE" in markdown


def test_system_table_follows_suggests_keywords(monkeypatch):
    def without_search(input, target, *, selector="rnn", seed=0):
        raise AssertionError("not called")

    def with_search(input, target, *, selector="rnn", search=None, budget_ms=300.0, top_k=None):
        raise AssertionError("not called")

    monkeypatch.setattr(session_module, "suggest", without_search)
    assert system_table() == BASE_SYSTEMS
    monkeypatch.setattr(session_module, "suggest", with_search)
    table = system_table()
    assert table["rnn"] == ("rnn", {"search": False}) and table["oracle"] == ("oracle", {"search": False})
    assert table["rnn+search"] == ("rnn", {"search": True}) and table["random+search"] == ("random", {"search": True})
    assert "search" not in table  # search alone needs a suggest that can leave the models out


def test_unknown_sets_systems_and_counts_are_one_sentence(tiny_bundle):
    from serumrnn.core.bundle import ModelBundle

    with pytest.raises(ParameterError, match="Unknown unseen set 'nope'; choose from varied, vst-effects, presets"):
        build_cases("nope", 2)
    with pytest.raises(ParameterError, match="--cases is 0"):
        UnseenOptions(cases=0).check()
    bundle = ModelBundle.load(tiny_bundle, rack=get_plugin_manager().rack("builtin"))
    with pytest.raises(ParameterError, match="Unknown system 'rnnn'"):
        choose_systems(["rnnn"], system_table(), bundle)
    assert "rnn+search" not in choose_systems(None, system_table(), bundle)


def test_vst_sets_say_in_one_sentence_what_is_missing(monkeypatch, tmp_path):
    monkeypatch.setattr(toml_rack, "plugin_search_path", lambda roots: [tmp_path / "nowhere"])
    for name in ("vst-effects", "zynaddsubfx"):
        with pytest.raises(PluginError, match=f"The unseen set {name} needs the linux-vst rack, which is not "
                                              "available here") as caught:
            build_cases(name, 1)
        assert "\n" not in str(caught.value) and str(caught.value).endswith(".")
    monkeypatch.setattr(zyn_banks, "BANKS_DIR", tmp_path / "banks")
    with pytest.raises(PluginError, match="apt-get install zynaddsubfx-data"):
        zyn_banks.bank_instruments()


def test_instrument_goes_into_part_zero_with_its_version(tmp_path):
    base = (toml_rack.SHIPPED_RACKS / "linux-vst" / "sine.fxb").read_bytes()
    xiz = tmp_path / "0001-Test.xiz"
    xiz.write_bytes(gzip.compress(b'<?xml version="1.0"?>\n<ZynAddSubFX-data version-major="1" version-minor="1">\n'
                                  b'<INSTRUMENT><INFO><string name="name">Test</string></INFO></INSTRUMENT>\n'
                                  b'</ZynAddSubFX-data>\n'))
    state = zyn_banks.instrument_state(base, xiz)
    (size,) = struct.unpack(">I", state[156:160])
    chunk = state[160:]
    assert size == len(chunk) and state[:156] == base[:156]
    assert b'<INSTRUMENT><INFO><string name="name">Test</string></INFO></INSTRUMENT>' in chunk
    assert chunk.count(b"<INSTRUMENT>") == 1 and b'<ZynAddSubFX-data version-major="1" version-minor="1">' in chunk
    assert b"<MASTER>" in chunk and chunk.endswith(base[-40:])  # the rest of the state, slots included, kept
    xiz.write_bytes(b"<ZynAddSubFX-data></ZynAddSubFX-data>")
    with pytest.raises(PluginError, match="holds no <INSTRUMENT>"):
        zyn_banks.instrument_state(base, xiz)


# -- the command ------------------------------------------------------------------------------
def test_cli_writes_the_unseen_tables(tiny_bundle, tmp_path):
    out = tmp_path / "unseen"
    outcome = runner.invoke(app, ["evaluate", "--bundle", str(tiny_bundle), "--unseen", "varied", "--cases", "2",
                                  "--systems", "rnn,oracle", "--out", str(out), "--json"])
    assert outcome.exit_code == 0, outcome.output
    summary = json.loads(outcome.stdout)
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES.values())
    assert summary["meta"]["systems"] == ["rnn", "oracle"] and summary["meta"]["sets"] == ["varied"]
    assert json.loads((out / FILES["json"]).read_text())["table4"] == summary["table4"]
    header = (out / FILES["table4"]).read_text().splitlines()[0].split(",")
    assert header[:4 + len(METRICS)] == ["set", "source", "system", "kept", *METRICS]
    assert len((out / FILES["cases"]).read_text().splitlines()) == 3


@pytest.mark.parametrize("args, words", [
    (["--unseen", "nope"], "Unknown unseen set 'nope'"),
    (["--unseen", "varied", "--systems", "rnn,bogus"], "Unknown system 'bogus'"),
    (["--unseen", "varied", "--data", "somewhere"], "not both"),
    ([], "Give --data DATASET"),
    (["--data", "somewhere", "--rack", "linux-vst"], "--rack goes with --unseen"),
    (["--unseen", "presets", "--rack", "nosuch"], "Unknown rack 'nosuch'"),
])
def test_cli_refuses_in_one_sentence(tiny_bundle, tmp_path, args, words):
    out = tmp_path / "out"
    outcome = runner.invoke(app, ["evaluate", "--bundle", str(tiny_bundle), "--cases", "1", *args, "--out", str(out)])
    assert outcome.exit_code == 2, outcome.output
    message = outcome.stderr.strip()
    assert message.startswith("Error: ") and "\n" not in message and words in message
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]


# -- on the real plugins ------------------------------------------------------------------
@pytest.fixture(scope="module")
def zyn_banks_here():
    require_plugins(*get_plugin_manager().racks.get("linux-vst").availability())
    try:
        zyn_banks.bank_instruments()
    except PluginError as exc:
        require(False, f"{str(exc).rstrip('.')}; `make test` installs them as root.")


def test_zynaddsubfx_cases_are_bank_instruments_and_reproducible(zyn_banks_here, rack):
    cases = build_cases("zynaddsubfx", 2, seed=0, workers=2)
    _same_cases(cases, build_cases("zynaddsubfx", 2, seed=0, workers=1))  # each render in a fresh process
    presets = {preset.name for preset in get_plugin_manager().rack("linux-vst").synth.presets}
    banks = [case.meta["source"].split("/")[0] for case in cases]
    assert len(set(banks)) == 2 and not {case.meta["source"] for case in cases} & presets
    assert np.sqrt(np.mean((cases[0].input_audio - cases[1].input_audio) ** 2)) > 0.01
    for case in cases:
        assert np.max(np.abs(case.input_audio)) == pytest.approx(0.8, abs=1e-3)  # the rack's level
        np.testing.assert_array_equal(rack.render(case.input_audio, case.meta["chain"]), case.target_audio)


def test_vst_effect_targets_come_from_the_real_plugins(zyn_banks_here, rack, tiny_bundle):
    cases = build_cases("vst-effects", 2, seed=0)
    _same_cases(cases, build_cases("vst-effects", 2, seed=0))
    assert cases[0].meta["source"] in {preset.name for preset in rack.synth.presets}
    assert cases[1].meta["source"].startswith("varied-")
    for case in cases:
        assert case.meta["target_rack"] == "linux-vst"
        builtin = rack.render(case.input_audio, case.meta["chain"])  # the same knobs, the other implementation
        assert np.sqrt(np.mean((builtin - case.target_audio) ** 2)) > 1e-3

    result = run_unseen(tiny_bundle, UnseenOptions(sets=("vst-effects", "zynaddsubfx"), cases=1,
                                                   systems=("rnn", "oracle"), progress=False))
    assert [(row["set"], row["system"]) for row in result.systems if row["kept"] == "best"] == [
        ("vst-effects", "rnn"), ("vst-effects", "oracle"), ("zynaddsubfx", "rnn"), ("zynaddsubfx", "oracle")]
    for summary in result.cases:
        assert summary["systems"]["oracle"]["effects"] == [name for name, _ in summary["chain"]]


def test_a_rack_without_a_bundle_runs_search_alone_on_its_own_targets(zyn_banks_here, tmp_path):
    out = tmp_path / "vst-search"
    outcome = runner.invoke(app, ["evaluate", "--unseen", "presets", "--rack", "linux-vst", "--cases", "1",
                                  "--out", str(out), "--json"])
    assert outcome.exit_code == 0, outcome.output
    meta = json.loads(outcome.stdout)["meta"]
    assert meta["rack"] == "linux-vst" and meta["bundle"] is None and meta["systems"] == ["search"]
    case = json.loads(outcome.stdout)["cases"][0]
    vst_presets = {preset.name for preset in get_plugin_manager().rack("linux-vst").synth.presets}
    assert case["source"] in vst_presets
    search = case["systems"]["search"]
    assert search["steps"] and search["best"] >= 1  # a reachable target: search gets closer
    assert search["steps"][search["best"] - 1]["mssmae"] < search["initial"]["mssmae"]
    assert "rack linux-vst" in (out / FILES["markdown"]).read_text()


def test_a_dataset_evaluation_still_needs_a_bundle(tmp_path):
    outcome = runner.invoke(app, ["evaluate", "--data", str(tmp_path), "--out", str(tmp_path / "out")])
    assert outcome.exit_code == 2 and "Give --bundle" in outcome.stderr
