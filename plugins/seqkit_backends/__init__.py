"""Built-in device backends: cpu, cuda, mps. Registered through the ``seqkit`` entry-point group."""

from seqkit import hookimpl


@hookimpl
def register_backends(register):
    register("cpu", "seqkit_backends.cpu:CpuBackend")
    register("cuda", "seqkit_backends.cuda:CudaBackend")
    register("mps", "seqkit_backends.mps:MpsBackend")
