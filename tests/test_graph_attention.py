"""Multi-magnification graph attention segmentation: the graph, both attention layers (flat and typed) against
plain edge-list implementations, learnable positions, the reach of one typed layer, the weighted reconstruction,
both multi-level losses, weights, training and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from nuclei_core.data.instance_sets import load_instance_set
from nuclei_core.metrics.segmentation import dice
from nuclei_core.models.base import WEIGHTS_DIR, load_checkpoint
from nuclei_core.errors import InputError
from nuclei_core.models.graph_attention import GraphAttentionLayer, PyramidGraph, image_pyramid, project
from nuclei_core.models.graph_attention_network import MultiMagnificationGAT, full_resolution_first_weights
from nuclei_core.models.graph_attention_typed import TypedGraphAttentionLayer
from nuclei_core.models.segmenter import DEFAULT_WEIGHTS, GRAPH_ATTENTION, GraphAttentionSegmenter
from nuclei_core.training import train_segmenter
from nuclei_core.training.graph_attention_loss import (balanced_level_weights, level_weight_field,
                                                       magnification_balanced_focal_loss, magnification_bce)
from plugins.__main__ import main as plugins_main
from annotation_files import nuclei_document


def as_nodes(grids: list[torch.Tensor]) -> torch.Tensor:
    """Per-level channels-last (B, h, w, X) grids as (B, N, X) in the graph's node order."""
    return torch.cat([g.flatten(1, 2) for g in grids], dim=1)


def test_graph_has_king_edges_within_levels_and_parent_child_edges_between():
    graph = PyramidGraph(8, 12, 3)
    assert graph.shapes == [(8, 12), (4, 6), (2, 3)] and graph.offsets == [0, 96, 120]
    source, target = graph.edges()
    pairs = set(zip(source.tolist(), target.tolist()))
    assert len(pairs) == len(source), "no edge twice"
    assert all((t, s) in pairs for s, t in pairs), "every edge has its reverse"
    incoming = torch.bincount(target, minlength=graph.nodes)
    assert incoming[1 * 12 + 1] == 9 + 1  # an inner full-resolution node: 8 neighbours, itself, its parent
    assert incoming[0] == 4 + 1  # a corner: 3 neighbours, itself, its parent
    assert incoming[96 + 1 * 6 + 1] == 9 + 1 + 4  # an inner middle-level node: also its 4 children
    assert incoming[120] == 4 + 4  # a corner of the top level: no parent
    node, parent = 3 * 12 + 5, 96 + 1 * 6 + 2  # full-resolution (row 3, col 5) lies under middle (1, 2)
    assert (node, parent) in pairs and (parent, node) in pairs
    with pytest.raises(ValueError, match="multiples of 4"):
        PyramidGraph(10, 12, 3)


def test_features_at_the_starting_positions_are_the_pyramid_and_move_with_the_position():
    images = torch.rand(2, 3, 16, 16)
    pyramid = image_pyramid(images, 3)
    positions = PyramidGraph(16, 16, 3).starting_positions(2)
    for level, grid in enumerate(positions):
        features = project(pyramid, grid)  # channels-last
        torch.testing.assert_close(features[..., :3], pyramid[level].permute(0, 2, 3, 1))
        assert torch.all(features[..., 3] == level / 2)
    halfway = positions[0].clone()
    halfway[..., 2] = 0.25  # between full resolution and the first halving
    upsampled = F.interpolate(pyramid[1], scale_factor=2, mode="bilinear", align_corners=False)
    torch.testing.assert_close(project(pyramid, halfway)[..., :3], ((pyramid[0] + upsampled) / 2).permute(0, 2, 3, 1))


