"""The device-side loader: a whole split on the accelerator, batched, augmented, normalised there.

::

    loader = DeviceLoader(load_dataset("tinyimagenet", "train"), 256, device="cuda", train=True,
                          seed=0)
    for x, y in loader.epoch(0):                           # float32, normalised, augmented on GPU
        ...
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from nsf.train.imagedataset import Augmentation, ImageDataset, keyed_generator

__all__ = ["DeviceLoader", "crop_flip"]


def crop_flip(
    x: Tensor, offsets: Tensor, hflip: Tensor, vflip: Tensor | None = None, pad: int = 4
) -> Tensor:
    """Batched RandomCrop(H, padding=pad) then horizontal (and vertical) flip, one gather.

    ``x`` is ``[B, C, H, W]``; ``offsets`` is ``[2, B]`` (row, column) in ``[0, 2 pad]``, the
    top-left corner of the crop in the zero-padded image; ``hflip``/``vflip`` are ``[B]`` bools.
    Output pixel ``(i, j)`` is ``padded[i' + dy, j' + dx]`` with ``j' = W-1-j`` when flipped
    (torchvision order: crop, then flip). Pixels read from the padding are 0, as in
    ``transforms.RandomCrop(padding=pad)`` on ``uint8`` data. The result is ``[B, C, H, W]`` with
    channels-last strides.
    """
    b, _, h, w = x.shape
    dev = x.device
    rows = torch.arange(h, device=dev).expand(b, h)
    cols = torch.arange(w, device=dev).expand(b, w)
    if vflip is not None:
        rows = torch.where(vflip[:, None], h - 1 - rows, rows)
    cols = torch.where(hflip[:, None], w - 1 - cols, cols)
    r = rows + offsets[0][:, None] - pad
    c = cols + offsets[1][:, None] - pad
    valid = ((r >= 0) & (r < h))[:, :, None] & ((c >= 0) & (c < w))[:, None, :]
    r, c = r.clamp(0, h - 1), c.clamp(0, w - 1)
    bi = torch.arange(b, device=dev)[:, None, None]
    out = x[bi, :, r[:, :, None], c[:, None, :]]  # [B, H, W, C]
    out = torch.where(valid[..., None], out, torch.zeros((), dtype=x.dtype, device=dev))
    return out.permute(0, 3, 1, 2)


def _fits_on(device: torch.device, nbytes: int) -> bool:
    if device.type != "cuda":
        return True
    free, _ = torch.cuda.mem_get_info(device)
    return nbytes <= 0.4 * free


class DeviceLoader:
    """Batches from an :class:`~nsf.train.imagedataset.ImageDataset` held on ``device`` (moved
    there once).

    The train pipeline of paper Sec. 3.3 and Sec. 5.1 (RandomCrop with zero padding
    ``crop_pad``, random horizontal ``flip``, random vertical ``vflip``, per-channel
    normalisation) runs in batch on the device, so a GPU never waits for JPEG decoding. Each of
    ``crop_pad``, ``flip`` and ``vflip`` left ``None`` takes the value the dataset declares
    (``dataset.augmentation``, e.g. CIFAR's pad 4 and flip, none for digits); ``augmentation``
    is what the loader then applies (no augmentation with ``train=False``).

    Determinism and resumption: epoch ``e`` uses one permutation drawn from ``(seed, e)``; the
    augmentation of batch ``i`` comes from a generator seeded with ``(seed, e, i)`` and is drawn
    for the whole global batch, so batch ``i`` of epoch ``e`` is a pure function of
    ``(seed, e, i)`` and ``epoch(e, start_batch=i)`` reproduces an uninterrupted run exactly.

    DDP: the global batch is ``batch_size * world_size`` samples of the shared permutation; rank
    ``r`` takes its contiguous slice. A sample's augmentation depends on its position in the
    global batch, not on the rank, so one process with ``batch_size=2B`` sees exactly the
    concatenation of what two ranks with ``B`` see.

    ``drop_last=None`` keeps the last partial batch (ceil(N/B) iterations per epoch)
    unless it would leave a rank fewer than 2 samples (BatchNorm cannot train on one); that rule
    depends on ``world_size``, so pass ``drop_last`` explicitly where the 1-process/2-process
    equivalence must hold for every N. ``train=False`` uses the dataset order, no augmentation,
    and always keeps the last batch (a rank may then get an empty slice). When the images do not
    fit in 40 % of the free GPU memory they stay in pinned host memory and each batch is gathered
    there and copied (``keep_on_device`` overrides the choice).
    """

    def __init__(
        self,
        dataset: ImageDataset,
        batch_size: int,
        *,
        device: str | torch.device,
        train: bool,
        seed: int,
        crop_pad: int | None = None,
        flip: bool | None = None,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool | None = None,
        channels_last: bool = False,
        vflip: bool | None = None,
        keep_on_device: bool | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, {world_size=}")
        if not train and drop_last:
            raise ValueError("train=False keeps every sample; drop_last=True is not allowed")
        self.dataset = dataset
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.train, self.seed = train, seed
        declared = dataset.augmentation.override(crop_pad, flip, vflip)  # checks the values
        #: The augmentation this loader applies (none when ``train=False``).
        self.augmentation: Augmentation = declared if train else Augmentation()
        self.rank, self.world_size = rank, world_size
        self.channels_last = channels_last
        self.global_batch = batch_size * world_size
        n = len(dataset)
        if drop_last is None:
            rem = n % self.global_batch
            drop_last = train and rem > 0 and n >= self.global_batch and rem // world_size < 2
        self.drop_last = bool(drop_last)
        images = dataset.images
        on_device = keep_on_device
        if on_device is None:
            on_device = _fits_on(self.device, images.numel() * images.element_size())
        self._store = self.device if on_device else torch.device("cpu")
        if on_device:
            self._images = images.to(self.device)
        else:
            self._images = images.pin_memory() if self.device.type == "cuda" else images
        self._labels = dataset.labels.to(self._store)
        mean = torch.tensor(dataset.mean, dtype=torch.float32, device=self.device)
        std = torch.tensor(dataset.std, dtype=torch.float32, device=self.device)
        self._scale = (1.0 / (255.0 * std)).view(1, -1, 1, 1)
        self._shift = (mean / std).view(1, -1, 1, 1)
        self._perm_epoch: int | None = None
        self._perm: Tensor | None = None

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.global_batch if self.drop_last else -(-n // self.global_batch)

    def _permutation(self, epoch: int) -> Tensor:
        if self._perm_epoch != epoch:
            g = keyed_generator("perm", self.seed, epoch)
            perm = torch.randperm(len(self.dataset), generator=g)
            self._perm, self._perm_epoch = perm.to(self._store), epoch
        assert self._perm is not None
        return self._perm

    def draw(self, epoch: int, batch: int, count: int) -> tuple[Tensor, Tensor, Tensor]:
        """Crop offsets ``[2, count]`` and h/v flip masks ``[count]`` of one global batch (CPU)."""
        aug = self.augmentation
        g = keyed_generator("augment", self.seed, epoch, batch)
        offsets = torch.randint(0, 2 * aug.crop_pad + 1, (2, count), generator=g)
        flips = torch.rand((2, count), generator=g) < 0.5
        return offsets, flips[0] & aug.flip, flips[1] & aug.vflip

    def epoch(self, epoch: int, start_batch: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        """Yield ``(images float32 [B_local, C, H, W], labels int64 [B_local])`` on the device."""
        total = len(self)
        if not 0 <= start_batch <= total:
            raise ValueError(f"start_batch must lie in [0, {total}], got {start_batch}")
        n = len(self.dataset)
        order = self._permutation(epoch) if self.train else None
        for i in range(start_batch, total):
            g0 = i * self.global_batch
            count = min(self.global_batch, n - g0)
            lo = self.rank * count // self.world_size
            hi = (self.rank + 1) * count // self.world_size
            if order is not None:
                idx = order[g0 + lo : g0 + hi]
            else:
                idx = torch.arange(g0 + lo, g0 + hi, device=self._store)
            x = self._images[idx].to(self.device, non_blocking=True)
            y = self._labels[idx].to(self.device, non_blocking=True)
            if self.augmentation.active:
                offsets, hflip, vflip = self.draw(epoch, i, count)
                params = torch.cat([offsets, hflip[None], vflip[None]])[:, lo:hi]
                params = params.to(self.device, non_blocking=True)
                pad = self.augmentation.crop_pad
                x = crop_flip(x, params[:2], params[2].bool(), params[3].bool(), pad)
            out = torch.addcmul(-self._shift, x.float(), self._scale)  # (x/255 - mean) / std
            fmt = torch.channels_last if self.channels_last else torch.contiguous_format
            yield out.contiguous(memory_format=fmt), y

    def __repr__(self) -> str:
        return (
            f"DeviceLoader({self.dataset!r}, batch_size={self.batch_size}, device={self.device}, "
            f"train={self.train}, rank={self.rank}/{self.world_size}, batches={len(self)})"
        )
