"""A TCP proxy between a device and the broker whose cable the test can pull: cut() drops
every connection and refuses new ones until restore(). Loopback only."""
import socket
import threading

from tests.support import until


class NetCut:
    def __init__(self, target_host, target_port, host="127.0.0.1"):
        self.target = (target_host, target_port)
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((host, 0))
        self.listener.listen(16)
        self.host, self.port = self.listener.getsockname()
        self.cut_now = threading.Event()
        self.closed = False
        self.refused = 0  # connection attempts turned away while cut
        self._conns = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.cut_now.is_set():
                client.close()  # the cable is out: the device sees its connect fail
                self.refused += 1
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._conns += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()

    def _pipe(self, src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.close()
            except OSError:
                pass

    def cut(self):
        self.cut_now.set()
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass

    def wait_refused(self, times=1, timeout=20.0):
        """Until the device has tried to reconnect `times` times since the start and been turned away."""
        until(lambda: self.refused >= times, timeout, f"{times} refused reconnects (got {self.refused})")

    def restore(self):
        self.cut_now.clear()

    def close(self):
        self.closed = True
        self.cut()
        self.listener.close()