def edge_list_attention(layer: GraphAttentionLayer, features: list[torch.Tensor], positions: list[torch.Tensor],
                        graph: PyramidGraph) -> torch.Tensor:
    """The same layer written plainly over the edge list: softmax of each node's incoming edges, one by one."""
    source, target = graph.edges()
    nodes, where = as_nodes(features), as_nodes(positions)
    batch, count, channels = nodes.shape
    values = (layer.norm(nodes) @ layer.value.weight[:, :, 0, 0].T).view(batch, count, layer.heads, -1)
    scores = F.leaky_relu((values * layer.source_score).sum(-1)[:, source]
                          + (values * layer.target_score).sum(-1)[:, target]
                          + layer.position_score(where[:, source] - where[:, target]), 0.2)
    gathered = torch.zeros_like(values)
    for node in range(count):
        edges = target == node
        gathered[:, node] = (torch.softmax(scores[:, edges], dim=1)[..., None] * values[:, source[edges]]).sum(1)
    return nodes + F.elu(gathered.reshape(batch, count, channels)) @ layer.mix.weight[:, :, 0, 0].T + layer.mix.bias


def test_grid_attention_equals_attention_over_the_explicit_edge_list():
    torch.manual_seed(0)
    graph = PyramidGraph(8, 12, 3)
    layer = GraphAttentionLayer(8, 2, dropout=0.0).eval()
    features = [torch.randn(2, rows, cols, 8) for rows, cols in graph.shapes]
    positions = [p + 0.02 * torch.randn_like(p) for p in graph.starting_positions(2)]
    with torch.no_grad():
        torch.testing.assert_close(as_nodes(layer(features, positions)),
                                   edge_list_attention(layer, features, positions, graph), atol=1e-5, rtol=1e-5)


def test_node_positions_are_learned_and_stay_in_the_unit_cube():
    torch.manual_seed(0)
    network = MultiMagnificationGAT(levels=3, channels=8, heads=2, layers=2, position_updates=1)
    images, targets = torch.rand(2, 3, 16, 16), (torch.rand(2, 2, 16, 16) > 0.5).float()
    assert network(images).shape == (2, 2, 16, 16)
    magnification_balanced_focal_loss(network, images, targets).backward()
    assert network.move[0][-1].weight.grad.abs().sum() > 0, "the loss reaches the position update"
    assert all(torch.isfinite(p.grad).all() for p in network.parameters()), \
        "edges beyond the border (scored -inf) leave every gradient finite"
    with torch.no_grad():
        network.move[0][-1].bias.fill_(5.0)  # push every node as far as it may go
        _, positions = network.level_outputs(images)
    start = PyramidGraph(16, 16, 3).starting_positions(2)
    for moved, grid in zip(positions, start):
        assert moved.min() >= 0 and moved.max() <= 1 and not torch.equal(moved, grid.permute(0, 3, 1, 2))


def test_positional_field_gives_every_magnification_the_same_total_weight():
    counts = torch.tensor([256.0, 64.0, 16.0])
    totals = balanced_level_weights(counts) * counts
    torch.testing.assert_close(totals, torch.full((3,), float(totals[0])))
    assert float((balanced_level_weights(counts) * counts).sum() / counts.sum()) == pytest.approx(1.0)
    weights = torch.tensor([1.0, 4.0, 16.0])
    levels = torch.tensor([0.0, 0.25, 0.5, 1.0])
    torch.testing.assert_close(level_weight_field(levels, weights), torch.tensor([1.0, 2.5, 4.0, 16.0]))
    torch.manual_seed(0)
    network = MultiMagnificationGAT(levels=3, channels=8, heads=2, layers=2, position_updates=1)
    images = torch.rand(1, 3, 16, 16)
    perfect = torch.zeros(1, 2, 16, 16)
    with torch.no_grad():
        loss = magnification_balanced_focal_loss(network, images, perfect)
        assert 0 < float(loss) < float(F.binary_cross_entropy_with_logits(network(images), perfect)), \
            "focal loss lies below cross-entropy"


@pytest.mark.parametrize("weights, loss", [(WEIGHTS_DIR / "mmgat_nuclei.pt", "balanced-focal"),
                                           (WEIGHTS_DIR / "mmgat_bce_nuclei.pt", "bce"),
                                           (DEFAULT_WEIGHTS[GRAPH_ATTENTION], "bce")])  # the default: typed, BCE
