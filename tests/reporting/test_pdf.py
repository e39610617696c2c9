import pandas as pd

from brainuad.reporting.pdf import build_report, rule_times


def _bench(path, seconds, rss):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("s\th:m:s\tmax_rss\n" f"{seconds}\t0:00:01\t{rss}\n")


def test_rule_times_sum_per_rule(tmp_path):
    _bench(tmp_path / "train/a/fold-0.tsv", 10.0, 100)
    _bench(tmp_path / "train/a/fold-1.tsv", 30.0, 300)
    _bench(tmp_path / "score/x/y.tsv", 2.0, 50)
    t = rule_times(tmp_path).set_index("rule")
    assert t.loc["train", "jobs"] == 2 and t.loc["train", "total_s"] == 40.0 and t.loc["train", "mean_s"] == 20.0
    assert t.loc["train", "max_rss_mb"] == 300 and t.loc["score", "total_s"] == 2.0
    assert list(t.index) == ["train", "score"]  # slowest first


def test_build_report_writes_a_pdf(tmp_path):
    table = pd.DataFrame({"D · DICE": ["**1.00**", "0.50"]}, index=pd.Index(["A", "B"], name="Model"))
    out = tmp_path / "r.pdf"
    build_report(out, title="t", tables=[("T", table, "n")], figures=[], config_text="a: 1",
                 benchmark_dir=tmp_path)
    data = out.read_bytes()
    assert data.startswith(b"%PDF") and data.count(b"/Type /Page") - data.count(b"/Type /Pages") == 4
