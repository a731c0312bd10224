"""``smemet calibration``: records, tests and lives through the command
line a measurement engineer uses -- one line and exit 2 for each kind of
bad input, the change visible to a running gateway's next batch, exports
read by json/csv and round-tripping through import bit for bit."""

from __future__ import annotations

import csv
import io
import json
import math
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smemet.cli import main
from smemet.gateway.calibration import export
from smemet.gateway.calibration.records import CalibrationRecord, Correction, SatResult, Sensor
from smemet.gateway.calibration.store import CalibrationStore
from smemet.gateway.outbox import Outbox

RECORD = ["--certificate", "K-2025-117", "--lab", "Kalibrierlabor Nord", "--date", "2025-05-01", "--due", "2026-05-01",
          "--uncertainty", "1.5", "--unit", "Cel"]


def record_args(**changed):
    """RECORD with some options changed: record_args(certificate="K-2", due="2099-01-01")."""
    args = list(RECORD)
    for name, value in changed.items():
        args[args.index("--" + name) + 1] = value
    return args


@pytest.fixture
def outbox(tmp_path):
    path = tmp_path / "outbox.sqlite"
    Outbox(str(path), 1 << 30).close()
    return str(path)


def smemet(capsys, *args):
    code = main(["calibration", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_add_list_show_retire(capsys, outbox):
    code, out, _err = smemet(capsys, "add", "furnace-1/tc_s", *RECORD, "--points", "600:+1.2,800:+0.9,1000:-0.4",
                             "--valid-from", "2025-05-02T08:00:00+02:00", "--sat-tolerance", "2.2", "--outbox", outbox)
    assert code == 0 and "added calibration record K-2025-117 for furnace-1/tc_s (life 1)" in out
    code, out, _err = smemet(capsys, "list", "--json", "--outbox", outbox)
    (doc,) = json.loads(out)
    assert (doc["id"], doc["valid_from"], doc["points"]) == ("K-2025-117", "2025-05-02T06:00:00Z",
                                                            [[600.0, 1.2], [800.0, 0.9], [1000.0, -0.4]])
    code, out, _err = smemet(capsys, "show", "furnace-1/tc_s", "--outbox", outbox)
    assert code == 0 and "certificate K-2025-117, Kalibrierlabor Nord" in out and "±2.2 Cel" in out
    code, out, _err = smemet(capsys, "retire", "K-2025-117", "--reason", "sensor removed", "--outbox", outbox)
    assert code == 0 and "retired record K-2025-117" in out
    code, out, _err = smemet(capsys, "list", "--json", "--outbox", outbox)
    assert json.loads(out) == []  # nothing in force any more
    code, out, _err = smemet(capsys, "list", "--all", "--json", "--outbox", outbox)
    assert json.loads(out)[0]["retired_reason"] == "sensor removed"  # history kept


@pytest.mark.parametrize("args, fragment", [
    (["--due", "2025-04-01"], "due date 2025-04-01 is before the calibration date 2025-05-01"),
    (["--points", "800:1,600:2"], "ascending order of reading: 600 after 800"),
    (["--points", "800:1"], "give 2 to 64 reading:correction pairs"),
    (["--points", "800=1,900:2"], "'800=1' is not reading:correction"),
    (["--points", "600:1,800:2", "--offset", "1"], "--points is one correction form"),
    (["--date", "2025-13-01"], "--date '2025-13-01' is not a date"),
    (["--valid-from", "tomorrow"], "--valid-from 'tomorrow' is not a time"),
    (["--uncertainty", "-1"], "expanded uncertainty must be a number >= 0"),
    (["--gain", "0"], "gain must not be 0"),
    (["--sat-tolerance", "0"], "--sat-tolerance must be a number > 0"),
    (["--id", "has space"], "record id 'has space'"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, outbox, args, fragment):
    record = list(RECORD)
    for option, value in zip(args[::2], args[1::2]):
        if option in record:
            record[record.index(option) + 1] = value
        else:
            record += [option, value]
    if not {"--points", "--gain", "--offset"} & set(args):
        record += ["--offset", "1.0"]
    code, out, err = smemet(capsys, "add", "furnace-1/tc_s", *record, "--outbox", outbox)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("smemet calibration: ") and fragment in err, err
    assert CalibrationStore.open(outbox).records() == []  # nothing stored


def test_overlapping_validity_and_other_mistakes(capsys, outbox, tmp_path):
    assert smemet(capsys, "add", "f/t", *RECORD, "--offset", "1", "--valid-from", "2025-05-02", "--outbox", outbox)[0] == 0
    code, _out, err = smemet(capsys, "add", "f/t", *RECORD, "--offset", "1", "--id", "K2", "--valid-from", "2025-05-01",
                             "--outbox", outbox)
    assert code == 2 and "validity overlaps record K-2025-117 of f/t" in err
    code, _out, err = smemet(capsys, "add", "f/t", *RECORD, "--offset", "1", "--valid-from", "2025-06-01",
                             "--outbox", outbox)
    assert code == 2 and "record id 'K-2025-117' is already used" in err
    for args, fragment in [
        (["add", "f", *RECORD, "--offset", "1"], "'f' is not a sensor"),
        (["add", "f/*", *RECORD, "--offset", "1"], "'f/*' is not a sensor"),
        (["add", "f/t", *RECORD], "give the correction"),
        (["retire", "nope"], "no calibration record 'nope'"),
        (["show", "x/y"], "nothing is recorded for x/y"),
        (["sat", "x/y", "--test-reading", "1", "--system-reading", "2"], "no calibration record of x/y in force"),
        (["sat", "f/t", "--test-reading", "1", "--system-reading", "2"], "gives no SAT tolerance"),
        (["import", str(tmp_path / "missing.json")], "cannot read"),
        (["due", "--within", "soon"], "--within soon"),
    ]:
        code, _out, err = smemet(capsys, *args, "--outbox", outbox)
        assert code == 2 and err.count("\n") == 1 and fragment in err, (args, err)
    code, _out, err = smemet(capsys, "list", "--outbox", str(tmp_path / "none.sqlite"))
    assert code == 2 and "does not exist yet; start the gateway once" in err
    (tmp_path / "bad.toml").write_text("[outbox\n")
    code, _out, err = smemet(capsys, "list", "--gateway-config", str(tmp_path / "bad.toml"))
    assert code == 2 and "not valid TOML" in err and err.count("\n") == 1


def test_a_system_accuracy_test_passes_or_fails_against_the_records_tolerance(capsys, outbox):
    smemet(capsys, "add", "f/t", *RECORD, "--offset", "0.5", "--sat-tolerance", "1.1", "--sat-tolerance-percent", "0.4",
           "--valid-from", "2025-05-01", "--outbox", outbox)
    code, out, _err = smemet(capsys, "sat", "f/t", "--test-reading", "1000", "--system-reading", "1003.9",
                             "--instrument", "Fluke 1524 #88", "--outbox", outbox)
    assert code == 0 and "passed: difference +3.9 Cel within ±4 Cel" in out  # 0.4 % of 1000 > 1.1
    code, out, _err = smemet(capsys, "sat", "f/t", "--test-reading", "1000", "--system-reading", "995.9",
                             "--outbox", outbox)
    assert code == 1 and "FAILED: difference -4.1 Cel exceeds ±4 Cel" in out
    sats = CalibrationStore.open(outbox).sats()
    assert [(s.passed, s.record, s.instrument) for s in sats] == [(True, "K-2025-117", "Fluke 1524 #88"),
                                                                  (False, "K-2025-117", "")]
    code, out, _err = smemet(capsys, "due", "--json", "--outbox", outbox)
    (row,) = json.loads(out)["sensors"]
    assert row["state"] == "sat-failed" and row["sat_failed_at"]


def test_replace_starts_a_new_life_with_its_own_record(capsys, outbox):
    smemet(capsys, "add", "f/t", *RECORD, "--offset", "1", "--valid-from", "2025-05-01", "--outbox", outbox)
    code, out, _err = smemet(capsys, "replace", "f/t", *record_args(certificate="K-NEW"), "--offset", "0.2",
                             "--valid-from", "2025-09-01", "--reason", "burnt out", "--outbox", outbox)
    assert code == 0 and "f/t: life 2 starts" in out and "with record K-NEW" in out
    store = CalibrationStore.open(outbox)
    assert [(life.number, life.reason) for life in store.lives()] == [(1, "first calibration record"), (2, "burnt out")]
    assert [(r.id, r.life) for r in store.records()] == [("K-2025-117", 1), ("K-NEW", 2)]


def test_due_lists_what_needs_attention(capsys, outbox):
    smemet(capsys, "add", "a/soon", *record_args(due="2099-01-10"), "--offset", "0", "--outbox", outbox)
    smemet(capsys, "add", "a/late", *record_args(certificate="K-L"), "--offset", "0", "--outbox", outbox)
    smemet(capsys, "add", "a/fine", *record_args(certificate="K-F", due="2099-12-31"), "--offset", "0",
           "--outbox", outbox)
    code, out, _err = smemet(capsys, "due", "--within", "36500", "--json", "--outbox", outbox)
    assert {row["sensor"]: row["state"] for row in json.loads(out)["sensors"]} == {
        "a/soon": "due-soon", "a/late": "overdue", "a/fine": "due-soon"}
    code, out, _err = smemet(capsys, "due", "--json", "--outbox", outbox)
    assert {row["sensor"]: row["state"] for row in json.loads(out)["sensors"]} == {"a/late": "overdue"}
    code, out, _err = smemet(capsys, "due", "--outbox", outbox)
    assert code == 0 and "a/late" in out and "1 of 3 sensors need attention" in out


def test_exports_are_plain_json_and_csv(capsys, outbox):
    smemet(capsys, "add", "f/t", *RECORD, "--points", "600:1.25,800:-0.5", "--method", "comparison, ITS-90",
           "--valid-from", "2025-05-01", "--sat-tolerance", "2", "--outbox", outbox)
    smemet(capsys, "sat", "f/t", "--test-reading", "700", "--system-reading", "701", "--at", "2025-06-01T10:00:00Z",
           "--outbox", outbox)
    code, out, _err = smemet(capsys, "export", "--outbox", outbox)
    doc = json.loads(out)
    assert doc["format"] == "smemet-calibration" and [r["method"] for r in doc["records"]] == ["comparison, ITS-90"]
    assert doc["sats"][0]["at"] == "2025-06-01T10:00:00Z" and doc["sats"][0]["passed"] is True
    assert [entry["action"] for entry in doc["log"]] == ["add", "sat"]
    code, out, _err = smemet(capsys, "export", "--format", "csv", "--outbox", outbox)
    rows = list(csv.DictReader(io.StringIO(out)))
    assert rows[0]["points"] == "600.0:1.25;800.0:-0.5" and rows[0]["method"] == "comparison, ITS-90"
    code, out, _err = smemet(capsys, "export", "--format", "csv", "--table", "sats", "--outbox", outbox)
    assert list(csv.DictReader(io.StringIO(out)))[0]["difference"] == "1.0"


# ---------------------------------------------------------------- round trips

_text = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=12)
_finite = st.floats(-1e6, 1e6, allow_nan=False)
_moment = st.floats(1.6e9, 2.0e9).map(lambda t: round(t, 6))


@st.composite
def records(draw):
    out = []
    base = draw(_moment)
    for k in range(draw(st.integers(1, 4))):
        sensor = Sensor(draw(st.sampled_from(["furnace-1", "ladle, 2"])), draw(st.sampled_from(["tc_s", "t\u00b0"])))
        kind = draw(st.sampled_from(["offset", "points", "linear"]))
        if kind == "points":
            xs = sorted(set(draw(st.lists(_finite, min_size=2, max_size=5))))
            if len(xs) < 2:
                xs = [0.0, 1.0]
            correction = Correction("points", points=tuple((x, draw(_finite)) for x in xs))
        elif kind == "linear":
            correction = Correction("linear", offset=draw(_finite), gain=draw(st.floats(0.5, 2.0)))
        else:
            correction = Correction("offset", offset=draw(_finite))
        start = round(base + k * 1e7 + draw(st.floats(0, 1e6)), 6)  # a sensor's records follow each other
        retired = draw(st.none() | st.just(round(start + 100.5, 6)))
        out.append(CalibrationRecord(
            f"R{k}", sensor, 1, "C-" + draw(_text).strip() or "C", "Lab " + draw(_text), "2025-01-01",
            draw(st.sampled_from(["2025-01-01", "2026-02-28"])), 1.8e9 + k, start, correction,
            draw(st.floats(0, 10)), draw(st.none() | st.just("Cel")), draw(_text),
            draw(st.none() | st.floats(0.01, 5)), draw(st.none() | st.floats(0.01, 5)), draw(_text), start - 5,
            "engineer", retired, draw(_text) if retired else "", "auditor" if retired else ""))
    return out


def _stored(path, recs):
    store = CalibrationStore.open(path)
    for r in recs:
        store.add(r)
    for r in recs[:1]:
        store.add_sat(SatResult(r.sensor, r.id, r.valid_from + 1, 100.0, 101.5, 1.0, "FTI", "n", r.valid_from + 2, "x"))
    return store


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records(), st.sampled_from(["json", "csv"]))
def test_an_export_imported_elsewhere_gives_the_same_records(tmp_path_factory, recs, fmt):
    base = tmp_path_factory.mktemp("roundtrip")
    first, second = str(base / "a.sqlite"), str(base / "b.sqlite")
    for path in (first, second):
        Outbox(path, 1 << 30).close()
    store = _stored(first, recs)
    if fmt == "json":
        texts = [export.to_json(store.records(), store.sats(), store.lives(), store.log(), 0.0, first)]
    else:
        texts = [export.to_csv("records", store.records(), (), ()), export.to_csv("sats", (), store.sats(), ())]
    target = CalibrationStore.open(second)
    for text in texts:
        target.import_(*export.read(text, "export"), "importer", 1.9e9)
    assert target.records() == store.records()
    assert [(s.sensor, s.record, s.at, s.test_reading, s.system_reading, s.tolerance, s.passed)
            for s in target.sats()] == [(s.sensor, s.record, s.at, s.test_reading, s.system_reading, s.tolerance,
                                         s.passed) for s in store.sats()]
    for text in texts:  # importing again adds nothing
        assert target.import_(*export.read(text, "export"), "importer", 1.9e9) == (0, 0)


def test_import_refuses_a_changed_record(capsys, outbox, tmp_path):
    smemet(capsys, "add", "f/t", *RECORD, "--offset", "1", "--outbox", outbox)
    code, out, _err = smemet(capsys, "export", "--outbox", outbox)
    doc = json.loads(out)
    doc["records"][0]["offset"] = 2.0
    (tmp_path / "changed.json").write_text(json.dumps(doc))
    code, _out, err = smemet(capsys, "import", str(tmp_path / "changed.json"), "--outbox", outbox)
    assert code == 2 and "exists here with other content; nothing imported" in err
    (tmp_path / "junk.csv").write_text("a,b\n1,2\n")
    code, _out, err = smemet(capsys, "import", str(tmp_path / "junk.csv"), "--outbox", outbox)
    assert code == 2 and "neither a JSON export nor a CSV export" in err


def test_the_command_runs_as_the_installed_smemet(outbox):
    """The console script the engineer types (a process of its own)."""
    done = subprocess.run([sys.executable, "-m", "smemet", "calibration", "add", "f/t", *RECORD, "--offset", "1",
                           "--outbox", outbox], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    done = subprocess.run([sys.executable, "-m", "smemet", "calibration", "add", "f/t", *RECORD, "--offset", "x",
                           "--outbox", outbox], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr
