"""frcnn.modeling.rpn: anchors labelled and sampled by hand; the losses on those samples."""

import torch

from frcnn.modeling.rpn import RegionProposalNetwork, RPNHead
from frcnn.modeling.structures import GroundTruth


def test_label_and_sample_anchors_by_hand():
    rpn = RegionProposalNetwork(RPNHead(8, 1), batch_size_per_image=10, positive_fraction=0.5)
    anchors = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 0.0, 11.0, 10.0], [50.0, 50.0, 60.0, 60.0], [0.0, 0.0, 10.0, 16.0]])
    gt = GroundTruth(torch.tensor([[[0.0, 0.0, 10.0, 10.0]], [[0.0, 0.0, 1.0, 1.0]]]), torch.tensor([[2], [0]]), torch.tensor([[True], [False]]))
    samples = rpn.label_and_sample_anchors(anchors, gt)
    assert samples.index.shape == samples.valid.shape == samples.labels.shape == (2, 4)
    assert samples.boxes.shape == samples.target_deltas.shape == (2, 4, 4)
    # Image 0: IoU 1 and 0.82 are objects, 0 background, 0.625 ignored (between 0.3 and 0.7).
    chosen = {i: l for i, l, v in zip(samples.index[0].tolist(), samples.labels[0].tolist(), samples.valid[0].tolist()) if v}
    assert chosen == {0: 2, 1: 2, 2: 0}
    assert torch.equal(samples.target_deltas[0][samples.index[0] == 0], torch.zeros(1, 4))
    assert torch.equal(samples.boxes[0], anchors[samples.index[0]])
    # Image 1 has no objects: every anchor is background.
    assert samples.valid[1].sum() == 4 and samples.labels[1].eq(0).all() and samples.target_deltas[1].eq(0).all()
    assert samples.positives_per_image() == 1.0  # (2 + 0) objects / 2 images: the health figure the RPN leaves

    logits = torch.zeros(2, 4, requires_grad=True)
    losses = rpn.losses(logits, torch.zeros(2, 4, 4), samples)
    assert torch.isclose(losses["rpn_cls"], torch.log(torch.tensor(2.0)))  # sigmoid(0) = 1/2 for all 7 samples
    losses["rpn_cls"].backward()
    assert logits.grad[0, 3] == 0  # the ignored anchor gets no gradient
