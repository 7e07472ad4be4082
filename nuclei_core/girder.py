"""Scripted runs through girder_client: run any CLI of the suite on slides stored in Girder (the DSA)
and post the nuclei to each slide's item as annotations, replacing this CLI's previous result.

    python -m nuclei_core.girder --api-url http://dsa/api/v1 --api-key KEY --item ITEM_ID \\
        UDNetDetection --analysis_roi 800,800,1000,1000
    python -m nuclei_core.girder --api-url ... --token TOKEN --folder FOLDER_ID UDNetDetection
    python -m nuclei_core.girder --api-url ... --token TOKEN --item ITEM_ID --nuclei-from UDNetDetection \
        DCRNClassification     # classify the nuclei UDNetDetection posted earlier
    python -m nuclei_core.girder --api-url ... --token TOKEN --item ITEM_ID --truth-annotation "my nuclei" \
        EvaluateNuclei --method R2UNetSegmentation   # score a method against the pathologist's annotation
    python -m nuclei_core.girder ... --item ITEM_ID --truth-annotation "my nuclei" --upload output_weights \
        --upload model_card FineTuneNucleiModel        # new weights + card uploaded to the item
    python -m nuclei_core.girder ... --item ITEM_ID UDNetDetection --model_weights girder:FILE_ID
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import json
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import girder_client
import ijson
import requests

from . import interrupts
from .cli_in_process import argument_problem, run_in_process
from .cli_spec import cli_parameters
from .errors import InputError, NucleiError, OneLineArgumentParser

GIRDER_FILE = "girder:"  # a CLI argument naming a Girder file: girder:FILE_ID


class GirderError(NucleiError):
    """The Girder server refused a request, or cannot be reached."""


def _describe(exc: Exception) -> str:
    if isinstance(exc, girder_client.HttpError):
        try:
            message = json.loads(exc.responseText).get("message", exc.responseText)
        except (ValueError, AttributeError):
            message = exc.responseText
        return f"HTTP {exc.status}: {str(message).splitlines()[0] if message else exc.status}"
    return str(exc).splitlines()[0]


@contextlib.contextmanager
def _server_errors(action: str):
    """Turn girder_client / connection failures into one-line GirderErrors."""
    try:
        yield
    except girder_client.HttpError as exc:
        raise GirderError(f"{action}: {_describe(exc)}") from None
    except requests.RequestException as exc:
        raise GirderError(f"{action}: the server cannot be reached ({type(exc).__name__})") from None


def connect(api_url: str, token: str = "", api_key: str = "") -> girder_client.GirderClient:
    """An authenticated client (token or API key); fails now, not mid-run, on bad credentials."""
    client = girder_client.GirderClient(apiUrl=api_url)
    with _server_errors(f"cannot log in to {api_url}"):
        if api_key:
            client.authenticate(apiKey=api_key)
        elif token:
            client.setToken(token)
        else:
            raise InputError("give a Girder token or an API key")
        if client.get("user/me") is None:
            raise GirderError(f"cannot log in to {api_url}: the token is not valid")
    return client


def slide_items(client: girder_client.GirderClient, item_id: str = "", folder_id: str = "") -> list[dict]:
    """The item, or every large-image item of the folder; an item that is not a large image is an error."""
    with _server_errors("cannot read the slide list"):
        if item_id:
            item = client.getItem(item_id)
            if "largeImage" not in item:
                raise InputError(f"item {item['name']!r} ({item_id}) is not a large image")
            return [item]
        return [i for i in client.listItem(folder_id) if "largeImage" in i]


def existing_annotations(client: girder_client.GirderClient, item_id: str, cli_name: str) -> list[str]:
    """Ids of the annotations this CLI posted on the item before."""
    with _server_errors("cannot list annotations"):
        found = client.get("annotation", parameters={"itemId": item_id, "limit": 0})
    return [a["_id"] for a in found if a.get("annotation", {}).get("attributes", {}).get("cli") == cli_name]


def publish(client: girder_client.GirderClient, item_id: str, documents: Iterable[dict[str, Any]],
            cli_name: str) -> list[str]:
    """Post every document, then delete this CLI's older annotations (kept in Girder's history).

    If a post fails, the documents already posted are deleted again: a result is all there or not there.
    """
    previous = existing_annotations(client, item_id, cli_name)
    posted: list[str] = []
    try:
        with _server_errors("cannot post the annotation"):
            for document in documents:
                posted.append(client.post("annotation", parameters={"itemId": item_id}, json=document)["_id"])
    except (GirderError, KeyboardInterrupt):
        for annotation_id in posted:
            with contextlib.suppress(Exception):
                client.delete(f"annotation/{annotation_id}")
        raise
    with _server_errors("cannot remove the previous result"):
        for annotation_id in previous:
            client.delete(f"annotation/{annotation_id}")
    return posted


def summary_metadata(document: dict[str, Any]) -> dict[str, Any]:
    """The slide summary a CLI put in its annotation document's attributes, flattened to the scalars a folder's
    table of items shows (nuclei, densities per mm² of tissue, per class); empty when there is none."""
    attributes = document.get("attributes", {})
    summary = attributes.get("summary")
    if not summary:
        return {}
    flat = {"nuclei": summary["nuclei"], "per_mm2_tissue": summary["per_mm2_tissue"],
            "tissue_mm2": summary["tissue_mm2"], "analysed_mm2": summary["analysed_mm2"],
            "created": attributes.get("created"), "model": attributes.get("model")}
    if len(summary["classes"]) > 1:
        for name, values in summary["classes"].items():
            flat.update({f"{name} nuclei": values["nuclei"], f"{name} per_mm2_tissue": values["per_mm2_tissue"]})
    # Girder refuses keys with "." or starting with "$"
    return {key.replace(".", "_").lstrip("$"): value for key, value in flat.items()}


def run_cli(cli_name: str, slide: Path, output: Path, cli_args: list[str]) -> Path:
    """Run a plugin CLI in this process on a local slide (its progress shows); the annotation file it wrote."""
    problem = run_in_process(cli_name, [str(slide), str(output), *cli_args])
    if problem:
        raise NucleiError(f"{cli_name} failed: {problem}; nothing was posted")
    return output


def check_cli_arguments(cli_name: str, cli_args: list[str]) -> None:
    """The CLI's own options checked before any slide is downloaded."""
    problem = argument_problem(cli_name, cli_args)
    if problem:
        raise InputError(f"{cli_name}: {problem}")


