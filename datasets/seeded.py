"""Training samples whose randomness depends only on the seed, the epoch, the rank and their place in the epoch.

DataLoader seeds a worker's generator once, when the worker starts; persistent workers then carry it on
from epoch to epoch, so a resumed run (fresh workers) would draw other frames and crops than the
uninterrupted run did in the same epoch. Here the sampler hands every index its own seed, and the
dataset draws the sample's random numbers (torch's generator: frame sampling and transforms) from it,
whichever worker, or the main process, loads it.
"""
import torch
from torch.utils.data import Dataset, Sampler


class SeededSampler(Sampler):
    """Yields `(seed, index)` for every index of `sampler`; the seeds depend on (seed, epoch, rank) only.

    `set_epoch` is passed on to `sampler` (a DistributedSampler shuffles by seed + epoch); its `skip` leaves
    out the epoch's first items (those a resumed epoch consumed before it was interrupted), each other item
    keeping the seed it has in the whole epoch.
    """

    def __init__(self, sampler: Sampler, seed: int, rank: int = 0):
        self.sampler, self.seed, self.rank, self.epoch, self.skip = sampler, seed, rank, 0, 0

    def set_epoch(self, epoch: int, skip: int = 0):
        self.epoch, self.skip = epoch, skip
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def __len__(self):
        return max(len(self.sampler) - self.skip, 0)

    def __iter__(self):
        indices = list(self.sampler)
        generator = torch.Generator().manual_seed(self.seed + 1000 * self.epoch + self.rank)
        seeds = torch.randint(2**62, (len(indices),), generator=generator).tolist()
        return iter(list(zip(seeds, indices))[self.skip:])


class SeededSamples(Dataset):
    """`dataset[index]` drawn with torch's generator seeded by the item's seed: items are `(seed, index)`.

    The caller's generator state is restored afterwards (with no workers the main process loads samples,
    and its dropout must not depend on them).
    """

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, item):
        seed, index = item
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.dataset[index]
