#!/usr/bin/env python3
"""Hold many connections to a vmctld socket, for the broker-limits tests.

usage: broker-clients.py SOCKET COUNT MODE STATUS
  MODE idle     connect and send nothing
       partial  send all but the last KiB of a request of almost 4 MiB

STATUS is rewritten (atomically, as JSON) whenever something changes:
  connected  connections made; failed: connects that failed or timed out
  sent       connections that sent all they meant to (partial mode)
  closed     connections the broker closed; warned: of those, how many got a
             "warning" notification first
  ready      true once every connection was tried and every send finished
The script closes everything and exits when STATUS.release appears, when
SOCKET is gone, or after 600 s, whichever comes first.
"""
import json
import os
import select
import socket
import struct
import sys
import time

sock_path, count, mode, status_path = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
MAX_LIFE = 600


def partial_request():
    # [0, 1, "list", {"x": [STR, STR, STR, STR]}], each STR just under 1 MiB
    # (the per-string limit): the whole is just under the 4 MiB message limit.
    piece = 1024 * 1024 - 64
    body = bytes([0x94, 0x00, 0x01, 0xa4]) + b'list' + bytes([0x81, 0xa1]) + b'x' + bytes([0x94])
    for _ in range(4):
        body += bytes([0xdb]) + struct.pack('>I', piece) + b's' * piece
    return body[:-1024]


class Conn:
    def __init__(self, s):
        self.s = s
        self.todo = memoryview(partial_request()) if mode == 'partial' else memoryview(b'')
        self.closed = False
        self.warned = False


status = dict(connected=0, failed=0, sent=0, closed=0, warned=0, ready=False)
last_written = None


def write_status():
    global last_written
    if status == last_written:
        return
    tmp = status_path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(status, f)
    os.rename(tmp, status_path)
    last_written = dict(status)


def mark_closed(c):
    if not c.closed:
        c.closed = True
        status['closed'] += 1
        status['warned'] += c.warned
        c.s.close()


def connect():
    # A full listen backlog answers EAGAIN at once: retry for 2 s.
    give_up = time.time() + 2
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.connect(sock_path)
            return s
        except BlockingIOError:
            s.close()
            if time.time() > give_up:
                return None
            time.sleep(0.01)
        except OSError:
            s.close()
            return None


conns = []
for _ in range(count):
    s = connect()
    if s is None:
        status['failed'] += 1
        continue
    conns.append(Conn(s))
    status['connected'] += 1
write_status()

started = time.time()
while True:
    if os.path.exists(status_path + '.release') or not os.path.exists(sock_path) or \
            time.time() - started > MAX_LIFE:
        break
    live = [c for c in conns if not c.closed]
    sending = [c for c in live if len(c.todo) > 0]
    readable, writable, _ = select.select([c.s for c in live], [c.s for c in sending], [], 0.2)
    by_sock = {c.s: c for c in live}
    for s in writable:
        c = by_sock[s]
        try:
            n = s.send(c.todo[:262144])
            c.todo = c.todo[n:]
            if len(c.todo) == 0:
                status['sent'] += 1
        except BlockingIOError:
            pass
        except OSError:
            mark_closed(c)
    for s in readable:
        c = by_sock[s]
        if c.closed:
            continue
        try:
            data = s.recv(65536)
        except BlockingIOError:
            continue
        except OSError:
            mark_closed(c)
            continue
        if not data:
            mark_closed(c)
        elif b'warning' in data:
            c.warned = True
    status['ready'] = all(c.closed or len(c.todo) == 0 for c in conns)
    write_status()

for c in conns:
    if not c.closed:
        c.s.close()
