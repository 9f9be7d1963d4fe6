"""Task specs: the built-ins validate; bad specs fail with every problem named; YAML runs no code."""
import pytest

from medbench.tasks import TaskError, builtin_task_files, load_task, parse_task, read_task_file


def test_builtin_tasks_validate():
    names = {read_task_file(p).name for p in builtin_task_files()}
    assert {"t2i", "i2t", "joint_pairs"} <= names
    jp = load_task("joint_pairs")
    assert jp.request == "prompt->pair" and jp.produce == ("image", "report") and jp.given == ("prompt",)


def test_every_problem_is_reported_with_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nrequest: text->video\nmetrics: nlg\nn: 0\ncolour: red\n")
    with pytest.raises(TaskError) as e:
        read_task_file(bad)
    msg = str(e.value)
    assert str(bad) in msg
    assert "unknown field 'colour'" in msg and "missing required field 'dataset'" in msg and "field 'metrics' must be list" in msg


def test_semantic_checks():
    base = dict(name="t", dataset="cxr-phantom", request="image->report", metrics=["nlg"], n=5)
    assert parse_task(base).split == "test"
    for change, needle in [({"request": "x"}, "request 'x'"), ({"n": 0}, "n must be"), ({"protocol": "bleu"}, "protocol"),
                           ({"produce": ["image"]}, "contradicts")]:
        with pytest.raises(TaskError, match=needle):
            parse_task({**base, **change})


def test_yaml_never_executes_code(tmp_path):
    evil = tmp_path / "evil.yaml"
    evil.write_text("!!python/object/apply:os.system ['touch " + str(tmp_path / "pwned") + "']\n")
    with pytest.raises(TaskError):
        read_task_file(evil)
    assert not (tmp_path / "pwned").exists()
