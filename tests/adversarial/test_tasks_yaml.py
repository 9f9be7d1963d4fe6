"""qa-findings rows C6, C32–C42 (task YAML): refused at load time with one line naming the file,
the field and what to do; YAML never runs code; nothing is written outside --out."""
from pathlib import Path

import pytest

from cli_helpers import assert_one_line

BASE = "name: {name}\ndataset: cxr-phantom\nrequest: {request}\nmetrics: {metrics}\nn: 8\n"


def task_file(tmp_path: Path, text: str, name: str = "task.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def run_task(cli, path: Path):
    return cli("run", "--task", str(path), "--model", "oracle")


@pytest.mark.parametrize("row, text, words", [
    ("C6", BASE.format(name="u", request="image->report", metrics="[clinicl]"), ("unknown metric 'clinicl'", "'clinical'")),
    ("C32", BASE.format(name="u", request="image->report", metrics="[nlg]") + "bogus_key: 1\nmetrcs: [nlg]\n",
     ("unknown field 'bogus_key'", "unknown field 'metrcs'", "allowed:")),
    ("C33", "!!python/object/apply:os.system ['touch PWNED_YAML']\n", ("not valid YAML", "constructor")),
    ("C33", "!!python/object/new:subprocess.Popen [['touch', 'PWNED_YAML']]\n", ("not valid YAML",)),
    ("C34", "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
            "d: [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n", ("invalid task spec", "unknown field 'a'")),
    ("C34", "name: x\n\tdataset: y\n", ("not valid YAML",)),
    ("C35", BASE.format(name="i2t_dk", request="image->report", metrics="[nlg]") + "name: t2i\n",
     ("key 'name' is given twice (lines 1 and 6)",)),
    ("C35", "n: 16\n" + BASE.format(name="dk", request="image->report", metrics="[nlg]"), ("key 'n' is given twice",)),
    ("C36", BASE.format(name="u", request="image->report", metrics="[nlg]").replace("n: 8", "n: 16.5"),
     ("field 'n' must be int, got float",)),
    ("C37", BASE.format(name="u", request="image->report", metrics="[nlg]") + "primary_metric: nlg.coco.bleu5\n",
     ("primary_metric 'nlg.coco.bleu5' is not produced by any metric family of this task",)),
    ("C37", BASE.format(name="u", request="image->report", metrics="[nlg]") + "key_metrics: [clinical.ce_f1]\n",
     ("key_metrics 'clinical.ce_f1' is not produced",)),
    ("C38", BASE.format(name="u", request="image->report", metrics="[image.fidelity]"),
     ("metric family 'image.fidelity' does not apply to image->report requests",)),
    ("C39", BASE.format(name="i2t", request="image->report", metrics="[nlg]"),
     ("task name 'i2t' is already a registered task", "give your task another name")),
    ("C40", BASE.format(name='"../../../..TASK_ESCAPE"', request="image->report", metrics="[nlg]"),
     ("name '../../../..TASK_ESCAPE' must be", "run folder names")),
    ("C41", BASE.format(name="'=HYPERLINK(\"http://evil.example\",\"click\")'", request="image->report", metrics="[nlg]"),
     ("=HYPERLINK", "must be 1-64 letters")),
])
def test_bad_task_yaml_is_refused_at_load(cli, tmp_path, row, text, words):
    path = task_file(tmp_path, text)
    line = assert_one_line(run_task(cli, path), 2, *words)
    assert str(path) in line
    assert not (tmp_path / "cwd" / "PWNED_YAML").exists() and not (tmp_path / "PWNED_YAML").exists()
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_C42_missing_or_folder_task_path(cli, tmp_path):
    assert_one_line(cli("run", "--task", str(tmp_path / "nope.yaml"), "--model", "oracle"), 2, "nope.yaml", "task file not found")
    (tmp_path / "dir.yaml").mkdir()
    assert_one_line(cli("run", "--task", str(tmp_path / "dir.yaml"), "--model", "oracle"), 2, "it is a folder")


def test_non_utf8_task_file(cli, tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\xe9\n".encode("latin-1"))
    assert_one_line(run_task(cli, path), 2, str(path), "not UTF-8")


def test_a_builtin_task_file_by_path_is_not_a_shadow():
    from medbench.tasks import builtin_task_files, load_task

    path = next(p for p in builtin_task_files() if p.stem == "i2t")
    assert load_task(str(path)).name == "i2t"


def test_protocol_switch_moves_the_text_primary_metric():
    from medbench.tasks import check_task, for_protocol, load_task

    task = for_protocol(load_task("i2t"), "medim-paper")
    assert task.primary_metric == "nlg.medim-paper.bleu4" and task.protocol == "medim-paper"
    check_task(task, "medim-paper", keys=False)


def test_builtin_tasks_declare_key_metrics_their_families_produce():
    from medbench.tasks import load_task

    for name in ("t2i", "i2t", "joint_pairs", "downstream_augmentation"):
        task = load_task(name)  # load_task checks primary and key metrics against the families
        assert task.key_metrics, name
