"""Bad input (docs/design.md, "Bad input"): one sentence, non-zero exit, no traceback, no partial output."""

import json
import math
import os
import shutil

import corpus
import numpy as np
import pytest
from typer.testing import CliRunner

from serumrnn.cli.app import app
from serumrnn.core.audio import load_audio, write_wav
from serumrnn.core.errors import SerumRNNError

runner = CliRunner()


def failure_problem(exit_code: int, stderr: str, stdout: str, *fragments: str) -> str | None:
    """Why a run does not honour the contract (non-zero exit, no traceback, one
    sentence starting with ``Error:``, carrying ``fragments``), or None when it does.
    Progress-bar lines before the error are allowed."""
    if exit_code == 0:
        return "exit code 0"
    if "Traceback" in stderr or "Traceback" in stdout:
        return f"traceback: {stderr[-300:]}"
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    starts = [i for i, line in enumerate(lines) if line.startswith("Error: ")]
    if len(starts) != 1:
        return f"not one Error: line: {stderr[-300:]!r}"
    message = " ".join(lines[starts[0]:])  # the sentence, possibly wrapped
    if len(message.split(". ")) > 2:
        return f"more than one sentence: {message!r}"
    missing = [fragment for fragment in fragments if fragment not in message]
    return f"{message!r} lacks {missing}" if missing else None


def assert_clean_failure(result, *fragments):
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    problem = failure_problem(result.exit_code, result.stderr, result.stdout, *fragments)
    assert problem is None, problem
    assert result.stderr.startswith("Error: ")


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def good_wav(tmp_path, tone):
    return write_wav(tmp_path / "good.wav", tone)


@pytest.fixture
def bad_files(tmp_path):
    text = tmp_path / "notes.wav"
    text.write_text("these are not samples\n" * 20)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    zero_length = tmp_path / "zero.wav"
    write_wav(zero_length, np.zeros(0, np.float32))
    silent = write_wav(tmp_path / "silent.wav", np.zeros(44100, np.float32))
    return {"text": text, "empty": empty, "zero": zero_length, "silent": silent, "dir": tmp_path,
            "missing": tmp_path / "nope.wav"}


@pytest.mark.parametrize(
    "case, fragment",
    [("missing", "does not exist"), ("dir", "is a directory"), ("text", "Could not read"),
     ("empty", "is empty"), ("zero", "zero-length")],
)
def test_compare_bad_files(bad_files, good_wav, case, fragment):
    assert_clean_failure(invoke("compare", bad_files[case], good_wav), fragment)
    assert_clean_failure(invoke("compare", good_wav, bad_files[case]), fragment)


def test_compare_silent_target(bad_files, good_wav):
    assert_clean_failure(invoke("compare", good_wav, bad_files["silent"]), "silent")


def test_compare_nan_samples(tmp_path, good_wav):
    from pedalboard.io import AudioFile

    path = tmp_path / "nan.wav"
    data = np.full((1, 4410), np.nan, np.float32)
    with AudioFile(str(path), "w", samplerate=44100, num_channels=1, bit_depth=32) as out:
        out.write(data)
    assert_clean_failure(invoke("compare", path, good_wav), "NaN")


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["kazoo"], "no preset 'kazoo'"),
        (["saw", "--fx", "flanger:rate=0.5"], "no effect 'flanger'"),
        (["saw", "--fx", "distortion:loudness=0.5"], "no knob 'loudness'"),
        (["saw", "--fx", "distortion:mode=fuzz"], "Knob distortion:mode got 'fuzz'"),
        (["saw", "--fx", "distortion:drive=1.5"], "between 0 and 1"),
        (["saw", "--fx", "distortion:drive=-0.2"], "between 0 and 1"),
        (["saw", "--fx", "distortion:drive=loud"], "got 'loud'"),
        (["saw", "--fx", "distortion:drive"], "not knob=value"),
        (["saw", "--fx", ":drive=0.3"], "names no effect"),
        (["saw", "--fx", "eq:gain=0.2", "--fx", "eq:gain=0.9"], "twice"),
        (["saw", "--rack", "moog"], "Unknown rack 'moog'"),
    ],
)
def test_render_bad_arguments_write_nothing(tmp_path, args, fragment):
    out = tmp_path / "out.wav"
    assert_clean_failure(invoke("render", *args, "-o", out), fragment)
    assert list(tmp_path.iterdir()) == []


