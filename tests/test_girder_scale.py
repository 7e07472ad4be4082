"""Whole-slide result sizes against the real Girder server (CI scale: 200,000 points, 50,000 outlines).

All elements arrive, split documents share one name and attribute scheme, and a failed ingest (the server
refusing a document, the connection dropping mid-upload) leaves no partial set on the item.
"""

from __future__ import annotations

import json
import socket
import threading
import uuid

import girder_client
import numpy as np
import pytest

from nuclei_core.girder import GirderError, annotation_file_documents, publish
from nuclei_core.nuclei import Nuclei
from nuclei_core.outputs.dsa import annotation_documents, write_annotation

CLI = "ScaleTest"
POINTS, OUTLINES = 200_000, 50_000


@pytest.fixture(scope="module")
def item(girder_server, sample_svs) -> dict:
    """The sample slide uploaded to a folder of its own: its file document."""
    folder = girder_server.client.createFolder(girder_server.folder_id, "scale")
    return girder_server.client.uploadFileToFolder(folder["_id"], str(sample_svs))


def random_points(count: int, seed: int = 0) -> Nuclei:
    rng = np.random.default_rng(seed)
    return Nuclei(rng.uniform(0, 2000, (count, 2)), rng.uniform(0, 1, count), classes=rng.integers(0, 2, count),
                  class_names=("tumour", "lymphocyte"))


def random_outlines(count: int) -> Nuclei:
    """``count`` 24-gon nuclei of radius 4 px with an area measurement."""
    centres = random_points(count, 1).centroids
    angles = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    ring = np.column_stack([np.cos(angles), np.sin(angles)]) * 4
    nuclei = Nuclei(centres, np.full(count, 0.9), contours=[ring + c for c in centres])
    nuclei.measurements["Area µm^2"] = np.full(count, 12.5)
    return nuclei


def documents_of(nuclei: Nuclei, name: str, max_elements: int = 100_000) -> list[dict]:
    """The annotation documents of ``nuclei`` as plain JSON values (what publish posts, as read from a file)."""
    return [{**d, "elements": list(d["elements"])} for d in annotation_documents(nuclei, name, {"cli": CLI},
                                                                                 max_elements)]


def ours(client, item_id: str) -> list[dict]:
    """Summaries of the annotations this module's fake CLI left on the item."""
    listed = client.get("annotation", parameters={"itemId": item_id, "limit": 0})
    return [a for a in listed if a["annotation"].get("attributes", {}).get("cli") == CLI]


def clear(client, item_id: str) -> None:
    for annotation in ours(client, item_id):
        client.delete(f"annotation/{annotation['_id']}")


def test_200k_points_posted_by_the_scripted_runner_all_arrive_in_named_parts(girder_server, item, tmp_path):
    client = girder_server.client
    clear(client, item["itemId"])
    path = tmp_path / "points.anot"
    write_annotation(path, annotation_documents(random_points(POINTS), "run", {"cli": CLI}, max_elements=100_000))
    posted = publish(client, item["itemId"], annotation_file_documents(path), CLI)
    found = sorted(ours(client, item["itemId"]), key=lambda a: a["annotation"]["attributes"]["part"])
    assert [a["_id"] for a in found] == sorted(posted, key=[a["_id"] for a in found].index)
    assert [a["annotation"]["name"] for a in found] == ["run (1 of 2)", "run (2 of 2)"]
    assert [(a["annotation"]["attributes"]["part"], a["annotation"]["attributes"]["parts"]) for a in found] == [
        (1, 2), (2, 2)]
    assert sum(a["_elementCount"] for a in found) == POINTS
    assert all(sorted(a["groups"]) == ["lymphocyte", "tumour"] for a in found)


def test_50k_outlines_ingested_as_a_dsa_job_output_all_arrive(girder_server, item, tmp_path):
    client = girder_server.client
    clear(client, item["itemId"])
    path = tmp_path / "outlines.anot"
    write_annotation(path, annotation_documents(random_outlines(OUTLINES), "run", {"cli": CLI}, max_elements=20_000))
    reference = {"identifier": "outputNucleiAnnotationFile", "userId": client.get("user/me")["_id"],
                 "fileId": item["_id"], "itemId": item["itemId"], "uuid": str(uuid.uuid4())}
    client.uploadFileToFolder(girder_server.folder_id, str(path), reference=json.dumps(reference))
    found = ours(client, item["itemId"])
    assert sorted(a["annotation"]["name"] for a in found) == ["run (1 of 3)", "run (2 of 3)", "run (3 of 3)"]
    assert sum(a["_elementCount"] for a in found) == OUTLINES
    last = next(a for a in found if a["annotation"]["attributes"]["part"] == 3)
    elements = client.get(f"annotation/{last['_id']}")["annotation"]["elements"]
    assert len(elements) == 10_000 and all(len(e["points"]) == 24 and e["closed"] for e in elements)
    assert {e["user"]["Area µm^2"] for e in elements} == {12.5}


def test_a_refused_document_leaves_no_partial_set_and_keeps_the_previous_result(girder_server, item):
    client = girder_server.client
    clear(client, item["itemId"])
    previous = publish(client, item["itemId"], documents_of(random_points(50), "before"), CLI)
    documents = documents_of(random_points(3000), "run", max_elements=1000)
    documents[2] = {**documents[2], "elements": [{"type": "not a shape"}]}  # the server refuses the third part
    with pytest.raises(GirderError, match="cannot post the annotation: HTTP 400"):
        publish(client, item["itemId"], documents, CLI)
    assert [a["_id"] for a in ours(client, item["itemId"])] == previous


class DroppingProxy:
    """A TCP proxy on 127.0.0.1 that cuts the connection carrying the ``nth`` annotation POST after forwarding
    ``forwarded`` bytes of it: the connection dropping mid-upload."""

    REQUEST = b"POST /api/v1/annotation?"

    def __init__(self, target_port: int, nth: int, forwarded: int = 100_000) -> None:
        self.target_port, self.nth, self.forwarded = target_port, nth, forwarded
        self.seen = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                downstream, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            threading.Thread(target=self._pump, args=(downstream, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, downstream, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, watch: bool) -> None:
        tail, budget = b"", None
        try:
            while data := source.recv(65536):
                if watch and budget is None:
                    self.seen += (tail + data).count(self.REQUEST)
                    tail = data[-len(self.REQUEST):]
                    if self.seen == self.nth:
                        budget = self.forwarded
                if budget is not None:
                    data, budget = data[:budget], budget - len(data)
                sink.sendall(data)
                if budget is not None and budget <= 0:
                    break
        except OSError:
            pass
        for end in (source, sink):
            end.close()

    def close(self) -> None:
        self.listener.close()


def test_a_connection_dropped_mid_upload_leaves_no_partial_set(girder_server, item):
    client = girder_server.client
    clear(client, item["itemId"])
    previous = publish(client, item["itemId"], documents_of(random_points(50), "before"), CLI)
    port = int(girder_server.api_url.split(":")[2].split("/")[0])
    proxy = DroppingProxy(port, nth=2)
    try:
        through_proxy = girder_client.GirderClient(apiUrl=girder_server.api_url.replace(str(port), str(proxy.port)))
        through_proxy.setToken(client.token)
        documents = documents_of(random_points(30_000), "run", max_elements=10_000)
        with pytest.raises(GirderError, match="cannot post the annotation: the server cannot be reached"):
            publish(through_proxy, item["itemId"], documents, CLI)
        assert proxy.seen >= 2
    finally:
        proxy.close()
    assert [a["_id"] for a in ours(client, item["itemId"])] == previous
