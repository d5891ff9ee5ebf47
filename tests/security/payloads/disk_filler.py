import errno
import json
from pathlib import Path

chunk = b"\0" * (1024 * 1024)
written = {}
for folder in ("/mnt/export", "/tmp"):
    count = 0
    try:
        with open(Path(folder) / "fill.bin", "wb") as handle:
            while True:
                handle.write(chunk)
                handle.flush()
                count += 1
    except OSError as exc:
        assert exc.errno == errno.ENOSPC, exc
    written[folder] = count
    print(f"{folder}: wrote {count} MiB before the disk was full", flush=True)
(Path("/tmp") / "fill.bin").unlink()
Path("/mnt/export/fill.bin").unlink()
Path("/mnt/export/written.json").write_text(json.dumps(written))
