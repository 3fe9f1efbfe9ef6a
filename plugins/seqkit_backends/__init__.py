"""Built-in device backends: cpu, cuda, mps. Registered through the ``seqkit`` entry-point group."""

from seqkit import hookimpl
from seqkit_backends.cpu import CpuBackend
from seqkit_backends.cuda import CudaBackend
from seqkit_backends.mps import MpsBackend


@hookimpl
def register_backends(register):
    register("cpu", CpuBackend)
    register("cuda", CudaBackend)
    register("mps", MpsBackend)
