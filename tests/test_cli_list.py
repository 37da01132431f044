"""The command explains itself: `testbed --version`, `testbed analyze` (-h, alone) and `testbed list WHAT`."""

from __future__ import annotations

import json

import pytest

from analysis.laws import LAWS
from testbed.cli import main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_version_from_the_package_metadata(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"testbed {version('testbed')}"


def test_analyze_help_lists_the_commands(capsys):
    code, out, err = run(capsys, "analyze", "-h")
    assert code == 0 and "usage: testbed analyze" in out and not err
    for command in ("fit", "report", "classify", "translation"):
        assert f"    {command} " in out or f"    {command}\n" in out
    code, out, _ = run(capsys, "analyze", "fit", "--help")
    assert code == 0 and "usage: testbed analyze fit" in out and "--law" in out


def test_analyze_alone_lists_the_commands_and_fails(capsys):
    code, out, err = run(capsys, "analyze")
    assert code == 2 and not out
    assert "usage: testbed analyze" in err and "    fit " in err and "    classify " in err


def test_list_ladders_and_sizes(capsys):
    code, out, _ = run(capsys, "list", "ladders")
    assert code == 0 and out.splitlines()[0].split()[:3] == ["ladder", "decoder_sizes", "t5_sizes"]
    assert {"cpu", "micro", "reduced"} <= {line.split()[0] for line in out.splitlines()[1:]}
    code, out, _ = run(capsys, "list", "sizes", "--json")
    rows = {(r["ladder"], r["arch"], r["size"]): r for r in json.loads(out)}
    s1 = rows[("micro", "decoder", "s1")]
    assert (s1["d_model"], s1["layers"], s1["heads"]) == (24, 2, 2)
    assert s1["params"] > s1["params_nonembed"] > 0
    assert ("micro", "t5", "s1") in rows and ("cpu", "t5", "c1") not in rows  # the cpu ladder has no t5 rungs


def test_list_mixtures_suites_laws_tasks(capsys):
    _, out, _ = run(capsys, "list", "mixtures", "--json")
    mixtures = {r["mixture"]: r for r in json.loads(out)}
    assert mixtures["syn_en_fr"]["weights"] == "syn_en:0.5 syn_fr:0.5"
    assert mixtures["syn_en_fr"]["languages"] == "syn_en syn_fr"
    _, out, _ = run(capsys, "list", "suites", "--json")
    suites = {r["suite"]: r for r in json.loads(out)}
    assert suites["synthetic"]["language"] == "syn_en" and suites["docs_cloze"]["language"] == "en"
    assert "finetune" not in suites  # finetuning protocols are not eval suites
    _, out, _ = run(capsys, "list", "laws", "--json")
    assert [r["law"] for r in json.loads(out)] == LAWS.names()
    _, out, _ = run(capsys, "list", "tasks", "--json")
    tasks = json.loads(out)
    assert {
        "task": "smooth",
        "suite": "synthetic",
        "lm_eval": "smooth",
        "num_fewshot": 0,
        "intended": "predictable",
    } in tasks
    assert any(r["suite"] == "gadre46" and r["lm_eval"] == "(unmapped)" for r in tasks)


def test_list_refuses_an_unknown_kind(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["list", "planets"])
    assert exit_.value.code == 2 and "invalid choice: 'planets'" in capsys.readouterr().err


def test_a_users_config_directory_adds_a_ladder_and_a_mixture(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TESTBED_CONFIG_PATH", "")  # restored afterwards, whatever main() puts there
    (tmp_path / "ladders").mkdir()
    (tmp_path / "ladders" / "mine.yaml").write_text(
        "vocab_size: 512\nsizes:\n  m1: {d_model: 16, layers: 1, heads: 2}\n"
    )
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "mine.yaml").write_text("mixtures:\n  en_de_mine: {syn_en: 0.25, syn_de: 0.75}\n")
    from testbed.data.sources import registry

    registry.cache_clear()
    try:
        _, out, _ = run(capsys, "--config-path", str(tmp_path), "list", "ladders")
        assert "mine" in {line.split()[0] for line in out.splitlines()}
        _, out, _ = run(capsys, "list", "mixtures")  # the option went into TESTBED_CONFIG_PATH: it stays
        assert "en_de_mine     syn_en:0.25 syn_de:0.75" in out
    finally:
        registry.cache_clear()
