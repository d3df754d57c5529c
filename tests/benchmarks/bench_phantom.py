"""Phantom generator cost: seconds and peak memory per size, and write time per output.

Run by hand (`make bench`); prints one JSON object. Figures are only comparable on the
same machine; the `small` study is the reference measured in the same run.
"""

from __future__ import annotations

import json
import resource
import tempfile
import time

from appliance.phantom import generate_study, write_study


def main() -> None:
    result: dict[str, dict] = {}
    for size in ("small", "full"):
        start = time.perf_counter()
        study = generate_study(1, size)
        made = time.perf_counter() - start
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            write_study(study, tmp)
            written = time.perf_counter() - start
        result[size] = {
            "shape_zyx": list(study.image.array.shape),
            "voxels": int(study.image.array.size),
            "generate_s": round(made, 2),
            "write_s": round(written, 2),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }
        del study
    result["full_vs_small_time_ratio"] = round(result["full"]["generate_s"] / result["small"]["generate_s"], 1)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