def test_shipped_weights_are_fp16_graph_attention_with_tuned_thresholds_and_a_card(weights, loss):
    checkpoint = load_checkpoint(weights)
    assert checkpoint["config"]["architecture"] == GRAPH_ATTENTION and checkpoint["config"]["loss"] == loss
    assert all(v.dtype == torch.float16 for v in checkpoint["state_dict"].values() if v.is_floating_point())
    assert 0 < checkpoint["config"]["foreground_threshold"] < 1
    assert weights.with_suffix(".md").is_file(), "every shipped weights file has a model card"


def test_shipped_weights_segment_unseen_fluorescence_nuclei(shared_data):
    model = GraphAttentionSegmenter.from_weights(DEFAULT_WEIGHTS[GRAPH_ATTENTION])
    images = [i for i in load_instance_set("dsb2018", "val", shared_data) if i.modality == "fluorescence"][:3]
    scores = [dice(model.segment(i.image), i.labels) for i in images]
    assert np.mean(scores) > 0.6, scores


def test_training_with_the_balanced_focal_loss_writes_loadable_weights(shared_data, tmp_path):
    output = tmp_path / "gat.pt"
    train_segmenter.main(["--architecture", GRAPH_ATTENTION, "--loss", "balanced-focal", "--dataset", "dsb2018",
                          "--train-images", "2", "--val-images", "1", "--steps", "2", "--eval-every", "2",
                          "--batch-size", "2", "--patch-size", "32", "--output", str(output)])
    model = GraphAttentionSegmenter.from_weights(output)
    assert model.config["loss"] == "balanced-focal" and isinstance(model.network, MultiMagnificationGAT)
    assert json.loads(output.with_suffix(".log.json").read_text())["summary"]["step"] == 2


def test_the_balanced_focal_loss_needs_the_graph_network(tmp_path, capsys):
    with pytest.raises(SystemExit):
        train_segmenter.main(["--architecture", "U-Net", "--loss", "balanced-focal", "--output",
                              str(tmp_path / "x.pt")])
    assert "needs --architecture MM-GAT" in capsys.readouterr().err


def test_cli_outlines_nuclei_on_the_sample_slide(sample_svs, tmp_path):
    annotation, geojson = tmp_path / "nuclei.anot", tmp_path / "nuclei.geojson"
    code = plugins_main(["GraphAttentionSegmentation", str(sample_svs), str(annotation), "--geojson", str(geojson),
                         "--analysis_roi", "800,800,200,200"])
    assert code == 0
    document = nuclei_document(annotation)
    elements = document["elements"]
    assert len(elements) > 10 and all(e["type"] == "polyline" and e["closed"] for e in elements)
    assert document["attributes"]["model"] == GRAPH_ATTENTION
    for element in elements:
        ring = np.array(element["points"])[:, :2]
        assert ring[:, 0].min() >= 760 and ring[:, 0].max() <= 1040  # the ROI and its edge nuclei
    assert len(json.loads(geojson.read_text())["features"]) == len(elements)


def node_levels(graph: PyramidGraph) -> torch.Tensor:
    """The level of every node, in the graph's node order."""
    return torch.cat([torch.full((rows * cols,), level) for level, (rows, cols) in enumerate(graph.shapes)])


