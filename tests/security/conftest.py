import pytest

from posttrainbench.sandbox import confine


@pytest.fixture(params=["user namespace", "setpriv inside"])
def root_mode(request, monkeypatch):
    """The two ways a root harness confines: an unprivileged bwrap in a user namespace, or (hosts that forbid
    unprivileged user namespaces) a privileged bwrap whose first program drops to the sandbox uid."""
    if request.param == "setpriv inside":
        monkeypatch.setattr(confine, "userns_available", lambda: False)
    return request.param