def test_render_unwritable_output(tmp_path):
    assert_clean_failure(invoke("render", "saw", "-o", tmp_path / "no" / "such" / "x.wav"), "does not exist")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):  # root ignores permissions: use a path under a file instead
            blocker = tmp_path / "file"
            blocker.write_text("x")
            assert_clean_failure(invoke("render", "saw", "-o", blocker / "x.wav"), "Cannot write")
        else:
            assert_clean_failure(invoke("render", "saw", "-o", locked / "x.wav"), "Cannot write")
    finally:
        locked.chmod(0o700)
    assert not any(p.name.startswith(".x.") for p in locked.iterdir())


def test_render_output_is_a_directory(tmp_path):
    assert_clean_failure(invoke("render", "saw", "-o", tmp_path), "is a directory")


def test_render_png_failure_removes_the_wav(tmp_path):
    out = tmp_path / "out.wav"
    assert_clean_failure(invoke("render", "saw", "-o", out, "--png", tmp_path / "gone" / "x.png"), "does not exist")
    assert not out.exists()


def test_render_bad_audio_source(bad_files, tmp_path):
    assert_clean_failure(invoke("render", bad_files["text"], "-o", tmp_path / "o.wav"), "Could not read")
    assert_clean_failure(invoke("render", bad_files["missing"], "-o", tmp_path / "o.wav"), "does not exist")


def test_listing_unknown_rack():
    assert_clean_failure(invoke("presets", "--rack", "moog"), "Unknown rack 'moog'")
    assert_clean_failure(invoke("effects", "--rack", "moog"), "Unknown rack 'moog'")


def test_full_disk_leaves_nothing(tmp_path, monkeypatch, tone):
    """A write that fails with ENOSPC midway reports the full disk and removes the temp file."""
    import errno

    from serumrnn.core.errors import OutputError

    class FullDisk:
        def __init__(self, *a, **k):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    # Patch the module write_wav imports from: before pedalboard.io is first imported,
    # the dotted name resolves to pedalboard_native.io, whose patched class the import
    # would then copy into pedalboard.io for good.
    import pedalboard.io

    monkeypatch.setattr(pedalboard.io, "AudioFile", FullDisk)
    with pytest.raises(OutputError, match="disk is full"):
        write_wav(tmp_path / "x.wav", tone)
    assert list(tmp_path.iterdir()) == []


def test_mistyped_file_name_gets_the_file_error_not_a_preset_one(tmp_path):
    """render and suggest share one rule: an argument with an extension is a file."""
    assert_clean_failure(invoke("render", tmp_path / "take1.aif", "-o", tmp_path / "o.wav"), "does not exist")
    assert_clean_failure(invoke("suggest", tmp_path / "take1.aif", tmp_path / "t.wav"), "does not exist")


# --- the generated corpus (tests/corpus.py) over every command that reads audio -----------------


@pytest.fixture(scope="module")
def corpus_root(tmp_path_factory):
    return tmp_path_factory.mktemp("corpus")


@pytest.fixture(scope="module")
def accepted(corpus_root):
    return corpus.accepted_files(corpus_root / "accepted")


@pytest.fixture(scope="module")
def refused(corpus_root):
    return corpus.refused_files(corpus_root / "refused")


@pytest.fixture(scope="module")
def silent(corpus_root):
    return corpus.silent_files(corpus_root / "silent")


@pytest.fixture(scope="module")
def reference(corpus_root):
    return corpus.write(corpus_root / "reference.wav", corpus.tone())


def tree(folder) -> set[str]:
    """Every path under ``folder``, hidden ones included, relative to it."""
    return {str(path.relative_to(folder)) for path in folder.rglob("*")}


def check_refusals(runs) -> None:
    """``runs``: (case, args, fragment); each must be refused by the contract."""
    problems = []
    for case, args, fragment in runs:
        result = invoke(*args)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            problems.append(f"{case}: raised {result.exception!r}")
            continue
        problem = failure_problem(result.exit_code, result.stderr, result.stdout, fragment)
        if problem:
            problems.append(f"{case} ({args[0]}): {problem}")
    assert not problems, "\n".join(problems)


