#define _GNU_SOURCE
#include <sys/prctl.h>
#include "bordergate_sys.h"

#include <malloc.h>
#include <sys/socket.h>

int bg_accept_nonblocking(int listener, struct sockaddr *addr, socklen_t *len)
{
    return accept4(listener, addr, len, SOCK_NONBLOCK | SOCK_CLOEXEC);
}

void bg_name_thread(const char *name)
{
    prctl(PR_SET_NAME, name, 0, 0, 0); /* the kernel keeps 15 characters */
}

unsigned long long bg_heap_in_use(void)
{
    struct mallinfo2 m = mallinfo2();
    return (unsigned long long)m.uordblks + (unsigned long long)m.hblkhd;
}