def edge_list_typed_attention(layer: TypedGraphAttentionLayer, features: list[torch.Tensor],
                              displacements: list[torch.Tensor], graph: PyramidGraph) -> torch.Tensor:
    """The typed layer written plainly over the edge list: the levels updated one by one from the coarsest, each
    edge typed by its ends' levels, one softmax per node and type, the parent's message taken whole, the
    positional term of each edge's offset computed from absolute positions in the target level's node steps."""
    source, target = graph.edges()
    levels = node_levels(graph)
    spacing = torch.stack([graph.spacing(level) for level in levels.tolist()])  # (N, 3) per node
    start = as_nodes(graph.starting_positions(features[0].shape[0]))
    where = start + as_nodes(displacements) * spacing
    old = as_nodes(features)
    new = old.clone()
    heads, channels = layer.heads, old.shape[-1]

    def value(kind: str, nodes: torch.Tensor) -> torch.Tensor:
        return (layer.norm(nodes) @ layer.value[kind].weight[:, :, 0, 0].T).view(*nodes.shape[:-1], heads, -1)

    for level in reversed(range(graph.levels)):
        for node in torch.nonzero(levels == level).flatten().tolist():
            messages = torch.zeros(old.shape[0], heads, channels // heads)
            for kind, source_level in (("level", level), ("parent", level + 1), ("child", level - 1)):
                edges = (target == node) & (levels[source] == source_level)
                if not edges.any():
                    continue
                sources = source[edges]
                values = value(kind, (new if kind == "parent" else old)[:, sources])  # (B, K, heads, c)
                if kind == "parent":
                    messages += values[:, 0]
                    continue
                index = ("level", "child").index(kind)
                offset = (where[:, sources] - where[:, node, None]) / spacing[node]
                target_terms = (layer.norm(old[:, node]) @ layer.target_score.weight[:, :, 0, 0].T
                                + layer.target_score.bias).view(-1, 2, heads)[:, index]
                scores = F.leaky_relu((values * layer.source_score[index]).sum(-1) + target_terms[:, None]
                                      + layer.position_score[kind](offset), 0.2)
                messages += (torch.softmax(scores, dim=1)[..., None] * values).sum(1)
            new[:, node] = old[:, node] + (F.elu(messages.flatten(1)) @ layer.mix.weight[:, :, 0, 0].T
                                           + layer.mix.bias)
    return new


def test_typed_grid_attention_equals_typed_attention_over_the_explicit_edge_list():
    torch.manual_seed(0)
    graph = PyramidGraph(8, 12, 3)
    layer = TypedGraphAttentionLayer(8, 2, dropout=0.0).eval()
    for parameter in layer.position_score.parameters():  # positional terms large enough to tell edges apart
        parameter.data.mul_(4)
    features = [torch.randn(2, rows, cols, 8) for rows, cols in graph.shapes]
    displacements = [0.3 * torch.randn(2, rows, cols, 3) for rows, cols in graph.shapes]
    with torch.no_grad():
        torch.testing.assert_close(as_nodes(layer(features, displacements)),
                                   edge_list_typed_attention(layer, features, displacements, graph),
                                   atol=1e-5, rtol=1e-5)


def input_reach(network: MultiMagnificationGAT, size: int = 64) -> float:
    """How far (px) from the centre pixel lies the farthest input pixel that moves its first output logit."""
    images = torch.rand(1, 3, size, size, requires_grad=True)
    network(images)[0, 0, size // 2, size // 2].backward()
    rows, cols = torch.nonzero(images.grad.abs().sum(1)[0] > 0, as_tuple=True)
    return float(torch.hypot(rows - size / 2.0, cols - size / 2.0).max())


def test_one_typed_layer_carries_coarse_context_to_full_resolution():
    torch.manual_seed(0)
    sizes = {"levels": 5, "channels": 8, "heads": 2, "layers": 1, "position_updates": 1, "dropout": 0.0}
    flat = MultiMagnificationGAT(wiring="flat", **sizes).eval()
    typed = MultiMagnificationGAT(wiring="typed", **sizes).eval()
    assert input_reach(flat) < 8, "a flat layer reaches a pixel's neighbours and its parent's block"
    assert input_reach(typed) > 24, "levels updated coarsest first: the 16x level's neighbourhood reaches a pixel"


def test_typed_wiring_keeps_full_resolution_positions_and_reconstructs_every_level():
    torch.manual_seed(0)
    network = MultiMagnificationGAT(levels=3, channels=8, heads=2, layers=2, position_updates=1, wiring="typed",
                                    readout="reconstruction").eval()
    images, targets = torch.rand(2, 3, 16, 16), (torch.rand(2, 2, 16, 16) > 0.5).float()
    with torch.no_grad():
        network.move[0][-1].bias.fill_(5.0)  # push every node as far as it may go
        outputs, positions = network.level_outputs(images)
        start = PyramidGraph(16, 16, 3).starting_positions(2)
        assert torch.equal(positions[0], start[0].permute(0, 3, 1, 2)), "full-resolution nodes stay in place"
        assert not torch.equal(positions[1], start[1].permute(0, 3, 1, 2))
        network.level_shares.copy_(torch.tensor([[30.0, 0.0, 0.0], [0.0, 0.0, 30.0]]))
        readout = network(images)
    torch.testing.assert_close(readout[:, 0], outputs[0][:, 0], atol=1e-4, rtol=0)  # channel 0: full resolution
    coarsest = F.interpolate(outputs[2], size=(16, 16), mode="bilinear", align_corners=False)
    torch.testing.assert_close(readout[:, 1], coarsest[:, 1], atol=1e-4, rtol=0)  # channel 1: the coarsest level
    network.level_shares.data.zero_()
    magnification_bce(network, images, targets).backward()
    assert network.level_shares.grad.abs().sum() > 0 and network.move[0][-1].weight.grad.abs().sum() > 0
    assert all(torch.isfinite(p.grad).all() for p in network.parameters() if p.grad is not None)


def test_magnification_bce_weights_full_resolution_highest_and_every_level_counts():
    weights = full_resolution_first_weights(4)
    assert float(weights.sum()) == pytest.approx(1.0) and torch.all(weights[:-1] == 2 * weights[1:])
    torch.manual_seed(0)
    network = MultiMagnificationGAT(levels=3, channels=8, heads=2, layers=2, position_updates=1, wiring="typed",
                                    readout="reconstruction").eval()
    images = torch.rand(1, 3, 16, 16)
    targets = (torch.rand(1, 2, 16, 16) > 0.5).float()
    with torch.no_grad():
        outputs, _ = network.level_outputs(images)
        level_terms = [F.binary_cross_entropy_with_logits(o, t) for o, t in zip(outputs, image_pyramid(targets, 3))]
        expected = F.binary_cross_entropy_with_logits(network.reconstruct(outputs), targets) + sum(
            w * term for w, term in zip(full_resolution_first_weights(3).tolist(), level_terms))
        torch.testing.assert_close(magnification_bce(network, images, targets), expected)


FLAT_WEIGHTS = WEIGHTS_DIR / "mmgat_bce_nuclei.pt"  # the first weights: saved before the typed wiring


def test_weights_without_a_wiring_load_as_the_flat_network():
    model = GraphAttentionSegmenter.from_weights(FLAT_WEIGHTS)
    assert "wiring" not in load_checkpoint(FLAT_WEIGHTS)["config"]
    assert model.network.wiring == "flat" and model.network.readout == "full-resolution"
    assert isinstance(model.network.layers[0], GraphAttentionLayer)


def test_training_the_paper_wiring_writes_loadable_weights_and_fine_tuning_names_a_wiring_mismatch(
        shared_data, tmp_path):
    output = tmp_path / "typed.pt"
    common = ["--architecture", GRAPH_ATTENTION, "--dataset", "dsb2018", "--train-images", "2", "--val-images", "1",
              "--steps", "2", "--eval-every", "2", "--batch-size", "2", "--patch-size", "32", "--tune-later"]
    train_segmenter.main([*common, "--loss", "magnification-bce", "--graph-readout", "reconstruction",
                          "--output", str(output)])
    model = GraphAttentionSegmenter.from_weights(output)
    assert (model.config["wiring"], model.config["readout"]) == ("typed", "reconstruction")
    assert isinstance(model.network.layers[0], TypedGraphAttentionLayer)
    with pytest.raises(InputError, match="wiring flat, this run asks for typed"):
        train_segmenter.main([*common, "--init-weights", str(FLAT_WEIGHTS),
                              "--output", str(tmp_path / "tuned.pt")])
