"""`bench/report.py` keeps the sections it does not rerun whole, even when a script's output has
lines of its own that look like headings (the learned section once lost its figures that way)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def _report() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_report", ROOT / "bench" / "report.py")
    assert spec is not None
    assert spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


DOC = """# Benchmarks

## learned: `python bench/bench_learned.py` (43 s)

About it.

```
## Refit cost (one model)
  4,000 training rows:   1.13 s
## Query latency
  p50 1.56 ms
```

## scale: `python bench/bench_scale.py` (208 s)

```
total 207 s
```

## Figures measured once (moved here from the code's docstrings)

- not a benchmark
"""


def test_a_scripts_own_headings_stay_inside_its_section() -> None:
    kept = _report().kept_sections(DOC)
    assert set(kept) == {"learned", "scale"}
    learned = kept["learned"]
    assert learned[0].startswith("## learned: ")
    assert "  p50 1.56 ms" in learned
    assert "## Refit cost (one model)" in learned
    assert learned[-1] == "```"
    assert kept["scale"][-1] == "```"
    assert not any("not a benchmark" in ln for ln in kept["scale"])


def test_an_unclosed_output_block_does_not_swallow_the_next_sections() -> None:
    broken = DOC.replace("  p50 1.56 ms\n```\n", "")  # the learned block left open
    kept = _report().kept_sections(broken)
    assert set(kept) == {"learned", "scale"}
    assert kept["scale"][0].startswith("## scale: ")
