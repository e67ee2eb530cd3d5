"""Forward + backward time of the mL1-ACE losses against a per-image, per-class loop.

    python benchmarks/bench_losses.py [--size 128] [--repeat 3] [--device cpu]

Batch of 2 images × 4 classes × size³ float32 logits (softmax) and a label map.  The loop
implementation is the straightforward one: for each image, each class and each bin, mask
the voxels of that bin and take ``|mean p − mean y|``; it is also used to check the values.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from calibviz.losses import HardL1ACELoss, SoftL1ACELoss, torch_bin_edges


def loop_l1_ace(logits, labels, n_bins=20, binning="hard", empty_weight=0.01):
    """Scalar mean ACE over images and classes, one image, class and bin at a time."""
    probs = torch.softmax(logits, dim=1)
    inner = torch_bin_edges(n_bins, probs.dtype, probs.device)[1:-1]
    per_pair = []
    for b in range(probs.shape[0]):
        for c in range(probs.shape[1]):
            p = probs[b, c].reshape(-1).double()
            y = (labels[b] == c).reshape(-1).double()
            gaps = []
            if binning == "hard":
                index = torch.bucketize(probs[b, c].reshape(-1).detach(), inner, right=False)
                for k in range(n_bins):
                    in_bin = index == k
                    if in_bin.any():
                        gaps.append((p[in_bin].mean() - y[in_bin].mean()).abs())
            else:
                x = (p * n_bins - 0.5).clamp(0, n_bins - 1)
                for k in range(n_bins):
                    w = (1 - (x - k).abs()).clamp(min=0)  # linear split between centres
                    total = w.sum()
                    if total >= empty_weight:
                        gaps.append(((w * (p - y)).sum() / total).abs())
            per_pair.append(torch.stack(gaps).mean())
    return torch.stack(per_pair).mean()


def time_forward_backward(function, logits, labels, repeat):
    times, value = [], None
    for _ in range(repeat):
        x = logits.detach().clone().requires_grad_(True)
        if x.is_cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        loss = function(x, labels)
        loss.backward()
        if x.is_cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        value = (loss.item(), x.grad)
    return min(times), statistics.median(times), value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128, help="edge length of the cube")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each")
    parser.add_argument("--loop-repeat", type=int, default=1, help="timed runs of the loop")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    generator = torch.Generator().manual_seed(0)
    shape = (2, 4, args.size, args.size, args.size)
    logits = (torch.randn(shape, generator=generator) * 2).to(args.device)
    labels = torch.randint(0, 4, (2, args.size, args.size, args.size), generator=generator)
    labels = labels.to(args.device)
    print(
        f"mL1-ACE forward+backward, batch {tuple(shape)} float32 logits, softmax, 20 bins, "
        f"device {args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    print(f"{'loss':6s} {'vectorised (min/median)':>26s} {'loop':>10s} {'speed-up':>9s} "
          f"{'|Δloss|':>9s} {'max|Δgrad|':>11s}")
    for name, loss_class in (("hard", HardL1ACELoss), ("soft", SoftL1ACELoss)):
        loss = loss_class(softmax=True)
        time_forward_backward(loss, logits, labels, 1)  # warm-up (allocator, threads)
        fast_min, fast_median, (fast_value, fast_grad) = time_forward_backward(
            loss, logits, labels, args.repeat
        )
        loop_min, _, (loop_value, loop_grad) = time_forward_backward(
            lambda x, y, b=name: loop_l1_ace(x, y, binning=b), logits, labels, args.loop_repeat
        )
        print(
            f"{name:6s} {fast_min:12.3f} s / {fast_median:6.3f} s {loop_min:8.3f} s "
            f"{loop_min / fast_min:8.1f}x {abs(fast_value - loop_value):9.1e} "
            f"{(fast_grad - loop_grad).abs().max().item():11.1e}"
        )


if __name__ == "__main__":
    main()
