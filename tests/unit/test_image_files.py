"""Files read from an image for the provenance record: regular files only, each cut at its cap,
and no further into the engine's stream than that."""

import io
import tarfile

from runner.docker_api.images import read_regular_file


def archive(member: tarfile.TarInfo, data: bytes = b"") -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        member.size = len(data)
        tar.addfile(member, io.BytesIO(data) if data else None)
    return out.getvalue()


def engine(tar: bytes, chunk: int = 1000):
    """get_archive as the engine answers it: the tar in chunks; counts what was taken."""
    taken = []

    def get_archive(path):
        def chunks():
            for start in range(0, len(tar), chunk):
                taken.append(chunk)
                yield tar[start : start + chunk]

        return chunks(), {"name": path.rsplit("/", 1)[-1]}

    return get_archive, taken


def test_a_regular_file_is_read_whole():
    get_archive, _ = engine(archive(tarfile.TarInfo("submission-freeze.txt"), b"mlflow==3.17.2\n"))
    found = read_regular_file(get_archive, "/opt/m2d/submission-freeze.txt", 1024)
    assert (found.data, found.size, found.refused, found.truncated) == (b"mlflow==3.17.2\n", 15, "", False)


def test_a_long_file_is_cut_at_the_cap_and_the_rest_is_not_read():
    get_archive, taken = engine(archive(tarfile.TarInfo("submission-freeze.txt"), b"x" * 4 * 1024**2))
    found = read_regular_file(get_archive, "/opt/m2d/submission-freeze.txt", 256 * 1024)
    assert found.data == b"x" * 256 * 1024 and found.size == 4 * 1024**2 and found.truncated
    assert sum(taken) < 300 * 1024


def test_a_link_is_refused_not_followed():
    link = tarfile.TarInfo("submission-freeze.txt")
    link.type, link.linkname = tarfile.SYMTYPE, "/mnt/export/leak.bin"
    found = read_regular_file(engine(archive(link))[0], "/opt/m2d/submission-freeze.txt", 1024)
    assert found.data == b"" and found.refused == "a link to /mnt/export/leak.bin, not followed"


def test_a_folder_is_refused():
    folder = tarfile.TarInfo("submission-freeze.txt")
    folder.type = tarfile.DIRTYPE
    found = read_regular_file(engine(archive(folder))[0], "/opt/m2d/submission-freeze.txt", 1024)
    assert found.data == b"" and found.refused.startswith("not a regular file")
