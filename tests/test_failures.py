"""Bad input (DESIGN section 12): one sentence, non-zero exit, no traceback, no partial output."""

import os

import numpy as np
import pytest
from typer.testing import CliRunner

from serumrnn.cli.app import app
from serumrnn.core.audio import write_wav

runner = CliRunner()


def assert_clean_failure(result, *fragments):
    assert result.exit_code != 0
    assert result.exception is None or isinstance(result.exception, SystemExit)
    text = result.stderr
    assert "Traceback" not in result.output and "Traceback" not in text
    lines = [line for line in text.strip().splitlines() if line.strip()]
    assert len(" ".join(lines).split(". ")) <= 2, text  # one sentence (possibly wrapped)
    assert text.startswith("Error: ")
    for fragment in fragments:
        assert fragment in " ".join(line.strip() for line in lines), text


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

    monkeypatch.setattr("pedalboard.io.AudioFile", FullDisk)
    with pytest.raises(OutputError, match="disk is full"):
        write_wav(tmp_path / "x.wav", tone)
    assert list(tmp_path.iterdir()) == []


def test_mistyped_file_name_gets_the_file_error_not_a_preset_one(tmp_path):
    """render and suggest share one rule: an argument with an extension is a file."""
    assert_clean_failure(invoke("render", tmp_path / "take1.aif", "-o", tmp_path / "o.wav"), "does not exist")
    assert_clean_failure(invoke("suggest", tmp_path / "take1.aif", tmp_path / "t.wav"), "does not exist")
