"""frcnn.modeling.roi_heads: proposals labelled and sampled by hand, then the head and its losses."""

import torch

from frcnn.modeling.poolers import MultiScaleRoIAlign
from frcnn.modeling.roi_heads import BoxPredictor, RoIHeads, TwoMLPHead
from frcnn.modeling.structures import GroundTruth, Proposals


def test_label_and_sample_proposals_adds_the_ground_truth():
    heads = RoIHeads(MultiScaleRoIAlign(), TwoMLPHead(8, 7, 16), BoxPredictor(16, 3), batch_size_per_image=8, positive_fraction=0.5)
    proposals = Proposals(
        boxes=torch.tensor([[[0.0, 0.0, 10.0, 10.0], [40.0, 40.0, 60.0, 60.0], [0.0, 0.0, 9.0, 10.0]]]),
        scores=torch.ones(1, 3),
        valid=torch.tensor([[True, True, False]]),  # the third is padding: never sampled
    )
    gt = GroundTruth(torch.tensor([[[0.0, 0.0, 10.0, 11.0]]]), torch.tensor([[2]]), torch.tensor([[True]]))
    samples = heads.label_and_sample_proposals(proposals, gt)
    chosen = {i: l for i, l, v in zip(samples.index[0].tolist(), samples.labels[0].tolist(), samples.valid[0].tolist()) if v}
    assert chosen == {0: 2, 1: 0, 3: 2}  # candidate 3 is the ground-truth box itself
    assert samples.positives_per_image() == 2.0
    assert torch.equal(samples.target_deltas[0][samples.index[0] == 3], torch.zeros(1, 4))
    class_logits, box_deltas = heads.predict([torch.randn(1, 8, 16, 16)] * 4, samples.boxes)
    assert class_logits.shape == (1, samples.index.shape[1], 3) and box_deltas.shape == (1, samples.index.shape[1], 12)
    losses = heads.losses(class_logits, box_deltas, samples)
    assert set(losses) == {"roi_cls", "roi_box"} and all(torch.isfinite(v) for v in losses.values())
