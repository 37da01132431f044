"""`python tests/fsdp_on_cpu.py RUN_DIR ...`: testbed's stage runner with FSDP on CPU processes.

accelerate builds an FSDP state only on GPU-type devices: CPU processes asked for FSDP run as MULTI_CPU
(DDP), and testbed says so. This entry point, started by `accelerate launch` in test_train_ddp.py, records
the FSDP state accelerate would record on GPUs; from there accelerate's own FSDP2 preparation and
torch's `fully_shard` shard the model over gloo, so CI runs the sharded training, checkpoint and resume path.
"""

import sys

import accelerate.state as state
from accelerate.utils import DistributedType

_init = state.AcceleratorState.__init__


def _init_with_fsdp_on_cpu(self, *args, fsdp_plugin=None, **kwargs):
    _init(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
    if fsdp_plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
        self.fsdp_plugin = fsdp_plugin
        # both shared states: a later AcceleratorState() copies PartialState's distributed_type over its own
        self.distributed_type = state.PartialState._shared_state["distributed_type"] = DistributedType.FSDP


state.AcceleratorState.__init__ = _init_with_fsdp_on_cpu

if __name__ == "__main__":
    from testbed.sweep.stages import main

    sys.exit(main())
