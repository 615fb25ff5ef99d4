# The socket tutorial's three clients, written as the tutorial writes them
# (blocking socket, struct.pack('i', ...), json.dumps, recv loops), driven
# from the command line instead of input(), with one JSON result line per
# request for the test to check. Used by tests/compat/*.rs.
#
#   python3 tutorial_clients.py HOST PORT [--recv N] [--download DIR] OP...
#   OP: ssh:COMMAND | get:NAME | put:PATH
import base64
import hashlib
import json
import os
import socket
import struct
import sys


def ssh(client, cmd, recv_bytes):
    """1、发命令"""
    client.send(cmd.encode('utf-8'))
    """2、拿结果"""
    obj = client.recv(4)
    header_size = struct.unpack('i', obj)[0]
    header_bytes = client.recv(header_size)
    header_json = header_bytes.decode('utf-8')
    header_dic = json.loads(header_json)
    total_size = header_dic['total_size']
    recv_size = 0
    recv_data = b''
    while recv_size < total_size:
        res = client.recv(recv_bytes)
        recv_data += res
        recv_size += len(res)
    return {'header': header_dic,
            'output': base64.b64encode(recv_data).decode(),
            'md5': hashlib.md5(recv_data).hexdigest()}


def get(client, name, recv_bytes, download_dir):
    client.send(('get %s' % name).encode('utf-8'))
    header = client.recv(4)
    header_size = struct.unpack('i', header)[0]
    header_bytes = client.recv(header_size)
    header_json = header_bytes.decode('utf-8')
    header_dic = json.loads(header_json)
    total_size = header_dic['file_size']
    filename = header_dic['filename']
    md5 = hashlib.md5()
    tail = b''
    # '-' keeps nothing on disk: a 2 GiB download would cost 2 GiB.
    path = os.devnull if download_dir == '-' else '%s/%s' % (download_dir, filename)
    with open(path, 'wb') as f:
        recv_size = 0
        while recv_size < total_size:
            line = client.recv(recv_bytes)
            f.write(line)
            md5.update(line)
            tail = (tail + line)[-16:]
            recv_size += len(line)
    return {'header': header_dic, 'received': recv_size,
            'md5': md5.hexdigest(), 'tail': base64.b64encode(tail).decode()}


def put(client, filename):
    filesize = os.path.getsize(filename)
    head_dic = {'cmd': 'put', 'filename': os.path.basename(filename), 'filesize': filesize}
    head_json = json.dumps(head_dic)
    head_json_bytes = bytes(head_json, encoding='utf-8')
    head_struct = struct.pack('i', len(head_json_bytes))
    client.send(head_struct)
    client.send(head_json_bytes)
    send_size = 0
    with open(filename, 'rb') as f:
        for line in f:
            client.send(line)
            send_size += len(line)
    return {'sent': send_size}


def main():
    args = sys.argv[1:]
    host, port = args[0], int(args[1])
    ops = args[2:]
    recv_bytes = 1024
    download_dir = '.'
    client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    client.connect((host, port))
    while ops:
        op = ops.pop(0)
        if op == '--recv':
            recv_bytes = int(ops.pop(0))
            continue
        if op == '--download':
            download_dir = ops.pop(0)
            continue
        kind, _, arg = op.partition(':')
        if kind == 'ssh':
            result = ssh(client, arg, recv_bytes)
        elif kind == 'get':
            result = get(client, arg, recv_bytes, download_dir)
        elif kind == 'put':
            result = put(client, arg)
        else:
            raise SystemExit('unknown op %r' % op)
        print(json.dumps(result), flush=True)
    client.close()


if __name__ == '__main__':
    main()
