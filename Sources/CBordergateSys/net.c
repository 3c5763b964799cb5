#define _GNU_SOURCE
#include "bordergate_sys.h"

#include <sys/socket.h>

int bg_accept_nonblocking(int listener, struct sockaddr *addr, socklen_t *len)
{
    return accept4(listener, addr, len, SOCK_NONBLOCK | SOCK_CLOEXEC);
}