def annotation_file_documents(path: Path) -> Iterator[dict[str, Any]]:
    """The documents of an annotation file (one object, or a list), read one at a time: a whole slide's result
    is never in memory at once."""
    with open(path, "rb") as handle:
        is_list = handle.read(64).lstrip().startswith(b"[")
        handle.seek(0)
        yield from ijson.items(handle, "item" if is_list else "", use_float=True)


def _save_documents(client: girder_client.GirderClient, annotation_ids: list[str], path: Path,
                    action: str) -> Path:
    """Write the annotations' documents to ``path`` (a JSON list, as the CLIs read it)."""
    with _server_errors(action):
        documents = [client.get(f"annotation/{annotation_id}")["annotation"] for annotation_id in annotation_ids]
    path.write_text(json.dumps(documents, allow_nan=False))
    return path


def download_nuclei(client: girder_client.GirderClient, item_id: str, source_cli: str, path: Path) -> Path:
    """Write the nuclei that ``source_cli`` posted on the item to ``path`` (a list of annotation documents)."""
    found = existing_annotations(client, item_id, source_cli)
    if not found:
        raise InputError(f"item {item_id} has no annotation from {source_cli} to take the nuclei from")
    return _save_documents(client, found, path, f"cannot download the {source_cli} annotation of item {item_id}")


def download_named(client: girder_client.GirderClient, item_id: str, name_or_id: str, path: Path) -> Path:
    """Write the item's annotation with this id, or every one with this name (e.g. drawn in HistomicsUI), to
    ``path``."""
    with _server_errors("cannot list annotations"):
        listed = client.get("annotation", parameters={"itemId": item_id, "limit": 0})
    found = [a["_id"] for a in listed if name_or_id in (a["_id"], a.get("annotation", {}).get("name"))]
    if not found:
        raise InputError(f"item {item_id} has no annotation named {name_or_id!r}")
    _save_documents(client, found, path, f"cannot download the annotation {name_or_id!r}")
    return found


def download_girder_files(client: girder_client.GirderClient, cli_args: list[str], folder: Path) -> list[str]:
    """``cli_args`` with every ``girder:FILE_ID`` value (e.g. ``--model_weights girder:FILE_ID``) replaced by a
    local copy of that Girder file."""
    resolved = []
    for value in cli_args:
        if value.startswith(GIRDER_FILE):
            file_id = value[len(GIRDER_FILE):]
            with _server_errors(f"cannot download Girder file {file_id}"):
                local = folder / f"{file_id}-{Path(client.getFile(file_id)['name']).name}"
                client.downloadFile(file_id, str(local))
            value = str(local)
        resolved.append(value)
    return resolved


def output_files(cli_name: str, flags: list[str], folder: Path) -> dict[str, Path]:
    """A local path for each named file output of the CLI (its long flag without dashes), named after it."""
    outputs = {p.longflag.lstrip("-"): p for p in cli_parameters(cli_name)
               if p.channel == "output" and p.longflag and p.typ in ("file", "image")}
    unknown = [f for f in flags if f not in outputs]
    if unknown:
        raise InputError(f"{cli_name} has no file output {', '.join(unknown)}: it has {', '.join(outputs)}")
    return {f: folder / f"{cli_name}-{f}{(outputs[f].fileExtensions or [''])[0]}" for f in flags}


