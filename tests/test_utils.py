"""brainuad.utils: the end of a script job."""


def test_exit_now_flushes_the_log_and_stdout_and_exits_0(tmp_path):
    """A script ending with exit_now (every workflow script) loses nothing: its log records (log_to redirects
    stderr into the log file) and buffered stdout reach their files, the exit status is 0, and nothing after
    the call runs."""
    import subprocess
    import sys
    import textwrap

    log = tmp_path / "job.log"
    code = textwrap.dedent(f"""
        import sys
        from brainuad.utils import exit_now, log_to
        log = log_to({str(log)!r})
        log.info("last record")
        print("to stderr", file=sys.stderr)
        sys.stdout.write("buffered stdout")
        exit_now()
        open({str(tmp_path / "after")!r}, "w").write("ran")
    """)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout == "buffered stdout"
    text = log.read_text()
    assert "last record" in text and "to stderr" in text
    assert not (tmp_path / "after").exists()
