"""Peak memory of the report step against the number of records.

One small real run of the organism (every Lanham intervention) is made once; its records.jsonl
and traces.jsonl are then replicated to N records with distinct question ids and distinct call
keys (string work on the lines, no model calls), so the N-record folder looks like a run of
N / (records per question) questions. For each N a fresh Python process imports cotfaith, writes
the report of the small run (so fonts, figure code and imports are warm: the baseline), then
writes the report of the N-record folder; its peak RSS (ru_maxrss) minus the baseline is what
the records cost. Printed: records, peak RSS, MB above the baseline, bytes per record, seconds,
and peak / budget.

    python benchmarks/report_memory.py [--records 10000,100000,1000000] [--budget-mb 1024]

Run it against another checkout with PYTHONPATH=/path/to/checkout (the child processes inherit
the environment, so they import that checkout's cotfaith).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BASE = [
    "task.n_questions=10",
    "sampling.n_samples=5",
    "intervention=[truncation,no_cot,adding_mistakes,paraphrase,filler_tokens]",
    "progress=false",
]
# a question id or a call key (sha256 hex): the parts a replica must change to be distinct
_SLOT = re.compile(r'("question_id": ")([^"]*)(")|([0-9a-f]{64})')


def base_run(folder: Path) -> Path:
    from cotfaith.notebook import run

    out = folder / "base"
    run([*BASE, f"cache.path={folder / 'cache.sqlite'}"], out_dir=out, report=False)
    return out


def _template(line: str) -> list[tuple[str, str]]:
    """A line as (literal, slot) pairs: slot 'q' + id, 'k' + key, or '' after the last."""
    parts: list[tuple[str, str]] = []
    at = 0
    for m in _SLOT.finditer(line):
        if m.group(2) is not None:
            parts.append((line[at : m.end(1)], "q" + m.group(2)))
            at = m.start(3)
        else:
            parts.append((line[at : m.start()], "k" + m.group(4)))
            at = m.end()
    parts.append((line[at:], ""))
    return parts


def _render(parts: list[tuple[str, str]], copy: int) -> str:
    tag = f"{copy:06x}"
    out = []
    for literal, slot in parts:
        out.append(literal)
        if slot.startswith("q"):
            out.append(f"{slot[1:]}-{tag}")
        elif slot:
            out.append(slot[1:59] + tag)
    return "".join(out)


def replicate(base: Path, n: int, folder: Path) -> Path:
    """A run folder with n records: the base's lines, copy after copy, ids and keys made
    distinct per copy (the last copy cut off at n)."""
    out = folder / f"n{n}"
    if (out / "records.jsonl").is_file():
        return out
    out.mkdir(parents=True)
    shutil.copytree(base / ".hydra", out / ".hydra")
    shutil.copy(base / "run.json", out / "run.json")
    records = [_template(x) for x in (base / "records.jsonl").read_text().splitlines() if x]
    traces = [_template(x) for x in (base / "traces.jsonl").read_text().splitlines() if x]
    copies = -(-n // len(records))
    with (out / "records.jsonl").open("w") as fh:
        written = 0
        for c in range(copies):
            for parts in records[: n - written]:
                fh.write(_render(parts, c) + "\n")
            written = min(n, written + len(records))
    with (out / "traces.jsonl").open("w") as fh:
        for c in range(copies):
            for parts in traces:
                fh.write(_render(parts, c) + "\n")
    return out


_CHILD = """
import json, resource, sys, time, shutil
from pathlib import Path
from cotfaith.report import ReportSettings, write_report
import yaml
def settings(run):
    cfg = yaml.safe_load((Path(run) / '.hydra' / 'config.yaml').read_text()) or {}
    return ReportSettings.from_mapping(cfg.get('report') or {})
warm, run = sys.argv[1], sys.argv[2]
write_report(Path(warm), settings(warm))
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
write_report(Path(run), settings(run))
seconds = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"baseline_kb": base, "peak_kb": peak, "seconds": seconds}))
"""


def measure(warm: Path, run: Path) -> dict[str, float]:
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(warm), str(run)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"report of {run} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", default="10000,100000,1000000", help="comma-separated N")
    parser.add_argument("--budget-mb", type=float, default=1024.0, help="peak RSS budget")
    parser.add_argument("--workdir", default=None, help="keep the generated folders here")
    args = parser.parse_args()
    sizes = [int(x) for x in args.records.split(",") if x]
    folder = Path(args.workdir or tempfile.mkdtemp(prefix="cotfaith-report-memory-"))
    folder.mkdir(parents=True, exist_ok=True)
    base = folder / "base" if (folder / "base" / "run.json").is_file() else base_run(folder)
    warm = folder / "warm"
    if not warm.exists():
        shutil.copytree(base, warm)
    import cotfaith

    print(f"cotfaith from {Path(cotfaith.__file__).parent}; base run {base}")
    per_q = sum(1 for _ in (base / "records.jsonl").open()) / 10
    print(f"{per_q:.0f} records per question; budget {args.budget_mb:.0f} MB peak RSS")
    print(
        f"{'records':>9} {'peak MB':>8} {'above MB':>9} {'B/record':>9} {'seconds':>8} "
        f"{'peak/budget':>11}"
    )
    for n in sizes:
        t = time.perf_counter()
        run = replicate(base, n, folder)
        made = time.perf_counter() - t
        m = measure(warm, run)
        peak = m["peak_kb"] / 1024
        above = (m["peak_kb"] - m["baseline_kb"]) / 1024
        print(
            f"{n:>9} {peak:>8.0f} {above:>9.0f} {above * 2**20 / n:>9.0f} {m['seconds']:>8.1f} "
            f"{peak / args.budget_mb:>11.2f}   (records written in {made:.1f} s)",
            flush=True,
        )
    if args.workdir is None:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
