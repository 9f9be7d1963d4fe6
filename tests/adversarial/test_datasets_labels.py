"""qa-findings rows F27, F33, F34, F46: label keys the labeler does not know are refused; a dataset that turns
'mixed' says which samples made it so; a flat folder says the families needing a train split were skipped."""
import json
import shutil

from cli_helpers import assert_one_line

I2T = ("run", "--task", "i2t", "--model", "oracle")


def rewrite_labels(folder, split, change):
    path = folder / split / "labels.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    change(rows)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_F27_misspelled_label_keys_are_refused_naming_them(cli, tiny_folder):
    def misspell(rows):
        for r in rows:
            r["labels"] = {"Edemma" if k == "Cardiomegaly" else k: v for k, v in r["labels"].items()}
            r["labels"]["Banana"] = 1
    rewrite_labels(tiny_folder, "test", misspell)
    line = assert_one_line(cli(*I2T, "--dataset", f"folder:{tiny_folder}", "--n", "all"), 2, "'Edemma'", "'Banana'",
                           "Cardiomegaly")
    assert "observations" in line


def test_F33_F34_a_stray_domain_turns_the_dataset_mixed_and_the_run_says_which_sample(cli, tiny_folder, tmp_path):
    rewrite_labels(tiny_folder, "test", lambda rows: rows[3].update(domain="path"))
    result = cli("run", "--task", "joint_pairs", "--model", "oracle", "--dataset", f"folder:{tiny_folder}", "--n", "all")
    assert result.rc == 3, result.err  # the primary metric (pair consistency) needs one domain: not a silent exit 0
    (run_json,) = (tmp_path / "out").glob("*/run.json")
    warnings = [w["message"] for w in json.loads(run_json.read_text())["warnings"]]
    mixed = [w for w in warnings if "disagree on their domain" in w]
    assert mixed and "test003" in mixed[0] and "'path' (1)" in mixed[0]
    assert "disagree on their domain" in result.out  # shown in the console summary too


def test_F46_a_flat_folder_names_the_missing_train_split(cli, tiny_folder, tmp_path):
    flat = tmp_path / "cwd" / "flat"
    flat.mkdir(parents=True)
    for f in (tiny_folder / "test").iterdir():
        shutil.copy(f, flat / f.name)
    result = cli("run", "--task", "joint_pairs", "--model", "oracle", "--dataset", f"folder:{flat}", "--n", "all")
    assert result.rc == 3 and "no train split" in result.out and "--train-dataset" in result.out, result.out[-2000:]
    again = cli("run", "--task", "joint_pairs", "--model", "oracle", "--dataset", f"folder:{flat}", "--n", "all",
                "--train-dataset", f"folder:{tiny_folder}")
    assert again.rc == 0, again.err
