"""tools/broker_cluster_check.py without ejabberd: it says how to install it and starts nothing (the check itself
runs outside `make test`, against real ejabberd nodes)."""
import pytest

from tools import broker_cluster_check as check


def test_without_ejabberd_it_says_how_to_install_it_and_starts_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(check, "ERL_LIBS", tmp_path)  # no ejabberd-*/ebin/ejabberd.app here
    monkeypatch.setattr(check, "Cluster", lambda *a, **k: pytest.fail("no node may start"))
    assert check.main([]) == 2
    assert "apt-get install -y ejabberd" in capsys.readouterr().err
