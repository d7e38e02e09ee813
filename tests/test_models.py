"""Im2Flow U-Net, motion-content ResNet-18 and the loss: shapes, sizes, gradient weighting."""

from __future__ import annotations

import pytest
import torch

from models.losses import Im2FlowLoss, LossWeights, magnitude_weight, weight_direction_gradient
from models.motion_net import MotionContentNet, build_motion_net, freeze, load_backbone_weights
from models.unet import PRESETS, Im2FlowUNet, UNetConfig, build_unet, count_parameters, same_half_padding, unet_config


# pix2pix's U-Net-256 has about 54.4 M parameters (reference/facts.md); ours has exactly this many.
PAPER_PARAMETERS = 54_414_531


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_maps_image_to_flow_of_same_size(preset):
    cfg = PRESETS[preset]
    size = cfg.image_size
    model = Im2FlowUNet(cfg).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, size, size) * 2 - 1)
        assert model(torch.zeros(1, 3, 2 * size, size)).shape == (1, 3, 2 * size, size)  # any multiple works
    assert out.shape == (2, 3, size, size)
    assert out.abs().max() <= 1.0  # tanh output, the flow image's range


def test_paper_preset_size_and_layout():
    model = build_unet("paper")
    assert count_parameters(model) == PAPER_PARAMETERS
    assert count_parameters(build_unet("released")) == PAPER_PARAMETERS  # dilation adds no weights
    assert model.config.channels == (64, 128, 256, 512, 512, 512, 512, 512)
    assert model.config.image_size == 256
    assert [b.conv.dilation[0] for b in model.down] == list(model.config.dilations)
    assert all(b.conv.dilation == (1, 1) for b in build_unet("released").down)


def test_paper_preset_full_size_shapes_per_level():
    """At 256² every encoder level halves the size (dilated ones too), down to 1×1."""
    model = build_unet("paper").eval()
    sizes = []
    x = torch.zeros(1, 3, 256, 256)
    with torch.no_grad():
        for block in model.down:
            x = block(x)
            sizes.append((x.shape[1], x.shape[2]))
    assert sizes == [(64, 128), (128, 64), (256, 32), (512, 16), (512, 8), (512, 4), (512, 2), (512, 1)]


@pytest.mark.parametrize("dilation", [1, 2, 3, 4, 5])
def test_dilated_stride2_conv_halves_exactly(dilation):
    conv = torch.nn.Conv2d(1, 1, 4, stride=2, padding=same_half_padding(dilation), dilation=dilation)
    for size in (8, 16, 32, 64):
        assert conv(torch.zeros(1, 1, size, size)).shape[-1] == size // 2


def test_dilation_rates_are_a_parameter():
    cfg = unet_config("tiny", dilations=(2, 2, 2, 1, 1))
    assert Im2FlowUNet(cfg)(torch.zeros(1, 3, 32, 32)).shape == (1, 3, 32, 32)
    with pytest.raises(ValueError, match="dilations"):
        UNetConfig(channels=(8, 16), dilations=(1,), image_size=32)
    with pytest.raises(ValueError, match="unknown U-Net preset"):
        unet_config("huge")


def test_input_not_multiple_of_levels_is_refused():
    with pytest.raises(ValueError, match="multiple of 32"):
        build_unet("tiny")(torch.zeros(1, 3, 40, 40))


def test_skip_connections_carry_input_detail():
    """The outermost decoder block sees the first encoder level: a change in one input pixel reaches the output."""
    torch.manual_seed(0)
    model = build_unet("tiny").eval()
    x = torch.zeros(1, 3, 32, 32)
    y = x.clone()
    y[0, :, 5, 5] = 1.0
    with torch.no_grad():
        diff = (model(x) - model(y)).abs().sum(1)[0]
    assert diff[4:7, 4:7].sum() > 0


def test_motion_net_shapes():
    net = MotionContentNet(num_classes=6, input_size=224).eval()
    flow = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        assert net.features(flow).shape == (2, 128, 28, 28)  # layer2 at 224, as in the released code
        assert net(flow).shape == (2, 6)
    small = MotionContentNet(num_classes=3, input_size=None).eval()
    with torch.no_grad():
        assert small.features(flow).shape == (2, 128, 8, 8)
        logits = small(flow)
        assert torch.allclose(logits, small.classify_features(small.features(flow)))


