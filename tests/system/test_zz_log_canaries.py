"""The canary scan (QUALITY 40; issue 9 item 7): no planted value in any log the suite wrote.

Named to sort last in tests/system, so it reads the logs of every process the
whole package started: gunicorn (access and error logs), `tipline bot`, the CLI.
"""

from __future__ import annotations

from tests.system import canaries, tally


def test_the_scan_finds_a_canary_written_on_purpose(tmp_path):
    """The scan can fail: a log with a planted value is caught, and reported masked."""
    (tmp_path / "sub").mkdir()
    log = tmp_path / "sub" / "web.log"
    log.write_text(f"POST /api/v1/tips 201\nwarning: tip {canaries.TIP_TEXT} refused\n")
    (tmp_path / "clean.log").write_text("GET /healthz 200 1ms\n")
    (tmp_path / "bot.log").write_text("sent with tok-self-test-4J8Q\n")
    planted = {**canaries.all_canaries(), "self-test token": "tok-self-test-4J8Q"}

    findings = canaries.scan([tmp_path], planted)
    assert [(f.path.name, f.line, f.name) for f in findings] == [
        ("bot.log", 1, "self-test token"),
        ("web.log", 2, "tip text"),
    ]
    for finding in findings:
        assert canaries.TIP_TEXT not in str(finding) and "tok-self-test-4J8Q" not in str(finding)


def test_no_canary_in_any_log(system_env):
    logs = sorted(p for p in system_env.log_dir.rglob("*") if p.is_file())
    assert logs, "no process wrote a log: the scan would prove nothing"
    findings = canaries.scan([system_env.log_dir])
    tally.put("canaries found", len(findings))
    tally.put("log files scanned", len(logs))
    assert not findings, "canaries in the logs:\n" + "\n".join(map(str, findings[:50]))
