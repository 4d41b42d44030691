"""Which NVIDIA device nodes a sandbox needs for a set of host GPUs, and the CUDA environment that goes with them."""

from pathlib import Path

from posttrainbench.errors import PtbError

# Driver nodes shared by all GPUs; only nvidiactl is indispensable.
_SHARED_NODES = ["nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset", "nvidia-caps", "dri"]


def gpu_mounts_and_env(gpus: list[int], dev_root: Path = Path("/dev")) -> tuple[list[tuple[Path, str]], dict[str, str]]:
    """Device binds (host path, sandbox path) and env for passing `gpus` through.

    Only the requested /dev/nvidia<i> nodes are bound, so CUDA inside enumerates just those GPUs, in host order:
    CUDA_VISIBLE_DEVICES is therefore 0..n-1 inside, not the host indices.
    """
    env = _cuda_env([str(i) for i in range(len(_checked(gpus)))])
    if not gpus:
        return [], env
    binds: list[tuple[Path, str]] = []
    control = dev_root / "nvidiactl"
    if not control.exists():
        raise PtbError(f"GPUs {gpus} requested but {control} does not exist (no NVIDIA driver on this machine?)")
    for index in sorted(gpus):
        node = dev_root / f"nvidia{index}"
        if not node.exists():
            raise PtbError(f"GPU {index} requested but {node} does not exist")
        binds.append((node, f"/dev/nvidia{index}"))
    binds.append((control, "/dev/nvidiactl"))
    for name in _SHARED_NODES:
        if (dev_root / name).exists():
            binds.append((dev_root / name, f"/dev/{name}"))
    return binds, env


def host_gpu_env(gpus: list[int]) -> dict[str, str]:
    """The same variables for an unisolated process, which sees every GPU and so needs the host indices."""
    return _cuda_env([str(i) for i in sorted(_checked(gpus))])


def _checked(gpus: list[int]) -> list[int]:
    if len(set(gpus)) != len(gpus) or any(i < 0 for i in gpus):
        raise PtbError(f"GPU indices must be distinct and non-negative, got {gpus}")
    return gpus


def _cuda_env(visible: list[str]) -> dict[str, str]:
    # PCI order makes CUDA's numbering match nvidia-smi's and the /dev/nvidia<i> order.
    return {"CUDA_VISIBLE_DEVICES": ",".join(visible), "CUDA_DEVICE_ORDER": "PCI_BUS_ID", "NUM_GPUS": str(len(visible))}