def run_on_item(client: girder_client.GirderClient, item: dict, cli_name: str, cli_args: list[str],
                nuclei_from: str = "", truth_annotation: str = "", uploads: tuple[str, ...] = ()) -> list[str]:
    """Download the item's slide (and the nuclei ``nuclei_from`` posted, the ``truth_annotation`` and any
    ``girder:FILE_ID`` argument), run the CLI, post its annotation and upload the ``uploads`` outputs to the item."""
    with tempfile.TemporaryDirectory(prefix="nuclei-girder-") as folder:
        cli_args = download_girder_files(client, cli_args, Path(folder))
        if nuclei_from:
            given = download_nuclei(client, item["_id"], nuclei_from, Path(folder) / "given-nuclei.anot")
            cli_args = [*cli_args, "--nuclei_annotation", str(given)]
        if truth_annotation:
            truth = Path(folder) / "truth.anot"
            annotation_ids = download_named(client, item["_id"], truth_annotation, truth)
            cli_args = [*cli_args, "--truth_annotation", str(truth)]
            if "--source_ids" in {p.longflag for p in cli_parameters(cli_name)} and "--source_ids" not in cli_args:
                cli_args += ["--source_ids", f"Girder item {item['_id']} ({item['name']}), annotation "
                                             f"{', '.join(annotation_ids)}"]
        extra_outputs = output_files(cli_name, list(uploads), Path(folder))
        for flag, path in extra_outputs.items():
            cli_args = [*cli_args, f"--{flag}", str(path)]
        with _server_errors(f"cannot download the slide of item {item['_id']}"):
            file_id = item["largeImage"]["fileId"]
            name = client.getFile(file_id)["name"]
            slide = Path(folder) / Path(name).name
            client.downloadFile(file_id, str(slide))
        result = run_cli(cli_name, slide, Path(folder) / "nuclei.anot",
                         [*cli_args, "--api-url", client.urlBase, "--girder-token", client.token or ""])
        posted = publish(client, item["_id"], annotation_file_documents(result), cli_name)
        first = next(annotation_file_documents(result), {})
        with _server_errors(f"cannot upload the outputs to item {item['_id']}"):
            for path in extra_outputs.values():
                client.uploadFileToItem(item["_id"], str(path))
            if metadata := summary_metadata(first):
                client.addMetadataToItem(item["_id"], {cli_name: metadata})
    return posted


def main(argv: list[str] | None = None) -> int:
    parser = OneLineArgumentParser(prog="python -m nuclei_core.girder", description=__doc__.split("\n\n")[0])
    parser.add_argument("--api-url", required=True, help="Girder API URL, e.g. http://dsa.example.org/api/v1")
    credentials = parser.add_mutually_exclusive_group(required=True)
    credentials.add_argument("--token", default="", help="a Girder token")
    credentials.add_argument("--api-key", default="", help="a Girder API key")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--item", default="", help="the slide's item id")
    target.add_argument("--folder", default="", help="a folder id: every large image in it")
    parser.add_argument("--nuclei-from", default="", metavar="CLI",
                        help="classify the nuclei another CLI already posted on each item (e.g. UDNetDetection); "
                             "for CLIs with a nuclei annotation input such as DCRNClassification and EvaluateNuclei")
    parser.add_argument("--truth-annotation", default="", metavar="NAME_OR_ID",
                        help="the pathologist's annotation on each item (its name, or its id) that EvaluateNuclei "
                             "scores against")
    parser.add_argument("--upload", action="append", default=[], metavar="OUTPUT",
                        help="also produce this file output of the CLI (its flag without dashes, e.g. output_weights, "
                             "model_card, metrics, report) and upload it to the item; repeat for several")
    parser.add_argument("cli", help="a CLI of the suite, e.g. UDNetDetection (see python -m plugins --list_cli)")
    parser.add_argument("cli_args", nargs=argparse.REMAINDER, help="the CLI's own options (not its files)")
    args = parser.parse_args(argv)
    interrupts.ctrl_c_as_exception()
    try:
        if importlib.util.find_spec(f"plugins.{args.cli}") is None:
            raise InputError(f"unknown CLI {args.cli!r}: see python -m plugins --list_cli")
        check_cli_arguments(args.cli, args.cli_args)
        client = connect(args.api_url, args.token, args.api_key)
        items = slide_items(client, args.item, args.folder)
        if not items:
            raise InputError(f"folder {args.folder} holds no large image")
        for item in items:
            ids = run_on_item(client, item, args.cli, args.cli_args, args.nuclei_from, args.truth_annotation,
                              tuple(args.upload))
            print(f"{item['name']}: posted {len(ids)} annotation document(s) from {args.cli}", file=sys.stderr)
    except NucleiError as exc:
        print(f"girder: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("girder: interrupted; no partial result is left on the item", file=sys.stderr)
        return interrupts.EXIT_CODE
    return 0


if __name__ == "__main__":
    sys.exit(main())
