"""free_port: the one port picker the launcher and every test share."""

import socket

from toolkit import serve


def test_never_hands_out_the_same_port_twice():
    # A dozen servers start at once in the conformance suite: a repeated port
    # makes one of them fail to bind (CI saw it happen with port 0 picks).
    ports = [serve.free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)


def test_the_port_can_be_listened_on_every_interface():
    port = serve.free_port()
    with socket.socket() as sock:
        sock.bind(("", port))
        sock.listen()


def test_picks_below_the_ephemeral_range_that_outgoing_connections_use():
    low = serve._ephemeral_range_start()
    ports = [serve.free_port() for _ in range(20)]
    assert all(serve._LOWEST_PICKED_PORT <= port < low for port in ports), (low, ports)


def test_a_port_in_use_is_skipped(monkeypatch):
    busy, free = serve.free_port(), serve.free_port()
    with socket.socket() as taken:
        taken.bind(("", busy))
        taken.listen()
        picks = iter([busy, free])
        monkeypatch.setattr(serve, "_ports_given", set())
        monkeypatch.setattr(serve._RANDOM, "randrange", lambda *_: next(picks))
        assert serve.free_port() == free
