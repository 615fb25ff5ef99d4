# The socket tutorial's UDP ssh client ("客户端-UDP_ssh"), as the tutorial
# writes it; only the server's address is adapted, taken from the command
# line (HOST PORT). It reads one datagram per line of input, and ends, as
# the tutorial's loop can only, with EOFError when its input runs out.
import socket
import sys

client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

while True:
    msg = input('>>: ').strip()
    client.sendto(msg.encode('utf-8'), (sys.argv[1], int(sys.argv[2])))  # 发消息

    data, server_addr = client.recvfrom(1024)   # 收消息
    print(data, server_addr)

client.close()