def test_motion_net_local_weights_loading(tmp_path, caplog):
    torch.manual_seed(1)
    source = MotionContentNet(num_classes=1000, input_size=None)
    path = tmp_path / "resnet18.pth"
    torch.save(source.resnet.state_dict(), path)  # a torchvision-style state dict
    net = MotionContentNet(num_classes=6, input_size=None)
    phrase = load_backbone_weights(net, str(path))
    assert "new classification head" in phrase
    assert torch.equal(net.resnet.layer2[0].conv1.weight, source.resnet.layer2[0].conv1.weight)
    assert net.resnet.fc.weight.shape == (6, 512)
    # same class count: the head is kept too; a "module."/"resnet." prefix is tolerated
    torch.save({f"resnet.{k}": v for k, v in net.resnet.state_dict().items()}, path)
    again = MotionContentNet(num_classes=6, input_size=None)
    load_backbone_weights(again, str(path))
    assert torch.equal(again.resnet.fc.weight, net.resnet.fc.weight)
    with pytest.raises(FileNotFoundError):
        load_backbone_weights(again, str(tmp_path / "missing.pth"))


def test_motion_net_falls_back_to_random_without_imagenet_cache(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with caplog.at_level("INFO"):
        build_motion_net(4, input_size=None, pretrained="imagenet")
    assert "random initialisation" in caplog.text
    with caplog.at_level("INFO"):
        build_motion_net(4, input_size=None, pretrained=None)
    assert "no pretrained weights" in caplog.text


def test_motion_net_uses_imagenet_weights_from_the_hub_cache(tmp_path, monkeypatch, caplog):
    """The torchvision weights API path, fed offline: a state dict placed where torchvision caches it."""
    import os

    from torchvision.models import ResNet18_Weights

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    torch.manual_seed(2)
    imagenet = MotionContentNet(num_classes=1000, input_size=None)
    (tmp_path / "checkpoints").mkdir()
    torch.save(imagenet.resnet.state_dict(), tmp_path / "checkpoints" / os.path.basename(ResNet18_Weights.IMAGENET1K_V1.url))
    with caplog.at_level("INFO"):
        net = build_motion_net(6, input_size=None, pretrained="imagenet")
    assert "ImageNet weights" in caplog.text
    assert torch.equal(net.resnet.conv1.weight, imagenet.resnet.conv1.weight)
    assert net.resnet.fc.out_features == 6


def _flows(seed: int, shape=(2, 3, 16, 16)) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    pred = torch.rand(shape, generator=g) * 2 - 1
    true = torch.rand(shape, generator=g) * 2 - 1
    return pred, true


def test_magnitude_weight_is_clipped_normalised_magnitude():
    true = torch.zeros(1, 3, 2, 2)
    true[0, 2] = torch.tensor([[-1.0, 0.0], [1.0, -0.5]])
    assert torch.equal(magnitude_weight(true)[0, 0], torch.tensor([[0.0, 0.5], [1.0, 0.25]]))


def test_gradient_weighting_by_autograd():
    """The gradient reaching channels 0-1 of the output is the unweighted one times the true magnitude weight;
    channel 2 and the loss value are unchanged. Checked on the full loss (pixel + content)."""
    torch.manual_seed(0)
    content = freeze(MotionContentNet(num_classes=5, input_size=None))
    pred, true = _flows(0, (2, 3, 32, 32))
    grads, values = {}, {}
    for weighting in (True, False):
        p = pred.clone().requires_grad_(True)
        loss = Im2FlowLoss(content, LossWeights(gradient_weighting=weighting))(p, true)
        loss["loss"].backward()
        grads[weighting], values[weighting] = p.grad, loss["loss"].detach()
    w = (true[:, 2:3] + 1) / 2
    assert torch.equal(values[True], values[False])
    assert torch.equal(grads[True][:, 0:2], grads[False][:, 0:2] * w)
    assert torch.equal(grads[True][:, 2], grads[False][:, 2])
    assert grads[False][:, 0:2].abs().sum() > 0 and (w < 0.5).any()


def test_gradient_weighting_pixel_term_closed_form():
    """Pixel MSE alone: d/dpred = 2 (pred - true) / N, times the weight on sin and cos."""
    pred, true = _flows(1)
    p = pred.clone().requires_grad_(True)
    torch.nn.functional.mse_loss(weight_direction_gradient(p, true), true).backward()
    expected = 2 * (pred - true) / pred.numel()
    expected[:, :2] *= (true[:, 2:3] + 1) / 2
    assert torch.allclose(p.grad, expected, rtol=1e-6, atol=1e-9)


def test_gradient_weighting_reaches_the_network():
    """Zero true magnitude everywhere: the sin/cos outputs get no gradient, so the weights behind only them
    see only the magnitude channel's gradient (here checked through the final conv's per-channel bias)."""
    model = build_unet("tiny")
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    true = torch.rand(2, 3, 32, 32) * 2 - 1
    true[:, 2] = -1.0  # M = 0
    Im2FlowLoss(None, LossWeights(content_weight=0.0))(model(x), true)["loss"].backward()
    bias_grad = model.up[-1].conv.bias.grad
    assert torch.equal(bias_grad[:2], torch.zeros(2)) and bias_grad[2] != 0


def test_loss_weights_and_terms():
    torch.manual_seed(0)
    content = freeze(MotionContentNet(num_classes=5, input_size=None))
    pred, true = _flows(2, (2, 3, 32, 32))
    paper = Im2FlowLoss(content, LossWeights())(pred, true)
    assert torch.allclose(paper["loss"], paper["pixel"] + 0.02 * paper["content"])
    released = Im2FlowLoss(content, LossWeights(50.0, 1.0, "l1"))(pred, true)
    assert torch.allclose(released["loss"], 50 * released["pixel"] + released["content"])
    assert released["content"] != paper["content"]
    same = Im2FlowLoss(content, LossWeights())(true, true)
    assert same["loss"] == 0
    with pytest.raises(ValueError, match="motion-content network"):
        Im2FlowLoss(None, LossWeights())
    assert list(Im2FlowLoss(content).parameters()) == []  # the loss network is not trained with the generator


@pytest.mark.parametrize("weighting", [True, False])
def test_overfit_a_handful_of_samples(weighting):
    """Tiny U-Net, 4 demo (frame, flow) pairs, the full loss (pixel + 0.02 content), 60 Adam steps on the CPU.

    Without gradient weighting the loss falls by more than 10×. With it, the
    objective the gradient follows is the magnitude-weighted pixel error (the
    direction of still background pixels gets no gradient and may drift, so the
    unweighted loss is not what falls): that falls by more than 10×.
    """
    from pipeline.data.demo import render_video
    from pipeline.encoding import encode, to_network

    torch.manual_seed(0)
    frames, flows = [], []
    for i, name in enumerate(("ArrowGlide", "WheelSpin", "BalloonRise", "PendulumSwing")):
        rgb, flow = render_video(name, 10 + i, (32, 32), 7)
        frames.append(torch.from_numpy(rgb[0]).permute(2, 0, 1).float() / 127.5 - 1)
        flows.append(torch.from_numpy(to_network(encode(flow[:5].mean(0)))))
    frame, flow = torch.stack(frames), torch.stack(flows)
    model = build_unet("tiny")
    content = freeze(MotionContentNet(num_classes=6, input_size=None))
    criterion = Im2FlowLoss(content, LossWeights(gradient_weighting=weighting))
    opt = torch.optim.Adam(model.parameters(), lr=2e-3, betas=(0.5, 0.999))
    key = "weighted_pixel" if weighting else "loss"
    history = []
    for _ in range(60):
        losses = criterion(model(frame), flow)
        opt.zero_grad()
        losses["loss"].backward()
        opt.step()
        history.append(float(losses[key].detach()))
    assert history[-1] < history[0] / 10, (history[0], history[-1])
