"""Launched by test_dist_launch.py under mpiexec -n 2: rank 1 raises while rank 0 waits in a
collective that rank 1 never joins. The run must end, non-zero, within seconds."""
import sys

from minigan.distributed import create_communicator

comm = create_communicator()
mode = sys.argv[1] if len(sys.argv) > 1 else "guard"
if mode == "hook":
    comm.install_excepthook()
    if comm.rank == 1:
        raise ValueError("rank 1 failed on purpose")
    comm.barrier()
else:
    with comm.abort_on_error():
        if comm.rank == 1:
            raise ValueError("rank 1 failed on purpose")
        comm.barrier()           # rank 0 would wait here forever without the abort
print("unreachable: rank", comm.rank, "passed the barrier")