def test_corpus_covers_what_the_issue_lists(accepted, refused, silent):
    assert {f"wav-{w}" for w in ("PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE")} <= set(accepted)
    assert {"rate-8000", "rate-192000", "channels-8", "length-1ms", "length-10min-8ch-192k", "dc-offset",
            "clipped", "denormals-in-tone", "path-unicode", "path-with-spaces"} <= set(accepted)
    assert {"truncated-header-wav", "truncated-header-flac", "truncated-header-mp3", "corrupt-header-flac",
            "corrupt-header-mp3", "nan-sample", "inf-sample", "unknown-extension", "header-only-wav",
            "cut-midway-wav"} <= set(refused)
    assert len(accepted) >= 50 and len(refused) >= 30 and len(silent) == 3
    # The 10-minute file declares 1.8 GB but occupies a few MB (a sparse hole).
    ten_minutes = accepted["length-10min-8ch-192k"]
    assert ten_minutes.stat().st_size > 1.8e9 and ten_minutes.stat().st_blocks * 512 < 50e6


def test_compare_refuses_every_bad_file(refused, silent, reference):
    runs = []
    for case, (path, fragment) in refused.items():
        runs.append((case, ["compare", path, reference], fragment))
        runs.append((case, ["compare", reference, path], fragment))
    runs += [(case, ["compare", reference, path], "silent") for case, path in silent.items()]
    check_refusals(runs)


def test_render_refuses_every_bad_file(refused, tmp_path):
    check_refusals([(case, ["render", path, "-o", tmp_path / "out.wav"], fragment)
                    for case, (path, fragment) in refused.items()])
    assert tree(tmp_path) == set()


def test_suggest_refuses_every_bad_file(refused, silent, reference, tiny_bundle, tmp_path):
    out = tmp_path / "session"
    runs = []
    for case, (path, fragment) in refused.items():
        runs.append((case, ["suggest", path, reference, "--bundle", tiny_bundle, "--out", out], fragment))
        runs.append((case, ["suggest", "saw", path, "--bundle", tiny_bundle, "--out", out], fragment))
    runs += [(case, ["suggest", "saw", path, "--bundle", tiny_bundle, "--out", out], "silent")
             for case, path in silent.items()]
    check_refusals(runs)
    assert tree(tmp_path) == set()


def test_python_api_refuses_every_bad_file(refused, silent, reference, tiny_bundle):
    from serumrnn.core import suggest
    from serumrnn.core.errors import AudioError

    cases = [(case, (path, reference), fragment) for case, (path, fragment) in refused.items()]
    cases += [(case, (reference, path), fragment) for case, (path, fragment) in refused.items()]
    cases += [(case, (reference, path), "silent") for case, path in silent.items()]
    problems = []
    for case, (source, target), fragment in cases:
        try:
            suggest(source, target, bundle=tiny_bundle)
            problems.append(f"{case}: accepted")
        except AudioError as exc:
            if fragment not in str(exc):
                problems.append(f"{case}: {exc}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    "array, fragment",
    [
        (np.full(44100, np.nan, np.float32), "NaN"),
        (np.r_[np.ones(10), np.inf].astype(np.float64), "NaN or infinite"),
        (np.zeros(0, np.float32), "zero-length"),
        (np.zeros((2, 3, 4), np.float32), "has shape"),
        (np.array(["a", "b"]), "not numeric"),
        (np.full(44100, 1e30, np.float32), "past full scale"),
        (np.full(44100, 1e-40, np.float32), "silent"),
    ],
)
def test_python_api_refuses_bad_arrays(array, fragment, tiny_bundle):
    from serumrnn.core import suggest

    with pytest.raises(SerumRNNError, match=fragment):
        suggest("saw", array, bundle=tiny_bundle)


def test_silent_input_to_suggest_gets_one_sentence(silent, reference, tiny_bundle, tmp_path):
    """Effects cannot shape silence: suggest refuses a silent input, file or array."""
    from serumrnn.core import suggest
    from serumrnn.core.errors import AudioError

    check_refusals([(case, ["suggest", path, reference, "--bundle", tiny_bundle, "--out", tmp_path / "s"], "silent")
                    for case, path in silent.items()])
    assert tree(tmp_path) == set()
    with pytest.raises(AudioError, match="effects cannot shape silence"):
        suggest(np.zeros(44100, np.float32), reference, bundle=tiny_bundle)


def test_silent_input_or_output_is_accepted(silent, reference):
    """Silence is only wrong as a target: an input or an output may be silent."""
    for path in silent.values():
        result = invoke("compare", path, reference, "--json")
        assert result.exit_code == 0, result.output
        assert all(math.isfinite(v) for v in json.loads(result.stdout)["metrics"].values())


