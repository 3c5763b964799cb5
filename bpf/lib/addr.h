/* SPDX-License-Identifier: GPL-2.0 */
/* Addresses as the maps keep them: 16 bytes, IPv4 stored IPv4-mapped (bordergate_abi.h). */
#ifndef BG_LIB_ADDR_H
#define BG_LIB_ADDR_H

#include <linux/types.h>
#include <bpf/bpf_endian.h>

static __always_inline void set_mapped_v4(__u8 *addr, __u32 ip4_net)
{
    __builtin_memset(addr, 0, 10);
    addr[10] = 0xff;
    addr[11] = 0xff;
    __builtin_memcpy(addr + 12, &ip4_net, 4);
}

static __always_inline int is_mapped_v4(const __u32 *ip6)
{
    return ip6[0] == 0 && ip6[1] == 0 && ip6[2] == bpf_htonl(0x0000ffff);
}

#endif
