#!/usr/bin/python3
"""SEED BASELINE -- not photopipe code.

The Kapture seed's worker algorithm, re-created for `npm run bench` as the baseline photopipe is
compared against. Per photo, exactly what the seed's worker did with PIL:

    open -> resize to 586x497 (no crop, aspect ratio not kept) -> paste into a 612x600 white
    frame at (13, 13) -> save JPEG;  open -> thumbnail (longest side 320) -> save JPEG.

It does less than photopipe per photo (no SHA-256, no EXIF parsing, no EXIF orientation, no
header checks), so the ratio photopipe/seed it yields is a conservative one.

Files are read into memory before timing and results are encoded to memory (BytesIO), like the
in-process limit in bench/limit.ts, so disk I/O is in neither. One process per CPU core
(multiprocessing, fork start method), each photo one task.

Usage: /usr/bin/python3 bench/seed_worker.py --reps 3 [--procs N] [--repeat K] FILE...
Prints one JSON object on stdout: {"procs", "photos", "reps": [{"seconds", "photosPerSec"}], ...}.
Needs Debian's python3-pil (apt-get install -y python3-pil) for /usr/bin/python3.
"""

import argparse
import io
import json
import multiprocessing as mp
import os
import sys
import time

from PIL import Image

FRAME_SIZE = (612, 600)
WINDOW_SIZE = (586, 497)
WINDOW_POS = (13, 13)
THUMB_SIZE = (320, 320)

_DATA = []  # filled before the pool forks, shared copy-on-write with the workers


def seed_process(data):
    """The seed worker's per-photo work: polaroid frame + thumbnail."""
    # frame
    img = Image.open(io.BytesIO(data))
    img = img.convert("RGB")
    photo = img.resize(WINDOW_SIZE)
    frame = Image.new("RGB", FRAME_SIZE, (255, 255, 255))
    frame.paste(photo, WINDOW_POS)
    out = io.BytesIO()
    frame.save(out, "JPEG")
    # thumbnail
    thumb = Image.open(io.BytesIO(data))
    thumb.thumbnail(THUMB_SIZE)
    thumb = thumb.convert("RGB")
    out2 = io.BytesIO()
    thumb.save(out2, "JPEG")
    return out.tell() + out2.tell()


def task(i):
    return seed_process(_DATA[i])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--procs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--repeat", type=int, default=1, help="process the file list this many times per rep")
    ap.add_argument("files", nargs="+")
    args = ap.parse_args()

    for f in args.files:
        with open(f, "rb") as fh:
            _DATA.append(fh.read())
    indices = list(range(len(_DATA))) * args.repeat

    import PIL

    ctx = mp.get_context("fork")
    reps = []
    with ctx.Pool(args.procs) as pool:
        # warm-up: start the workers and import the JPEG plugin in each
        pool.map(task, list(range(min(len(_DATA), args.procs * 2))), chunksize=1)
        for _ in range(args.reps):
            t0 = time.perf_counter()
            for _ in pool.imap_unordered(task, indices, chunksize=1):
                pass
            dt = time.perf_counter() - t0
            reps.append({"seconds": dt, "photosPerSec": len(indices) / dt})
    json.dump(
        {
            "label": "seed baseline (Kapture seed worker algorithm, Python + PIL)",
            "python": sys.version.split()[0],
            "pil": PIL.__version__,
            "procs": args.procs,
            "photos": len(indices),
            "reps": reps,
        },
        sys.stdout,
    )
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