def test_compare_takes_every_unusual_file_both_ways(accepted, reference):
    problems = []
    for case, path in accepted.items():
        for pair in ((path, reference), (reference, path)):
            result = invoke("compare", *pair, "--json")
            if result.exit_code != 0:
                problems.append(f"{case}: {result.output}")
                continue
            values = json.loads(result.stdout)["metrics"]
            if not all(math.isfinite(v) for v in values.values()):
                problems.append(f"{case}: {values}")
    assert not problems, "\n".join(problems)


def test_render_takes_every_unusual_file(accepted, tmp_path):
    problems = []
    for case, path in accepted.items():
        out = tmp_path / f"{case}.wav"
        result = invoke("render", path, "-o", out, "--fx", "distortion:drive=0.9", "--fx", "reverb:mix=0.5")
        if result.exit_code != 0:
            problems.append(f"{case}: {result.output}")
            continue
        audio = load_audio(out, duration_s=None)
        if audio.shape != (44100,) or not np.all(np.isfinite(audio)) or np.max(np.abs(audio)) > 8:
            problems.append(f"{case}: rendered {audio.shape}, peak {np.max(np.abs(audio))}")
    assert not problems, "\n".join(problems)


@pytest.mark.slow
def test_sessions_run_on_every_unusual_file(accepted, reference, tiny_bundle):
    """Every unusual file works as the input and as the target of a session (Python API)."""
    from serumrnn.core import suggest

    problems = []
    for case, path in accepted.items():
        for role, (source, target) in (("input", (path, reference)), ("target", (reference, path))):
            try:
                session = suggest(source, target, bundle=tiny_bundle, revise_renders=0)  # files, not the revision
            except SerumRNNError as exc:
                problems.append(f"{case} as {role}: {exc}")
                continue
            values = [session.initial_metrics] + [step.metrics for step in session.steps]
            if not all(math.isfinite(v) for metrics in values for v in metrics.values()):
                problems.append(f"{case} as {role}: non-finite distances")
    assert not problems, "\n".join(problems)


def test_cli_suggest_with_odd_paths_writes_everything(accepted, tiny_bundle, tmp_path):
    out = tmp_path / "résultats et notes" / "séance 1"
    out.parent.mkdir()
    result = invoke("suggest", accepted["path-with-spaces"], accepted["path-unicode"], "--bundle", tiny_bundle,
                    "--out", out)
    assert result.exit_code == 0, result.output
    assert {"00-input.wav", "99-target.wav", "session.json", "progression.png"} <= {p.name for p in out.iterdir()}
    assert tree(out.parent) == {"séance 1"} | {f"séance 1/{p.name}" for p in out.iterdir()}
    mask = os.umask(0)
    os.umask(mask)
    # Readable like anything else the user makes (temporary folders and files start private).
    assert out.stat().st_mode & 0o777 == 0o777 & ~mask
    assert {p.stat().st_mode & 0o777 for p in out.iterdir()} == {0o666 & ~mask}


# --- output locations: missing, unwritable, a file, a full disk ------------------------------------


def writing_commands(tiny_bundle, tiny_dataset, reference) -> dict[str, list]:
    """Every command that writes, with its output option last (the location is appended)."""
    return {
        "render": ["render", "saw", "--fx", "eq:gain=0.9", "-o"],
        "suggest": ["suggest", "saw", reference, "--bundle", tiny_bundle, "--out"],
        "demo": ["demo", "--bundle", tiny_bundle, "--seed", "3", "--out"],
        "generate": ["generate", "--group", "basic", "--chains-per-combo", "1", "--workers", "1", "--out"],
        "train params": ["train", "params", "--data", tiny_dataset, "--effect", "eq", "--epochs", "1", "--quiet",
                         "--out"],
        "train selector": ["train", "selector", "--data", tiny_dataset, "--kind", "ni", "--epochs", "1", "--quiet",
                           "--out"],
    }


