"""Cost of the result objects on a protocol-size study: SEG encoding above all.

Run by hand: ``PYTHONPATH=. python tests/benchmarks/bench_outputs.py [--size full]``;
prints one JSON object (seconds per stage, file sizes, STL triangles and volume errors,
peak memory of the output stage). The phantom is generated in a child process so the
peak memory is that of the outputs alone. Figures are only comparable on one machine.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from appliance.outputs.algorithm import AlgorithmInfo
from appliance.outputs.seg import build_seg
from appliance.outputs.source import load_source_series
from appliance.outputs.writer import write_outputs
from appliance.volume import read_nifti

_MAKE = "import sys; from appliance.phantom import generate_study, write_study; " \
        "write_study(generate_study(int(sys.argv[1]), sys.argv[2]), sys.argv[3])"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", default="full", choices=("small", "full"))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-triangles", type=int, default=200_000)
    args = parser.parse_args()
    result: dict = {"size": args.size, "seed": args.seed, "max_triangles": args.max_triangles}
    algorithm = AlgorithmInfo("wbspine-bench", "0")
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", _MAKE, str(args.seed), args.size, tmp], check=True)
        result["phantom_s"] = round(time.perf_counter() - start, 2)
        labels = read_nifti(Path(tmp) / "labels.nii.gz")
        truth = json.loads((Path(tmp) / "truth.json").read_text())
        result["shape_zyx"] = list(labels.array.shape)
        start = time.perf_counter()
        source = load_source_series(Path(tmp) / "dicom", labels)
        result["load_source_headers_s"] = round(time.perf_counter() - start, 2)
        start = time.perf_counter()
        seg, _ = build_seg(labels, source, algorithm)
        result["seg_encode_s"] = round(time.perf_counter() - start, 2)
        result["seg_frames"] = int(seg.NumberOfFrames)
        del seg
        paths = write_outputs(labels, Path(tmp) / "dicom", truth, Path(tmp) / "out", algorithm,
                              max_triangles=args.max_triangles, source=source)
        summary = json.loads(paths["outputs"].read_text())
        result["write_outputs_s"] = {k: round(v, 2) for k, v in summary["timings"].items()}
        result["file_bytes"] = {role: p.stat().st_size for role, p in paths.items() if p.suffix in (".dcm", ".stl")}
        result["meshes"] = {n: {"triangles": m["triangles"], "volume_error_pct": round(100 * m["volume_error"], 2),
                                "bodies": m["bodies"]} for n, m in summary["meshes"].items()}
    result["outputs_peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