@pytest.mark.parametrize("command", ["render", "suggest", "demo", "generate", "train params", "train selector"])
def test_unusable_output_locations_are_refused(command, tiny_bundle, tiny_dataset, reference, tmp_path):
    args = writing_commands(tiny_bundle, tiny_dataset, reference)[command]
    blocker = tmp_path / "a-file"
    blocker.write_text("mine")
    before = tree(tmp_path)
    cases = [("under a regular file", blocker / "x.wav", "")]  # as root, permissions cannot block us: a file can
    if command in ("render", "suggest", "demo"):  # generate and train create their folder with its parents
        cases.append(("missing parent", tmp_path / "no" / "such" / "place" / "x.wav", "does not exist"))
    if command != "render":
        cases.append(("a file, not a folder", blocker, "file"))
    problems = []
    for case, location, fragment in cases:
        result = invoke(*args, location)
        problem = failure_problem(result.exit_code, result.stderr, result.stdout, fragment)
        if problem:
            problems.append(f"{case}: {problem}")
    assert not problems, "\n".join(problems)
    assert tree(tmp_path) == before and blocker.read_text() == "mine"


def run_with_disk_limit(args, limit_bytes: int, cwd):
    """Run ``serumrnn ARGS`` where no file may grow past ``limit_bytes``: the kernel then
    fails writes midway exactly as on a full disk (EFBIG instead of ENOSPC)."""
    import resource
    import signal
    import subprocess
    import sys

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write instead of killing the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.run([sys.executable, "-m", "serumrnn.cli", *map(str, args)], preexec_fn=limit, cwd=cwd,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize("command", ["render", "suggest", "demo", "generate", "train params"])
def test_full_disk_midway_leaves_nothing_half_written(command, tiny_bundle, tiny_dataset, reference, tmp_path):
    from serumrnn.core.bundle import ModelBundle

    args = writing_commands(tiny_bundle, tiny_dataset, reference)[command]
    out = tmp_path / ("out.wav" if command == "render" else "out")
    # 64 KiB: metadata files fit, audio, shards and weights do not.
    result = run_with_disk_limit([*args, out], 64 * 1024, cwd=tmp_path)
    problem = failure_problem(result.returncode, result.stderr, result.stdout, "Could not write")
    assert problem is None, problem
    left = tree(tmp_path)
    if command in ("render", "suggest", "demo"):
        assert left == set()  # the output and its staging files are gone
    elif command == "generate":
        # Resumable by design: the directory stays, marked incomplete, with no finished
        # shard and no temporaries; a rerun starts where this stopped.
        assert json.loads((out / "dataset.json").read_text())["status"] == "incomplete"
        assert not (out / "manifest.parquet").exists() and list((out / "shards").iterdir()) == []
        assert not [name for name in left if name.endswith(".tmp")]
    else:
        # The bundle is valid and holds no model; no weights and no temporaries were left.
        assert ModelBundle.load(out).model_names == []
        assert not [name for name in left if name.endswith((".safetensors", ".tmp", ".json.tmp"))]
        assert not [name for name in left if os.path.basename(name).startswith(".") and name.count(".") > 1
                    and not name.startswith("out/.checkpoints") and name != "out/.lock"]


# --- broken model bundles and datasets, through every command that reads them ---------------------


def _edit_json(path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def damaged_copy(source, target, damage):
    """Copy the folder ``source`` to ``target`` and apply ``damage`` = (change, fragment)."""
    change, fragment = damage
    shutil.copytree(source, target)
    change(target)
    return target, fragment


def _truncate(path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _truncate_without_checksum(folder) -> None:
    _truncate(folder / "params-eq.safetensors")
    _edit_json(folder / "bundle.json", lambda m: m["models"]["params-eq"].pop("sha256"))


BUNDLE_DAMAGE = {
    "missing model file": (lambda b: (b / "params-eq.safetensors").unlink(), "is missing"),
    "truncated safetensors": (lambda b: _truncate(b / "params-reverb.safetensors"), "corrupt or truncated"),
    "truncated safetensors, no checksum": (_truncate_without_checksum, "not a valid safetensors"),
    "garbage safetensors, no checksum": (
        lambda b: ((b / "selector-rnn.safetensors").write_bytes(b"\x00" * 64),
                   _edit_json(b / "bundle.json", lambda m: m["models"]["selector-rnn"].pop("sha256"))),
        "not a valid safetensors"),
    "bundle.json for another rack": (lambda b: _edit_json(b / "bundle.json", lambda m: m.update(rack="linux-vst")),
                                     "is for rack linux-vst"),
    "bundle.json with another sample rate": (
        lambda b: _edit_json(b / "bundle.json", lambda m: m["feature_settings"].update(sample_rate=22050)),
        "expects 22050 Hz"),
    "bundle.json with other mel bands": (
        lambda b: _edit_json(b / "bundle.json", lambda m: m["feature_settings"].update(n_mels=64)),
        "other feature settings"),
    "bundle.json with other effects": (
        lambda b: _edit_json(b / "bundle.json", lambda m: m.update(effect_order=m["effect_order"][::-1])),
        "has effects"),
    "bundle.json with another knob range": (
        lambda b: _edit_json(b / "bundle.json", lambda m: m["effects"]["eq"][0].update(sample_ranges=[[0.0, 0.1]])),
        "other knobs"),
    "model file ../../x.safetensors": (
        lambda b: _edit_json(b / "bundle.json", lambda m: m["models"]["params-eq"].update(file="../../x.safetensors")),
        "refusing to read it"),
    "model file as an absolute path": (
        lambda b: _edit_json(b / "bundle.json", lambda m: m["models"]["params-eq"].update(file="/etc/passwd")),
        "refusing to read it"),
    "model name with ../": (
        lambda b: _edit_json(b / "bundle.json", lambda m: m["models"].update({"../params-x": m["models"]["params-eq"]})),
        "invalid model"),
    "corrupt bundle.json": (lambda b: (b / "bundle.json").write_text("{\"format\": "), "corrupt"),
    "deleted bundle.json": (lambda b: (b / "bundle.json").unlink(), "has no bundle.json"),
    "bundle.json of another format version": (
        lambda b: _edit_json(b / "bundle.json", lambda m: m.update(format_version=7)), "format version 7"),
    "no rnn selector": (lambda b: _edit_json(b / "bundle.json", lambda m: m["models"].pop("selector-rnn")),
                        "no rnn selection model"),
}
# A bundle without a parameter model is refused only without search (tests/test_search.py).


@pytest.mark.parametrize("damage", list(BUNDLE_DAMAGE))
def test_broken_bundles_are_refused_by_suggest_demo_and_the_api(damage, tiny_bundle, reference, tmp_path):
    from serumrnn.core import suggest

    broken, fragment = damaged_copy(tiny_bundle, tmp_path / "bundle", BUNDLE_DAMAGE[damage])
    before = tree(tmp_path)
    check_refusals([
        (damage, ["suggest", "saw", reference, "--bundle", broken, "--out", tmp_path / "s"], fragment),
        (damage, ["demo", "--bundle", broken, "--out", tmp_path / "d"], fragment),
    ])
    with pytest.raises(SerumRNNError, match=fragment):
        suggest("saw", reference, bundle=broken)
    assert tree(tmp_path) == before


def _rewrite_manifest(folder, column: str, value) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(folder / "manifest.parquet")
    index = table.schema.get_field_index(column)
    replaced = pa.array([value] * table.num_rows, type=table.schema.field(column).type)
    pq.write_table(table.set_column(index, column, replaced), folder / "manifest.parquet")


def _pickled_shard(folder) -> None:
    np.save(folder / "shards" / "shard-00000.mel.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)


DATASET_DAMAGE = {
    "deleted mel shard": (lambda d: (d / "shards" / "shard-00000.mel.npy").unlink(), "is missing"),
    "deleted shard manifest": (lambda d: (d / "shards" / "shard-00000.parquet").unlink(), "is missing"),
    "truncated mel shard": (lambda d: _truncate(d / "shards" / "shard-00000.mel.npy"), "missing or corrupt"),
    "pickled object shard": (_pickled_shard, "missing or corrupt"),
    "garbage manifest": (lambda d: (d / "manifest.parquet").write_bytes(b"PAR1 but not really"), "corrupt"),
    "truncated manifest": (lambda d: _truncate(d / "manifest.parquet"), "corrupt"),
    "deleted manifest": (lambda d: (d / "manifest.parquet").unlink(), "no manifest.parquet"),
    "manifest naming shard 99999": (lambda d: _rewrite_manifest(d, "shard", 99999), "is missing"),
    "manifest naming shard -1": (lambda d: _rewrite_manifest(d, "shard", -1), "is missing"),
    "manifest rows past the shard": (lambda d: _rewrite_manifest(d, "row", 10**6), "does not hold the rows"),
    "corrupt dataset.json": (lambda d: (d / "dataset.json").write_text("{"), "corrupt"),
    "dataset.json of another version": (
        lambda d: _edit_json(d / "dataset.json", lambda m: m.update(format_version=42)), "format version 42"),
    "unfinished dataset": (lambda d: _edit_json(d / "dataset.json", lambda m: m.update(status="incomplete")),
                           "unfinished"),
    "manifest of another dataset size": (
        lambda d: _edit_json(d / "dataset.json", lambda m: m["counts"].update(renders=5)), "does not match"),
}


@pytest.mark.parametrize("damage", list(DATASET_DAMAGE))
def test_broken_datasets_are_refused_by_info_and_train(damage, tiny_dataset, tmp_path):
    broken, fragment = damaged_copy(tiny_dataset, tmp_path / "data", DATASET_DAMAGE[damage])
    before = tree(tmp_path)
    check_refusals([
        (damage, ["dataset", "info", broken], fragment),
        (damage, ["train", "params", "--data", broken, "--out", tmp_path / "b", "--epochs", "1", "--quiet"], fragment),
        (damage, ["train", "selector", "--data", broken, "--out", tmp_path / "b", "--epochs", "1", "--quiet"],
         fragment),
    ])
    assert tree(tmp_path) == before


# --- bad options of every command (values that pass the command line but not our checks) ---------


def bad_option_runs(tiny_bundle, tiny_dataset, reference, out):
    generate = ["generate", "--out", out, "--group", "basic", "--chains-per-combo", "1"]
    train = ["train", "params", "--data", tiny_dataset, "--out", out, "--quiet"]
    return [
        ("unknown group", ["generate", "--out", out, "--group", "nope", "--chains-per-combo", "1"], "no preset group 'nope'"),
        ("no chains", [*generate[:-1], "0"], "--chains-per-combo is 0"),
        ("negative seed", [*generate, "--seed", "-1"], "--seed is -1"),
        ("no workers", [*generate, "--workers", "0"], "--workers is 0"),
        ("unknown rack", [*generate, "--rack", "moog"], "Unknown rack 'moog'"),
        ("demo: unknown preset", ["demo", "--preset", "kazoo", "--bundle", tiny_bundle, "--out", out], "no preset 'kazoo'"),
        ("demo: unknown selector", ["demo", "--selector", "genius", "--bundle", tiny_bundle, "--out", out],
         "Unknown selector 'genius'"),
        ("demo: unknown bundle", ["demo", "--bundle", "nope", "--out", out], "No model bundle 'nope'"),
        ("suggest: unknown metric", ["suggest", "saw", reference, "--bundle", tiny_bundle, "--metric", "loudness",
                                     "--out", out], "Unknown metric"),
        ("suggest: a folder that is no bundle", ["suggest", "saw", reference, "--bundle", reference.parent, "--out", out],
         "has no bundle.json"),
        ("train: batch size 0", [*train, "--batch-size", "0"], "Batch size is 0"),
        ("train: unknown device", [*train, "--device", "tpu"], "Unknown device 'tpu'"),
        ("train: patience -1", [*train, "--patience", "-1"], "Patience is -1"),
        ("train: negative time", [*train, "--max-minutes", "-5"], "--max-minutes is -5"),
        ("train: negative workers", [*train, "--workers", "-2"], "--workers is -2"),
        ("train: unknown size", [*train, "--size", "huge"], "Unknown model size"),
        ("train selector: unknown kind", ["train", "selector", "--data", tiny_dataset, "--out", out, "--kind", "lstm"],
         "Unknown selector kind"),
        ("dataset info: a file", ["dataset", "info", reference], "is a file"),
        ("dataset info: not a dataset", ["dataset", "info", reference.parent], "holds no dataset.json"),
        ("compare: a preset name", ["compare", "saw", reference], "does not exist"),
        ("render: NaN knob", ["render", "saw", "-o", out, "--fx", "eq:gain=nan"], "is nan"),
        ("render: infinite knob", ["render", "saw", "-o", out, "--fx", "eq:gain=inf"], "is inf"),
        ("presets: unknown rack", ["presets", "--rack", "moog"], "Unknown rack 'moog'"),
        ("effects: unknown rack", ["effects", "--rack", "moog", "--json"], "Unknown rack 'moog'"),
    ]


def test_bad_options_of_every_command_write_nothing(tiny_bundle, tiny_dataset, reference, tmp_path):
    out = tmp_path / "out"
    check_refusals(bad_option_runs(tiny_bundle, tiny_dataset, reference, out))
    assert tree(tmp_path) == set()
